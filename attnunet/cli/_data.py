"""Reading a data set for the commands: cases with their geometry, the labels, the task.

Private to :mod:`attnunet.cli`. ``train`` and ``compare`` read a folder (images/ and
masks/, images with mask suffixes, or an nnU-Net raw dataset), work out the labels and
the preprocessing once (:meth:`attnunet.training.Task.from_cases`) and tell the user
what they found; ``evaluate`` and ``predict`` read a folder for a trained model's task.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from attnunet.cli._common import UsageError, _floats, _split

if TYPE_CHECKING:
    from attnunet.data import Case, LabelSet, NnUNetDataset
    from attnunet.training import Task, Volume

NORMALISATIONS = ("auto", "ct", "zscore", "percentile", "none")


# ------------------------------------------------------------------------ options


def _target_spacing(text: str) -> Any:
    """``auto``, ``none`` or spacings like ``0.8,0.8,3`` (an argparse ``type``)."""
    if text.lower() in ("auto", "none"):
        return text.lower()
    return _floats(text)


def _normalisation(text: str) -> str | tuple[str, ...]:
    """``auto``, one scheme, or one scheme per channel (an argparse ``type``)."""
    names = tuple(n.strip().lower() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in NORMALISATIONS]
    if not names or unknown or ("auto" in names and len(names) > 1):
        raise argparse.ArgumentTypeError(
            f"expected auto, or ct, zscore, percentile or none (one, or one per channel "
            f"such as ct,zscore), got {text!r}"
        )
    return names[0] if len(names) == 1 else names


def add_geometry_options(p: argparse.ArgumentParser, *, dims: bool = True) -> None:
    """The options every command that reads cases has: dims (unless the command has its
    own --spatial-dims), spacing, mismatches."""
    g = p.add_argument_group("data and geometry")
    if dims:
        g.add_argument(
            "--spatial-dims",
            type=int,
            choices=(2, 3),
            default=None,
            help="2 or 3 (default: from the files: a mask's axes, or the image format)",
        )
    g.add_argument(
        "--spacing",
        type=_floats,
        default=None,
        help="the voxel size of every file, e.g. 1,0.5,0.5, for the resampling and the "
        "distances alike (default: each file's header; px for files without one); a header "
        "that says otherwise is overridden, with a note",
    )
    g.add_argument(
        "--allow-geometry-mismatch",
        action="store_true",
        help="use an image and mask whose spacing or affine differ (with a warning)",
    )
    g.add_argument(
        "--hd95",
        choices=("max", "pooled"),
        default="max",
        dest="hd95_convention",
        help="HD95 of the larger directed 95th percentile (max, MONAI's) or of both "
        "directions pooled (pooled, MedPy's hd95) (default: max)",
    )


def add_label_options(p: argparse.ArgumentParser) -> None:
    """The options of the commands that work out a task: labels and preprocessing."""
    g = p.add_argument_group("labels and preprocessing")
    g.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="declare the labels 0..N-1 (default: the values found in the masks)",
    )
    g.add_argument(
        "--labels",
        type=Path,
        default=None,
        help="a labels file (JSON name->value or value->name, or 'value name' lines) or a "
        "dataset.json (default: the dataset's dataset.json, else the values in the masks)",
    )
    g.add_argument(
        "--ignore-label",
        type=int,
        default=None,
        help="a mask value left out of the loss and the metrics, e.g. 255",
    )
    g.add_argument(
        "--normalisation",
        type=_normalisation,
        default="auto",
        metavar="SCHEME[,SCHEME...]",
        help="intensity normalisation: auto (CT channels of a dataset.json: clip to the "
        "training foreground's 0.5-99.5 percentiles and z-score; others: z-score per "
        "image), or ct, zscore, percentile or none for every channel, or one per channel "
        "such as ct,zscore (default: auto)",
    )
    g.add_argument(
        "--target-spacing",
        type=_target_spacing,
        default="auto",
        help="resample to this spacing, e.g. 0.8,0.8,3 ('auto': the training median in 3D "
        "when spacings differ; 'none': never) (default: auto)",
    )


# ------------------------------------------------------------------------ reading


def dataset_info(images: Path) -> NnUNetDataset | None:
    """The nnU-Net ``dataset.json`` that governs ``images``, read, or ``None``."""
    from attnunet.data import find_dataset_json, read_dataset_json

    found = find_dataset_json(images)
    return None if found is None else read_dataset_json(found)


def for_inference(images: Path, need_masks: bool) -> Path:
    """An nnU-Net dataset root given to evaluate or predict means its test cases."""
    if not (images / "dataset.json").is_file() or not (images / "imagesTr").is_dir():
        return images
    if not (images / "imagesTs").is_dir():
        raise UsageError(
            f"{images} is an nnU-Net dataset without imagesTs/: give --images "
            f"{images / 'imagesTr'} to use the training cases"
        )
    if need_masks and not (images / "labelsTs").is_dir():
        raise UsageError(
            f"{images} has imagesTs/ but no labelsTs/ to score against: add labelsTs/, or "
            f"give --images {images / 'imagesTr'} to score the training cases"
        )
    return images / "imagesTs"


def read_cases(
    images: Path,
    masks: Path | None,
    args: argparse.Namespace,
    *,
    need_masks: bool = True,
    keep_values: bool = False,
    spatial_dims: int | None = None,
) -> list[Case]:
    """Every case of a folder (or one file), checked, with its geometry."""
    from attnunet.data import GeometryWarning, find_pairs, load_cases

    if not images.exists():
        raise UsageError(
            f"{images} does not exist: give a folder of images (PNG, JPEG, TIFF, .npy, .npz, "
            f"NIfTI, NRRD, MHA) or an nnU-Net raw dataset"
        )
    pairs = find_pairs(images, masks, require_masks=need_masks)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", GeometryWarning)
        cases = load_cases(
            pairs,
            spatial_dims=spatial_dims if spatial_dims is not None else args.spatial_dims,
            allow_mismatch=args.allow_geometry_mismatch,
            keep_values=keep_values,
        )
    for warning in caught:  # one line each, without Python's file and line
        print(f"attnunet: warning: {warning.message}", file=sys.stderr)
    return with_spacing(cases, args.spacing)


def with_spacing(cases: list[Case], spacing: Sequence[float] | None) -> list[Case]:
    """``--spacing`` given: it replaces every case's voxel size (headers without one, or
    wrong ones), for the resampling and the metrics alike."""
    import dataclasses

    if spacing is None:
        return cases
    given = tuple(float(v) for v in spacing)
    overridden = []
    for case in cases:
        if len(given) != case.spatial_dims:
            raise UsageError(
                f"--spacing needs {case.spatial_dims} values for {case.spatial_dims}D data "
                f"({case.pair.image}), got {len(given)}"
            )
        if case.spacing is not None and not np.allclose(case.spacing, given, rtol=1e-3):
            overridden.append(case)
        case.geometry = dataclasses.replace(case.geometry, spacing=given)
    if overridden:
        first = overridden[0]
        print(
            f"attnunet: note: --spacing {' x '.join(f'{v:g}' for v in given)} replaces the "
            f"voxel size in the headers of {len(overridden)} file(s), for the resampling and "
            f"the distances alike (first: {first.pair.image})",
            file=sys.stderr,
        )
    return cases


def assume_model_spacing(cases: list[Case], task: Task) -> list[Case]:
    """A file without a voxel size (NumPy, TIFF, PNG) given to a model that resamples is
    taken to be at the model's spacing, with a note on stderr saying so (``--spacing``
    gives the right one)."""
    import dataclasses

    target = task.preprocessing.target_spacing
    if target is None:
        return cases
    for case in cases:
        if case.spacing is None:
            case.geometry = dataclasses.replace(case.geometry, spacing=tuple(target))
            size = " x ".join(f"{s:g}" for s in target)
            print(
                f"attnunet: note: {case.pair.image} has no voxel size: taken as the model's "
                f"{size} mm (give --spacing if it is another)",
                file=sys.stderr,
            )
    return cases


def declared_labels(args: argparse.Namespace, dataset: NnUNetDataset | None) -> LabelSet | None:
    """The label set the user declared (``--labels``, ``dataset.json``, ``--num-classes``),
    with ``--ignore-label``; ``None``: discover it from the masks."""
    import dataclasses

    from attnunet.data import LabelSet

    labels: LabelSet | None = None
    if args.labels is not None:
        if not args.labels.is_file():
            raise UsageError(f"--labels {args.labels} does not exist")
        if args.labels.name == "dataset.json":
            labels = LabelSet.from_dataset_json(args.labels)
        else:
            labels = LabelSet.from_file(args.labels)
    elif dataset is not None:
        labels = LabelSet.from_dataset_json(dataset.root / "dataset.json")
    elif args.num_classes is not None:
        if args.num_classes < 2:
            raise UsageError(
                f"--num-classes counts background and must be >= 2, got {args.num_classes}"
            )
        labels = LabelSet(tuple(range(args.num_classes)))
    if labels is not None and args.ignore_label is not None:
        labels = dataclasses.replace(labels, ignore=args.ignore_label)
    if labels is not None and args.num_classes not in (None, labels.num_classes):
        raise UsageError(
            f"--num-classes {args.num_classes} disagrees with the {labels.num_classes} "
            f"classes declared ({', '.join(map(str, labels.values))}); drop --num-classes"
        )
    return labels


def make_task(
    args: argparse.Namespace,
    train: Sequence[Case],
    val: Sequence[Case],
    dataset: NnUNetDataset | None,
    labels: LabelSet | None,
) -> Task:
    """The task of the training cases (labels discovered when not declared)."""
    from attnunet.data import DataError
    from attnunet.training import Task

    names = None if dataset is None else dataset.channel_names
    normalisation = args.normalisation
    target = args.target_spacing
    target = None if target == "none" else target
    if target not in ("auto", None) and len(target) != train[0].spatial_dims:
        raise UsageError(
            f"--target-spacing needs {train[0].spatial_dims} values for "
            f"{train[0].spatial_dims}D data, got {target}"
        )
    try:
        return Task.from_cases(
            train,
            val,
            labels=labels,
            ignore=args.ignore_label,
            channel_names=names,
            normalisation=normalisation,
            target_spacing=target,
        )
    except DataError as error:
        raise _with_source(error, args, dataset) from None
    except ValueError as error:
        raise UsageError(str(error)) from None


def make_volumes(
    args: argparse.Namespace, task: Task, cases: Sequence[Case], dataset: NnUNetDataset | None
) -> list[Volume]:
    """``task.volumes(cases)``, each named as predict names the case's file (the rows of
    every table); a label that was not declared names the declaration."""
    from attnunet.data import DataError

    try:
        return task.volumes(cases, [c.prediction_name for c in cases])
    except DataError as error:
        raise _with_source(error, args, dataset) from None


@dataclass
class TrainingData:
    """What train and compare read: the cases split in two, the nnU-Net ``dataset.json``
    (if any), the task, and the volumes training uses."""

    train: list[Case]
    val: list[Case]
    dataset: NnUNetDataset | None
    task: Task
    train_volumes: list[Volume]
    val_volumes: list[Volume]


def read_training_data(
    args: argparse.Namespace,
    images: Path,
    masks: Path | None = None,
    val_images: Path | None = None,
    val_masks: Path | None = None,
) -> TrainingData:
    """Read ``images`` (and ``val_images``, else hold out ``--val-fraction``), work out
    the task and the volumes. Every check on the data runs here, before a command writes
    anything."""
    dataset = dataset_info(images)
    labels = declared_labels(args, dataset)
    # labels found in the masks are the values as written (a 0/255 mask holds the classes
    # 0 and 255); declared ones read 0/255 masks as 0/1 unless 255 is declared
    keep = labels is None or labels.keeps_255
    cases = read_cases(images, masks, args, keep_values=keep)
    if val_images is None:
        train, val = _split(cases, args.val_fraction, args.seed)
    else:
        train = cases
        dims = cases[0].spatial_dims
        val = read_cases(val_images, val_masks, args, keep_values=keep, spatial_dims=dims)
    task = make_task(args, train, val, dataset, labels)
    return TrainingData(
        train,
        val,
        dataset,
        task,
        make_volumes(args, task, train, dataset),
        make_volumes(args, task, val, dataset),
    )


def _with_source(error: Exception, args: argparse.Namespace, dataset: Any) -> Exception:
    """``error`` with where the labels were declared, when they were."""
    from attnunet.data import DataError

    source = _labels_source(args, dataset)
    return DataError(f"{error} (labels declared {source})") if source else error


def _labels_source(args: argparse.Namespace, dataset: NnUNetDataset | None) -> str:
    """Where the labels were declared, for messages ("" when they were found in the masks)."""
    if args.labels is not None:
        return f"in {args.labels}"
    if dataset is not None:
        return f"in {dataset.root / 'dataset.json'}"
    if args.num_classes is not None:
        return f"by --num-classes {args.num_classes}"
    return ""


# ------------------------------------------------------------------------ the story


def _spacing_text(cases: Sequence[Case]) -> str:
    """The spacings of the cases: one value per axis, or the median and range."""
    spacings = [c.spacing for c in cases]
    if any(s is None for s in spacings):
        return (
            "unknown in some files: distances in px"
            if any(spacings)
            else "none in the files: distances in px"
        )
    axes = list(zip(*spacings, strict=True))
    parts = []
    for values in axes:
        lo, hi = min(values), max(values)
        parts.append(
            f"{lo:g}" if np.isclose(lo, hi) else f"{statistics.median(values):g} ({lo:g}-{hi:g})"
        )
    return " x ".join(parts) + " mm"


def tell_data(
    where: Path,
    train: Sequence[Case],
    val: Sequence[Case],
    task: Task,
    dataset: NnUNetDataset | None,
    device: str,
) -> None:
    """Print what was found before training: cases, split, classes, spacing, preprocessing."""
    from attnunet.data import label_counts

    first = train[0]
    kind = "an nnU-Net raw dataset" if dataset is not None else "a folder"
    names = "" if task.channel_names is None else f" ({', '.join(task.channel_names)})"
    channels = f"{task.in_channels} channel{'s' if task.in_channels > 1 else ''}{names}"
    print(
        f"data: {len(train) + len(val)} cases in {where} ({kind}); {first.spatial_dims}D, "
        f"{channels}, sizes {_size_range(list(train) + list(val))}"
    )
    print(f"split: {len(train)} training, {len(val)} validation cases")
    counts = label_counts([c.mask for c in train if c.mask is not None])
    table = task.labels.describe(counts).splitlines()[1:]
    print(f"classes: {task.num_classes} (label value -> class; voxels in the training masks)")
    print("\n".join(table))
    print(f"spacing: {_spacing_text(list(train) + list(val))}")
    print(f"preprocessing: {task.preprocessing.describe()}")
    hint = _ct_hint(train, task)
    if hint:
        print(hint)
    print(f"device: {device}")


def _ct_hint(cases: Sequence[Case], task: Task) -> str:
    """A hint when a channel normalised per image holds values like CT's (-1000 HU air)."""
    looks_ct = [
        c
        for c, scheme in enumerate(task.preprocessing.schemes)
        if scheme == "zscore" and min(float(case.image[c].min()) for case in cases) <= -900
    ]
    if not looks_ct:
        return ""
    channels = ", ".join(map(str, looks_ct))
    return (
        f"hint: channel {channels} holds values down to -900 or below, like CT in HU; "
        f"--normalisation ct clips it to the training foreground's percentiles and z-scores "
        f"it with their statistics (nnU-Net's CT normalisation; a dataset.json channel "
        f"named CT does the same)"
    )


def _size_range(cases: Sequence[Case]) -> str:
    """The smallest and largest size per axis, e.g. ``64-80 x 128 x 128``."""
    shapes = np.array([c.image.shape[1:] for c in cases])
    parts = [
        f"{lo}" if lo == hi else f"{lo}-{hi}"
        for lo, hi in zip(shapes.min(0), shapes.max(0), strict=True)
    ]
    return " x ".join(parts)
