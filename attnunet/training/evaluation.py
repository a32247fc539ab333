"""Per-image scores: Dice, IoU, HD95, ASSD and the object one-piece fraction."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from attnunet.metrics import MetricAccumulator, dice_score, iou_score, surface_metrics
from attnunet.training.prediction import predict
from attnunet.training.progress import Progress
from attnunet.training.settings import TrainSettings, Volume

__all__ = ["METRICS", "evaluate", "object_one_piece_fraction"]

METRICS = ("dice", "iou", "hd95", "assd", "one_piece")
"""The per-image scores of :func:`evaluate`, in the order of its rows and tables."""


def object_one_piece_fraction(
    pred: np.ndarray, target: np.ndarray, margin: int = 2, connectivity: int = 1
) -> float:
    """Fraction of target objects whose prediction is exactly one piece.

    For each connected component of ``target > 0``, the prediction inside the object's
    footprint (the object dilated by ``margin`` voxels) must form exactly one connected
    component; a missed object (nothing predicted there) is not one piece. For images with
    a single object this is the knee study's per-image one-piece check; for images with
    many objects (nuclei) it asks the same question object by object.

    Args:
        pred: predicted label map (any label above 0 is foreground).
        target: reference label map of the same shape.
        margin: voxels by which each object's footprint grows.
        connectivity: neighbourhood of the connected components (1: faces only).

    Returns:
        The fraction in ``[0, 1]``, or NaN when the target has no object.
    """
    structure = ndimage.generate_binary_structure(target.ndim, connectivity)
    objects, count = ndimage.label(target > 0, structure)
    if count == 0:
        return math.nan
    fg = pred > 0
    whole = 0
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(0, s.start - margin), min(n, s.stop + margin))
            for s, n in zip(box, target.shape, strict=True)
        )
        footprint = ndimage.binary_dilation(objects[grown] == index, iterations=margin)
        _, pieces = ndimage.label(fg[grown] & footprint, structure)
        whole += pieces == 1
    return whole / count


def _metric_row(pred: np.ndarray, target: np.ndarray, settings: TrainSettings) -> dict[str, float]:
    """Every metric of the study for one image (foreground classes averaged)."""
    p, t = torch.from_numpy(pred)[None], torch.from_numpy(target)[None]
    k = settings.num_classes
    binary = k == 2
    kw: dict[str, Any] = {"spatial_dims": settings.spatial_dims}
    if not binary:
        kw["num_classes"] = k
    # One distance measurement serves both surface metrics. A surface distance to an empty
    # mask is unbounded: such images are left out of the mean (NaN) and show up in Dice.
    surface = surface_metrics(
        p.numpy(),
        t.numpy(),
        metrics=("hd95", "assd"),
        spacing=settings.spacing,
        empty_pred=math.nan,
        empty_target=math.nan,
        **kw,
    )
    return {
        "dice": float(dice_score(p, t, **kw)),
        "iou": float(iou_score(p, t, **kw)),
        "hd95": float(surface["hd95"]),
        "assd": float(surface["assd"]),
        "one_piece": object_one_piece_fraction(pred, target),
    }


def evaluate(
    model: nn.Module,
    volumes: Sequence[Volume],
    settings: TrainSettings,
    device: torch.device | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], MetricAccumulator]:
    """Per-image metrics (Dice, IoU, HD95, ASSD, object one-piece fraction) and their
    accumulator (mean ± std) for volumes with masks.

    Args:
        model: a model of the zoo.
        volumes: images with their masks.
        settings: the recipe (patch size, overlap, blending, classes, spacing).
        device: where the model runs (default: the model's device).
        progress: draw a progress bar on stderr.

    Returns:
        One row per volume (``{"image": name, "dice": ..., ...}``, the :data:`METRICS`)
        and a :class:`~attnunet.metrics.MetricAccumulator` holding them.

    Raises:
        ValueError: a volume without a mask.
    """
    rows: list[dict[str, Any]] = []
    acc = MetricAccumulator()
    bar = Progress(len(volumes), "evaluate", progress)
    for v in volumes:
        if v.mask is None:
            raise ValueError(f"{v.name}: evaluation needs a mask")
        pred = predict(model, v.image, settings, device)
        row = _metric_row(pred, v.mask, settings)
        for name, value in row.items():
            acc.add(name, [value])
        rows.append({"image": v.name, **row})
        bar.update()
    bar.close()
    return rows, acc
