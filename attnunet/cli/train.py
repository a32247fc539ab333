"""``attnunet train``: train one model on a folder of images and masks."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from attnunet.cli._common import (
    UsageError,
    _add_recipe,
    _device,
    _floats,
    _load_folder,
    _model_arg,
    _settings,
    _split,
    _Subparsers,
    _threads,
)

if TYPE_CHECKING:
    from attnunet.training import TrainResult, TrainSettings, Volume

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
            "Train a model of the zoo on images and masks (PNG, JPEG, TIFF, NumPy; NIfTI "
            "with nibabel). Validates every epoch by sliding-window inference on held-out "
            "images, keeps the best model in OUT/best/ (load it with from_pretrained or "
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
    """The model and the task: --model, --model-arg, --spatial-dims, --num-classes, --spacing."""
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
    t.add_argument(
        "--spatial-dims", type=int, choices=(2, 3), default=2, help="2 or 3 (default: 2)"
    )
    t.add_argument(
        "--num-classes", type=int, default=2, help="classes including background (default: 2)"
    )
    t.add_argument(
        "--spacing",
        type=_floats,
        default=None,
        help="voxel size for surface metrics, e.g. 1,0.5,0.5",
    )


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
    from attnunet.models import create_model
    from attnunet.training import init_distributed, train

    _threads(args.threads)
    device = _device(args.device)
    ctx = init_distributed(device)  # under torchrun: join the group; rank 0 writes files
    _check_model_name(args.model)
    volumes = _load_folder(args.images, args.masks, args.spatial_dims, args.num_classes)
    train_v, val_v = _train_val(args, volumes)
    settings = _settings(args, args.spatial_dims, args.num_classes, args.spacing)
    in_channels = _in_channels([*volumes, *val_v])
    record = {
        "model": args.model,
        "model_args": dict(args.model_arg),
        "in_channels": in_channels,
        "settings": settings.to_dict(),
        "train_images": [v.name for v in train_v],
        "val_images": [v.name for v in val_v],
    }
    _prepare_on_rank_0(args, record, settings, main=ctx.main, world=ctx.world)
    torch.manual_seed(settings.seed)
    model = create_model(
        args.model,
        spatial_dims=args.spatial_dims,
        in_channels=in_channels,
        num_classes=args.num_classes,
        **dict(args.model_arg),
    )
    result = train(
        model,
        train_v,
        val_v,
        settings,
        args.out,
        resume=args.resume,
        device=device,
        progress=not args.quiet,
        label=args.model,
        model_name=args.model,
    )
    if not ctx.main:
        return 0
    _write_results(args, model, settings, result, has_val=bool(val_v))
    best = (
        f"best validation Dice {result.best_dice:.4f} at epoch {result.best_epoch}"
        if val_v
        else "no validation data"
    )
    print(f"{args.model}: {len(result.history)} epochs, {best}; model in {args.out / 'best'}")
    return 0


def _check_model_name(name: str) -> None:
    """Refuse a model name the registry does not know (its message lists close matches)."""
    from attnunet.models import model_info

    try:
        model_info(name)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _train_val(
    args: argparse.Namespace, volumes: list[Volume]
) -> tuple[list[Volume], list[Volume]]:
    """The training and validation volumes: all of ``volumes`` and --val-images, or
    --val-fraction of ``volumes`` held out."""
    if args.val_images is None:
        return _split(volumes, args.val_fraction, args.seed)
    val_v = _load_folder(args.val_images, args.val_masks, args.spatial_dims, args.num_classes)
    return volumes, val_v


def _in_channels(volumes: list[Volume]) -> int:
    """The input channels of the first volume; refused when another volume has others."""
    in_channels = int(volumes[0].image.shape[0])
    for v in volumes[1:]:
        if v.image.shape[0] != in_channels:
            raise UsageError(
                f"{v.name} has {v.image.shape[0]} channels but {volumes[0].name} has "
                f"{in_channels}; all images need the same channels"
            )
    return in_channels


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
            f"({saved}); resume with the same options (only --epochs may change)"
        )


def _write_results(
    args: argparse.Namespace,
    model: torch.nn.Module,
    settings: TrainSettings,
    result: TrainResult,
    has_val: bool,
) -> None:
    """After training: the final model as best/ when there was no validation, the curves and
    the last validation metrics."""
    from attnunet.study import write_csv
    from attnunet.study.plots import line_chart

    out: Path = args.out
    if not has_val:  # no validation: the final model is the one to keep
        from attnunet.models import save_pretrained

        save_pretrained(
            model, out / "best", overwrite=True, metadata={"settings": settings.to_dict()}
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
