"""The loss functions: pure functions over logits ``(B, C, *spatial)`` and a target.

Each validates its options and inputs (see :mod:`attnunet.losses` for the target forms),
computes in the logits' dtype (at least float32) on their device, and is differentiable
with respect to the logits. The modules of :mod:`attnunet.losses.modules` store the
options and call these functions.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from attnunet.losses._checks import (
    _DS_SCHEMES,
    _NEAREST_MODES,
    _REDUCTIONS,
    Activation,
    DeepSupervisionWeights,
    NearestMode,
    Reduction,
    Weights,
    _check_choice,
    _check_ignore_index,
    _check_logits,
    _check_number,
    _check_per_image,
    _check_smoothing,
    _class_weights,
    _compute_dtype,
    _ds_weights,
    _resolve_activation,
)
from attnunet.losses._targets import _dense_target, _mask_ignored, _parse_target

__all__ = [
    "bce_loss",
    "ce_loss",
    "deep_supervision_loss",
    "deep_supervision_weights",
    "dice_ce_loss",
    "dice_loss",
    "iou_loss",
    "raunet_loss",
    "resize_nearest",
]


def _activate(logits: torch.Tensor, *, activation: str | None) -> torch.Tensor:
    x = logits.to(_compute_dtype(logits))
    if activation == "sigmoid":
        return torch.sigmoid(x)
    if activation == "softmax":
        return torch.softmax(x, dim=1)
    return x


def _reduce(values: torch.Tensor, *, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


# ------------------------------------------------------------------ overlap losses


def _overlap_sums(
    probs: torch.Tensor, target: torch.Tensor, *, squared: bool, batch: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(I, P + G)`` per image and class ``(B, K)``, or per class ``(K,)`` with ``batch``.

    ``I = sum p g``; ``P + G = sum p + sum g``, or ``sum p^2 + sum g^2`` when ``squared``.
    """
    dims = [0, *range(2, probs.dim())] if batch else list(range(2, probs.dim()))
    inter = (probs * target).sum(dims)
    if squared:
        total = (probs * probs).sum(dims) + (target * target).sum(dims)
    else:
        total = probs.sum(dims) + target.sum(dims)
    return inter, total


def _prepare(
    logits: torch.Tensor, target: torch.Tensor, *, activation: Activation, ignore_index: int | None
) -> tuple[torch.Tensor, str | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Validate ``logits`` and ``target``; return the logits in the compute dtype, the
    resolved activation and the parsed target ``(labels, dense, valid)``."""
    _check_logits(logits)
    act = _resolve_activation(activation, channels=logits.shape[1])
    labels, dense, valid = _parse_target(target, logits, ignore_index=ignore_index)
    return logits.to(_compute_dtype(logits)), act, labels, dense, valid


def _overlap_terms(
    probs: torch.Tensor,
    g: torch.Tensor,
    *,
    kind: Literal["dice", "iou"],
    weights: torch.Tensor | None,
    include_background: bool,
    squared: bool,
    smooth_nr: float,
    smooth_dr: float,
    batch: bool,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The unweighted loss terms ``(B, K)`` / ``(K,)`` and the weights of the scored
    classes ``(K,)`` (or ``None``). Ignored voxels (``valid`` False) leave both the
    probabilities and the target, so they count in no sum."""
    probs, g = _mask_ignored(probs, valid), _mask_ignored(g, valid)
    if not include_background and probs.shape[1] > 1:
        probs, g = probs[:, 1:], g[:, 1:]
        weights = None if weights is None else weights[1:]
    inter, total = _overlap_sums(probs, g, squared=bool(squared), batch=bool(batch))
    if kind == "dice":
        score = (2.0 * inter + smooth_nr) / (total + smooth_dr)
    else:
        score = (inter + smooth_nr) / (total - inter + smooth_dr)
    return 1.0 - score, weights


def _overlap_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    kind: Literal["dice", "iou"],
    activation: Activation,
    include_background: bool,
    squared: bool,
    smooth_nr: float,
    smooth_dr: float,
    class_weights: Weights,
    batch: bool,
    reduction: str,
    ignore_index: int | None,
) -> torch.Tensor:
    _check_choice("reduction", reduction, _REDUCTIONS)
    _check_smoothing(smooth_nr, smooth_dr)
    ignore_index = _check_ignore_index(ignore_index)
    x, act, labels, dense, valid = _prepare(
        logits, target, activation=activation, ignore_index=ignore_index
    )
    channels = x.shape[1]
    g = _dense_target(labels, dense, channels=channels, dtype=x.dtype)
    terms, weights = _overlap_terms(
        _activate(x, activation=act),
        g,
        kind=kind,
        weights=_class_weights(class_weights, channels=channels, like=x),
        include_background=include_background,
        squared=squared,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        valid=valid,
    )
    return _reduce(_weighted(terms, weights), reduction=reduction)


def _weighted(terms: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    return terms if weights is None else terms * weights


def dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: Activation = "auto",
    include_background: bool = True,
    squared: bool = False,
    smooth_nr: float = 1.0,
    smooth_dr: float = 1.0,
    class_weights: Weights = None,
    batch: bool = False,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Soft Dice loss ``1 - (2 I + smooth_nr) / (P + G + smooth_dr)`` per image and class.

    With probabilities ``p`` (the activated logits) and target ``g`` over the spatial
    axes of one image and class: ``I = sum p g``, ``P = sum p``, ``G = sum g`` (Milletari
    et al., 2016), or ``P = sum p^2``, ``G = sum g^2`` with ``squared=True`` (the
    squared-denominator Sorensen form of V-Net). The same definition as MONAI's
    ``DiceLoss`` (``squared`` is its ``squared_pred``, ``batch`` its ``batch``).

    **Empty targets.** ``smooth_dr > 0`` keeps the denominator positive, so the loss is
    never NaN. An image (and class) with an empty target scores
    ``1 - smooth_nr / (P + smooth_dr)``: with the defaults (both 1) that is
    ``P / (P + 1)``, 0 for an empty prediction and rising towards 1 with the predicted
    volume ``P``, so an empty image still teaches "predict nothing" with a bounded loss.
    With tiny smoothing (e.g. MONAI's 1e-5) the same image scores almost 1 unless the
    prediction is nearly exactly empty; ``batch=True`` is the usual remedy. On non-empty
    targets of more than a few voxels the smoothing of 1 is negligible.

    Args:
        logits: model output ``(B, C, *spatial)``, float.
        target: label map ``(B, *spatial)`` or ``(B, 1, *spatial)`` of integers in
            ``0..C-1`` (``0..1`` when ``C = 1``; ``ignore_index`` exempt), or a float
            one-hot / multi-hot / probabilistic target of shape ``(B, C, *spatial)``
            with values in ``[0, 1]``.
        activation: ``"auto"`` (default): sigmoid for one channel, softmax over channels
            otherwise; ``"sigmoid"`` (independent channels, multi-label); ``"softmax"``;
            or ``None`` when ``logits`` already hold probabilities.
        include_background: score channel 0 too (default ``True``, as MONAI: right for
            sigmoid outputs whose channel 0 is a real class). Pass ``False`` with softmax
            outputs whose channel 0 is background (as nnU-Net does). Ignored for a
            single channel, which is always scored.
        squared: use ``sum p^2 + sum g^2`` in the denominator (default ``False``).
        smooth_nr: added to the numerator ``2 I`` (default 1.0, must be ``>= 0``).
        smooth_dr: added to the denominator (default 1.0, must be ``> 0``). The loss lies
            in ``[0, 1]`` whenever ``smooth_nr <= smooth_dr``.
        class_weights: one non-negative number per logits channel ``C`` (channel 0
            included even when it is not scored); multiplies each class's loss before
            the reduction. Weights are not normalised (as in MONAI): all-ones weights
            change nothing, so keep their mean near 1 to keep the loss scale.
        batch: sum ``I``, ``P`` and ``G`` over the batch too before the ratio (MONAI's
            batch Dice), one score per class; steadier with small or empty structures.
        reduction: ``"mean"`` (default) or ``"sum"`` over images and classes, or
            ``"none"``.
        ignore_index: a label value (it may lie outside ``0..C-1``, e.g. 255 or -100)
            whose voxels are left out: their probabilities and one-hot target are
            zeroed, so they count in none of ``I``, ``P``, ``G`` and get a zero
            gradient. Label maps only (a dense target raises ``ValueError``); default
            ``None``.

    Shape:
        ``logits`` ``(B, C, *S)``; ``target`` ``(B, *S)``, ``(B, 1, *S)`` or
        ``(B, C, *S)``. Output: a scalar, or with ``reduction="none"`` ``(B, K)`` per
        image and scored class (``(K,)`` with ``batch=True``), ``K = C`` or ``C - 1``.

    Returns:
        The loss, in the logits' dtype (at least float32), on their device.

    Raises:
        ValueError: bad shapes (the message says which shapes work), labels outside
            ``0..C-1`` or a dense target outside ``[0, 1]`` or NaN (the message names the
            range found), ``ignore_index`` with a dense target, ``softmax`` over one
            channel, a non-positive ``smooth_dr``, wrong ``class_weights`` or an unknown
            option.
        TypeError: non-tensor or integer ``logits``, a non-integer ``ignore_index``.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[0.5, 1.0, 0.0, 0.5]]])  # (B=1, C=1, W=4)
        >>> target = torch.tensor([[1, 1, 0, 0]])
        >>> # I = 1.5, P = 2, G = 2: 1 - (3 + 1) / (4 + 1)
        >>> dice_loss(probs, target, activation=None)
        tensor(0.2000)
        >>> unsure = torch.tensor([[1, 1, 0, -100]])  # voxel 3 left out
        >>> # I = 1.5, P = 1.5, G = 2: 1 - (3 + 1) / (3.5 + 1)
        >>> dice_loss(probs, unsure, activation=None, ignore_index=-100)
        tensor(0.1111)
        >>> mask = torch.tensor([[[0.0, 255.0, 255.0, 0.0]]])  # a 0/255 mask, as floats
        >>> dice_loss(probs, mask, activation=None)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ValueError: a float target ... must lie in [0, 1], got values in [0, 255]; ...
    """
    return _overlap_loss(
        logits,
        target,
        kind="dice",
        activation=activation,
        include_background=include_background,
        squared=squared,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        class_weights=class_weights,
        batch=batch,
        reduction=reduction,
        ignore_index=ignore_index,
    )


def iou_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    activation: Activation = "auto",
    include_background: bool = True,
    squared: bool = False,
    smooth_nr: float = 1.0,
    smooth_dr: float = 1.0,
    class_weights: Weights = None,
    batch: bool = False,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Soft IoU (Jaccard) loss ``1 - (I + smooth_nr) / (P + G - I + smooth_dr)``.

    ``I``, ``P`` and ``G`` as in :func:`dice_loss` (``squared`` squares ``p`` and ``g`` in
    ``P`` and ``G``). Without smoothing, per image and class, ``IoU = D / (2 - D)`` for
    the soft Dice score ``D``. MONAI's ``DiceLoss(jaccard=True, smooth_nr=s,
    smooth_dr=t)`` equals this loss with ``smooth_nr=s/2, smooth_dr=t/2`` (it doubles
    numerator and denominator).

    An empty target scores ``1 - smooth_nr / (P + smooth_dr)``, never NaN (see
    :func:`dice_loss`).

    Args:
        logits: model output ``(B, C, *spatial)``, float.
        target: label map or dense target, as in :func:`dice_loss`.
        activation: ``"auto"``, ``"sigmoid"``, ``"softmax"`` or ``None`` (see
            :func:`dice_loss`).
        include_background: score channel 0 too (default ``True``).
        squared: squared terms in ``P`` and ``G`` (default ``False``).
        smooth_nr: added to the numerator (default 1.0, ``>= 0``).
        smooth_dr: added to the denominator (default 1.0, ``> 0``).
        class_weights: one number per logits channel (see :func:`dice_loss`).
        batch: pool the sums over the batch before the ratio.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: a label value whose voxels count in no sum (see
            :func:`dice_loss`), or ``None``.

    Shape:
        As :func:`dice_loss`.

    Returns:
        The loss, in ``[0, 1]`` when ``smooth_nr <= smooth_dr``.

    Raises:
        ValueError: as :func:`dice_loss`.
        TypeError: as :func:`dice_loss`.

    Examples:
        >>> import torch
        >>> probs = torch.tensor([[[0.5, 1.0, 0.0, 0.5]]])
        >>> target = torch.tensor([[1, 1, 0, 0]])
        >>> # I = 1.5, union = 2 + 2 - 1.5 = 2.5: 1 - (1.5 + 1) / (2.5 + 1) = 2/7
        >>> iou_loss(probs, target, activation=None)
        tensor(0.2857)
    """
    return _overlap_loss(
        logits,
        target,
        kind="iou",
        activation=activation,
        include_background=include_background,
        squared=squared,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        class_weights=class_weights,
        batch=batch,
        reduction=reduction,
        ignore_index=ignore_index,
    )


# ------------------------------------------------------------------ cross-entropy


def _ce_terms(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    dense: torch.Tensor | None,
    *,
    weights: torch.Tensor | None,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-voxel weighted cross-entropy ``-sum_c w_c g_c log p_c`` and its normaliser
    ``sum_c w_c g_c``, both ``(B, *S)``; both 0 at ignored voxels (``valid`` False), as
    PyTorch's ``ignore_index``. ``logits`` are already in the compute dtype."""
    if labels is not None:
        loss = F.cross_entropy(logits, labels, weight=weights, reduction="none")
        norm = torch.ones_like(loss) if weights is None else weights[labels]
        if valid is not None:
            loss, norm = loss.masked_fill(~valid, 0.0), norm.masked_fill(~valid, 0.0)
        return loss, norm
    assert dense is not None
    g = dense if weights is None else dense * weights.view(1, -1, *[1] * (dense.dim() - 2))
    return -(g * F.log_softmax(logits, dim=1)).sum(1), g.sum(1)


def _ce_mean(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    dense: torch.Tensor | None,
    *,
    weights: torch.Tensor | None,
    valid: torch.Tensor | None,
    per_image: bool,
) -> torch.Tensor:
    """The weighted cross-entropy mean (see :func:`ce_loss`) over all voxels, or over
    each image's (``per_image``, ``(B,)``)."""
    loss, norm = _ce_terms(logits, labels, dense, weights=weights, valid=valid)
    if per_image:
        return _safe_ratio(loss.flatten(1).sum(1), norm.flatten(1).sum(1))
    return _safe_ratio(loss.sum(), norm.sum())


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with ``0 / 0 = 0`` (only when every weight of the present classes
    is 0), keeping finite gradients."""
    return num / den.masked_fill(den == 0, 1.0)


def _bce_mean(bce: torch.Tensor, valid: torch.Tensor | None, *, per_image: bool) -> torch.Tensor:
    """Mean of the per-element BCE ``(B, C, *S)`` over all elements (``per_image``: over
    each image's), ignored voxels (already zeroed) left out of the count too."""
    if valid is None:
        return bce.flatten(1).mean(1) if per_image else bce.mean()
    count = valid.to(bce.dtype) * bce.shape[1]
    if per_image:
        return _safe_ratio(bce.flatten(1).sum(1), count.flatten(1).sum(1))
    return _safe_ratio(bce.sum(), count.sum())


def _bce_terms(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    weights: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
    """Per-element binary cross-entropy on logits ``(B, C, *S)``, channel weights applied."""
    shape = [1, -1, *[1] * (logits.dim() - 2)]
    return F.binary_cross_entropy_with_logits(
        logits,
        target,
        weight=None if weights is None else weights.view(shape),
        pos_weight=None if pos_weight is None else pos_weight.view(shape[1:]),
        reduction="none",
    )


def ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: Weights = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Softmax cross-entropy over the channel axis, for label maps or dense targets.

    Per voxel ``l = -sum_c w_c g_c log softmax(logits)_c``. The ``"mean"`` divides the sum
    of ``l`` by the sum of ``w_c g_c`` over voxels: for label maps that is exactly
    :func:`torch.nn.functional.cross_entropy`'s weighted mean, and a label map and its
    one-hot encoding give the same loss. (PyTorch divides by the voxel count for
    probabilistic targets instead, so its two forms differ once weights are used.) If
    every present class has weight 0 the mean is 0, not NaN.

    With ``ignore_index`` the ignored voxels have ``l = 0`` and leave the normaliser, so
    the ``"mean"`` is ``sum l / sum w_y`` over the other voxels: exactly
    ``F.cross_entropy(..., weight=w, ignore_index=...)``, except that a target with
    every voxel ignored gives 0 where PyTorch gives NaN.

    Args:
        logits: ``(B, C, *spatial)`` with ``C >= 2`` (use :func:`bce_loss` for one
            channel).
        target: label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` of integers in
            ``0..C-1`` (``ignore_index`` exempt), or a float one-hot or probabilistic
            target ``(B, C, *spatial)`` with values in ``[0, 1]``.
        class_weights: one non-negative number per class, or ``None``.
        reduction: ``"mean"`` (default, weighted as above), ``"sum"`` or ``"none"``
            (per voxel, ``w`` applied, 0 at ignored voxels, as PyTorch).
        ignore_index: a label value (e.g. 255 or -100; it may lie outside
            ``0..C-1``) whose voxels are left out, or ``None`` (default). Label maps
            only.

    Shape:
        Output: a scalar, or ``(B, *spatial)`` with ``reduction="none"``.

    Returns:
        The loss in the logits' dtype (at least float32).

    Raises:
        ValueError: one channel, bad shapes, labels or dense values out of range (see
            :func:`dice_loss`), ``ignore_index`` with a dense target, bad weights or
            ``reduction``.
        TypeError: non-tensor or integer ``logits``, a non-integer ``ignore_index``.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])  # (B=1, C=2, W=2)
        >>> # voxel 0: -log(e^0 / (e^0 + e^0)) = log 2; voxel 1: -log(e^2 / (e^2 + 1))
        >>> round(ce_loss(logits, torch.tensor([[1, 0]])).item(), 4)
        0.41
        >>> round(ce_loss(logits, torch.tensor([[1, 255]]), ignore_index=255).item(), 4)
        0.6931
    """
    _check_logits(logits)
    _check_choice("reduction", reduction, _REDUCTIONS)
    if logits.shape[1] == 1:
        raise ValueError(
            "ce_loss needs C >= 2 channels (softmax over one channel is constant); use "
            "bce_loss for a single-channel binary output"
        )
    ignore_index = _check_ignore_index(ignore_index)
    labels, dense, valid = _parse_target(target, logits, ignore_index=ignore_index)
    x = logits.to(_compute_dtype(logits))
    weights = _class_weights(class_weights, channels=logits.shape[1], like=x)
    loss, norm = _ce_terms(x, labels, dense, weights=weights, valid=valid)
    if reduction == "mean":
        return _safe_ratio(loss.sum(), norm.sum())
    return _reduce(loss, reduction=reduction)


def bce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    class_weights: Weights = None,
    pos_weight: Weights = None,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """Binary cross-entropy on logits (sigmoid), per channel, for label maps or dense
    targets.

    One channel is a binary output (label map of 0/1 or a float mask); several channels
    are independent (multi-label): a label map is one-hot encoded, a float target is
    used as given. A thin wrapper of
    :func:`torch.nn.functional.binary_cross_entropy_with_logits`.

    Args:
        logits: ``(B, C, *spatial)``, any ``C >= 1``.
        target: label map ``(B, *spatial)`` / ``(B, 1, *spatial)`` (``0..1`` for one
            channel, ``0..C-1`` otherwise; ``ignore_index`` exempt) or a float target
            ``(B, C, *spatial)`` in ``[0, 1]``.
        class_weights: one non-negative number per channel; multiplies that channel's
            loss (PyTorch's ``weight``: the ``"mean"`` still divides by the element
            count).
        pos_weight: one non-negative number per channel weighting the positive term
            (PyTorch's ``pos_weight``), e.g. ``#negatives / #positives``.
        reduction: ``"mean"`` (default) or ``"sum"`` over all elements, or ``"none"``.
        ignore_index: a label value whose voxels are left out (every channel there is
            0 and out of the ``"mean"``'s count), or ``None`` (default). Label maps only.

    Shape:
        Output: a scalar, or ``(B, C, *spatial)`` with ``reduction="none"``.

    Returns:
        The loss in the logits' dtype (at least float32).

    Raises:
        ValueError: bad shapes, labels or dense values out of range (a 0/255 float mask
            included; see :func:`dice_loss`), ``ignore_index`` with a dense target, bad
            weights or ``reduction``.
        TypeError: non-tensor or integer ``logits``, a non-integer ``ignore_index``.

    Examples:
        >>> import torch
        >>> logits = torch.zeros(1, 1, 2, 2)
        >>> round(bce_loss(logits, torch.tensor([[[1, 0], [0, 1]]])).item(), 4)  # log 2
        0.6931
    """
    _check_logits(logits)
    _check_choice("reduction", reduction, _REDUCTIONS)
    ignore_index = _check_ignore_index(ignore_index)
    labels, dense, valid = _parse_target(target, logits, ignore_index=ignore_index)
    x = logits.to(_compute_dtype(logits))
    channels = logits.shape[1]
    g = _dense_target(labels, dense, channels=channels, dtype=x.dtype)
    weights = _class_weights(class_weights, channels=channels, like=x)
    pos = _class_weights(pos_weight, channels=channels, like=x)
    loss = _mask_ignored(_bce_terms(x, g, weights=weights, pos_weight=pos), valid)
    if reduction == "mean" and valid is not None:
        return _bce_mean(loss, valid, per_image=False)
    return _reduce(loss, reduction=reduction)


# ------------------------------------------------------------------ combinations


def dice_ce_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    activation: Literal["auto", "sigmoid", "softmax"] = "auto",
    include_background: bool = True,
    squared: bool = False,
    smooth_nr: float = 1.0,
    smooth_dr: float = 1.0,
    class_weights: Weights = None,
    batch: bool = False,
    reduction: Reduction = "mean",
    ignore_index: int | None = None,
) -> torch.Tensor:
    """``lambda_dice * dice_loss + lambda_ce * cross-entropy``.

    The cross-entropy matches the activation: softmax cross-entropy (:func:`ce_loss`) for
    ``"softmax"``, binary cross-entropy per channel (:func:`bce_loss`) for
    ``"sigmoid"``; it always covers every channel, background included. ``class_weights``
    weight both terms (Dice: the scored classes' weights; CE: PyTorch's class weights).
    With ``reduction="mean"`` and softmax this equals MONAI's ``DiceCELoss`` with the same
    ``weight``, ``lambda_dice`` and ``lambda_ce`` (for a single sigmoid channel MONAI uses
    ``weight`` as BCE's ``pos_weight`` instead).

    Args:
        logits: ``(B, C, *spatial)`` logits (not probabilities: the CE needs them).
        target: label map or dense target, as in :func:`dice_loss`.
        lambda_dice: weight of the Dice term (default 1.0, ``>= 0``).
        lambda_ce: weight of the cross-entropy term (default 1.0, ``>= 0``).
        activation: ``"auto"`` (sigmoid/BCE for one channel, softmax/CE otherwise),
            ``"sigmoid"`` or ``"softmax"``.
        include_background: whether the Dice term scores channel 0 (default ``True``).
        squared: squared Dice denominator.
        smooth_nr: Dice numerator smoothing (default 1.0).
        smooth_dr: Dice denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel, or ``None``.
        batch: batch Dice (pool the sums over the batch).
        reduction: ``"mean"`` (default): Dice mean over images and classes plus the CE
            mean over voxels. ``"none"``: one loss per image, ``(B,)``: the image's
            Dice mean over classes plus its own CE mean; ``"sum"``: their sum. The mean
            of ``"none"`` equals ``"mean"`` without class weights (with them the CE
            normaliser is per image rather than per batch). ``"none"`` and ``"sum"``
            need ``batch=False``.
        ignore_index: a label value whose voxels count in neither term (Dice: see
            :func:`dice_loss`; CE: see :func:`ce_loss`; BCE: out of the mean's count),
            or ``None`` (default). Label maps only.

    Shape:
        Output: a scalar, or ``(B,)`` with ``reduction="none"``.

    Returns:
        The loss, on the logits' device.

    Raises:
        ValueError: as :func:`dice_loss` (targets out of range included), negative
            lambdas, ``activation=None``, or ``reduction`` ``"none"``/``"sum"`` with
            ``batch=True``.
        TypeError: as :func:`dice_loss`.

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]])  # (B=1, C=2, W=2)
        >>> target = torch.tensor([[1, 0]])
        >>> total = dice_ce_loss(logits, target, lambda_dice=0.5)
        >>> parts = 0.5 * dice_loss(logits, target) + ce_loss(logits, target)
        >>> torch.allclose(total, parts)
        True
        >>> unsure = torch.tensor([[1, -100]])  # voxel 1 left out of both terms
        >>> total = dice_ce_loss(logits, unsure, ignore_index=-100)
        >>> torch.allclose(total, dice_ce_loss(logits[..., :1], unsure[..., :1]))
        True
    """
    _check_logits(logits)
    _check_choice("reduction", reduction, _REDUCTIONS)
    if activation is None:
        raise ValueError(
            "dice_ce_loss needs logits for its cross-entropy term: activation must be "
            "'auto', 'sigmoid' or 'softmax', not None"
        )
    lambda_dice = _check_number("lambda_dice", lambda_dice, low=0.0, strict=False)
    lambda_ce = _check_number("lambda_ce", lambda_ce, low=0.0, strict=False)
    _check_per_image(batch=batch, reduction=reduction)
    _check_smoothing(smooth_nr, smooth_dr)
    ignore_index = _check_ignore_index(ignore_index)
    x, act, labels, dense, valid = _prepare(
        logits, target, activation=activation, ignore_index=ignore_index
    )
    channels = x.shape[1]
    g = _dense_target(labels, dense, channels=channels, dtype=x.dtype)
    weights = _class_weights(class_weights, channels=channels, like=x)
    terms, dice_w = _overlap_terms(
        _activate(x, activation=act),
        g,
        kind="dice",
        weights=weights,
        include_background=include_background,
        squared=squared,
        smooth_nr=smooth_nr,
        smooth_dr=smooth_dr,
        batch=batch,
        valid=valid,
    )
    dice = _weighted(terms, dice_w)
    per_image = reduction != "mean"
    if act == "softmax":
        ce = _ce_mean(x, labels, dense, weights=weights, valid=valid, per_image=per_image)
    else:
        bce = _mask_ignored(_bce_terms(x, g, weights=weights, pos_weight=None), valid)
        ce = _bce_mean(bce, valid, per_image=per_image)
    if reduction == "mean":
        return lambda_dice * dice.mean() + lambda_ce * ce
    return _reduce(lambda_dice * dice.mean(1) + lambda_ce * ce, reduction=reduction)


def raunet_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    *,
    dice_weight: float = 0.2,
    smooth: float = 1e-15,
    include_background: bool = True,
    batch: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """RAUNet's loss (Ni et al., 2019, "CELDice"):
    ``(1 - w) NLL(log_softmax) - w sum_c log((2 I_c + eps) / (U_c + eps))``.

    ``NLL`` is the mean negative log-likelihood of the target class over voxels,
    ``I_c = sum p_c g_c`` and ``U_c = sum p_c + sum g_c`` with ``p = softmax(logits)``;
    like the reference, the sums run over the whole batch (``batch=True``) and every
    class, background included, and ``eps = 1e-15``. The loss is never negative.

    **One channel.** A single logit ``z`` is read in the equivalent binary form: the
    two-class softmax of ``(0, z)``, i.e. foreground ``sigmoid(z)`` and background
    ``1 - sigmoid(z)``. The NLL is then the binary cross-entropy and the Dice sum runs
    over foreground and background (foreground only with ``include_background=False``);
    the value equals this loss on the two-channel logits ``(0, z)``.

    **Empty classes.** ``smooth > 0`` keeps every ratio positive, so the loss is finite
    (never NaN); but a class absent from the target (of the whole batch with
    ``batch=True``) adds ``w log((U_c + eps) / eps)``, about ``w (34.5 + log U_c)``
    with the reference ``eps``: a strong push to predict it nowhere. Pass ``smooth=1.0``
    for a gentler, ``log(U_c + 1)``-sized term.

    Args:
        logits: ``(B, C, *spatial)`` logits (the reference model returned
            ``log_softmax``; log-probabilities work too, as softmax leaves them as is).
        target: label map or dense target, as in :func:`dice_loss`.
        dice_weight: ``w`` in ``[0, 1]`` (default 0.2, the reference's).
        smooth: ``eps`` in numerator and denominator (default 1e-15, the reference's;
            must be ``> 0``).
        include_background: sum the log-Dice over channel 0 too (default ``True``, as the
            reference).
        batch: pool the Dice sums over the batch (default ``True``, as the reference);
            ``False`` gives one loss per image.
        reduction: ``"mean"`` (default); ``"sum"`` and ``"none"`` (per image, ``(B,)``)
            need ``batch=False``.

    Shape:
        Output: a scalar, or ``(B,)`` with ``reduction="none"``.

    Returns:
        The loss, on the logits' device.

    Raises:
        ValueError: bad shapes, labels or dense values out of range (see
            :func:`dice_loss`), ``dice_weight`` outside ``[0, 1]``, a
            non-positive ``smooth``, or ``"sum"``/``"none"`` with ``batch=True``.
        TypeError: non-tensor or integer ``logits``.

    Examples:
        >>> import math, torch
        >>> # probabilities (0.75, 0.25) and (0.5, 0.5) as logits; labels 0 and 1
        >>> logits = torch.tensor([[[0.75, 0.5], [0.25, 0.5]]]).log()  # (B=1, C=2, W=2)
        >>> nll = -(math.log(0.75) + math.log(0.5)) / 2
        >>> dice0, dice1 = 1.5 / 2.25, 1.0 / 1.75  # 2 I / U per class
        >>> expected = 0.8 * nll - 0.2 * (math.log(dice0) + math.log(dice1))
        >>> abs(raunet_loss(logits, torch.tensor([[0, 1]])).item() - expected) < 1e-6
        True
    """
    _check_logits(logits)
    _check_choice("reduction", reduction, _REDUCTIONS)
    w = _check_number("dice_weight", dice_weight, low=0.0, strict=False)
    if w > 1:
        raise ValueError(f"dice_weight must lie in [0, 1], got {dice_weight!r}")
    _check_number("smooth", smooth, low=0.0, strict=True)
    _check_per_image(batch=batch, reduction=reduction)
    labels, dense, _ = _parse_target(target, logits, ignore_supported=False)
    x = logits.to(_compute_dtype(logits))
    if x.shape[1] == 1:
        # two-class softmax of (0, z): background 1 - sigmoid(z), foreground sigmoid(z)
        log_probs = torch.cat([F.logsigmoid(-x), F.logsigmoid(x)], dim=1)
        fg = _dense_target(labels, dense, channels=1, dtype=x.dtype)
        g = torch.cat([1.0 - fg, fg], dim=1)
    else:
        log_probs = F.log_softmax(x, dim=1)
        g = _dense_target(labels, dense, channels=x.shape[1], dtype=x.dtype)
    nll = -(g * log_probs).sum(1).flatten(1).mean(1)  # (B,)
    probs = log_probs.exp()
    if not include_background:
        probs, g = probs[:, 1:], g[:, 1:]
    inter, total = _overlap_sums(probs, g, squared=False, batch=bool(batch))
    log_dice = torch.log((2.0 * inter + smooth) / (total + smooth)).sum(-1)
    if batch:
        return (1.0 - w) * nll.mean() - w * log_dice
    return _reduce((1.0 - w) * nll - w * log_dice, reduction=reduction)


# ------------------------------------------------------------------ deep supervision


def deep_supervision_weights(
    n: int, *, scheme: Literal["nnunet", "same", "exponential"] = "nnunet"
) -> list[float]:
    """Per-output weights for ``n`` deep-supervision outputs, summing to 1.

    Index 0 is the first output of the model's list (full resolution); larger indices
    are coarser.

    Args:
        n: number of outputs, ``>= 1``.
        scheme: ``"same"``: ``1/n`` each; ``"exponential"``: proportional to
            ``1, 1/2, 1/4, ...``; ``"nnunet"`` (default): the same halving, but the last
            (coarsest) output gets weight 0, as nnU-Net does (for ``n = 1``: ``[1.0]``).
            By name only.

    Returns:
        A list of ``n`` floats.

    Raises:
        ValueError: ``n < 1`` or an unknown scheme.

    Examples:
        >>> deep_supervision_weights(3, scheme="nnunet")  # (1, 1/2, 0) / 1.5
        [0.6666666666666666, 0.3333333333333333, 0.0]
        >>> deep_supervision_weights(3, scheme="exponential")  # (1, 1/2, 1/4) / 1.75
        [0.5714285714285714, 0.2857142857142857, 0.14285714285714285]
    """
    _check_choice("weights", scheme, _DS_SCHEMES)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of outputs must be an int >= 1, got {n!r}")
    if scheme == "same":
        raw = [1.0] * n
    else:
        raw = [0.5**k for k in range(n)]
        if scheme == "nnunet" and n > 1:
            raw[-1] = 0.0
    total = sum(raw)
    return [r / total for r in raw]


def resize_nearest(
    target: torch.Tensor, size: Sequence[int], *, mode: NearestMode = "nearest-exact"
) -> torch.Tensor:
    """Resize the last ``len(size)`` axes of ``target`` by nearest-neighbour sampling.

    Works on any dtype (label maps stay integer: voxels are picked, never blended) and
    on label maps ``(B, *S)``, ``(B, 1, *S)`` and dense targets ``(B, C, *S)`` alike.
    Output voxel ``j`` of an axis of input length ``n`` and output length ``m`` takes
    input voxel ``floor((j + 1/2) n / m)`` (``"nearest-exact"``, default: centre-aligned,
    as ``F.interpolate(mode="nearest-exact")`` and scikit-image's order-0 resize), or
    ``floor(j n / m)`` (``"nearest"``, PyTorch's legacy mode), computed in exact integer
    arithmetic.

    Args:
        target: tensor whose trailing axes are spatial.
        size: output spatial size.
        mode: ``"nearest-exact"`` or ``"nearest"``.

    Shape:
        ``(*lead, *S)`` -> ``(*lead, *size)``.

    Returns:
        The resized tensor (``target`` itself when the size already matches).

    Raises:
        ValueError: ``size`` longer than the tensor has axes, non-positive sizes or an
            unknown ``mode``.

    Examples:
        >>> import torch
        >>> labels = torch.tensor([[0, 0, 3, 3, 7]])
        >>> resize_nearest(labels, [3])  # picks voxels 0, 2, 4
        tensor([[0, 3, 7]])
    """
    _check_choice("mode", mode, _NEAREST_MODES)
    size = [int(s) for s in size]
    if len(size) > target.dim() or any(s < 1 for s in size):
        raise ValueError(
            f"cannot resize a tensor of shape {list(target.shape)} to spatial size {size}"
        )
    offset = target.dim() - len(size)
    out = target
    for axis, (n_in, n_out) in enumerate(zip(target.shape[offset:], size, strict=True)):
        if n_in == n_out:
            continue
        j = torch.arange(n_out, device=target.device)
        # centre-aligned: floor((j + 1/2) n / m); legacy: floor(j n / m)
        src = (2 * j + 1) * n_in // (2 * n_out) if mode == "nearest-exact" else j * n_in // n_out
        out = out.index_select(offset + axis, src.clamp_max(n_in - 1))
    return out


def _check_full_resolution(first: torch.Tensor, target: torch.Tensor) -> None:
    """Refuse a target whose spatial size is not that of the full-resolution output: it
    would be resized to every output without complaint, and train on misaligned labels."""
    spatial = list(first.shape[2:])
    given = (
        list(target.shape[target.dim() - len(spatial) :]) if target.dim() >= len(spatial) else []
    )
    if given != spatial:
        raise ValueError(
            f"the target's spatial size {given} is not the size of the full-resolution "
            f"output outputs[0] {spatial}: pass the full-resolution target (label map "
            f"(B, *S), (B, 1, *S) or dense (B, C, *S)); deep_supervision_loss resizes it to "
            f"each coarser output itself"
        )


def deep_supervision_loss(
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    outputs: torch.Tensor | Sequence[torch.Tensor],
    target: torch.Tensor,
    *,
    weights: DeepSupervisionWeights = "nnunet",
    mode: NearestMode = "nearest-exact",
) -> torch.Tensor:
    """``sum_k weights[k] * loss(outputs[k], resize(target, outputs[k]))``.

    Order convention: ``outputs`` is the model's deep-supervision list, index 0 the full
    resolution output and coarser outputs after it (see
    :class:`~attnunet.models.UNetSkeleton`). Each output is scored against the target
    resized to its spatial size by nearest-neighbour sampling (:func:`resize_nearest`;
    label maps are resized as integers, never interpolated). Outputs with weight 0 are
    still scored (times 0), so every head receives a (zero) gradient and distributed
    training finds no unused parameters.

    A model with ``ds_fusion`` puts its fused output first and ``y_0, y_1, ...`` after
    it; UNet++ lists are all at full resolution. The named schemes treat the list
    position as the scale: pass explicit weights where that does not fit.

    Args:
        loss: any callable ``loss(logits, target) -> scalar`` (a function from this
            module with ``functools.partial``, or a module such as :class:`DiceCELoss`).
        outputs: a list (or tuple) of logits ``(B, C, *S_k)``, or one tensor (weight 1).
        target: full-resolution target (label map or dense, as the loss accepts;
            nearest-neighbour resizing keeps an ``ignore_index`` value as it is); its
            spatial size must be that of ``outputs[0]``.
        weights: ``"nnunet"`` (default), ``"same"``, ``"exponential"`` (see
            :func:`deep_supervision_weights`; computed for the list's length), or one
            non-negative number per output, used as given (not normalised).
        mode: nearest-neighbour convention, ``"nearest-exact"`` (default) or
            ``"nearest"``.

    Returns:
        The weighted sum of the per-output losses.

    Raises:
        ValueError: an empty list, outputs of different ranks, a target whose spatial
            size is not that of ``outputs[0]``, explicit weights of the wrong length, or an
            unknown scheme or mode.

    Examples:
        >>> import functools, torch
        >>> outputs = [torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
        >>> target = torch.ones(1, 4, 4, dtype=torch.long)
        >>> bce = functools.partial(bce_loss)
        >>> round(deep_supervision_loss(bce, outputs, target, weights="same").item(), 4)
        0.6931
    """
    _check_choice("mode", mode, _NEAREST_MODES)
    scheme = _ds_weights(weights)
    items = [outputs] if isinstance(outputs, torch.Tensor) else list(outputs)
    if not items:
        raise ValueError("outputs is empty: pass the model's list of logits")
    for k, y in enumerate(items):
        if not isinstance(y, torch.Tensor) or y.dim() < 3:
            raise ValueError(
                f"outputs[{k}] must be a logits tensor (B, C, *spatial), got "
                f"{list(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
            )
    if any(y.dim() != items[0].dim() for y in items):
        raise ValueError(
            f"all outputs must have the same rank, got shapes {[list(y.shape) for y in items]}"
        )
    _check_full_resolution(items[0], target)
    if isinstance(outputs, torch.Tensor):
        factors: Sequence[float] = [1.0]
    elif isinstance(scheme, str):
        factors = deep_supervision_weights(len(items), scheme=scheme)
    else:
        if len(scheme) != len(items):
            raise ValueError(
                f"got {len(scheme)} weights for {len(items)} outputs; give one per output "
                f"(index 0 = full resolution)"
            )
        factors = scheme
    total: torch.Tensor | None = None
    for y, factor in zip(items, factors, strict=True):
        t = resize_nearest(target, list(y.shape[2:]), mode=mode)
        term = factor * loss(y, t)
        total = term if total is None else total + term
    assert total is not None
    return total
