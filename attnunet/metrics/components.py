"""Connected components: labelling one mask, counting pieces, the one-piece fraction.

Connectivity follows scikit-image: with ``connectivity=c`` two foreground voxels are
neighbours when one is reached from the other by at most ``c`` steps of one voxel along
distinct axes. ``1`` joins faces only (4-connectivity in 2D, 6 in 3D), ``ndim`` joins the
full neighbourhood including corners (8 in 2D, 26 in 3D); in 3D ``2`` also joins edges
(18-connectivity). The components are found by :func:`scipy.ndimage.label` on the CPU;
torch input is copied to the host for that.

Examples:
    >>> import torch
    >>> masks = torch.tensor([[[1, 1, 0], [0, 0, 0], [0, 1, 1]],  # two pieces
    ...                       [[1, 1, 0], [0, 1, 0], [0, 1, 1]]])  # one piece
    >>> num_components(masks, spatial_dims=2)
    tensor([2, 1])
    >>> one_piece_fraction(masks, spatial_dims=2)
    tensor(0.5000)
"""

from __future__ import annotations

import numbers

import numpy as np
import torch
from scipy import ndimage

from attnunet.metrics._common import Array, Reduction, check_reduction, class_masks, output, reduce

__all__ = ["label_components", "num_components", "one_piece_fraction"]


def connectivity_structure(ndim: int, *, connectivity: int) -> np.ndarray:
    """The neighbourhood of :func:`scipy.ndimage.label` for ``connectivity`` (by name) in
    ``ndim`` axes, after checking that ``connectivity`` lies in ``1..ndim``."""
    if (
        isinstance(connectivity, bool)
        or not isinstance(connectivity, numbers.Integral)
        or not 1 <= connectivity <= ndim
    ):
        full = "" if ndim == 1 else f", {ndim} = full neighbourhood, corners included"
        raise ValueError(
            f"connectivity must be an int in 1..{ndim} for {ndim} spatial "
            f"{'axis' if ndim == 1 else 'axes'} (1 = faces only{full}), got {connectivity!r}"
        )
    return ndimage.generate_binary_structure(ndim, int(connectivity))


def label_components(mask: Array, *, connectivity: int = 1) -> tuple[np.ndarray, int]:
    """Label the connected components of the foreground of one (unbatched) mask.

    Args:
        mask: a mask or label map of any number of axes (at least one), as a
            ``numpy.ndarray`` or a ``torch.Tensor`` (copied to the host), integer or bool.
            Every non-zero voxel is foreground; different non-zero values that touch join
            the same component.
        connectivity: neighbours are voxels reached with at most this many orthogonal
            unit steps, ``1..mask.ndim`` (default 1: faces only; ``mask.ndim``: corners
            too), as in :func:`skimage.measure.label`; by name only.

    Returns:
        ``(labels, count)``: an ``int32`` NumPy array of ``mask``'s shape with background
        0 and components numbered ``1..count`` in raster order, and the number of
        components as a Python int (0 for an empty mask).

    Raises:
        TypeError: ``mask`` is not an array or tensor, or holds floating-point values,
            or ``connectivity`` is passed positionally.
        ValueError: ``mask`` has no axis, or ``connectivity`` is outside ``1..mask.ndim``.

    Examples:
        >>> import numpy as np
        >>> diagonal = np.array([[1, 0], [0, 1]], dtype=bool)
        >>> label_components(diagonal, connectivity=1)[1]  # faces only: two pieces
        2
        >>> labels, count = label_components(diagonal, connectivity=2)  # corners join
        >>> labels.tolist(), count
        ([[1, 0], [0, 1]], 1)
    """
    m = _host_mask(mask, "mask")
    if m.ndim == 0:
        raise ValueError("mask must have at least one axis, got a 0-d array")
    structure = connectivity_structure(m.ndim, connectivity=connectivity)
    labels, count = ndimage.label(m != 0, structure=structure)
    return labels, int(count)


def num_components(
    pred: Array,
    *,
    spatial_dims: int | None = None,
    connectivity: int = 1,
    num_classes: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
) -> torch.Tensor | np.ndarray:
    """Number of connected components per image (and class).

    Args:
        pred: ``(B, *spatial)`` mask, instance map or label map (integer or bool; also
            ``(*spatial)`` or ``(B, 1, *spatial)``), or ``(B, C, *spatial)`` masks with
            ``one_hot=True``; a ``torch.Tensor`` or a ``numpy.ndarray``.
        spatial_dims: how many trailing axes are spatial (required; see
            :func:`attnunet.metrics.dice_score`).
        connectivity: ``1..len(spatial)`` (default 1: faces only); see
            :func:`label_components`.
        num_classes: ``None`` (default): every non-zero voxel is foreground and the
            components of that one mask are counted (touching instances join). Otherwise
            the number of classes ``C >= 2`` of a label map, each class ``1..C-1`` counted
            on its own mask.
        include_background: with ``num_classes`` or ``one_hot``, also count class 0.
        one_hot: input is ``(B, C, *spatial)`` per-class masks (channels may overlap).

    Returns:
        ``int64`` counts of shape ``(B,)`` for binary input and ``(B, K)`` with ``K``
        counted classes otherwise: a NumPy array for NumPy input, else a tensor on
        ``pred``'s device.

    Raises:
        TypeError: floating-point input.
        ValueError: no spatial axis, bad ``num_classes`` or labels out of its range, or
            ``connectivity`` outside ``1..len(spatial)``.

    Examples:
        >>> import numpy as np
        >>> labels = np.array([[1, 0, 1, 2, 2]])  # class 1 in two pieces, class 2 in one
        >>> num_components(labels, num_classes=3, spatial_dims=1)
        array([[2, 1]])
    """
    counts, binary, numpy, device = _counts(
        pred, spatial_dims, connectivity, num_classes, include_background, one_hot
    )
    out = counts[:, 0] if binary else counts
    return out if numpy else torch.from_numpy(out).to(device)


def one_piece_fraction(
    pred: Array,
    *,
    spatial_dims: int | None = None,
    connectivity: int = 1,
    num_classes: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    empty_value: float = 0.0,
    reduction: Reduction = "mean",
) -> torch.Tensor | np.ndarray:
    """Fraction of masks that are exactly one connected component.

    Each image's mask (or each class's mask of each image) scores 1.0 when its foreground
    is a single connected piece and 0.0 when it falls apart into several. An **empty mask
    is not one-piece**: it scores ``empty_value``, 0.0 by default (a prediction that
    found nothing did not produce a one-piece object).

    Args:
        pred: ``(B, *spatial)`` mask, instance map or label map (integer or bool; also
            ``(*spatial)`` or ``(B, 1, *spatial)``), or ``(B, C, *spatial)`` masks with
            ``one_hot=True``; a ``torch.Tensor`` or a ``numpy.ndarray``. With
            ``num_classes=None`` every non-zero voxel is foreground.
        spatial_dims: how many trailing axes are spatial (required; see
            :func:`attnunet.metrics.dice_score`).
        connectivity: ``1..len(spatial)`` (default 1: faces only); see
            :func:`label_components`.
        num_classes: ``None`` (default) for a binary mask, or the number of classes
            ``C >= 2`` of a label map, class 0 being background.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0.
        one_hot: input is ``(B, C, *spatial)`` per-class masks.
        empty_value: the score of an empty mask (default 0.0; ``float("nan")`` leaves
            empty masks out of the ``"mean"``, 1.0 counts them as one-piece).
        reduction: ``"mean"`` (default): the fraction per image over its classes, then
            over images, a scalar; ``"mean_batch"``: per class over images; ``"none"``:
            the per-mask scores, ``(B,)`` for binary input and ``(B, K)`` otherwise.

    Returns:
        For torch input a ``float32`` tensor on ``pred``'s device; for NumPy input a
        ``float64`` array (a scalar for ``"mean"``).

    Raises:
        TypeError: floating-point input.
        ValueError: as :func:`num_components`, or an unknown ``reduction``.

    Examples:
        >>> import numpy as np
        >>> masks = np.array([[[1, 0], [0, 1]],   # diagonal pair
        ...                   [[0, 0], [0, 0]]])  # empty
        >>> one_piece_fraction(masks, spatial_dims=2, reduction="none").tolist()
        [0.0, 0.0]
        >>> one_piece_fraction(masks, spatial_dims=2, connectivity=2, reduction="none").tolist()
        [1.0, 0.0]
        >>> float(one_piece_fraction(masks, spatial_dims=2, connectivity=2, empty_value=np.nan))
        1.0
    """
    check_reduction(reduction)
    counts, binary, numpy, device = _counts(
        pred, spatial_dims, connectivity, num_classes, include_background, one_hot
    )
    scores = np.where(counts == 1, 1.0, 0.0)
    scores[counts == 0] = empty_value
    values = reduce(torch.from_numpy(scores), binary, reduction)
    return output(values, True) if numpy else values.float().to(device)


def _counts(
    pred: Array,
    spatial_dims: int | None,
    connectivity: int,
    num_classes: int | None,
    include_background: bool,
    one_hot: bool,
) -> tuple[np.ndarray, bool, bool, torch.device]:
    """Component counts ``(B, K)`` (``int64``), whether binary, whether NumPy, device."""
    masks, _, binary, numpy = class_masks(
        pred,
        pred,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
    )
    structure = connectivity_structure(masks.dim() - 2, connectivity=connectivity)
    host = masks.detach().cpu().numpy()
    counts = np.zeros(host.shape[:2], dtype=np.int64)
    for b in range(host.shape[0]):
        for k in range(host.shape[1]):
            if host[b, k].any():
                counts[b, k] = ndimage.label(host[b, k], structure=structure)[1]
    return counts, binary, numpy, masks.device


def _host_mask(x: object, label: str) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    if not isinstance(x, np.ndarray):
        raise TypeError(
            f"{label} must be a numpy.ndarray or a torch.Tensor, got {type(x).__name__}"
        )
    if not (x.dtype == np.bool_ or np.issubdtype(x.dtype, np.integer)):
        raise TypeError(
            f"{label} must be a mask (bool) or a label map (integer), got {x.dtype}: "
            f"threshold probabilities or logits first, e.g. (probs > 0.5)"
        )
    return x
