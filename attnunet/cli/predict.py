"""``attnunet predict``: segment images with a trained model."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnunet.cli._common import (
    UsageError,
    _add_inference_options,
    _device,
    _floats,
    _load_trained,
    _Subparsers,
    _threads,
)
from attnunet.cli._data import assume_model_spacing, for_inference, with_spacing

if TYPE_CHECKING:
    from attnunet.data import Case, Pair
    from attnunet.training import Task

__all__ = ["add_parser", "run"]

FORMATS = ("auto", "png", "tif", "npy", "nii", "nii.gz", "nrrd", "mha")


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``predict`` command and its options to ``subparsers``."""
    pr = subparsers.add_parser(
        "predict",
        help="segment images with a trained model",
        description=(
            "Write one label map per image, in the image's format and geometry (NIfTI in, "
            "NIfTI out with the same affine and header; NRRD and MHA keep spacing, origin "
            "and direction; PNG in, PNG out), holding the label values of the training "
            "masks. The image is normalised and resampled as in training, and the "
            "prediction taken back to the image's own grid."
        ),
    )
    pr.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a train output folder or a save_pretrained folder",
    )
    pr.add_argument(
        "--images",
        type=Path,
        required=True,
        help="an image, a folder of images, or an nnU-Net dataset (its imagesTs)",
    )
    pr.add_argument("--out", type=Path, required=True, help="output folder for the label maps")
    pr.add_argument(
        "--format",
        choices=FORMATS,
        default="auto",
        help="file format (default: the image's: NIfTI, NRRD, MHA, PNG, TIFF; .npy for "
        "NumPy; NIfTI for DICOM series)",
    )
    pr.add_argument(
        "--save-attention",
        action="store_true",
        help="also write OUT/attention/<case>.png: the attention maps of a gated model "
        "(3D: the middle slice along the coarsest axis)",
    )
    pr.add_argument("--overwrite", action="store_true", help="replace existing predictions")
    pr.add_argument(
        "--spacing",
        type=_floats,
        default=None,
        help="voxel size of the images, e.g. 0.8,0.8,3 (default: each file's header), for "
        "files without one when the model resamples",
    )
    pr.add_argument(
        "--allow-geometry-mismatch",
        action="store_true",
        help="use channel files whose spacing or affine differ (with a warning)",
    )
    _add_inference_options(pr)


def run(args: argparse.Namespace) -> int:
    """Run ``attnunet predict`` with the parsed ``args``; return the exit status.

    Args:
        args: the options of :func:`add_parser`.

    Returns:
        0 when every label map was written; problems raise the library's errors, which
        :func:`attnunet.cli.main` turns into messages and exit statuses.

    Raises:
        FileExistsError: a label map to write exists and ``--overwrite`` was not given.
    """
    from attnunet.data import find_pairs, write_prediction
    from attnunet.training import Progress

    _threads(args.threads)
    device = _device(args.device)
    model, settings, task = _load_trained(args.model, device, args.overlap, args.precision)
    if not args.images.exists():
        raise FileNotFoundError(f"--images {args.images} does not exist")
    images = for_inference(args.images, need_masks=False)
    # prediction reads images only: masks beside them are not read (nor checked)
    found = find_pairs(images, None, require_masks=False)
    pairs = [replace(p, mask=None) for p in found]
    _check_targets(args, pairs, found + _beside(args.images))
    bar = Progress(len(pairs), "predict", not args.quiet)
    for pair in pairs:
        case = assume_model_spacing(
            [_read(pair, task, args.allow_geometry_mismatch, args.spacing)], task
        )[0]
        labels = task.predict(model, case, settings, device)
        write_prediction(
            args.out,
            pair.image,
            labels,
            fmt=args.format,
            overwrite=args.overwrite,
            geometry=case.geometry,
            name=pair.name,
        )
        if args.save_attention:
            _attention(model, case, task, settings, args.out)
        bar.update()
    bar.close()
    values = ", ".join(map(str, task.labels.values))
    print(f"{len(pairs)} label maps in {args.out}/ (label values {values})")
    return 0


def _beside(image: Path) -> list[Pair]:
    """For one image file: the pairs of its folder (so that its mask in a masks/ folder
    beside it counts as an input too); nothing for a folder, or a folder that cannot be
    paired."""
    from attnunet.data import DataError, find_pairs

    if not image.is_file():
        return []
    try:
        return find_pairs(image.parent, None, require_masks=False)
    except (DataError, OSError):
        return []


def _check_targets(args: argparse.Namespace, pairs: list[Pair], found: list[Pair]) -> None:
    """Refuse to write over an input (an image or a mask beside it), even with
    --overwrite, and over an earlier prediction without it."""
    from attnunet.data import prediction_name

    targets = [args.out / prediction_name(p.image, args.format, name=p.name) for p in pairs]
    inputs = {
        path.resolve()
        for pair in found
        for path in (*pair.images, *([pair.mask] if pair.mask is not None else []))
    }
    for target in targets:
        if target.resolve() in inputs:
            raise FileExistsError(
                f"{target} is one of the input files: a prediction never replaces an image "
                f"or a mask, even with --overwrite; choose another --out"
            )
    clash = [t for t in targets if t.exists()]
    if clash and not args.overwrite:
        raise FileExistsError(
            f"{clash[0]} already exists: choose another --out or pass --overwrite"
        )


def _read(pair: Pair, task: Task, allow_mismatch: bool, spacing: Any) -> Case:
    """Read an image for the model: as its file says (a NIfTI volume is 3D), else as the
    model's dimensions make it (a ``(3, H, W)`` array is a 3-channel 2D image for a 2D
    model); refused with one line naming the file when neither fits the model."""
    from attnunet.data import DataError, load_case

    case = with_spacing([load_case(pair, allow_mismatch=allow_mismatch)], spacing)[0]
    try:
        task.check(case)
    except DataError as first:
        try:
            again = load_case(pair, spatial_dims=task.spatial_dims, allow_mismatch=allow_mismatch)
            task.check(again)
        except (DataError, UsageError):
            raise first from None
        return with_spacing([again], spacing)[0]
    return case


def _attention(model: Any, case: Case, task: Task, settings: Any, out: Path) -> None:
    """OUT/attention/<case>.png for a gated model (nothing for one without gates)."""
    from attnunet.study.attention import save_attention

    image = task.prepare(case)
    save_attention(
        model,
        image,
        out / "attention" / f"{case.name}.png",
        patch_size=settings.patch_size,
        spacing=task.grid_spacing(case),
        title=case.name,
    )
