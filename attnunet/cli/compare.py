"""``attnunet compare``: train several models with one recipe and compare them."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import TYPE_CHECKING

from attnunet.cli._common import (
    UsageError,
    _add_recipe,
    _device,
    _ints,
    _names,
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
    from attnunet.study import StudyData
    from attnunet.training import TrainSettings

__all__ = ["add_parser", "run"]

# epochs and steps per epoch by spatial dims, when --epochs and --steps-per-epoch are not given
_DEFAULT_RECIPE = {2: (8, 25), 3: (4, 12)}


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``compare`` command and its options to ``subparsers``."""
    c = subparsers.add_parser(
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
    _add_data_options(c)
    add_geometry_options(c, dims=False)
    add_label_options(c)
    _add_output_options(c)
    _add_recipe(c, epochs=None, steps=None)


def _add_data_options(c: argparse.ArgumentParser) -> None:
    """Which models, and on which data: --models, --spatial-dims, --data and its split."""
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
        default=None,
        help="2 (nuclei2d) or 3 (nuclei3d) (default: 2; with --data: from the files)",
    )
    c.add_argument(
        "--data",
        type=Path,
        default=None,
        help="your own folder with images/ and masks/ instead of the bundled sample",
    )
    c.add_argument(
        "--val-fraction",
        type=float,
        default=0.25,
        help="share of --data images held out (default: %(default)s)",
    )


def _add_output_options(c: argparse.ArgumentParser) -> None:
    """Where results go and what is built and kept: --out, --channels, --save-models, ..."""
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


def run(args: argparse.Namespace) -> int:
    """Run ``attnunet compare`` with the parsed ``args``; return the exit status.

    Args:
        args: the options of :func:`add_parser`.

    Returns:
        0 when the study ran; problems raise :class:`UsageError` or the library's errors,
        which :func:`attnunet.cli.main` turns into messages and exit statuses.
    """
    from attnunet.study import (
        STUDY_FILES,
        format_class_table,
        format_table,
        prepare_output,
        run_study,
    )
    from attnunet.training.settings import resolve_precision

    _threads(args.threads)
    device = _device(args.device)
    if args.data is None and args.spatial_dims is None:
        args.spatial_dims = 2
    if args.spatial_dims is not None:
        _models(args.models, args.spatial_dims)  # refuse unknown names before reading data
    data = _study_data(args, str(device))
    models = _models(args.models, data.spatial_dims)
    epochs, steps = _DEFAULT_RECIPE[data.spatial_dims]
    if args.epochs is None:
        args.epochs = epochs
    if args.steps_per_epoch is None:
        args.steps_per_epoch = steps
    # with --data, --spacing is in every case's geometry already
    spacing = (args.spacing or data.spacing) if args.data is None else None
    settings = dataclasses.replace(
        _settings(args, data.spatial_dims, data.num_classes, spacing),
        ignore_index=data.ignore_index,
        class_names=data.class_names,
        hd95_convention=args.hd95_convention,
        spacing_unit=data.unit,
        precision=resolve_precision(args.precision, device),
    )
    prepare_output(args.out, STUDY_FILES, args.overwrite)
    _print_plan(data, settings, str(device))
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
        device=device,
        workers=args.workers,
    )
    print()
    print(format_table(rows))
    per_class = format_class_table(rows)
    if per_class:
        print()
        print(per_class)
    unit = rows[0].get("unit", "px") if rows else "px"
    print(f"HD95 and ASSD in {unit}")
    print(f"\n{len(rows)} models in {time.perf_counter() - started:.0f} s; results in {args.out}/")
    return 0


def _models(names: list[str] | None, spatial_dims: int) -> list[str]:
    """The models to compare (default: the study's), refused when one is not registered."""
    from attnunet.models import list_models
    from attnunet.study import STUDY_MODELS

    models = names or list(STUDY_MODELS)
    known = list_models(spatial_dims=spatial_dims, presets=False)
    for name in models:
        if name not in known:
            raise UsageError(
                f"unknown model {name!r} for {spatial_dims}D; choose from {', '.join(known)}"
            )
    return models


def _study_data(args: argparse.Namespace, device: str) -> StudyData:
    """The bundled sample of ``--spatial-dims``, or ``--data`` split into training and
    validation images (``device`` is named in the summary of the data)."""
    from attnunet.data import IGNORE_INDEX
    from attnunet.study import StudyData, sample_study_data

    if args.data is None:
        return sample_study_data(args.spatial_dims)
    data = read_training_data(args, args.data)
    if not data.val:
        raise UsageError("compare needs held-out images: use --val-fraction > 0")
    task = data.task
    tell_data(args.data, data.train, data.val, task, data.dataset, device)
    return StudyData(
        name=str(args.data),
        train=data.train_volumes,
        val=data.val_volumes,
        spatial_dims=task.spatial_dims,
        in_channels=task.in_channels,
        num_classes=task.num_classes,
        spacing=None,
        description=(
            f"{args.data}: {len(data.train)} training and {len(data.val)} validation images"
        ),
        ignore_index=IGNORE_INDEX if task.labels.ignore is not None else None,
        class_names=task.labels.column_names,
        metadata={"task": task.to_dict()},  # saved with --save-models
    )


def _print_plan(data: StudyData, settings: TrainSettings, device: str) -> None:
    """Print the data, the recipe and the speed switches before training starts."""
    optimiser = {"adam": "Adam", "nnunet": "nnU-Net's SGD"}[settings.recipe]
    switches = [f"{settings.precision} on {device}"]
    if settings.channels_last != "off":
        switches.append(f"channels-last {settings.channels_last}")
    switches += [name for name in ("compile", "checkpointing") if getattr(settings, name)]
    print(f"data: {data.description}")
    print(
        f"recipe: {settings.epochs} epochs x {settings.steps_per_epoch} steps, batch "
        f"{settings.batch_size} of {'x'.join(map(str, settings.patch_size))} patches, "
        f"{optimiser} lr {settings.learning_rate}, seed {settings.seed}, augmentation "
        f"{settings.augment}; {', '.join(switches)}; validation on {len(data.val)} images\n"
    )
