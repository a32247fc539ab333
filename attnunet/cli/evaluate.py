"""``attnunet evaluate``: score a trained model on images with masks."""

from __future__ import annotations

import argparse
from pathlib import Path

from attnunet.cli._common import (
    _add_inference_options,
    _device,
    _floats,
    _load_folder,
    _load_trained,
    _Subparsers,
    _threads,
)

__all__ = ["add_parser", "run"]


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``evaluate`` command and its options to ``subparsers``."""
    e = subparsers.add_parser(
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


def run(args: argparse.Namespace) -> int:
    """Run ``attnunet evaluate`` with the parsed ``args``; return the exit status.

    Args:
        args: the options of :func:`add_parser`.

    Returns:
        0 when every image was scored; problems raise the library's errors, which
        :func:`attnunet.cli.main` turns into messages and exit statuses.

    Raises:
        FileExistsError: ``--out`` exists and ``--overwrite`` was not given.
    """
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
