"""Overlap metrics: Dice, IoU (Jaccard), mean IoU, precision, recall, pixel accuracy.

Scores are computed per image and per class from exact integer counts, then averaged
(``reduction="mean"``) or returned per image (``reduction="none"``). On torch tensors
everything runs on the tensor's device as whole-tensor operations; with
``check_labels=False`` and integer or boolean inputs there is not even a host
synchronisation (floating-point inputs are checked for whole numbers, one host read).

Examples:
    >>> import torch
    >>> logits = torch.tensor([[[[2.0, -1.0], [0.5, -3.0]]]])  # (B=1, C=1, H=2, W=2)
    >>> target = torch.tensor([[[1, 0], [0, 0]]])  # (B=1, H=2, W=2)
    >>> dice_score(logits > 0, target, spatial_dims=2)  # 2 * 1 / (2 + 1)
    tensor(0.6667)
    >>> dice_score(logits > 0, target)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: pred has shape [1, 1, 2, 2], which reads more than one way: pass spatial_dims...
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch

from attnunet.metrics._common import (
    Array,
    Reduction,
    check_label_range,
    check_mask_values,
    check_reduction,
    class_masks,
    layout_pair,
    num_classes_value,
    output,
    reduce,
    refuse_positional,
)

__all__ = [
    "ConfusionCounts",
    "confusion_counts",
    "dice_score",
    "iou_score",
    "mean_iou",
    "pixel_accuracy",
    "precision_score",
    "recall_score",
]


class ConfusionCounts(NamedTuple):
    """Exact per-image, per-class voxel counts, each an ``int64`` tensor of shape ``(B, K)``."""

    tp: torch.Tensor
    fp: torch.Tensor
    fn: torch.Tensor
    tn: torch.Tensor


class _Counts(NamedTuple):
    tp: torch.Tensor
    pred: torch.Tensor  # |P| = tp + fp
    target: torch.Tensor  # |T| = tp + fn
    total: int  # voxels per image
    binary: bool
    numpy: bool


def _counts(
    pred: Array,
    target: Array,
    *,
    num_classes: int | None,
    spatial_dims: int | None,
    include_background: bool,
    one_hot: bool,
    check_labels: bool,
    reduction: str,
) -> _Counts:
    check_reduction(reduction)
    p, t, binary, numpy = class_masks(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
    )
    dims = tuple(range(2, p.dim()))
    tp = (p & t).sum(dims)
    total = int(np.prod(p.shape[2:]))
    return _Counts(tp, p.sum(dims), t.sum(dims), total, binary, numpy)


def _float(x: torch.Tensor) -> torch.Tensor:
    # float64 keeps counts beyond 2**24 exact; MPS has no float64.
    return x.float() if x.device.type == "mps" else x.double()


def _ratio(
    num: torch.Tensor,
    den: torch.Tensor,
    both_empty: torch.Tensor,
    empty_value: float,
    zero_division: float,
) -> torch.Tensor:
    num, den = _float(num), _float(den)
    score = num / den.clamp_min(1)
    score = score.masked_fill((den == 0) & ~both_empty, zero_division)
    return score.masked_fill(both_empty, empty_value)


def _finish(values: torch.Tensor, c: _Counts, reduction: str) -> torch.Tensor | np.ndarray:
    out = reduce(values, c.binary, reduction)
    return output(out if c.numpy else out.float(), c.numpy)


def confusion_counts(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    one_hot: bool = False,
    check_labels: bool = True,
) -> ConfusionCounts:
    """True/false positives and negatives per image and class, as exact integers.

    Useful to pool counts over a whole dataset before dividing (a "micro" average) or to
    build any ratio not offered here.

    Args:
        pred: prediction (see :func:`dice_score` for the accepted forms).
        target: ground truth of the same shape and kind.
        num_classes: ``None`` for binary input, or the number of classes of a label map.
        spatial_dims: how many trailing axes are spatial (required; see
            :func:`dice_score`).
        include_background: also count class 0.
        one_hot: inputs are ``(B, C, *spatial)`` per-class masks.
        check_labels: check that label maps hold only ``0..C-1``.

    Returns:
        :class:`ConfusionCounts` of ``int64`` tensors, each ``(B, K)``, on the inputs'
        device (``K = 1`` for binary input).

    Examples:
        >>> pred = torch.tensor([[1, 1, 0, 0]])
        >>> target = torch.tensor([[1, 0, 1, 0]])
        >>> confusion_counts(pred, target, spatial_dims=1)
        ConfusionCounts(tp=tensor([[1]]), fp=tensor([[1]]), fn=tensor([[1]]), tn=tensor([[1]]))
    """
    refuse_positional("confusion_counts", misplaced)
    c = _counts(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
        reduction="none",
    )
    fp = c.pred - c.tp
    fn = c.target - c.tp
    return ConfusionCounts(c.tp, fp, fn, c.total - c.tp - fp - fn)


def dice_score(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    empty_value: float = math.nan,
    reduction: Reduction = "mean",
    one_hot: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | np.ndarray:
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` per image and class, then averaged.

    Args:
        pred: prediction, a ``torch.Tensor`` or a ``numpy.ndarray``: a mask or label map
            ``(*spatial)``, ``(B, *spatial)`` or ``(B, 1, *spatial)``, or per-class masks
            ``(B, C, *spatial)`` (0/1 per channel) with ``one_hot=True``. Integer or bool;
            floats only if every value is a whole number (threshold probabilities first).
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional; a third
            positional argument raises a ``TypeError`` that names ``num_classes=``.
        num_classes: ``None`` (default) for binary input: every non-zero value is
            foreground, so instance maps work as masks. Otherwise the number of classes
            ``C >= 2`` of a label map, class 0 being background; labels must lie in
            ``0..C-1``. An int, or a NumPy or torch integer scalar.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).
            Required: it fixes how the leading axes read (see :doc:`/metrics`); a shape
            alone cannot tell a batch of slices ``(B, H, W)`` from a volume ``(D, H, W)``.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0
            (default ``False``: background dominates and inflates the average).
        one_hot: inputs carry a class axis of per-class 0/1 masks after the batch axis
            (one-hot, as MONAI and torchmetrics use, or multi-label; channels may overlap)
            instead of label maps.
        reduction: ``"mean"`` (default): each image's mean over its classes, then the
            mean over images, NaN entries left out (MONAI's ``"mean"``, torchmetrics'
            ``"macro"`` per image); ``"mean_batch"`` averages over images per class
            (``(K,)``, a scalar for binary input); ``"none"`` returns ``(B,)`` for binary
            input and ``(B, K)`` with ``K`` scored classes otherwise. An unbatched input
            counts as a batch of one.
        check_labels: check that label maps hold only ``0..C-1`` and one-hot masks only
            0 and 1 (default). The check reads back to the host once (the minima and
            maxima of both inputs together); pass ``False`` to keep a GPU pipeline free of
            synchronisation (out-of-range labels then match no class). Floating-point
            inputs are always checked for whole numbers, one more read: pass integer or
            bool tensors (``x.bool()``, ``x.long()``) to avoid it.
        empty_value: the score of a class absent from both ``pred`` and ``target`` in an
            image, so the ratio is ``0 / 0``. The default NaN leaves it out of the means
            (as nnU-Net and torchmetrics do): a class that is not there can
            neither be found nor missed. ``1.0`` counts it as perfect, ``0.0`` as a miss.
            When only one side is empty the score is 0.

    Returns:
        For torch input a ``float32`` tensor on the inputs' device; for NumPy input a
        ``float64`` array (a scalar for ``"mean"``). Values lie in ``[0, 1]`` (or are
        ``empty_value``).

    Raises:
        ValueError: shapes differ or have no spatial axis, ``num_classes < 2``, labels out
            of range, or an unknown ``reduction``.
        TypeError: floating-point inputs (threshold probabilities first).

    Examples:
        >>> pred = torch.tensor([[0, 1, 1, 2], [0, 0, 0, 0]])
        >>> target = torch.tensor([[0, 1, 2, 2], [0, 0, 0, 0]])
        >>> dice_score(pred, target, spatial_dims=1, reduction="none")  # image 2: empty
        tensor([1., nan])
        >>> dice_score(pred, target, num_classes=3, spatial_dims=1, reduction="none")
        tensor([[0.6667, 0.6667],
                [   nan,    nan]])
        >>> dice_score(pred, target, num_classes=3, spatial_dims=1)  # absent classes left out
        tensor(0.6667)
        >>> import numpy as np
        >>> float(dice_score(np.array([1, 1, 0]), np.array([1, 0, 0]), spatial_dims=1))
        0.6666666666666666
    """
    refuse_positional("dice_score", misplaced)
    c = _counts(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
        reduction=reduction,
    )
    both_empty = (c.pred + c.target) == 0
    return _finish(_ratio(2 * c.tp, c.pred + c.target, both_empty, empty_value, 0.0), c, reduction)


def iou_score(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    empty_value: float = math.nan,
    reduction: Reduction = "mean",
    one_hot: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | np.ndarray:
    """Intersection over union (Jaccard index) ``|P & T| / |P | T|`` per image and class,
    then averaged.

    It relates to Dice per image and class by ``IoU = D / (2 - D)``; averages of the two
    do not relate that simply.

    Args:
        pred: prediction, a ``torch.Tensor`` or a ``numpy.ndarray``: a mask or label map
            ``(*spatial)``, ``(B, *spatial)`` or ``(B, 1, *spatial)``, or per-class masks
            ``(B, C, *spatial)`` (0/1 per channel) with ``one_hot=True``. Integer or bool;
            floats only if every value is a whole number (threshold probabilities first).
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional; a third
            positional argument raises a ``TypeError`` that names ``num_classes=``.
        num_classes: ``None`` (default) for binary input: every non-zero value is
            foreground, so instance maps work as masks. Otherwise the number of classes
            ``C >= 2`` of a label map, class 0 being background; labels must lie in
            ``0..C-1``. An int, or a NumPy or torch integer scalar.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).
            Required: it fixes how the leading axes read (see :doc:`/metrics`); a shape
            alone cannot tell a batch of slices ``(B, H, W)`` from a volume ``(D, H, W)``.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0
            (default ``False``: background dominates and inflates the average).
        one_hot: inputs carry a class axis of per-class 0/1 masks after the batch axis
            (one-hot, as MONAI and torchmetrics use, or multi-label; channels may overlap)
            instead of label maps.
        reduction: ``"mean"`` (default): each image's mean over its classes, then the
            mean over images, NaN entries left out (MONAI's ``"mean"``, torchmetrics'
            ``"macro"`` per image); ``"mean_batch"`` averages over images per class
            (``(K,)``, a scalar for binary input); ``"none"`` returns ``(B,)`` for binary
            input and ``(B, K)`` with ``K`` scored classes otherwise. An unbatched input
            counts as a batch of one.
        check_labels: check that label maps hold only ``0..C-1`` and one-hot masks only
            0 and 1 (default). The check reads back to the host once (the minima and
            maxima of both inputs together); pass ``False`` to keep a GPU pipeline free of
            synchronisation (out-of-range labels then match no class). Floating-point
            inputs are always checked for whole numbers, one more read: pass integer or
            bool tensors (``x.bool()``, ``x.long()``) to avoid it.
        empty_value: the score of a class absent from both ``pred`` and ``target``
            (default NaN: left out of the means; ``1.0`` counts it as perfect).

    Returns:
        As :func:`dice_score`.

    Raises:
        ValueError, TypeError: as :func:`dice_score`.

    Examples:
        >>> pred = torch.tensor([[[True, True], [False, False]]])
        >>> target = torch.tensor([[[True, False], [True, False]]])
        >>> iou_score(pred, target, spatial_dims=2)  # 1 shared pixel / 3 in the union
        tensor(0.3333)
    """
    refuse_positional("iou_score", misplaced)
    c = _counts(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
        reduction=reduction,
    )
    union = c.pred + c.target - c.tp
    return _finish(_ratio(c.tp, union, union == 0, empty_value, 0.0), c, reduction)


def mean_iou(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = True,
    reduction: Reduction = "mean",
    one_hot: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | np.ndarray:
    """Mean IoU over classes per image, the semantic-segmentation convention, then over
    images.

    Unlike :func:`iou_score`, background is scored by default and a class absent from
    both ``pred`` and ``target`` in an image is left out of that image's mean (neither a
    free 1 nor a 0). Binary input is scored as the two classes background and foreground.

    Args:
        pred: prediction, a ``torch.Tensor`` or a ``numpy.ndarray``: a mask or label map
            ``(*spatial)``, ``(B, *spatial)`` or ``(B, 1, *spatial)``, or per-class masks
            ``(B, C, *spatial)`` (0/1 per channel) with ``one_hot=True``. Integer or bool;
            floats only if every value is a whole number (threshold probabilities first).
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional; a third
            positional argument raises a ``TypeError`` that names ``num_classes=``.
        num_classes: ``None`` (default) for binary input: every non-zero value is
            foreground, so instance maps work as masks. Otherwise the number of classes
            ``C >= 2`` of a label map, class 0 being background; labels must lie in
            ``0..C-1``. An int, or a NumPy or torch integer scalar.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).
            Required: it fixes how the leading axes read (see :doc:`/metrics`); a shape
            alone cannot tell a batch of slices ``(B, H, W)`` from a volume ``(D, H, W)``.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0
            (default ``True`` here: the semantic-segmentation convention scores every class).
        one_hot: inputs carry a class axis of per-class 0/1 masks after the batch axis
            (one-hot, as MONAI and torchmetrics use, or multi-label; channels may overlap)
            instead of label maps.
        reduction: ``"mean"`` (default): each image's mean over its classes, then the
            mean over images, NaN entries left out (MONAI's ``"mean"``, torchmetrics'
            ``"macro"`` per image); ``"mean_batch"`` averages over images per class
            (``(K,)``, a scalar for binary input); ``"none"`` returns ``(B,)`` for binary
            input and ``(B, K)`` with ``K`` scored classes otherwise. An unbatched input
            counts as a batch of one.
        check_labels: check that label maps hold only ``0..C-1`` and one-hot masks only
            0 and 1 (default). The check reads back to the host once (the minima and
            maxima of both inputs together); pass ``False`` to keep a GPU pipeline free of
            synchronisation (out-of-range labels then match no class). Floating-point
            inputs are always checked for whole numbers, one more read: pass integer or
            bool tensors (``x.bool()``, ``x.long()``) to avoid it.

    Returns:
        ``"mean"``: a scalar; ``"none"``: shape ``(B,)``, one mean IoU per image (NaN for an
        image where every scored class is absent). Types as :func:`dice_score`.

    Raises:
        ValueError, TypeError: as :func:`dice_score`.

    Examples:
        >>> pred = torch.tensor([[[1, 1], [0, 0]]])
        >>> target = torch.tensor([[[1, 0], [0, 0]]])
        >>> mean_iou(pred, target, spatial_dims=2)  # background 2/3, foreground 1/2
        tensor(0.5833)
    """
    refuse_positional("mean_iou", misplaced)
    check_reduction(reduction)
    c = _counts(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
        reduction="none",
    )
    if c.binary:  # score background and foreground: background counts follow from |P|, |T|
        bg_tp = c.total - c.pred - c.target + c.tp
        tp, size_p, size_t = (
            torch.cat([bg, fg], dim=1)
            for bg, fg in (
                (bg_tp, c.tp),
                (c.total - c.pred, c.pred),
                (c.total - c.target, c.target),
            )
        )
        first = 0 if include_background else 1
        c = c._replace(tp=tp[:, first:], pred=size_p[:, first:], target=size_t[:, first:])
    union = c.pred + c.target - c.tp
    per_class = _ratio(c.tp, union, union == 0, float("nan"), 0.0)
    per_image = per_class.nanmean(dim=1, keepdim=True)
    return _finish(per_image, c._replace(binary=True), reduction)


def precision_score(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    empty_value: float = math.nan,
    zero_division: float = 0.0,
    reduction: Reduction = "mean",
    one_hot: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | np.ndarray:
    """Precision (positive predictive value) ``|P & T| / |P|`` per image and class.

    Args:
        pred: prediction, a ``torch.Tensor`` or a ``numpy.ndarray``: a mask or label map
            ``(*spatial)``, ``(B, *spatial)`` or ``(B, 1, *spatial)``, or per-class masks
            ``(B, C, *spatial)`` (0/1 per channel) with ``one_hot=True``. Integer or bool;
            floats only if every value is a whole number (threshold probabilities first).
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional; a third
            positional argument raises a ``TypeError`` that names ``num_classes=``.
        num_classes: ``None`` (default) for binary input: every non-zero value is
            foreground, so instance maps work as masks. Otherwise the number of classes
            ``C >= 2`` of a label map, class 0 being background; labels must lie in
            ``0..C-1``. An int, or a NumPy or torch integer scalar.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).
            Required: it fixes how the leading axes read (see :doc:`/metrics`); a shape
            alone cannot tell a batch of slices ``(B, H, W)`` from a volume ``(D, H, W)``.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0
            (default ``False``: background dominates and inflates the average).
        one_hot: inputs carry a class axis of per-class 0/1 masks after the batch axis
            (one-hot, as MONAI and torchmetrics use, or multi-label; channels may overlap)
            instead of label maps.
        reduction: ``"mean"`` (default): each image's mean over its classes, then the
            mean over images, NaN entries left out (MONAI's ``"mean"``, torchmetrics'
            ``"macro"`` per image); ``"mean_batch"`` averages over images per class
            (``(K,)``, a scalar for binary input); ``"none"`` returns ``(B,)`` for binary
            input and ``(B, K)`` with ``K`` scored classes otherwise. An unbatched input
            counts as a batch of one.
        check_labels: check that label maps hold only ``0..C-1`` and one-hot masks only
            0 and 1 (default). The check reads back to the host once (the minima and
            maxima of both inputs together); pass ``False`` to keep a GPU pipeline free of
            synchronisation (out-of-range labels then match no class). Floating-point
            inputs are always checked for whole numbers, one more read: pass integer or
            bool tensors (``x.bool()``, ``x.long()``) to avoid it.
        empty_value: the score when ``pred`` and ``target`` are both empty (default NaN:
            left out of the means).
        zero_division: the score when ``pred`` is empty but ``target`` is not, so the
            ratio is ``0 / 0`` although objects were missed (default 0.0, as
            scikit-learn; ``float("nan")`` leaves such pairs out of the ``"mean"``).

    Returns:
        As :func:`dice_score`.

    Raises:
        ValueError, TypeError: as :func:`dice_score`.

    Examples:
        >>> pred = torch.tensor([[1, 1, 1, 0]])
        >>> target = torch.tensor([[1, 0, 0, 0]])
        >>> precision_score(pred, target, spatial_dims=1)  # 1 of 3 predicted voxels is right
        tensor(0.3333)
    """
    refuse_positional("precision_score", misplaced)
    c = _counts(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
        reduction=reduction,
    )
    both_empty = (c.pred + c.target) == 0
    return _finish(_ratio(c.tp, c.pred, both_empty, empty_value, zero_division), c, reduction)


def recall_score(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    include_background: bool = False,
    empty_value: float = math.nan,
    zero_division: float = 0.0,
    reduction: Reduction = "mean",
    one_hot: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | np.ndarray:
    """Recall (sensitivity) ``|P & T| / |T|`` per image and class.

    Args:
        pred: prediction, a ``torch.Tensor`` or a ``numpy.ndarray``: a mask or label map
            ``(*spatial)``, ``(B, *spatial)`` or ``(B, 1, *spatial)``, or per-class masks
            ``(B, C, *spatial)`` (0/1 per channel) with ``one_hot=True``. Integer or bool;
            floats only if every value is a whole number (threshold probabilities first).
        target: ground truth in the same layout.
        *misplaced: nothing: only ``pred`` and ``target`` are positional; a third
            positional argument raises a ``TypeError`` that names ``num_classes=``.
        num_classes: ``None`` (default) for binary input: every non-zero value is
            foreground, so instance maps work as masks. Otherwise the number of classes
            ``C >= 2`` of a label map, class 0 being background; labels must lie in
            ``0..C-1``. An int, or a NumPy or torch integer scalar.
        spatial_dims: how many trailing axes are spatial (2 for images, 3 for volumes).
            Required: it fixes how the leading axes read (see :doc:`/metrics`); a shape
            alone cannot tell a batch of slices ``(B, H, W)`` from a volume ``(D, H, W)``.
        include_background: with ``num_classes`` or ``one_hot``, also score class 0
            (default ``False``: background dominates and inflates the average).
        one_hot: inputs carry a class axis of per-class 0/1 masks after the batch axis
            (one-hot, as MONAI and torchmetrics use, or multi-label; channels may overlap)
            instead of label maps.
        reduction: ``"mean"`` (default): each image's mean over its classes, then the
            mean over images, NaN entries left out (MONAI's ``"mean"``, torchmetrics'
            ``"macro"`` per image); ``"mean_batch"`` averages over images per class
            (``(K,)``, a scalar for binary input); ``"none"`` returns ``(B,)`` for binary
            input and ``(B, K)`` with ``K`` scored classes otherwise. An unbatched input
            counts as a batch of one.
        check_labels: check that label maps hold only ``0..C-1`` and one-hot masks only
            0 and 1 (default). The check reads back to the host once (the minima and
            maxima of both inputs together); pass ``False`` to keep a GPU pipeline free of
            synchronisation (out-of-range labels then match no class). Floating-point
            inputs are always checked for whole numbers, one more read: pass integer or
            bool tensors (``x.bool()``, ``x.long()``) to avoid it.
        empty_value: the score when ``pred`` and ``target`` are both empty (default NaN:
            left out of the means).
        zero_division: the score when ``target`` is empty but ``pred`` is not (default
            0.0, as scikit-learn; ``float("nan")`` leaves such pairs out of the mean).

    Returns:
        As :func:`dice_score`.

    Raises:
        ValueError, TypeError: as :func:`dice_score`.

    Examples:
        >>> pred = torch.tensor([[1, 1, 1, 0]])
        >>> target = torch.tensor([[1, 0, 0, 0]])
        >>> recall_score(pred, target, spatial_dims=1)  # the one target voxel was found
        tensor(1.)
    """
    refuse_positional("recall_score", misplaced)
    c = _counts(
        pred,
        target,
        num_classes=num_classes,
        spatial_dims=spatial_dims,
        include_background=include_background,
        one_hot=one_hot,
        check_labels=check_labels,
        reduction=reduction,
    )
    both_empty = (c.pred + c.target) == 0
    return _finish(_ratio(c.tp, c.target, both_empty, empty_value, zero_division), c, reduction)


def pixel_accuracy(
    pred: Array,
    target: Array,
    *misplaced: object,
    num_classes: int | None = None,
    spatial_dims: int | None = None,
    reduction: Reduction = "mean",
    one_hot: bool = False,
    check_labels: bool = True,
) -> torch.Tensor | np.ndarray:
    """Fraction of voxels labelled correctly, per image.

    For binary input the masks must agree; for a label map the labels must be equal; for
    one-hot input every channel must agree. Background counts: a voxel both call
    background is correct.

    Args:
        pred: prediction (see :func:`dice_score` for the accepted forms).
        target: ground truth of the same shape and kind.
        num_classes: ``None`` for binary input, or the number of classes of a label map
            (only used to check the labels).
        spatial_dims: how many trailing axes are spatial (required; see
            :func:`dice_score`).
        reduction: ``"mean"`` or ``"mean_batch"`` (both a scalar: one value per image)
            or ``"none"`` (shape ``(B,)``).
        one_hot: inputs are ``(B, C, *spatial)`` per-class masks.
        check_labels: check that label maps hold only ``0..C-1``.

    Returns:
        As :func:`dice_score`, in ``[0, 1]``.

    Examples:
        >>> pred = torch.tensor([[0, 1, 2, 2]])
        >>> target = torch.tensor([[0, 1, 1, 2]])
        >>> pixel_accuracy(pred, target, num_classes=3, spatial_dims=1)
        tensor(0.7500)
    """
    refuse_positional("pixel_accuracy", misplaced)
    check_reduction(reduction)
    k = num_classes_value(num_classes, one_hot)
    p, t, numpy = layout_pair(pred, target, spatial_dims, one_hot)
    if k is not None:  # label maps: compare the labels themselves
        if check_labels:
            check_label_range(p, t, k)
        right = p == t
    else:  # masks (every channel of one-hot input) must agree on foreground
        if one_hot and check_labels:
            check_mask_values(p, t)
        right = (p != 0) == (t != 0)
        if one_hot:
            right = right.all(dim=1)
    right = right.flatten(1)
    acc = _float(right.sum(1)) / right.shape[1]
    out = reduce(acc.unsqueeze(1), True, reduction)
    return output(out if numpy else out.float(), numpy)
