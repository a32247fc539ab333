"""The ``attnunet`` command: compare, train, evaluate, predict, models.

Run ``attnunet --help`` (or ``python -m attnunet --help``) for the commands, and
``attnunet COMMAND --help`` for each one's options. ``attnunet compare`` with no argument
runs the variant study on the bundled 2D nuclei sample.

Every command refuses to overwrite existing results unless ``--overwrite`` is given,
and then replaces only the files it writes. Problems with the input (a missing or
unreadable file, an image without a mask, sizes that differ) end the command with a
one-line message naming the file and exit status 2; other failures exit with 1 (set
``ATTNUNET_DEBUG=1`` for the traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import torch

__all__ = ["main"]

EXIT_USAGE = 2
EXIT_FAILURE = 1


class UsageError(Exception):
    """A problem with what the user asked for: exit status 2 with the message."""


# ------------------------------------------------------------------------ arguments


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers like 64,64 or 32x64x64, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 1.0,0.5,0.5, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _model_arg(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _add_recipe(p: argparse.ArgumentParser, epochs: int | None, steps: int | None) -> None:
    g = p.add_argument_group("training recipe")
    g.add_argument("--epochs", type=int, default=epochs, help="epochs (default: %(default)s)")
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=steps,
        help="optimisation steps per epoch (default: %(default)s)",
    )
    g.add_argument(
        "--batch-size", type=int, default=None, help="patches per step (default: 8 in 2D, 2 in 3D)"
    )
    g.add_argument(
        "--patch-size",
        type=_ints,
        default=None,
        help="training patch, e.g. 64,64 or 32,64,64 (default: 64 per axis in 2D, 32,64,64 in 3D)",
    )
    g.add_argument(
        "--lr", type=float, default=2e-3, help="Adam learning rate (default: %(default)s)"
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument(
        "--augment",
        choices=("none", "light", "standard"),
        default="standard",
        help="augmentation: flips, 90-degree rotations, noise, blur (default: %(default)s)",
    )
    g.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    g.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default: %(default)s)")


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    """The options evaluate and predict share: windowing, threads, device, progress."""
    p.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="sliding-window overlap (default: the training value)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu, cuda, ... (default: %(default)s)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# argparse's subparsers action; its class is private, so name it once here
_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="attnunet",
        description=(
            "Attention and residual U-Nets for medical image segmentation: compare the zoo "
            "on bundled or own data, train, evaluate and predict, in 2D and 3D."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_compare(sub)
    _add_train(sub)
    _add_evaluate(sub)
    _add_predict(sub)
    _add_models(sub)
    return parser


def _add_compare(sub: _Subparsers) -> None:
    """The ``compare`` command's options."""
    c = sub.add_parser(
        "compare",
        help="train several models with one recipe and compare them (the main job)",
        description=(
            "Train UNet, AgUNet, ResUNet, AgResUNet, AttentionUNet and RAUNet (or --models) "
            "with one recipe and seed, evaluate them on held-out data and print the study "
            "table (mean ± std of IoU, Dice, HD95, ASSD, one-piece fraction; parameters; "
            "seconds per step). Writes results.json/.csv, per_image.csv, curves.png and "
            "attention/<model>.png under --out. With no option it uses the bundled 2D "
            "nuclei sample and takes about 3 minutes on 2 CPU cores."
        ),
    )
    c.add_argument(
        "--models",
        type=_names,
        default=None,
        help="comma-separated registry names (default: the six of the study)",
    )
    c.add_argument(
        "--spatial-dims",
        type=int,
        choices=(2, 3),
        default=2,
        help="2 (nuclei2d) or 3 (nuclei3d) (default: 2)",
    )
    c.add_argument(
        "--data",
        type=Path,
        default=None,
        help="your own folder with images/ and masks/ instead of the bundled sample",
    )
    c.add_argument(
        "--num-classes",
        type=int,
        default=2,
        help="classes including background, for --data (default: 2)",
    )
    c.add_argument(
        "--val-fraction",
        type=float,
        default=0.25,
        help="share of --data images held out (default: %(default)s)",
    )
    c.add_argument(
        "--out",
        type=Path,
        default=Path("attnunet-compare"),
        help="output folder (default: %(default)s)",
    )
    c.add_argument(
        "--overwrite", action="store_true", help="replace the results of an earlier run in --out"
    )
    c.add_argument(
        "--channels", type=_ints, default=(8, 16, 32, 64), help="U-Net widths (default: 8,16,32,64)"
    )
    c.add_argument(
        "--pretrained",
        action="store_true",
        help="RAUNet with ImageNet weights from the local cache (2D)",
    )
    c.add_argument(
        "--save-models",
        action="store_true",
        help="also save every trained model under --out/models/",
    )
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_recipe(c, epochs=None, steps=None)


def _add_train(sub: _Subparsers) -> None:
    """The ``train`` command's options."""
    t = sub.add_parser(
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
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints/last.pt")
    t.add_argument(
        "--overwrite", action="store_true", help="replace an earlier run's results in --out"
    )
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_recipe(t, epochs=20, steps=50)


def _add_evaluate(sub: _Subparsers) -> None:
    """The ``evaluate`` command's options."""
    e = sub.add_parser(
        "evaluate",
        help="score a trained model on images with masks",
        description=(
            "Segment every image whole (sliding window) and score it; print mean ± std "
            "and write a per-image CSV."
        ),
    )
    e.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a train output folder or a save_pretrained folder",
    )
    e.add_argument(
        "--images", type=Path, required=True, help="folder of images (or with images/ and masks/)"
    )
    e.add_argument("--masks", type=Path, default=None, help="folder of masks")
    e.add_argument(
        "--out", type=Path, default=None, help="per-image metrics CSV (default: print only)"
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.add_argument("--spacing", type=_floats, default=None, help="voxel size for surface metrics")
    _add_inference_options(e)


def _add_predict(sub: _Subparsers) -> None:
    """The ``predict`` command's options."""
    pr = sub.add_parser(
        "predict",
        help="segment images with a trained model",
        description="Write one label map per image (PNG for 2D, TIFF for 3D, or --format npy).",
    )
    pr.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a train output folder or a save_pretrained folder",
    )
    pr.add_argument("--images", type=Path, required=True, help="an image or a folder of images")
    pr.add_argument("--out", type=Path, required=True, help="output folder for the label maps")
    pr.add_argument(
        "--format",
        choices=("auto", "png", "tif", "npy"),
        default="auto",
        help="file format (default: png for 2D, tif for 3D)",
    )
    pr.add_argument("--overwrite", action="store_true", help="replace existing predictions")
    _add_inference_options(pr)


def _add_models(sub: _Subparsers) -> None:
    """The ``models`` command's options."""
    m = sub.add_parser(
        "models",
        help="list the model zoo",
        description="List the registered models with their paper, dimensions and parameters.",
    )
    m.add_argument("pattern", nargs="?", default="*", help="shell-style filter, e.g. '*unet*'")
    m.add_argument(
        "--no-parameters", action="store_true", help="skip building each model to count parameters"
    )


# ----------------------------------------------------------------------------- data


def _load_folder(
    images: Path,
    masks: Path | None,
    spatial_dims: int,
    num_classes: int | None,
    need_masks: bool = True,
) -> list[Any]:
    """Volumes (normalised images with label maps) from a folder."""
    from attnunet.data import io
    from attnunet.training import Volume

    if not images.exists():
        raise UsageError(
            f"{images} does not exist: give a folder of images (PNG, JPEG, TIFF, .npy, .npz, NIfTI)"
        )
    pairs = io.find_pairs(images, masks, require_masks=need_masks)
    volumes = []
    for pair in pairs:
        image = io.normalise_image(io.read_image(pair.image, spatial_dims=spatial_dims))
        mask = None
        if pair.mask is not None:
            mask = io.read_mask(pair.mask, spatial_dims=spatial_dims, num_classes=num_classes)
            if mask.shape != image.shape[1:]:
                raise io.DataError(
                    f"{pair.mask}: mask size {mask.shape} differs from its image {pair.image} "
                    f"{image.shape[1:]}; masks must match their images voxel for voxel"
                )
        if image.ndim - 1 != spatial_dims:
            raise io.DataError(
                f"{pair.image}: read as {image.ndim - 1}D {image.shape[1:]} but --spatial-dims is "
                f"{spatial_dims}; pass --spatial-dims {image.ndim - 1} or convert the file"
            )
        volumes.append(Volume(image.astype(np.float32), mask, pair.image.stem))
    return volumes


def _split(volumes: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """The reproducible image-level split of :func:`attnunet.data.io.split_pairs`."""
    from attnunet.data import io

    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"--val-fraction must lie in [0, 1), got {fraction}")
    if fraction > 0 and len(volumes) < 2:
        raise UsageError(
            f"only {len(volumes)} image found: cannot hold one out for validation; add images, "
            f"give --val-images/--val-masks, or pass --val-fraction 0"
        )
    return io.split_pairs(volumes, fraction, seed)


def _settings(args: argparse.Namespace, spatial_dims: int, num_classes: int, spacing: Any) -> Any:
    from attnunet.training import TrainSettings

    patch = args.patch_size or ((64,) * spatial_dims if spatial_dims != 3 else (32, 64, 64))
    if len(patch) == 1:
        patch = patch * spatial_dims
    if len(patch) != spatial_dims:
        raise UsageError(
            f"--patch-size needs {spatial_dims} sizes for {spatial_dims}D data, got {patch}"
        )
    kwargs: dict[str, Any] = {
        "spatial_dims": spatial_dims,
        "num_classes": num_classes,
        "patch_size": patch,
        "batch_size": args.batch_size or (8 if spatial_dims < 3 else 2),
        "learning_rate": args.lr,
        "seed": args.seed,
        "augment": args.augment,
        "spacing": spacing,
    }
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    if args.steps_per_epoch is not None:
        kwargs["steps_per_epoch"] = args.steps_per_epoch
    try:
        return TrainSettings(**kwargs)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _threads(n: int | None) -> None:
    if n is not None:
        if n < 1:
            raise UsageError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def _device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r}; use cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu"
        )
    return device


# ------------------------------------------------------------------------- commands


def _cmd_compare(args: argparse.Namespace) -> int:
    from attnunet.models import list_models
    from attnunet.study import (
        STUDY_FILES,
        STUDY_MODELS,
        format_table,
        prepare_output,
        run_study,
        sample_study_data,
    )

    models = args.models or list(STUDY_MODELS)
    known = list_models(spatial_dims=args.spatial_dims, presets=False)
    for name in models:
        if name not in known:
            raise UsageError(
                f"unknown model {name!r} for {args.spatial_dims}D; choose from {', '.join(known)}"
            )
    _threads(args.threads)
    if args.data is None:
        data = sample_study_data(args.spatial_dims)
    else:
        from attnunet.study import StudyData

        volumes = _load_folder(args.data, None, args.spatial_dims, args.num_classes)
        train_v, val_v = _split(volumes, args.val_fraction, args.seed)
        if not val_v:
            raise UsageError("compare needs held-out images: use --val-fraction > 0")
        data = StudyData(
            name=str(args.data),
            train=train_v,
            val=val_v,
            spatial_dims=args.spatial_dims,
            in_channels=volumes[0].image.shape[0],
            num_classes=args.num_classes,
            spacing=None,
            description=f"{args.data}: {len(train_v)} training and {len(val_v)} validation images",
        )
    defaults = {2: (8, 25), 3: (4, 12)}[args.spatial_dims]
    if args.epochs is None:
        args.epochs = defaults[0]
    if args.steps_per_epoch is None:
        args.steps_per_epoch = defaults[1]
    settings = _settings(args, args.spatial_dims, data.num_classes, data.spacing)
    prepare_output(args.out, STUDY_FILES, args.overwrite)
    print(f"data: {data.description}")
    print(
        f"recipe: {settings.epochs} epochs x {settings.steps_per_epoch} steps, batch "
        f"{settings.batch_size} of {'x'.join(map(str, settings.patch_size))} patches, Adam "
        f"lr {settings.learning_rate}, seed {settings.seed}, augmentation {settings.augment}; "
        f"validation on {len(data.val)} images\n"
    )
    started = time.perf_counter()
    rows = run_study(
        models,
        data,
        settings,
        args.out,
        channels=args.channels,
        pretrained=args.pretrained,
        save_models=args.save_models,
        progress=not args.quiet,
    )
    print()
    print(format_table(rows))
    print(f"\n{len(rows)} models in {time.perf_counter() - started:.0f} s; results in {args.out}/")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from attnunet.models import create_model, model_info
    from attnunet.study import prepare_output
    from attnunet.training import CHECKPOINT, init_distributed, train

    _threads(args.threads)
    device = _device(args.device)
    ctx = init_distributed(device)  # under torchrun: join the group; rank 0 writes files
    try:
        model_info(args.model)  # unknown names fail here, with close matches
    except ValueError as error:
        raise UsageError(str(error)) from None
    volumes = _load_folder(args.images, args.masks, args.spatial_dims, args.num_classes)
    if args.val_images is not None:
        train_v = volumes
        val_v = _load_folder(args.val_images, args.val_masks, args.spatial_dims, args.num_classes)
    else:
        train_v, val_v = _split(volumes, args.val_fraction, args.seed)
    settings = _settings(args, args.spatial_dims, args.num_classes, args.spacing)
    in_channels = volumes[0].image.shape[0]
    for v in volumes[1:] + list(val_v):
        if v.image.shape[0] != in_channels:
            raise UsageError(
                f"{v.name} has {v.image.shape[0]} channels but {volumes[0].name} has "
                f"{in_channels}; all images need the same channels"
            )
    record = {
        "model": args.model,
        "model_args": dict(args.model_arg),
        "in_channels": in_channels,
        "settings": settings.to_dict(),
        "train_images": [v.name for v in train_v],
        "val_images": [v.name for v in val_v],
    }
    out: Path = args.out

    def prepare() -> None:
        if args.resume:
            saved = out / "training.json"
            if not (out / CHECKPOINT).is_file():
                raise UsageError(
                    f"nothing to resume in {out}: {out / CHECKPOINT} does not exist; start "
                    f"without --resume"
                )
            previous = json.loads(saved.read_text(encoding="utf-8")) if saved.is_file() else {}
            for key in ("model", "model_args", "in_channels"):
                if previous.get(key) != record[key]:
                    raise UsageError(
                        f"--resume: {key} was {previous.get(key)!r} in {saved}, now "
                        f"{record[key]!r}; resume with the same options"
                    )
            saved_settings = dict(previous.get("settings") or {})
            now = settings.to_dict()
            changed = sorted(
                k for k in now if k != "epochs" and saved_settings.get(k, now[k]) != now[k]
            )
            if changed:
                raise UsageError(
                    f"--resume: {', '.join(changed)} differ from the interrupted run "
                    f"({saved}); resume with the same options (only --epochs may change)"
                )
        else:
            prepare_output(
                out,
                (
                    "training.json",
                    "checkpoints",
                    "best",
                    "history.json",
                    "curves.png",
                    "val_metrics.csv",
                ),
                args.overwrite,
                hint=", or --resume to continue an interrupted run",
            )
        out.mkdir(parents=True, exist_ok=True)
        (out / "training.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")

    failure: list[str | None] = [None]
    if ctx.main:
        try:
            prepare()
        except (UsageError, FileExistsError) as error:
            failure = [str(error)]
    if ctx.world > 1:  # every process stops if rank 0 could not prepare the folder
        torch.distributed.broadcast_object_list(failure, src=0)
    if failure[0] is not None:
        raise UsageError(failure[0])
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
        out,
        resume=args.resume,
        device=device,
        progress=not args.quiet,
        label=args.model,
        model_name=args.model,
    )
    if not ctx.main:
        return 0
    if not val_v:  # no validation: the final model is the one to keep
        from attnunet.models import save_pretrained

        save_pretrained(
            model, out / "best", overwrite=True, metadata={"settings": settings.to_dict()}
        )
    from attnunet.study.plots import line_chart

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
        from attnunet.study import write_csv

        write_csv(out / "val_metrics.csv", result.val_rows)
    best = (
        f"best validation Dice {result.best_dice:.4f} at epoch {result.best_epoch}"
        if val_v
        else "no validation data"
    )
    print(f"{args.model}: {len(result.history)} epochs, {best}; model in {out / 'best'}")
    return 0


def _load_trained(
    path: Path, device: torch.device, overlap: float | None = None
) -> tuple[torch.nn.Module, Any]:
    """A model saved by ``train`` (its folder or its ``best/``) and its recipe, with the
    sliding-window ``overlap`` replaced when given."""
    from attnunet.models import from_pretrained
    from attnunet.training import TrainSettings

    folder = path / "best" if (path / "best" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise UsageError(
            f"{path} holds no trained model: expected {path}/best/config.json or "
            f"{path}/config.json (a train --out folder or a save_pretrained folder)"
        )
    model = from_pretrained(folder, map_location=str(device))
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("metadata") or {}
    if "settings" in meta:
        settings = TrainSettings.from_dict(meta["settings"])
    else:
        dims = int(getattr(model, "spatial_dims", 2))
        config = getattr(model, "config", {})
        settings = TrainSettings(
            spatial_dims=dims,
            num_classes=max(2, int(config.get("num_classes", 2))),
            patch_size=(64,) * dims if dims < 3 else (32, 64, 64),
        )
    if overlap is not None:
        settings.overlap = overlap
    return model, settings


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from attnunet.study import write_csv
    from attnunet.training import evaluate

    _threads(args.threads)
    device = _device(args.device)
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise FileExistsError(
            f"{args.out} already exists: choose another --out or pass --overwrite"
        )
    model, settings = _load_trained(args.model, device, args.overlap)
    if args.spacing is not None:
        settings.spacing = tuple(args.spacing)
    volumes = _load_folder(args.images, args.masks, settings.spatial_dims, settings.num_classes)
    rows, acc = evaluate(model, volumes, settings, device, progress=not args.quiet)
    for row in rows:
        print(
            ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
            )
        )
    print()
    print(acc.summary())
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_csv(args.out, rows)
        print(f"per-image metrics in {args.out}")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from attnunet.data import io
    from attnunet.training import Progress, predict

    _threads(args.threads)
    device = _device(args.device)
    model, settings = _load_trained(args.model, device, args.overlap)
    if args.images.is_file():
        pairs = [io.Pair(args.images)]
    else:
        pairs = io.find_pairs(args.images, None, require_masks=False)
    ext = args.format
    if ext == "auto":
        ext = "png" if settings.spatial_dims == 2 else "tif"
    targets = [args.out / f"{pair.name}.{ext}" for pair in pairs]
    clash = [t for t in targets if t.exists()]
    if clash and not args.overwrite:
        raise FileExistsError(
            f"{clash[0]} already exists: choose another --out or pass --overwrite"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    bar = Progress(len(pairs), "predict", not args.quiet)
    for pair in pairs:
        image = io.read_image(pair.image, spatial_dims=settings.spatial_dims)
        labels = predict(model, io.normalise_image(image), settings, device)
        io.write_prediction(args.out, pair.image, labels, fmt=ext, overwrite=args.overwrite)
        bar.update()
    bar.close()
    files = pairs
    print(f"{len(files)} label maps in {args.out}/")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from attnunet.models import create_model, list_models, model_info

    names = list_models(args.pattern)
    if not names:
        raise UsageError(f"no model matches {args.pattern!r}; try attnunet models")
    rows = []
    for name in names:
        info = model_info(name)
        params = ""
        if not args.no_parameters:
            kwargs = {"pretrained": False} if "raunet" in name else {}
            try:
                model = create_model(name, **kwargs)
                params = f"{sum(p.numel() for p in model.parameters()):,}"
                del model
            except (TypeError, ValueError):
                params = "?"
        dims = "/".join(f"{d}D" for d in info.spatial_dims)
        paper = info.paper.split(",")[0] if info.paper else ""
        rows.append((name, dims, params, paper, info.description))
    header = ("name", "dims", "parameters", "paper", "description")
    widths = [min(48, max(len(str(r[i])) for r in [header, *rows])) for i in range(4)]
    for r in [header, *rows]:
        print(
            "  ".join(str(c)[:w].ljust(w) for c, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        )
    return 0


COMMANDS = {
    "compare": _cmd_compare,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "predict": _cmd_predict,
    "models": _cmd_models,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from attnunet.data.io import DataError

    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        hint = " (continue with --resume)" if args.command == "train" else ""
        print(f"attnunet {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except (UsageError, DataError, FileExistsError, FileNotFoundError) as error:
        print(f"attnunet {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as error:  # one clear line instead of a traceback
        if os.environ.get("ATTNUNET_DEBUG"):
            raise
        print(f"attnunet {args.command}: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
