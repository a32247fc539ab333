"""``attnunet train``: train one model on a folder of images and masks."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attnunet.cli._common import (
    UsageError,
    _add_recipe,
    _device,
    _model_arg,
    _settings,
    _Subparsers,
    _threads,
)
from attnunet.cli._data import (
    add_geometry_options,
    add_label_options,
    read_training_data,
    tell_data,
)

if TYPE_CHECKING:
    from attnunet.training import Task, TrainResult, TrainSettings

__all__ = ["add_parser", "run"]

# what a fresh run writes in --out (and --overwrite replaces)
_OUTPUTS = (
    "training.json",
    "checkpoints",
    "best",
    "history.json",
    "curves.png",
    "val_metrics.csv",
)


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``train`` command and its options to ``subparsers``."""
    t = subparsers.add_parser(
        "train",
        help="train one model on a folder of images and masks",
        description=(
            "Train a model of the zoo on images and masks (PNG, JPEG, TIFF, NumPy; NIfTI, "
            "NRRD, MHA and DICOM with the [medical] extra; nnU-Net raw datasets). The "
            "dimensions, label values, voxel size and preprocessing come from the files and "
            "are saved with the model. Validates every epoch by sliding-window inference on "
            "held-out images, keeps the best model in OUT/best/ (load it with from_pretrained or "
            "pass it to evaluate/predict), checkpoints every epoch in OUT/checkpoints/ "
            "(continue with --resume), and writes history.json and curves.png. Under "
            "torchrun it trains with DistributedDataParallel."
        ),
    )
    _add_data_options(t)
    _add_model_options(t)
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    t.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's results in --out"
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_recipe(t, epochs=20, steps=50)


def _add_data_options(t: argparse.ArgumentParser) -> None:
    """The training and validation folders, and --out."""
    t.add_argument(
        "--images",
        type=Path,
        required=True,
        help="folder of images (or a folder with images/ and masks/)",
    )
    t.add_argument(
        "--masks",
        type=Path,
        default=None,
        help="folder of masks (default: found next to the images)",
    )
    t.add_argument(
        "--val-images",
        type=Path,
        default=None,
        help="validation images (default: hold out --val-fraction)",
    )
    t.add_argument("--val-masks", type=Path, default=None, help="validation masks")
    t.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of images held out (default: %(default)s)",
    )
    t.add_argument("--out", type=Path, required=True, help="output folder")


def _add_model_options(t: argparse.ArgumentParser) -> None:
    """The model: --model and --model-arg; the data's geometry, labels and preprocessing."""
    t.add_argument(
        "--model",
        default="ag_res_unet",
        help="registry name (default: %(default)s; see attnunet models)",
    )
    t.add_argument(
        "--model-arg",
        type=_model_arg,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra model argument, e.g. channels=[16,32,64] (repeatable)",
    )
    add_geometry_options(t)
    add_label_options(t)


def run(args: argparse.Namespace) -> int:
    """Run ``attnunet train`` with the parsed ``args``; return the exit status.

    Under torchrun every process reads the data and trains; only rank 0 checks and writes
    the output folder, and every process stops when it cannot.

    Args:
        args: the options of :func:`add_parser`.

    Returns:
        0 when training finished; problems raise :class:`UsageError` or the library's
        errors, which :func:`attnunet.cli.main` turns into messages and exit statuses.
    """
    from attnunet.data import IGNORE_INDEX, data_fingerprint
    from attnunet.training import init_distributed, train
    from attnunet.training.loop import resolve_settings

    started = time.perf_counter()
    _threads(args.threads)
    device = _device(args.device)
    ctx = init_distributed(device)  # under torchrun: join the group; rank 0 writes files
    _check_model_name(args.model)
    data = read_training_data(args, args.images, args.masks, args.val_images, args.val_masks)
    # --spacing is in every case's geometry already (the volumes carry it)
    settings = dataclasses.replace(
        _settings(args, data.task.spatial_dims, data.task.num_classes, None),
        ignore_index=IGNORE_INDEX if data.task.labels.ignore is not None else None,
        class_names=data.task.labels.column_names,
        hd95_convention=args.hd95_convention,
    )
    record = {
        "model": args.model,
        "model_args": dict(args.model_arg),
        "in_channels": data.task.in_channels,
        "settings": settings.to_dict(),
        "task": data.task.to_dict(),
        "train_images": [v.name for v in data.train_volumes],
        "val_images": [v.name for v in data.val_volumes],
        "data": data_fingerprint([*data.train, *data.val]),
    }
    torch.manual_seed(settings.seed)
    model = _build_model(args, data.task)  # before writing: a refused argument leaves nothing
    # what "auto" means here (precision, channels-last) is recorded, and --resume compares it
    settings = resolve_settings(settings, model, device)
    record["settings"] = settings.to_dict()
    record["device"] = str(device)
    _prepare_on_rank_0(args, record, settings, main=ctx.main, world=ctx.world)
    if ctx.main:
        tell_data(args.images, data.train, data.val, data.task, data.dataset, str(device))
    # the volumes are what training needs; the files' raw arrays go (half the memory of
    # a CT data set)
    task, train_volumes, val_volumes = data.task, data.train_volumes, data.val_volumes
    del data
    result = train(
        model,
        train_volumes,
        val_volumes,
        settings,
        args.out,
        resume=args.resume,
        device=device,
        progress=not args.quiet,
        label=args.model,
        model_name=args.model,
        metadata={"task": task.to_dict()},
        workers=args.workers,
    )
    if not ctx.main:
        return 0
    _write_results(args, model, settings, result, task)
    _tell_end(args, result, bool(val_volumes), time.perf_counter() - started)
    return 0


def _tell_end(args: argparse.Namespace, result: TrainResult, has_val: bool, seconds: float) -> None:
    """The last lines of a run: time, best epoch, where the files are."""
    out: Path = args.out
    best = (
        f"best validation Dice {result.best_dice:.4f} at epoch {result.best_epoch}"
        if has_val
        else "no validation data: the final model is kept"
    )
    print(
        f"{args.model}: {len(result.history)} epoch{'s' if len(result.history) != 1 else ''} "
        f"in {seconds / 60:.1f} min, {best}\n"
        f"model: {out / 'best'} (attnunet predict --model {out}); checkpoint: "
        f"{out / 'checkpoints' / 'last.pt'}; history: {out / 'history.json'}, "
        f"{out / 'curves.png'}"
        + (f"; validation metrics: {out / 'val_metrics.csv'}" if has_val else "")
    )


def _check_model_name(name: str) -> None:
    """Refuse a model name the registry does not know (its message lists close matches)."""
    from attnunet.models import model_info

    try:
        model_info(name)
    except ValueError as error:
        raise UsageError(f"{error} (`attnunet models` lists them)") from None


def _build_model(args: argparse.Namespace, task: Task) -> torch.nn.Module:
    """The model, seeded; a --model-arg it refuses is a usage error (exit 2), raised
    before anything is written."""
    from attnunet.models import create_model

    fixed = {"spatial_dims", "in_channels", "num_classes"} & {k for k, _ in args.model_arg}
    if fixed:
        raise UsageError(
            f"--model-arg {', '.join(sorted(fixed))}: set from the data ({task.spatial_dims}D, "
            f"{task.in_channels} channel(s), {task.num_classes} classes); drop it"
        )
    try:
        return create_model(
            args.model,
            spatial_dims=task.spatial_dims,
            in_channels=task.in_channels,
            num_classes=task.num_classes,
            **dict(args.model_arg),
        )
    except (TypeError, ValueError) as error:
        raise UsageError(
            f"--model {args.model} with --model-arg {dict(args.model_arg)}: {error}"
        ) from None


def _prepare_on_rank_0(
    args: argparse.Namespace,
    record: dict[str, Any],
    settings: TrainSettings,
    main: bool,
    world: int,
) -> None:
    """Prepare the output folder in the ``main`` process (rank 0); when it cannot, every
    process of the ``world`` stops with its message."""
    failure: list[str | None] = [None]
    if main:
        try:
            _prepare(args, record, settings)
        except (UsageError, FileExistsError) as error:
            failure = [str(error)]
    if world > 1:  # every process stops if rank 0 could not prepare the folder
        torch.distributed.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        raise UsageError(failure[0])


def _prepare(args: argparse.Namespace, record: dict[str, Any], settings: TrainSettings) -> None:
    """Check that --out may be written (or resumed from), then write training.json."""
    from attnunet.study import prepare_output

    out: Path = args.out
    if args.resume:
        _check_resume(out, record, settings)
    else:
        prepare_output(
            out, _OUTPUTS, args.overwrite, hint=", or --resume to continue an interrupted run"
        )
    out.mkdir(parents=True, exist_ok=True)
    (out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _check_resume(out: Path, record: dict[str, Any], settings: TrainSettings) -> None:
    """Refuse --resume without a checkpoint, or with another model, input or recipe than the
    interrupted run (only the number of epochs may change)."""
    from attnunet.training import CHECKPOINT, recipe_changes

    saved = out / "training.json"
    if not (out / CHECKPOINT).is_file():
        raise UsageError(
            f"nothing to resume in {out}: {out / CHECKPOINT} does not exist; start without --resume"
        )
    previous = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
    _check_same_data(saved, previous, record)
    changed_task = _differences(previous.get("task", record["task"]), record["task"], "task")
    if changed_task:
        raise UsageError(
            f"--resume: {'; '.join(changed_task[:4])} in {saved}; resume with the same data "
            f"and options (--labels, --ignore-label, --normalisation, --target-spacing)"
        )
    for key in ("model", "model_args", "in_channels"):
        if previous.get(key) != record[key]:
            raise UsageError(
                f"--resume: {key} was {previous.get(key)!r} in {saved}, now "
                f"{record[key]!r}; resume with the same options"
            )
    changed = recipe_changes(previous.get("settings") or {}, settings)
    if changed:
        raise UsageError(
            f"--resume: {', '.join(changed)} differ from the interrupted run "
            f"({saved}); resume with the same options (only --epochs and the speed options "
            f"--channels-last, --compile, --checkpointing, --device may change)"
        )


def _differences(before: Any, now: Any, where: str) -> list[str]:
    """The paths (``task.labels.ignore``) at which two JSON values differ, with both values."""
    if isinstance(before, dict) and isinstance(now, dict):
        return [
            change
            for key in sorted(set(before) | set(now))
            for change in _differences(before.get(key), now.get(key), f"{where}.{key}")
        ]
    return [] if before == now else [f"{where} was {before!r}, now {now!r}"]


def _check_same_data(saved: Path, previous: dict[str, Any], record: dict[str, Any]) -> None:
    """Refuse --resume on other data than the interrupted run's: other cases, sizes,
    geometry, or another training/validation split."""
    from attnunet.data import fingerprint_changes

    if "data" not in previous:  # written before data were recorded
        return
    changes = fingerprint_changes(previous["data"], record["data"])
    for key in ("train_images", "val_images"):
        if previous.get(key, record[key]) != record[key]:
            changes.append(f"the {key.split('_')[0]}ing cases differ")
    if changes:
        shown = "; ".join(changes[:6]) + ("; ..." if len(changes) > 6 else "")
        raise UsageError(
            f"--resume: the data differ from the interrupted run's ({saved}): {shown}; "
            f"resume on the same data, or start a new run in another --out"
        )


def _write_results(
    args: argparse.Namespace,
    model: torch.nn.Module,
    settings: TrainSettings,
    result: TrainResult,
    task: Task,
) -> None:
    """After training: the final model as best/ when there was no validation, the curves and
    the last validation metrics."""
    from attnunet.study import write_csv
    from attnunet.study.plots import line_chart

    out: Path = args.out
    if result.best_epoch == 0:  # never validated: the final model is the one to keep
        from attnunet.models import save_pretrained

        save_pretrained(
            model,
            out / "best",
            overwrite=True,
            metadata={"settings": settings.to_dict(), "task": task.to_dict()},
        )
    line_chart(
        [
            ("training loss", {args.model: [h.train_loss for h in result.history]}),
            (
                "validation Dice",
                {args.model: [h.val.get("dice", math.nan) for h in result.history]},
            ),
        ],
        out / "curves.png",
    )
    if result.val_rows:
        write_csv(out / "val_metrics.csv", result.val_rows)
