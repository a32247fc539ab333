"""Partition scores of the ISBI 2012 segmentation challenge: V^rand and V^info.

Both compare two partitions of the voxels of an image, a predicted one ``S`` and a true
one ``T``, through their joint distribution: ``p_ij`` is the fraction of voxels in
predicted segment ``i`` and true segment ``j``, ``s_i = sum_j p_ij`` and
``t_j = sum_i p_ij`` its marginals (Arganda-Carreras et al., "Crowdsourcing the creation
of image segmentation algorithms for connectomics", Front. Neuroanat. 2015):

* ``V_rand = sum_ij p_ij^2 / (alpha * sum_i s_i^2 + (1 - alpha) * sum_j t_j^2)``, the
  Rand F-score: the fraction of voxel pairs that lie in one segment in both partitions,
  relative to the pairs that share a segment in either;
* ``V_info = I(S; T) / ((1 - alpha) * H(S) + alpha * H(T))``, the information-theoretic
  F-score built from the mutual information and the entropies.

Both lie in ``[0, 1]``, 1 meaning identical partitions; the segment labels themselves
never matter, only which voxels share one. ``alpha = 0`` gives the split scores (only
false splits are penalised), ``alpha = 1`` the merge scores, ``0.5`` (default) weighs both
equally.

The contingency table is built from the labels present (``numpy.unique`` or a bincount of
compact codes), never as a dense label-by-label matrix, so instance ids may be any
integers and 256^3 volumes are fine. The computation runs in NumPy on the CPU; torch input
is copied to the host and the scores come back on its device.

Examples:
    >>> import torch
    >>> pred = torch.tensor([[1, 1, 2, 2]])
    >>> target = torch.tensor([[5, 5, 5, 9]])
    >>> # (2^2 + 1 + 1) / ((2^2 + 2^2) / 2 + (3^2 + 1) / 2) = 6 / 9
    >>> v_rand(pred, target, spatial_dims=1)  # one row: a batch of one 1-D image
    tensor(0.6667)
    >>> v_info(pred, pred * 10, spatial_dims=1)  # relabelling changes nothing
    tensor(1.)
"""

from __future__ import annotations

import numbers
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy import ndimage

from attnunet.metrics._common import Array, Reduction, check_reduction, layout_pair, output, reduce
from attnunet.metrics.components import connectivity_structure

__all__ = ["v_info", "v_rand"]

Form = Literal["pixel", "segment"]
Pairs = Literal["all", "distinct"]
FORMS = ("pixel", "segment")
PAIRS = ("all", "distinct")


class _Table(NamedTuple):
    """Sparse contingency table of one image: the non-zero cells and the marginals."""

    n: int  # voxels scored
    joint: np.ndarray  # n_ij of each non-zero cell, int64
    pred_of_cell: np.ndarray  # s-count (row total) of each cell's predicted segment
    target_of_cell: np.ndarray  # t-count (column total) of each cell's true segment
    pred: np.ndarray  # size of every predicted segment, int64
    target: np.ndarray  # size of every true segment, int64


def _dense_limit(n: int) -> int:
    # Below this many bins a bincount (linear time) replaces a sort.
    return max(4 * n, 1 << 16)


def _codes(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compact codes ``0..k-1`` of the labels in the 1-D non-empty ``x``, and each label's
    voxel count (labels in increasing order)."""
    if x.dtype == np.bool_:
        x = x.view(np.uint8)
    if int(x.min()) >= 0 and int(x.max()) < _dense_limit(x.size):
        full = np.bincount(x)
        present = full > 0
        lookup = np.cumsum(present) - 1
        return lookup[x], full[present]
    _, codes, counts = np.unique(x, return_inverse=True, return_counts=True)
    return codes.reshape(-1).astype(np.int64, copy=False), counts.astype(np.int64, copy=False)


def _table(pred: np.ndarray, target: np.ndarray) -> _Table:
    """Contingency table of two 1-D non-empty label arrays of the same length."""
    pc, pred_sizes = _codes(pred)
    tc, target_sizes = _codes(target)
    width = target_sizes.size
    key = pc * width + tc
    if pred_sizes.size * width <= _dense_limit(key.size):
        full = np.bincount(key)
        cells = np.flatnonzero(full)
        joint = full[cells]
    else:
        cells, joint = np.unique(key, return_counts=True)
    return _Table(
        n=int(pred.size),
        joint=joint.astype(np.int64, copy=False),
        pred_of_cell=pred_sizes[cells // width],
        target_of_cell=target_sizes[cells % width],
        pred=pred_sizes,
        target=target_sizes,
    )


class _Batch(NamedTuple):
    tables: list[_Table | None]  # None: no voxel left to score
    numpy: bool
    device: torch.device


def _tables(
    pred: Array,
    target: Array,
    form: str,
    alpha: float,
    ignore_background: bool | None,
    connectivity: int,
    spatial_dims: int | None,
) -> _Batch:
    """Validate the arguments and build one contingency table per image."""
    if form not in FORMS:
        raise ValueError(f"form must be one of {', '.join(map(repr, FORMS))}, got {form!r}")
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, numbers.Real)
        or not 0.0 <= float(alpha) <= 1.0
    ):
        raise ValueError(
            f"alpha must be a number in [0, 1] (0: split score, 1: merge score, 0.5: both "
            f"equally), got {alpha!r}"
        )
    if ignore_background is not None and not isinstance(ignore_background, bool):
        raise ValueError(
            f"ignore_background must be True, False or None (None: True for "
            f"form='segment', False for form='pixel'), got {ignore_background!r}"
        )
    p, t, numpy = layout_pair(pred, target, spatial_dims)
    structure = connectivity_structure(p.dim() - 1, connectivity=connectivity)
    if ignore_background is None:
        ignore_background = form == "segment"

    p_host = p.detach().cpu().numpy()
    t_host = t.detach().cpu().numpy()
    tables: list[_Table | None] = []
    for p_img, t_img in zip(p_host, t_host, strict=True):
        if form == "segment":
            p_img = _segments(p_img, structure)
            t_img = _segments(t_img, structure)
        p_flat, t_flat = p_img.reshape(-1), t_img.reshape(-1)
        if ignore_background:
            keep = t_flat != 0
            p_flat, t_flat = p_flat[keep], t_flat[keep]
        tables.append(_table(p_flat, t_flat) if p_flat.size else None)
    return _Batch(tables, numpy, p.device)


def _segments(x: np.ndarray, structure: np.ndarray) -> np.ndarray:
    labels, _ = ndimage.label(x != 0, structure=structure)
    return labels


def _finish(scores: list[float], batch: _Batch, reduction: str) -> torch.Tensor | np.ndarray:
    values = reduce(torch.tensor(scores, dtype=torch.float64).unsqueeze(1), True, reduction)
    return output(values, True) if batch.numpy else values.float().to(batch.device)


def _clip(x: float) -> float:
    return min(max(x, 0.0), 1.0)


def _rand(table: _Table | None, alpha: float, pairs: str, empty_value: float) -> float:
    if table is None:
        return empty_value
    both = int(table.joint @ table.joint)
    s2 = int(table.pred @ table.pred)
    t2 = int(table.target @ table.target)
    if pairs == "distinct":  # drop the n pairs of a voxel with itself from every sum
        both, s2, t2 = both - table.n, s2 - table.n, t2 - table.n
    den = alpha * s2 + (1.0 - alpha) * t2
    return empty_value if den == 0 else _clip(both / den)


def _entropy(sizes: np.ndarray, n: int) -> float:
    # sum_i (a_i / n) * log(n / a_i): exactly 0 for a single segment.
    a = sizes.astype(np.float64)
    return float(np.sum(a / n * np.log(n / a)))


def _info(table: _Table | None, alpha: float, empty_value: float) -> float:
    if table is None:
        return empty_value
    n = table.n
    den = (1.0 - alpha) * _entropy(table.pred, n) + alpha * _entropy(table.target, n)
    if den == 0:
        return empty_value
    joint = table.joint.astype(np.float64)
    # I(S; T) = sum_ij p_ij log(p_ij / (s_i t_j)), with every ratio formed from counts.
    ratio = (joint * n) / (table.pred_of_cell.astype(np.float64) * table.target_of_cell)
    mutual = float(np.sum(joint / n * np.log(ratio)))
    return _clip(mutual / den)


def _check_pairs(pairs: str) -> None:
    if pairs not in PAIRS:
        raise ValueError(
            f"pairs must be one of {', '.join(map(repr, PAIRS))} ('all': every ordered "
            f"voxel pair incl. a voxel with itself, the ISBI formula; 'distinct': as "
            f"skimage.metrics.adapted_rand_error), got {pairs!r}"
        )


def v_rand(
    pred: Array,
    target: Array,
    *,
    spatial_dims: int | None = None,
    form: Form = "pixel",
    alpha: float = 0.5,
    ignore_background: bool | None = None,
    connectivity: int = 1,
    pairs: Pairs = "all",
    empty_value: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """Rand F-score ``V_rand`` of the ISBI 2012 challenge, per image.

    With ``n_ij`` voxels in predicted segment ``i`` and true segment ``j``, ``a_i`` and
    ``b_j`` the segment sizes, ``V_rand = sum n_ij^2 / (alpha sum a_i^2 + (1 - alpha) sum
    b_j^2)``: each sum of squares counts the ordered voxel pairs that share a segment.

    Args:
        pred: predicted label maps ``(B, *spatial)``, ``(B, 1, *spatial)`` or one unbatched
            ``(*spatial)``, integer or bool (floats holding whole numbers too), as a
            ``torch.Tensor`` or a ``numpy.ndarray``. Class maps and instance maps both
            work; label values only name segments (any integers, e.g. ids 7 and 1000).
        target: true label maps in the same layout.
        spatial_dims: how many trailing axes are spatial (required; see
            :func:`attnunet.metrics.dice_score`).
        form: ``"pixel"`` (default) scores the labels exactly as given, so each label is
            one segment even if it is in several pieces. ``"segment"`` first relabels the
            connected components of the foreground (non-zero voxels) of each input,
            background staying 0: a label in two pieces becomes two segments, and
            touching voxels with different non-zero labels join one segment.
        alpha: weight in ``[0, 1]`` of the prediction's term in the denominator (default
            0.5). 0 gives the split score (only splitting a true segment costs), 1 the
            merge score (only merging true segments costs).
        ignore_background: drop the voxels whose *target* is 0 before scoring (the ISBI
            foreground-restricted convention, ``ignore_labels=(0,)`` on the true image in
            scikit-image); the prediction's background stays one segment there.
            ``None`` (default) means ``True`` for ``form="segment"`` and ``False`` for
            ``form="pixel"``.
        connectivity: neighbourhood of the components for ``form="segment"``: voxels
            reached with at most this many orthogonal unit steps, ``1..len(spatial)``
            (default 1: faces only), as in ``skimage.measure.label``. Checked always,
            used only by the segment form.
        pairs: ``"all"`` (default) counts every ordered pair, a voxel with itself included:
            the formula above. ``"distinct"`` counts pairs of two different voxels,
            subtracting the ``n`` self-pairs from each sum (``sum n_ij^2 - n``, ...). This
            is exactly scikit-image's ``skimage.metrics.adapted_rand_error``: with
            ``pairs="distinct"`` and ``alpha=0.5``, ``v_rand`` equals ``1 - are`` for
            ``are, _, _ = adapted_rand_error(target, pred, ignore_labels=...)``. (Its
            ``alpha`` weighs the true image's term, so our ``alpha`` is ``1 - alpha``
            there.)
        empty_value: the score of a ``0 / 0``: an image with no voxel left after dropping
            the background, or, with ``pairs="distinct"``, no pair of different voxels
            sharing a segment in the weighted partitions (e.g. a single voxel). Default
            1.0 ("nothing to get wrong"); ``float("nan")`` leaves such images out of the
            ``"mean"``. A single-voxel image scores 1.0 with ``pairs="all"`` (the voxel
            paired with itself agrees) and ``empty_value`` with ``"distinct"``.
        reduction: ``"mean"`` (default) averages the images' scores into a scalar, leaving
            NaN out; ``"none"`` returns one score per image, shape ``(B,)``.

    Returns:
        For torch input a ``float32`` tensor on the inputs' device; for NumPy input a
        ``float64`` array (a scalar for ``"mean"``). Values lie in ``[0, 1]`` (or are
        ``empty_value``).

    Raises:
        ValueError: shapes or devices differ, no spatial axis, or an unknown ``form``,
            ``pairs`` or ``reduction``, ``alpha`` outside ``[0, 1]``, ``connectivity``
            outside ``1..len(spatial)``.
        TypeError: inputs are not arrays or tensors, or hold floating-point values.

    Examples:
        >>> pred = torch.tensor([[1, 1, 2, 2]])
        >>> target = torch.tensor([[1, 1, 1, 2]])
        >>> # n_ij: (1,1) 2, (2,1) 1, (2,2) 1; a = (2, 2); b = (3, 1)
        >>> v_rand(pred, target, spatial_dims=1)  # 6 / (8 / 2 + 10 / 2)
        tensor(0.6667)
        >>> # (6 - 4) / (4 / 2 + 6 / 2)
        >>> v_rand(pred, target, pairs="distinct", spatial_dims=1)
        tensor(0.4000)
        >>> import numpy as np
        >>> v_rand(np.array([[1, 1, 0], [0, 0, 0]]), np.array([[1, 0, 0], [0, 0, 0]]),
        ...        form="segment", spatial_dims=1, reduction="none")  # image 2: no foreground
        array([1., 1.])
    """
    check_reduction(reduction)
    _check_pairs(pairs)
    batch = _tables(pred, target, form, alpha, ignore_background, connectivity, spatial_dims)
    scores = [_rand(t, float(alpha), pairs, empty_value) for t in batch.tables]
    return _finish(scores, batch, reduction)


def v_info(
    pred: Array,
    target: Array,
    *,
    spatial_dims: int | None = None,
    form: Form = "pixel",
    alpha: float = 0.5,
    ignore_background: bool | None = None,
    connectivity: int = 1,
    empty_value: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """Information-theoretic F-score ``V_info`` of the ISBI 2012 challenge, per image.

    ``V_info = I(S; T) / ((1 - alpha) H(S) + alpha H(T))`` with ``S`` the predicted and
    ``T`` the true partition, ``H`` the entropy of the segment sizes and ``I(S; T) = H(S)
    - H(S | T)`` the mutual information (the base of the logarithm cancels). It relates
    to the variation of information ``VI = H(S | T) + H(T | S)``; at ``alpha = 0.5``,
    ``V_info = 1 - VI / (H(S) + H(T))``.

    Args:
        pred: predicted label maps ``(B, *spatial)``, ``(B, 1, *spatial)`` or one unbatched
            ``(*spatial)``, integer or bool (floats holding whole numbers too), as a
            ``torch.Tensor`` or a ``numpy.ndarray``. Class maps and instance maps both
            work; label values only name segments (any integers, e.g. ids 7 and 1000).
        target: true label maps in the same layout.
        spatial_dims: how many trailing axes are spatial (required; see
            :func:`attnunet.metrics.dice_score`).
        form: ``"pixel"`` (default) scores the labels exactly as given, so each label is
            one segment even if it is in several pieces. ``"segment"`` first relabels the
            connected components of the foreground (non-zero voxels) of each input,
            background staying 0: a label in two pieces becomes two segments, and
            touching voxels with different non-zero labels join one segment.
        alpha: weight in ``[0, 1]`` of the prediction's term in the denominator (default
            0.5). 0 gives the split score (only splitting a true segment costs), 1 the
            merge score (only merging true segments costs).
        ignore_background: drop the voxels whose *target* is 0 before scoring (the ISBI
            foreground-restricted convention, ``ignore_labels=(0,)`` on the true image in
            scikit-image); the prediction's background stays one segment there.
            ``None`` (default) means ``True`` for ``form="segment"`` and ``False`` for
            ``form="pixel"``.
        connectivity: neighbourhood of the components for ``form="segment"``: voxels
            reached with at most this many orthogonal unit steps, ``1..len(spatial)``
            (default 1: faces only), as in ``skimage.measure.label``. Checked always,
            used only by the segment form.
        empty_value: the score of a ``0 / 0``: an image with no voxel left after dropping
            the background, or a zero denominator, which needs ``H(S) = H(T) = 0`` when
            ``0 < alpha < 1``, i.e. both partitions a single segment and so identical
            (with ``alpha`` 0 or 1, one trivial partition suffices). Default 1.0;
            ``float("nan")`` leaves such images out of the ``"mean"``. A single-voxel
            image therefore scores ``empty_value``.
        reduction: ``"mean"`` (default) averages the images' scores into a scalar, leaving
            NaN out; ``"none"`` returns one score per image, shape ``(B,)``.

    Returns:
        As :func:`v_rand`.

    Raises:
        ValueError, TypeError: as :func:`v_rand`.

    Examples:
        >>> pred = torch.tensor([[1, 1, 2, 2]])
        >>> target = torch.tensor([[1, 1, 1, 2]])
        >>> # H(S) = 1 bit, H(T) = 0.8113 bits, H(S, T) = 1.5 bits, I = 0.3113 bits
        >>> v_info(pred, target, spatial_dims=1)  # 0.3113 / (1 / 2 + 0.8113 / 2)
        tensor(0.3437)
        >>> # I = 0, H(S) = 1 bit
        >>> v_info(pred, torch.ones_like(target), alpha=0.0, spatial_dims=1)
        tensor(0.)
    """
    check_reduction(reduction)
    batch = _tables(pred, target, form, alpha, ignore_background, connectivity, spatial_dims)
    scores = [_info(t, float(alpha), empty_value) for t in batch.tables]
    return _finish(scores, batch, reduction)
