"""Surface-distance metrics: Hausdorff distance, HD95, ASSD and surface-to-surface distance.

The surface of a mask is the set of its voxels that touch the background, i.e. the mask
minus its erosion by the neighbourhood of ``connectivity`` (faces only by default; the
image border counts as background). This is the definition MedPy and MONAI use, so
values agree with theirs under the matching convention (see :doc:`/metrics`).

For every surface voxel of one mask the distance to the nearest surface voxel of the
other is measured in physical units (``spacing``). These *directed* distance sets are
then summarised:

=========================  ================================================================
metric                     definition (``A`` = pred surface, ``B`` = target surface)
=========================  ================================================================
Hausdorff distance         ``max(max d(A->B), max d(B->A))``
HD95, ``"max"``            ``max(P95 d(A->B), P95 d(B->A))`` (MONAI, DeepMind)
HD95, ``"pooled"``         ``P95 of d(A->B) and d(B->A) pooled`` (MedPy ``hd95``)
ASSD                       ``(sum d(A->B) + sum d(B->A)) / (|A| + |B|)`` (Heimann et al.
                           2009; MONAI ``symmetric=True``; MedPy >= 0.5 ``assd``)
surface-to-surface (S2S)   ``(mean d(A->B) + mean d(B->A)) / 2`` (Oktay et al. 2018; what
                           MedPy's ``assd`` returned before 0.5)
=========================  ================================================================

Percentiles interpolate linearly between order statistics (``numpy.percentile``'s
default). ``directed=True`` keeps only ``d(A->B)``, from the prediction to the target.

Speed (``method="auto"``): each mask is cropped to its bounding box before its surface
is extracted with a few boolean slice operations. Surface voxels whose nearest neighbour
on the other surface lies within one voxel step are resolved by direct lookups in a
boolean grid, in order of increasing distance (exact, as no voxel outside that
neighbourhood can be nearer). Only the rest are searched, with a k-d tree over the other
surface (so a few stray voxels far away cost little), or, for dense, noisy surfaces, an
exact distance transform over the bounding box. ``benchmarks/bench_metrics.py`` compares
the speed with MONAI and MedPy.
"""

from __future__ import annotations

import itertools
import math
import numbers
import sys
import warnings
from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from attnunet.metrics._common import (
    Array,
    Reduction,
    check_reduction,
    class_masks,
    output,
    reduce,
    refuse_positional,
)

__all__ = [
    "SurfaceDistances",
    "assd",
    "hausdorff_distance",
    "hd95",
    "surface_distances",
    "surface_metrics",
    "surface_to_surface",
    "surface_voxels",
]

Convention = Literal["max", "pooled"]
Method = Literal["auto", "kdtree", "edt"]
SURFACE_METRICS = ("hd", "hd95", "assd", "s2s")
_CONVENTIONS = ("max", "pooled")
_METHODS = ("auto", "kdtree", "edt")


class SurfaceDistances(NamedTuple):
    """Directed surface distances of one image pair, in physical units (``float64``).

    Attributes:
        pred_to_target: for every surface voxel of the prediction (in raster order), the
            distance to the nearest surface voxel of the target.
        target_to_pred: the same from the target's surface to the prediction's.
    """

    pred_to_target: np.ndarray
    target_to_pred: np.ndarray


# ----------------------------------------------------------------------------- surfaces


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    values = np.atleast_1d(np.asarray(spacing, dtype=np.float64))
    if values.ndim != 1 or values.size not in (1, ndim):
        raise ValueError(
            f"spacing must be one number or one per spatial axis ({ndim} here), got {spacing!r}"
        )
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return np.broadcast_to(values, (ndim,)).copy()


def _check_connectivity(connectivity: int, ndim: int) -> None:
    if isinstance(connectivity, bool) or not isinstance(connectivity, int):
        raise TypeError(f"connectivity must be an int in 1..{ndim}, got {connectivity!r}")
    if not 1 <= connectivity <= ndim:
        raise ValueError(
            f"connectivity must be in 1..{ndim} for {ndim}-D masks (1 = faces, {ndim} = "
            f"every neighbour), got {connectivity}"
        )


def _neighbour_offsets(ndim: int, connectivity: int) -> list[tuple[int, ...]]:
    """Offsets of the erosion neighbourhood: up to ``connectivity`` non-zero components."""
    offsets = []
    for offset in itertools.product((-1, 0, 1), repeat=ndim):
        nonzero = sum(o != 0 for o in offset)
        if 1 <= nonzero <= connectivity:
            offsets.append(offset)
    return offsets


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """The bounding box of a mask's foreground, or None when it is empty."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=others)) if others else np.flatnonzero(mask)
        if hits.size == 0:
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _surface_in_box(mask: np.ndarray, box: tuple[slice, ...], connectivity: int) -> np.ndarray:
    """The surface of ``mask[box]`` (a copy padded by one background voxel on every side,
    so the image border counts as background); returns the padded surface array."""
    ndim = mask.ndim
    padded = np.zeros(tuple(s.stop - s.start + 2 for s in box), dtype=bool)
    inner = tuple(slice(1, -1) for _ in range(ndim))
    padded[inner] = mask[box]
    core = padded[inner]
    interior = core.copy()
    for offset in _neighbour_offsets(ndim, connectivity):
        shifted = tuple(slice(1 + o, padded.shape[a] - 1 + o) for a, o in enumerate(offset))
        np.logical_and(interior, padded[shifted], out=interior)
    surface = np.zeros_like(padded)
    surface[inner] = core & ~interior
    return surface


class _Points(NamedTuple):
    coords: np.ndarray  # (n, ndim) int64, raster order
    low: np.ndarray  # bounding box of the mask, inclusive
    high: np.ndarray  # exclusive


def _surface_points(mask: np.ndarray, connectivity: int) -> _Points | None:
    """The surface voxels of ``mask`` with its bounding box, or None for an empty mask."""
    box = _bbox(mask)
    if box is None:
        return None
    surface = _surface_in_box(mask, box, connectivity)
    flat = np.flatnonzero(surface)
    coords = np.stack(np.unravel_index(flat, surface.shape), axis=1)
    low = np.array([s.start for s in box], dtype=np.int64)
    coords += low - 1
    return _Points(coords, low, np.array([s.stop for s in box], dtype=np.int64))


def surface_voxels(mask: Array, *, connectivity: int = 1) -> np.ndarray:
    """The surface of one unbatched mask: its voxels that touch the background.

    Args:
        mask: boolean or integer mask (non-zero is foreground), any number of axes.
        connectivity: the erosion neighbourhood, ``1`` (faces, default) to ``mask.ndim``
            (every neighbour), by name only. Voxels on the image border count as surface.

    Returns:
        A boolean NumPy array of the mask's shape.

    Examples:
        >>> m = np.zeros((5, 5), dtype=bool); m[1:4, 1:4] = True
        >>> surface_voxels(m).astype(int)
        array([[0, 0, 0, 0, 0],
               [0, 1, 1, 1, 0],
               [0, 1, 0, 1, 0],
               [0, 1, 1, 1, 0],
               [0, 0, 0, 0, 0]])
    """
    m = _as_mask(mask)
    _check_connectivity(connectivity, m.ndim)
    out = np.zeros(m.shape, dtype=bool)
    box = _bbox(m)
    if box is not None:
        inner = tuple(slice(1, -1) for _ in range(m.ndim))
        out[box] = _surface_in_box(m, box, connectivity)[inner]
    return out


def _as_mask(x: Array) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(f"expected a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.dtype.kind in "fc":
        raise TypeError(
            f"masks must be boolean or integer, got {x.dtype}: threshold probabilities first"
        )
    if x.ndim < 1:
        raise ValueError("a mask needs at least one axis")
    return x if x.dtype == bool else x != 0


# ---------------------------------------------------------------------------- distances


def _kdtree_distances(query: np.ndarray, tree_points: np.ndarray, scale: np.ndarray) -> np.ndarray:
    tree = cKDTree(tree_points * scale, leafsize=32, balanced_tree=False, compact_nodes=False)
    distances, _ = tree.query(query * scale, k=1)
    return np.asarray(distances, dtype=np.float64)


def _edt_distances(query: np.ndarray, targets: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Distances from ``query`` points to the nearest of ``targets`` by an exact Euclidean
    distance transform over the two point sets' bounding box."""
    low = np.minimum(query.min(0), targets.min(0))
    high = np.maximum(query.max(0), targets.max(0)) + 1
    free = np.ones(tuple(int(n) for n in high - low), dtype=bool)
    free[tuple((targets - low).T)] = False
    field = ndimage.distance_transform_edt(free, sampling=scale)
    return np.asarray(field[tuple((query - low).T)], dtype=np.float64)


def _local_offsets(scale: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets of the cube ``[-radius, radius]^ndim`` sorted by physical length, with their
    lengths, keeping only those no longer than ``(radius + 1) * min(scale)``: every offset
    outside the cube is at least that long, so a search through this list in order finds
    the exact nearest neighbour whenever it finds one at all."""
    ndim = len(scale)
    grid = np.array(list(itertools.product(range(-radius, radius + 1), repeat=ndim)))
    lengths = np.sqrt(((grid * scale) ** 2).sum(1))
    keep = lengths <= (radius + 1) * scale.min() * (1 + 1e-12)
    order = np.argsort(lengths[keep], kind="stable")
    return grid[keep][order], lengths[keep][order]


def _local_search(
    query: np.ndarray,
    targets: np.ndarray,
    scale: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    radius: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact distances for the query points whose nearest target lies within a small
    neighbourhood, by looking the neighbours up in a boolean grid of the targets.

    ``low``/``high`` bound all points (inclusive/exclusive). Returns the distances (NaN
    where unresolved) and the indices still unresolved.
    """
    low = low - radius
    shape = high + radius - low
    strides = np.cumprod(np.concatenate([shape[1:], [1]])[::-1])[::-1]
    grid = np.zeros(int(np.prod(shape)), dtype=bool)
    grid[(targets - low) @ strides] = True
    offsets, lengths = _local_offsets(scale, radius)
    # hits[i, j]: offset j from query point i lands on a target; offsets are sorted by
    # length, so the first hit is the nearest.
    hits = grid[((query - low) @ strides)[:, None] + (offsets @ strides)[None, :]]
    first = hits.argmax(1)
    found = hits[np.arange(len(query)), first]
    distances = np.where(found, lengths[first], np.nan)
    return distances, np.flatnonzero(~found)


def _directed(query: _Points, targets: _Points, scale: np.ndarray, method: str) -> np.ndarray:
    """Distances from every query surface voxel to the nearest target surface voxel."""
    if method != "auto":
        search = _edt_distances if method == "edt" else _kdtree_distances
        return search(query.coords, targets.coords, scale)
    # Most surface voxels of a reasonable prediction lie within a voxel step of the other
    # surface: look those up directly, and search only the rest.
    low = np.minimum(query.low, targets.low)
    high = np.maximum(query.high, targets.high)
    out, todo_index = _local_search(query.coords, targets.coords, scale, low, high)
    if todo_index.size == 0:
        return out
    todo = query.coords[todo_index]
    targets_xyz = targets.coords
    # Rough costs measured on one CPU core: a k-d tree query takes about 60 ns per query
    # point and tree level, the build about 100 ns per point; scipy's exact distance
    # transform about 180 ns per voxel of the bounding box.
    kd_cost = 60.0 * len(todo) * math.log2(len(targets_xyz) + 1) + 100.0 * len(targets_xyz)
    if 180.0 * float(np.prod(high - low)) < kd_cost:
        out[todo_index] = _edt_distances(todo, targets_xyz, scale)
    else:
        out[todo_index] = _kdtree_distances(todo, targets_xyz, scale)
    return out


def _pair_distances(
    pred: np.ndarray,
    target: np.ndarray,
    scale: np.ndarray,
    connectivity: int,
    method: str,
    directed: bool,
) -> SurfaceDistances | tuple[bool, bool]:
    """Distances for one boolean pair, or ``(pred_empty, target_empty)`` if one is empty."""
    sp = _surface_points(pred, connectivity)
    st = _surface_points(target, connectivity)
    if sp is None or st is None:
        return sp is None, st is None
    d_pt = _directed(sp, st, scale, method)
    d_tp = np.empty(0) if directed else _directed(st, sp, scale, method)
    return SurfaceDistances(d_pt, d_tp)


def _check_percentile(percentile: float) -> None:
    if (
        isinstance(percentile, bool)
        or not isinstance(percentile, numbers.Real)
        or not 0.0 <= float(percentile) <= 100.0
    ):
        raise ValueError(f"percentile must be a number in [0, 100], got {percentile!r}")
    if 0.0 < float(percentile) < 1.0:
        # point the warning at the user's call, through however many of this module's
        # functions it came (hd95 -> surface_metrics -> here, or surface_metrics -> here)
        level, frame = 1, sys._getframe(0)
        while frame.f_back is not None and frame.f_code.co_filename == __file__:
            frame, level = frame.f_back, level + 1
        warnings.warn(
            f"percentile={percentile} is read on the 0-100 scale, so it asks for the "
            f"{percentile}th percentile (near the minimum distance); for HD95 pass 95",
            UserWarning,
            stacklevel=level,
        )


def _check_method(method: str) -> None:
    if method not in _METHODS:
        raise ValueError(f"method must be one of {', '.join(map(repr, _METHODS))}, got {method!r}")


def surface_distances(
    pred: Array,
    target: Array,
    *,
    spacing: float | Sequence[float] | None = None,
    connectivity: int = 1,
    method: Method = "auto",
) -> SurfaceDistances:
    """Directed surface distances between one unbatched prediction and target.

    The building block of every surface metric here; use it for summaries not offered
    (another percentile, a histogram). Only the two masks are positional: MedPy passes
    its voxel spacing third, so ``surface_distances(a, b, 2)`` raises a ``TypeError``
    rather than read ``2`` as something else.

    Args:
        pred: unbatched mask (bool or integer, non-zero is foreground), any number of axes.
        target: mask of the same shape.
        spacing: voxel size per axis (one number for isotropic voxels); default 1.
        connectivity: the surface's erosion neighbourhood, ``1`` (faces) to ``ndim``.
        method: ``"kdtree"``, ``"edt"`` (exact distance transform over the bounding box)
            or ``"auto"`` (default: the cheaper one). All give the same distances.

    Returns:
        :class:`SurfaceDistances`.

    Raises:
        ValueError: a mask is empty (no surface to measure to), shapes differ, or an
            argument is out of range.
        TypeError: a mask is not an array or tensor or holds floating-point values, or
            an option is passed positionally.

    Examples:
        >>> a = np.zeros((1, 7), dtype=bool); a[0, 1:3] = True
        >>> b = np.zeros((1, 7), dtype=bool); b[0, 4:6] = True
        >>> surface_distances(a, b)  # (0,1)->(0,4) is 3 voxels, (0,2)->(0,4) is 2
        SurfaceDistances(pred_to_target=array([3., 2.]), target_to_pred=array([2., 3.]))
        >>> surface_distances(a, b, spacing=(1.0, 0.5)).pred_to_target
        array([1.5, 1. ])
    """
    p, t = _as_mask(pred), _as_mask(target)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same shape, got {p.shape} and {t.shape}")
    _check_connectivity(connectivity, p.ndim)
    _check_method(method)
    result = _pair_distances(p, t, _spacing(spacing, p.ndim), connectivity, method, False)
    if not isinstance(result, SurfaceDistances):
        which = " and ".join(n for n, e in zip(("pred", "target"), result, strict=True) if e)
        raise ValueError(f"{which} is empty: there is no surface to measure distances to")
    return result


# -------------------------------------------------------------------------- summaries


def _percentile(values: np.ndarray, q: float | None) -> float:
    return float(values.max()) if q is None else float(np.percentile(values, q))


def _summaries(
    d: SurfaceDistances, directed: bool, percentile: float, convention: str
) -> dict[str, float]:
    a = d.pred_to_target
    if directed:
        return {
            "hd": float(a.max()),
            "hd95": _percentile(a, percentile),
            "assd": float(a.mean()),
            "s2s": float(a.mean()),
        }
    b = d.target_to_pred
    if convention == "max":
        hd_p = max(_percentile(a, percentile), _percentile(b, percentile))
    else:
        hd_p = _percentile(np.concatenate([a, b]), percentile)
    return {
        "hd": max(float(a.max()), float(b.max())),
        "hd95": hd_p,
        "assd": (float(a.sum()) + float(b.sum())) / (a.size + b.size),
        "s2s": 0.5 * (float(a.mean()) + float(b.mean())),
    }


def _metric_names(metrics: object) -> tuple[str, ...]:
    """``metrics`` as a tuple of known surface-metric names."""
    if isinstance(metrics, str) or not (
        isinstance(metrics, Sequence) and all(isinstance(m, str) for m in metrics)
    ):
        raise TypeError(
            f"metrics must be a sequence of names from {', '.join(SURFACE_METRICS)}, "
            f"got {metrics!r}"
        )
    names = tuple(metrics)
    for name in names:
        if name not in SURFACE_METRICS:
            raise ValueError(
                f"unknown surface metric {name!r}; choose from {', '.join(SURFACE_METRICS)}"
            )
    return names


def _is_names(value: object) -> bool:
    """Whether ``value`` looks like surface-metric names: a string or strings."""
    if isinstance(value, str):
        return True
    return isinstance(value, Sequence) and len(value) > 0 and all(isinstance(v, str) for v in value)


def _refuse_positional_metrics(misplaced: tuple[object, ...]) -> None:
    """Refuse positional options of :func:`surface_metrics`, naming the keyword meant:
    ``metrics=`` for metric names, else ``num_classes=`` or ``spacing=``."""
    if misplaced and _is_names(misplaced[0]):
        raise TypeError(
            f"surface_metrics() takes pred and target positionally and everything else by "
            f"name, got {len(misplaced)} more positional argument(s): "
            f"{', '.join(repr(v) for v in misplaced)}. Pass it by name: "
            f"metrics={misplaced[0]!r}"
        )
    refuse_positional("surface_metrics", misplaced, spacing=True)


def _check_convention(convention: str) -> None:
    if convention not in _CONVENTIONS:
        raise ValueError(
            f"convention must be 'max' (MONAI: larger directed percentile) or 'pooled' "
            f"(MedPy: percentile of both directions pooled), got {convention!r}"
        )


def _empty_value(
    pred_empty: bool,
    target_empty: bool,
    *,
    empty_pred: float,
    empty_target: float,
    both_empty: float,
) -> float:
    """Every metric's value for an image where the prediction, the target or both are
    empty."""
    if pred_empty and target_empty:
        return both_empty
    return empty_pred if pred_empty else empty_target


def surface_metrics(
    pred: Array,
    target: Array,
    *misplaced: object,
    metrics: Sequence[str] = SURFACE_METRICS,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    spacing: float | Sequence[float] | None = None,
    directed: bool = False,
    percentile: float = 95.0,
    convention: Convention = "max",
    connectivity: int = 1,
    empty_pred: float = math.inf,
    empty_target: float = math.inf,
    both_empty: float = math.nan,
    method: Method = "auto",
    reduction: Reduction = "mean",
) -> dict[str, torch.Tensor | np.ndarray]:
    """Several surface metrics at once, measuring the distances only once per image.

    Args:
        pred: prediction: a mask or label map ``(*spatial)``, ``(B, *spatial)`` or
            ``(B, 1, *spatial)`` (integer or bool), or per-class 0/1 masks
            ``(B, C, *spatial)`` with ``one_hot=True``; NumPy or torch (computed on the
            CPU, results returned on the input's device). See
            :func:`attnunet.metrics.dice_score` for the whole contract.
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional. A third
            positional argument raises a ``TypeError`` that says to pass ``metrics=``
            (for names), ``spacing=`` (MedPy's voxel spacing) or ``num_classes=`` by name.
        metrics: any of ``"hd"`` (Hausdorff distance), ``"hd95"`` (the ``percentile``-th
            percentile Hausdorff distance), ``"assd"`` (average symmetric surface
            distance, pooled) and ``"s2s"`` (surface-to-surface distance, the mean of the
            two directed means), by name. Default: all four.
        num_classes: ``None`` for binary input (non-zero is foreground), or the number of
            classes of a label map; each class is scored as its own mask.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).
            Required: ``(96, 96)`` is one image with ``spatial_dims=2`` but 96 1-D signals
            with ``1``, and ``(B, 1, H, W)`` is a batch of single-channel masks with ``2``.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0.
        one_hot: inputs are ``(B, C, *spatial)`` per-class masks.
        spacing: physical voxel size per spatial axis, or one number (default 1), the same
            for the whole batch.
        directed: measure only from the prediction's surface to the target's (then
            ``assd`` and ``s2s`` are both the directed mean, and both conventions agree).
        percentile: the percentile of ``"hd95"`` on the 0-100 scale (default 95; a
            value in ``(0, 1)`` warns, as it is probably meant as a fraction).
        convention: how ``"hd95"`` combines the two directions: ``"max"`` (default) takes
            the larger of the two directed percentiles, as MONAI and DeepMind's
            surface-distance do; ``"pooled"`` takes the percentile of both distance sets
            pooled, as MedPy's ``hd95`` does. The values differ; say which you report.
        connectivity: the surface's erosion neighbourhood, ``1`` (faces, default, as MedPy
            and MONAI) to ``ndim`` (every neighbour).
        empty_pred: the value when the prediction is empty but the target is not (default
            ``inf``: the distance to nothing is unbounded). Pass ``float("nan")`` to leave
            such images out of the ``"mean"``, or a number such as the image diagonal.
        empty_target: the value when the target is empty but the prediction is not
            (default ``inf``).
        both_empty: the value when both are empty, a class absent from both (default
            NaN: left out of the means, as nnU-Net does; ``0.0`` counts it as a
            perfect match). A single-voxel mask needs no special case: the voxel is its
            own surface, and every summary of one distance is that distance.
        method: how nearest distances are found: ``"kdtree"``, ``"edt"`` or ``"auto"``
            (default, the cheaper; all are exact and agree).
        reduction: ``"mean"`` (each image's mean over classes, then over images, NaN
            left out, as MONAI),
            ``"mean_batch"`` (per class over images, ``(K,)``) or ``"none"`` (``(B,)`` for
            binary input, ``(B, K)`` otherwise).

    Returns:
        A dict from metric name to values, each as :func:`attnunet.metrics.dice_score`
        returns them: a ``float32`` tensor on the input's device, or ``float64`` NumPy.

    Raises:
        ValueError: shapes, spacing, percentile, convention, metrics or connectivity out
            of range.
        TypeError: floating-point inputs, or an option passed positionally.

    Examples:
        >>> a = np.zeros((1, 1, 7), dtype=bool); a[0, 0, 1:3] = True
        >>> b = np.zeros((1, 1, 7), dtype=bool); b[0, 0, 4:6] = True
        >>> out = surface_metrics(a, b, spatial_dims=2, reduction="none")
        >>> {k: v.tolist() for k, v in out.items()}
        {'hd': [3.0], 'hd95': [2.95], 'assd': [2.5], 's2s': [2.5]}
    """
    _refuse_positional_metrics(misplaced)
    check_reduction(reduction)
    names = _metric_names(metrics)
    _check_convention(convention)
    _check_percentile(percentile)
    _check_method(method)
    p, t, binary, numpy = class_masks(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
    )
    device = p.device
    p_np, t_np = p.cpu().numpy(), t.cpu().numpy()
    ndim = p_np.ndim - 2
    _check_connectivity(connectivity, ndim)
    scale = _spacing(spacing, ndim)
    batch, classes = p_np.shape[:2]
    values = {name: np.empty((batch, classes)) for name in names}
    for b in range(batch):
        for k in range(classes):
            result = _pair_distances(p_np[b, k], t_np[b, k], scale, connectivity, method, directed)
            if isinstance(result, SurfaceDistances):
                summary = _summaries(result, directed, percentile, convention)
            else:
                pred_empty, target_empty = result
                edge = _empty_value(
                    pred_empty,
                    target_empty,
                    empty_pred=empty_pred,
                    empty_target=empty_target,
                    both_empty=both_empty,
                )
                summary = dict.fromkeys(names, edge)
            for name in names:
                values[name][b, k] = summary[name]
    out: dict[str, torch.Tensor | np.ndarray] = {}
    for name in names:
        tensor = torch.from_numpy(values[name])
        reduced = reduce(tensor, binary, reduction)
        out[name] = output(reduced if numpy else reduced.float().to(device), numpy)
    return out


def hausdorff_distance(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    spacing: float | Sequence[float] | None = None,
    directed: bool = False,
    percentile: float | None = None,
    convention: Convention = "max",
    connectivity: int = 1,
    empty_pred: float = math.inf,
    empty_target: float = math.inf,
    both_empty: float = math.nan,
    method: Method = "auto",
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """Hausdorff distance between the surfaces, or a percentile of it.

    Args:
        pred: prediction, a mask or label map ``(*spatial)``, ``(B, *spatial)`` or
            ``(B, 1, *spatial)``, or per-class masks ``(B, C, *spatial)`` with
            ``one_hot=True``; NumPy or torch.
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional. A third
            positional argument (MedPy's voxel spacing) raises a ``TypeError`` that says
            to pass ``spacing=`` or ``num_classes=`` by name.
        num_classes: ``None`` for binary masks, or the number of classes of a label map.
        spatial_dims: how many trailing axes are spatial (required), as
            :func:`surface_metrics`.
        include_background, one_hot: the input form, as :func:`surface_metrics`.
        spacing: physical voxel size per spatial axis, or one number (default 1).
        directed: only measure from the prediction's surface to the target's.
        connectivity: the surface's erosion neighbourhood (default 1, faces).
        empty_pred, empty_target, both_empty: the values for empty masks (defaults
            ``inf``, ``inf``, NaN), as :func:`surface_metrics`.
        method: ``"auto"``, ``"kdtree"`` or ``"edt"``; all exact.
        reduction: ``"mean"``, ``"mean_batch"`` or ``"none"``, as
            :func:`surface_metrics`.
        percentile: ``None`` (default) for the maximum, the classical Hausdorff distance;
            a number in ``[0, 100]`` for that percentile (:func:`hd95` uses 95).
        convention: with a percentile, ``"max"`` (default; MONAI) or ``"pooled"``
            (MedPy), see :func:`surface_metrics`.

    Returns:
        Distances in the units of ``spacing``; types as :func:`surface_metrics`.

    Examples:
        >>> a = torch.zeros(1, 5, 5, dtype=torch.bool); a[0, 1:3, 1:3] = True
        >>> b = torch.zeros(1, 5, 5, dtype=torch.bool); b[0, 2:4, 2:4] = True
        >>> hausdorff_distance(a, b, spatial_dims=2)  # corner (1, 1) to (2, 2): sqrt(2)
        tensor(1.4142)
    """
    name = "hd" if percentile is None else "hd95"
    refuse_positional("hausdorff_distance", misplaced, spacing=True)
    return surface_metrics(
        pred,
        target,
        metrics=(name,),
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        spacing=spacing,
        directed=directed,
        percentile=95.0 if percentile is None else percentile,
        convention=convention,
        connectivity=connectivity,
        empty_pred=empty_pred,
        empty_target=empty_target,
        both_empty=both_empty,
        method=method,
        reduction=reduction,
    )[name]


def hd95(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    spacing: float | Sequence[float] | None = None,
    directed: bool = False,
    convention: Convention = "max",
    connectivity: int = 1,
    empty_pred: float = math.inf,
    empty_target: float = math.inf,
    both_empty: float = math.nan,
    method: Method = "auto",
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """The 95th-percentile Hausdorff distance.

    Args:
        pred: prediction, a mask or label map ``(*spatial)``, ``(B, *spatial)`` or
            ``(B, 1, *spatial)``, or per-class masks ``(B, C, *spatial)`` with
            ``one_hot=True``; NumPy or torch.
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional. A third
            positional argument (MedPy's voxel spacing) raises a ``TypeError`` that says
            to pass ``spacing=`` or ``num_classes=`` by name.
        num_classes: ``None`` for binary masks, or the number of classes of a label map.
        spatial_dims: how many trailing axes are spatial (required), as
            :func:`surface_metrics`.
        include_background, one_hot: the input form, as :func:`surface_metrics`.
        spacing: physical voxel size per spatial axis, or one number (default 1).
        directed: only measure from the prediction's surface to the target's.
        connectivity: the surface's erosion neighbourhood (default 1, faces).
        empty_pred, empty_target, both_empty: the values for empty masks (defaults
            ``inf``, ``inf``, NaN), as :func:`surface_metrics`.
        method: ``"auto"``, ``"kdtree"`` or ``"edt"``; all exact.
        reduction: ``"mean"``, ``"mean_batch"`` or ``"none"``, as
            :func:`surface_metrics`.
        convention: ``"max"`` (default): the larger of the two directed 95th percentiles,
            as MONAI's ``compute_hausdorff_distance(percentile=95)``; ``"pooled"``: the
            95th percentile of both directions' distances together, as MedPy's ``hd95``.

    Returns:
        Distances in the units of ``spacing``; types as :func:`surface_metrics`.

    Examples:
        >>> a = np.zeros((1, 1, 7), dtype=bool); a[0, 0, 1:3] = True
        >>> b = np.zeros((1, 1, 7), dtype=bool); b[0, 0, 4:6] = True
        >>> float(hd95(a, b, spatial_dims=2))
        2.95
        >>> float(hd95(a, b, spatial_dims=2, convention="pooled"))
        3.0
        >>> # MedPy's habit, one unbatched image with a spacing: (0.5 mm, 2 mm) pixels
        >>> float(hd95(a[0], b[0], spatial_dims=2, spacing=(0.5, 2.0)))
        5.9
    """
    refuse_positional("hd95", misplaced, spacing=True)
    return surface_metrics(
        pred,
        target,
        metrics=("hd95",),
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        spacing=spacing,
        directed=directed,
        percentile=95.0,
        convention=convention,
        connectivity=connectivity,
        empty_pred=empty_pred,
        empty_target=empty_target,
        both_empty=both_empty,
        method=method,
        reduction=reduction,
    )["hd95"]


def assd(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    spacing: float | Sequence[float] | None = None,
    directed: bool = False,
    connectivity: int = 1,
    empty_pred: float = math.inf,
    empty_target: float = math.inf,
    both_empty: float = math.nan,
    method: Method = "auto",
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """Average symmetric surface distance: the mean over both surfaces' voxels pooled,
    ``(sum d(A->B) + sum d(B->A)) / (|A| + |B|)``.

    This is Heimann et al.'s (2009) definition, MONAI's
    ``compute_average_surface_distance(symmetric=True)`` and MedPy's ``assd`` from 0.5 on.
    MedPy releases before 0.5 averaged the two directed means instead, which is
    :func:`surface_to_surface` here: check which one a paper's numbers used.

    Args:
        pred: prediction, a mask or label map ``(*spatial)``, ``(B, *spatial)`` or
            ``(B, 1, *spatial)``, or per-class masks ``(B, C, *spatial)`` with
            ``one_hot=True``; NumPy or torch.
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional. A third
            positional argument (MedPy's voxel spacing) raises a ``TypeError`` that says
            to pass ``spacing=`` or ``num_classes=`` by name.
        num_classes: ``None`` for binary masks, or the number of classes of a label map.
        spatial_dims: how many trailing axes are spatial (required), as
            :func:`surface_metrics`.
        include_background, one_hot: the input form, as :func:`surface_metrics`.
        spacing: physical voxel size per spatial axis, or one number (default 1).
        directed: only measure from the prediction's surface to the target's.
        connectivity: the surface's erosion neighbourhood (default 1, faces).
        empty_pred, empty_target, both_empty: the values for empty masks (defaults
            ``inf``, ``inf``, NaN), as :func:`surface_metrics`.
        method: ``"auto"``, ``"kdtree"`` or ``"edt"``; all exact.
        reduction: ``"mean"``, ``"mean_batch"`` or ``"none"``, as
            :func:`surface_metrics`.

    Returns:
        Distances in the units of ``spacing``; types as :func:`surface_metrics`.

    Examples:
        >>> a = np.zeros((1, 1, 7), dtype=bool); a[0, 0, 1:3] = True
        >>> b = np.zeros((1, 1, 7), dtype=bool); b[0, 0, 4:6] = True
        >>> float(assd(a, b, spatial_dims=2))  # (3 + 2 + 2 + 3) / 4
        2.5
    """
    refuse_positional("assd", misplaced, spacing=True)
    return surface_metrics(
        pred,
        target,
        metrics=("assd",),
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        spacing=spacing,
        directed=directed,
        percentile=95.0,
        convention="max",
        connectivity=connectivity,
        empty_pred=empty_pred,
        empty_target=empty_target,
        both_empty=both_empty,
        method=method,
        reduction=reduction,
    )["assd"]


def surface_to_surface(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    spacing: float | Sequence[float] | None = None,
    directed: bool = False,
    connectivity: int = 1,
    empty_pred: float = math.inf,
    empty_target: float = math.inf,
    both_empty: float = math.nan,
    method: Method = "auto",
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """Surface-to-surface distance (S2S): the mean of the two directed mean surface
    distances, ``(mean d(A->B) + mean d(B->A)) / 2``.

    Oktay et al. (2018) report it for the pancreas; MedPy's ``assd`` computed this before
    version 0.5.
    It weights both surfaces equally however many voxels each has, where :func:`assd`
    weights every voxel equally.

    Args:
        pred: prediction, a mask or label map ``(*spatial)``, ``(B, *spatial)`` or
            ``(B, 1, *spatial)``, or per-class masks ``(B, C, *spatial)`` with
            ``one_hot=True``; NumPy or torch.
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional. A third
            positional argument (MedPy's voxel spacing) raises a ``TypeError`` that says
            to pass ``spacing=`` or ``num_classes=`` by name.
        num_classes: ``None`` for binary masks, or the number of classes of a label map.
        spatial_dims: how many trailing axes are spatial (required), as
            :func:`surface_metrics`.
        include_background, one_hot: the input form, as :func:`surface_metrics`.
        spacing: physical voxel size per spatial axis, or one number (default 1).
        directed: only measure from the prediction's surface to the target's.
        connectivity: the surface's erosion neighbourhood (default 1, faces).
        empty_pred, empty_target, both_empty: the values for empty masks (defaults
            ``inf``, ``inf``, NaN), as :func:`surface_metrics`.
        method: ``"auto"``, ``"kdtree"`` or ``"edt"``; all exact.
        reduction: ``"mean"``, ``"mean_batch"`` or ``"none"``, as
            :func:`surface_metrics`.

    Returns:
        Distances in the units of ``spacing``; types as :func:`surface_metrics`.

    Examples:
        >>> a = np.zeros((1, 1, 9), dtype=bool); a[0, 0, 1:4] = True
        >>> b = np.zeros((1, 1, 9), dtype=bool); b[0, 0, 6:8] = True
        >>> float(surface_to_surface(a, b, spatial_dims=2))  # (mean(5, 4, 3) + mean(3, 4)) / 2
        3.75
        >>> float(assd(a, b, spatial_dims=2))  # (5 + 4 + 3 + 3 + 4) / 5: voxels weigh the same
        3.8
    """
    refuse_positional("surface_to_surface", misplaced, spacing=True)
    return surface_metrics(
        pred,
        target,
        metrics=("s2s",),
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        spacing=spacing,
        directed=directed,
        percentile=95.0,
        convention="max",
        connectivity=connectivity,
        empty_pred=empty_pred,
        empty_target=empty_target,
        both_empty=both_empty,
        method=method,
        reduction=reduction,
    )["s2s"]
