"""``attnunet predict``: segment images with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnunet.cli._common import (
    _add_inference_options,
    _device,
    _load_trained,
    _Subparsers,
    _threads,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``predict`` command and its options to ``subparsers``."""
    pr = subparsers.add_parser(
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
    from attnunet.data import (
        Pair,
        find_pairs,
        normalise_image,
        read_image,
        write_prediction,
    )
    from attnunet.training import Progress, predict

    _threads(args.threads)
    device = _device(args.device)
    model, settings = _load_trained(args.model, device, args.overlap)
    if args.images.is_file():
        pairs = [Pair(args.images)]
    else:
        pairs = find_pairs(args.images, None, require_masks=False)
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
        image = read_image(pair.image, spatial_dims=settings.spatial_dims)
        labels = predict(model, normalise_image(image), settings, device)
        write_prediction(args.out, pair.image, labels, fmt=ext, overwrite=args.overwrite)
        bar.update()
    bar.close()
    print(f"{len(pairs)} label maps in {args.out}/")
    return 0
