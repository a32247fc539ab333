"""Per-image scores: Dice, IoU, HD95, ASSD and the object one-piece fraction, per class and
averaged over the classes present.

A row of :func:`score_case` (and of :func:`evaluate`, which puts ``"image"`` first) holds, in
order:

* ``"dice"``, ``"iou"``, ``"hd95"``, ``"assd"``, ``"one_piece"`` (:data:`METRICS`): each the
  mean over the image's foreground classes that have a value (see :func:`score_case`);
* ``"unit"``: ``"mm"`` when the voxel spacing is known (``settings.spacing_unit`` for
  ``settings.spacing``), else ``"px"`` (HD95 and ASSD in
  voxels);
* with more than one foreground class (``num_classes > 2``), one column per metric and
  class, ``"<metric>_<class name>"``: every Dice column (class 1 to K-1), then every IoU
  column, and so on.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from attnunet.data import IGNORE_INDEX
from attnunet.metrics import MetricAccumulator, dice_score, iou_score, surface_metrics
from attnunet.training.prediction import predict
from attnunet.training.progress import Progress
from attnunet.training.settings import TrainSettings, Volume

__all__ = ["METRICS", "evaluate", "object_one_piece_fraction", "score_case"]

METRICS = ("dice", "iou", "hd95", "assd", "one_piece")
"""The per-image means of :func:`score_case` and :func:`evaluate`, in the order of their rows
and tables; per-class columns add ``"_<class name>"`` to these names."""


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


def _class_names(class_names: Sequence[str] | None, settings: TrainSettings) -> list[str]:
    """One name per class, background included: ``class_names`` (else the settings') checked,
    or the class indices."""
    num_classes = settings.num_classes
    if class_names is None:
        class_names = getattr(settings, "class_names", None)
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    names = list(class_names)
    if isinstance(class_names, str) or len(names) != num_classes:
        raise ValueError(
            f"class_names needs one name per class, background (class 0) included: "
            f"{num_classes} here, got {class_names!r}"
        )
    if not all(isinstance(n, str) and n for n in names) or len(set(names)) != len(names):
        raise ValueError(f"class_names must be distinct, non-empty strings, got {names!r}")
    return names


def _case_spacing(
    settings: TrainSettings, spacing: Sequence[float] | None
) -> tuple[float, ...] | None:
    """The spacing the surface metrics use: the settings' (the user's), else the image's."""
    if settings.spacing is not None:
        return tuple(settings.spacing)
    if spacing is None:
        return None
    values = tuple(float(s) for s in spacing)
    if len(values) != settings.spatial_dims or not all(math.isfinite(s) and s > 0 for s in values):
        raise ValueError(
            f"the image's spacing {tuple(spacing)} needs {settings.spatial_dims} positive "
            f"values, one per spatial axis; pass a spacing in the settings (--spacing) to "
            f"override it"
        )
    return values


def _as_labels(x: np.ndarray, label: str) -> np.ndarray:
    """``x`` as an ``int64`` label map; floating-point values must be whole numbers."""
    if x.dtype.kind == "f" and not np.all(np.isfinite(x) & (x == np.round(x))):
        raise TypeError(
            f"{label} holds values that are not whole numbers: probabilities or logits, not "
            f"a label map; take the argmax over the classes (or threshold) first"
        )
    if x.dtype.kind not in "biuf":
        raise TypeError(f"{label} must be a label map of integers, got dtype {x.dtype}")
    return x.astype(np.int64)


def _without_ignored(
    pred: np.ndarray, target: np.ndarray, spatial_dims: int
) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps as ``int64`` with the ignored voxels set to background in both."""
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape or t.ndim != spatial_dims:
        raise ValueError(
            f"pred and target must be label maps of one shape with {spatial_dims} spatial "
            f"axes, got shapes {p.shape} and {t.shape}"
        )
    p, t = _as_labels(p, "pred"), _as_labels(t, "target")
    ignored = t == IGNORE_INDEX
    p[ignored] = 0
    t[ignored] = 0
    return p, t


def _first(values: Any) -> np.ndarray:
    """The first image's per-class values as ``float64``."""
    return np.asarray(values, dtype=np.float64)[0]


def _per_class(
    p: np.ndarray, t: np.ndarray, settings: TrainSettings, spacing: tuple[float, ...] | None
) -> dict[str, np.ndarray]:
    """Every metric for the classes ``1..K-1`` (NaN where undefined), one array each."""
    k = settings.num_classes
    kw: dict[str, Any] = {"spatial_dims": settings.spatial_dims, "num_classes": k}
    pb, tb = p[None], t[None]
    # One distance measurement serves both surface metrics. A surface distance to an empty
    # mask is unbounded: such classes are NaN (left out of the mean) and show up in Dice.
    surface = surface_metrics(
        pb,
        tb,
        metrics=("hd95", "assd"),
        spacing=spacing,
        convention=settings.hd95_convention,
        empty_pred=math.nan,
        empty_target=math.nan,
        reduction="none",
        **kw,
    )
    # Dice and IoU from tensors, as before per-class scoring: the same float32 values.
    pt, tt = torch.from_numpy(pb), torch.from_numpy(tb)
    return {
        "dice": _first(dice_score(pt, tt, reduction="none", **kw)),
        "iou": _first(iou_score(pt, tt, reduction="none", **kw)),
        "hd95": _first(surface["hd95"]),
        "assd": _first(surface["assd"]),
        "one_piece": np.array([object_one_piece_fraction(p == c, t == c) for c in range(1, k)]),
    }


def _mean(values: np.ndarray) -> float:
    """Mean of the values that are not NaN; NaN when none is left."""
    kept = values[~np.isnan(values)]
    return float(kept.mean()) if kept.size else math.nan


def score_case(
    pred: np.ndarray,
    target: np.ndarray,
    settings: TrainSettings,
    *,
    spacing: Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Every metric of the study for one image, per class and averaged over the classes.

    Per foreground class ``c`` (``1..K-1``, ``K = settings.num_classes``):

    * Dice and IoU of ``pred == c`` against ``target == c``. A class predicted but absent
      from the target scores 0; a class absent from both is NaN.
    * HD95 and ASSD between the two class surfaces, in mm when a spacing is known, else in
      voxels. HD95 follows ``settings.hd95_convention``: ``"max"`` (default) is the larger
      of the two directed 95th percentiles (MONAI's and DeepMind's convention),
      ``"pooled"`` the 95th percentile of both directions pooled (MedPy's ``hd95``); ASSD
      pools the distances of both directions (MedPy >= 0.5, MONAI
      ``symmetric=True``). A distance to an empty mask is unbounded: a class present on one
      side only is NaN (its miss shows in Dice).
    * ``one_piece``: :func:`object_one_piece_fraction` of ``pred == c`` against
      ``target == c``; NaN when the target has no voxel of the class.

    Each mean (``"dice"``, ...) is taken over the classes whose value is not NaN: for Dice
    and IoU the classes present in the target or the prediction, for HD95 and ASSD those
    present in both, for ``one_piece`` those present in the target. It is NaN when no class
    qualifies. For a binary task (``K = 2``) the mean is class 1's value.

    Voxels the target marks :data:`attnunet.data.IGNORE_INDEX` are set to background in both
    ``pred`` and ``target`` before every metric: whatever is predicted there counts neither
    for nor against a class.

    Args:
        pred: predicted label map ``(*spatial)``, classes ``0..K-1``.
        target: reference label map of the same shape (classes ``0..K-1`` and
            :data:`~attnunet.data.IGNORE_INDEX`).
        settings: the recipe: ``spatial_dims``, ``num_classes`` and ``spacing``. A
            ``settings.spacing`` (the user's ``--spacing``) overrides ``spacing``.
        spacing: the image's voxel size in mm per spatial axis, from its file header
            (``None``: unknown; without ``settings.spacing`` distances are then in voxels).
        class_names: one name per class, background (class 0) included, for the per-class
            columns (default: the settings' ``class_names`` if any, else the class index as
            text).

    Returns:
        The row: the :data:`METRICS` means, ``"unit"`` (``"mm"`` or ``"px"``) and, for
        ``K > 2``, ``"<metric>_<name>"`` per metric and foreground class (every Dice column,
        then every IoU column, and so on). Values are Python floats.

    Raises:
        ValueError: shapes that differ or do not have ``spatial_dims`` axes, labels outside
            ``0..K-1`` (other than the ignore index), a spacing of the wrong length, or
            ``class_names`` of the wrong length or with repeated names.
        TypeError: a prediction of probabilities or logits rather than labels.

    Examples:
        >>> settings = TrainSettings(num_classes=3)
        >>> target = np.zeros((4, 6), dtype=np.int64)
        >>> target[:2, :3] = 1; target[2:, 3:] = 2
        >>> pred = target.copy(); pred[0, 0] = 2  # one voxel of class 1 called class 2
        >>> row = score_case(pred, target, settings, class_names=["bg", "a", "b"])
        >>> round(row["dice_a"], 4), round(row["dice_b"], 4)  # 10 / 11 and 12 / 13
        (0.9091, 0.9231)
        >>> round(row["dice"], 4), row["unit"], row["one_piece"]  # the stray voxel is far
        (0.9161, 'px', 1.0)
    """
    names = _class_names(class_names, settings)
    p, t = _without_ignored(pred, target, settings.spatial_dims)
    scale = _case_spacing(settings, spacing)
    per_class = _per_class(p, t, settings, scale)
    row: dict[str, Any] = {name: _mean(per_class[name]) for name in METRICS}
    row["unit"] = "px" if scale is None else settings.spacing_unit if settings.spacing else "mm"
    if settings.num_classes > 2:
        for metric in METRICS:
            for name, value in zip(names[1:], per_class[metric], strict=True):
                row[f"{metric}_{name}"] = float(value)
    return row


def evaluate(
    model: nn.Module,
    volumes: Sequence[Volume],
    settings: TrainSettings,
    device: torch.device | None = None,
    progress: bool = False,
    *,
    class_names: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], MetricAccumulator]:
    """Per-image metrics (Dice, IoU, HD95, ASSD, object one-piece fraction, per class and
    their means) and their accumulator (mean ± std) for volumes with masks.

    Each volume is predicted whole and scored with :func:`score_case`, with the volume's
    own spacing unless ``settings.spacing`` overrides it.

    Args:
        model: a model of the zoo.
        volumes: images with their masks.
        settings: the recipe (patch size, overlap, blending, classes, spacing).
        device: where the model runs (default: the model's device).
        progress: draw a progress bar on stderr.
        class_names: one name per class, background included, for the per-class columns
            (default: the settings' ``class_names`` if any, else the class index as text).

    Returns:
        One row per volume, ``{"image": name}`` followed by the :func:`score_case` row, and a
        :class:`~attnunet.metrics.MetricAccumulator` holding every numeric column (the
        :data:`METRICS` means and the per-class columns).

    Raises:
        ValueError: a volume without a mask, or bad ``class_names`` (before any prediction).

    Warns:
        UserWarning: some volumes have a known spacing and others not, so HD95 and ASSD mix
            mm and voxels.
    """
    _class_names(class_names, settings)  # fail before the first prediction
    rows: list[dict[str, Any]] = []
    acc = MetricAccumulator()
    bar = Progress(len(volumes), "evaluate", progress)
    for v in volumes:
        if v.mask is None:
            raise ValueError(f"{v.name}: evaluation needs a mask")
        pred = predict(model, v.image, settings, device)
        row = score_case(pred, v.mask, settings, spacing=v.spacing, class_names=class_names)
        for name, value in row.items():
            if not isinstance(value, str):
                acc.add(name, [value])
        rows.append({"image": v.name, **row})
        bar.update()
    bar.close()
    if len({row["unit"] for row in rows}) > 1:
        warnings.warn(
            "some images have a voxel spacing and others not, so HD95 and ASSD mix mm and "
            "voxels: pass a spacing (--spacing) to use one for all",
            stacklevel=2,
        )
    return rows, acc
