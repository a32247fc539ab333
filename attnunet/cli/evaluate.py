"""``attnunet evaluate``: score a trained model on images with masks."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attnunet.cli._common import (
    UsageError,
    _add_inference_options,
    _device,
    _load_trained,
    _Subparsers,
    _threads,
)
from attnunet.cli._data import (
    add_geometry_options,
    assume_model_spacing,
    for_inference,
    read_cases,
)

if TYPE_CHECKING:
    from attnunet.data import Case
    from attnunet.training import Task

__all__ = ["add_parser", "run"]


def add_parser(subparsers: _Subparsers) -> None:
    """Add the ``evaluate`` command and its options to ``subparsers``."""
    e = subparsers.add_parser(
        "evaluate",
        help="score a trained model on images with masks",
        description=(
            "Segment every image whole (sliding window, on its own voxel grid) and score "
            "it against its mask: Dice, IoU, HD95, ASSD and the one-piece fraction, per "
            "class and as the mean over the classes present, in mm when the files give "
            "the voxel size. Prints mean ± std and writes a per-case CSV (or JSON)."
        ),
    )
    e.add_argument(
        "--model",
        type=Path,
        required=True,
        help="a train output folder or a save_pretrained folder",
    )
    e.add_argument(
        "--images",
        type=Path,
        required=True,
        help="folder of images (with images/ and masks/, or an nnU-Net dataset: imagesTs "
        "and labelsTs)",
    )
    e.add_argument("--masks", type=Path, default=None, help="folder of masks")
    e.add_argument(
        "--out",
        type=Path,
        default=None,
        help="per-case metrics, .csv or .json (default: print only)",
    )
    e.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    e.add_argument(
        "--ignore-label",
        type=int,
        default=None,
        help="a mask value left out of the metrics (default: the model's ignore label, if any)",
    )
    add_geometry_options(e)
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
    from attnunet.metrics import MetricAccumulator
    from attnunet.training import Progress

    _threads(args.threads)
    device = _device(args.device)
    if args.out is not None and args.out.exists() and not args.overwrite:
        raise FileExistsError(
            f"{args.out} already exists: choose another --out or pass --overwrite"
        )
    model, settings, task = _load_trained(args.model, device, args.overlap, args.precision)
    if args.ignore_label is not None:
        task = _with_ignore(task, args.ignore_label)
    # each case's own voxel size (or --spacing, put into every case when given); a spacing
    # stored with a model saved by an earlier version is only the fallback for files
    # without one
    stored = settings.spacing
    settings = dataclasses.replace(settings, spacing=None, hd95_convention=args.hd95_convention)
    images = for_inference(args.images, need_masks=True)
    cases = read_cases(images, args.masks, args, keep_values=task.labels.keeps_255)
    cases = assume_model_spacing(cases, task)
    rows: list[dict[str, Any]] = []
    acc = MetricAccumulator()
    bar = Progress(len(cases), "evaluate", not args.quiet)
    for case in cases:
        row = _score(model, case, task, settings, device, stored)
        for name, value in row.items():
            if isinstance(value, float):
                acc.add(name, [value])
        rows.append(row)
        bar.update()
    bar.close()
    _show(rows, acc, task)
    if args.out is not None:
        _write(args.out, rows)
        print(f"per-case metrics in {args.out}")
    return 0


def _score(
    model: Any, case: Case, task: Task, settings: Any, device: Any, stored: Any
) -> dict[str, Any]:
    """The metrics of one case on its own grid; the row is named as predict names the file."""
    from attnunet.data import DataError
    from attnunet.training import score_case

    try:
        target = task.encode(case)  # an unknown label value fails before the prediction
    except DataError as error:
        known = ", ".join(map(str, task.labels.values))
        raise DataError(
            f"{error} (the model knows the values {known}; --ignore-label V leaves a value "
            f"out of the metrics)"
        ) from None
    predicted = task.predict_classes(model, case, settings, device)
    row = score_case(
        predicted,
        target,
        settings,
        spacing=case.spacing if case.spacing is not None else stored,
        class_names=task.labels.column_names,
    )
    return {"image": case.prediction_name, **row}


def _with_ignore(task: Task, ignore: int) -> Task:
    """``task`` with ``ignore`` as its ignore label, for scoring (refused when it is a value
    the model predicts, or when the model has another ignore label)."""
    from attnunet.data import DataError

    labels = task.labels
    if labels.ignore not in (None, ignore):
        raise UsageError(
            f"--ignore-label {ignore}: the model was trained with the ignore label "
            f"{labels.ignore}, which evaluate uses already; drop --ignore-label"
        )
    try:
        return dataclasses.replace(task, labels=dataclasses.replace(labels, ignore=ignore))
    except DataError as error:
        raise UsageError(f"--ignore-label {ignore}: {error}") from None


def _show(rows: list[dict[str, Any]], acc: Any, task: Task) -> None:
    """One line per case (the means over its classes), then mean ± std of every metric,
    per class too, with the unit."""
    from attnunet.training import METRICS

    shown = ("image", *METRICS, "unit")  # per class: in the summary and in --out
    for row in rows:
        print(
            ", ".join(
                f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in row.items()
                if k in shown
            )
        )
    units = sorted({str(r.get("unit", "px")) for r in rows})
    print()
    print(acc.summary())
    classes = ", ".join(
        f"{value} {name}" if str(value) != name else str(value)
        for value, name in zip(task.labels.values, task.labels.class_names, strict=True)
    )
    print(f"HD95 and ASSD in {' and '.join(units)}; label values: {classes}")


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    """The rows as CSV, or JSON when ``path`` ends in ``.json``."""
    from attnunet.study import write_csv
    from attnunet.training import jsonable

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps(jsonable(rows), indent=2) + "\n", encoding="utf-8")
    else:
        write_csv(path, rows)
