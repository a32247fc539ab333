"""Segmentation losses: cross-entropy, soft Dice, soft IoU, their combinations, and a
deep-supervision wrapper.

Every loss is a pure function over logits of shape ``(B, C, *spatial)`` (any number of
spatial axes) plus a thin :class:`torch.nn.Module` that stores the options and calls the
function, so the two forms always agree. Everything runs on the inputs' device as
whole-tensor operations and is differentiable with respect to the logits.

Targets come in two forms, accepted by every loss:

* a **label map** of integers (or bools): shape ``(B, *spatial)`` or ``(B, 1, *spatial)``,
  values in ``0..C-1`` (``0..1`` for a single-channel, binary output);
* a **dense** target of floats with the logits' shape ``(B, C, *spatial)``: one-hot,
  multi-hot (for sigmoid outputs) or probabilistic (soft labels), values in ``[0, 1]``.

Both are range-checked (label values in ``0..C-1``, dense values in ``[0, 1]``, never
NaN): a 0/255 mask or a class-index map passed as floats raises a ``ValueError`` that
names the range found, instead of giving a negative loss. The check reads the minimum
and maximum back together, one host synchronisation per call on a GPU.

``ignore_index`` (:func:`ce_loss`, :func:`bce_loss`, :func:`dice_loss`, :func:`iou_loss`,
:func:`dice_ce_loss` and their modules) names a label-map value, e.g. 255 or -100, whose
voxels count in no term: cross-entropy averages over the other voxels as
``F.cross_entropy(ignore_index=...)`` does, and Dice leaves them out of every sum.

This module depends on torch only, so it can be imported without the model zoo.

Examples:
    >>> import torch
    >>> logits = torch.tensor([[[[4.0, -4.0], [4.0, -4.0]]]])  # (B=1, C=1, H=2, W=2)
    >>> target = torch.tensor([[[1, 0], [1, 0]]])  # label map (B, H, W)
    >>> round(dice_loss(logits, target).item(), 4)  # sigmoid(4) = 0.982: 1 - 4.928 / 5
    0.0144
    >>> unsure = torch.tensor([[[1, 255], [1, 0]]])  # 255: not labelled, left out
    >>> # three voxels left: I = 2 * 0.982, P = 1.982, G = 2: 1 - 4.928 / 4.982
    >>> round(dice_loss(logits, unsure, ignore_index=255).item(), 4)
    0.0108
    >>> loss = DeepSupervisionLoss(DiceCELoss(), weights="exponential")
    >>> outputs = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]  # a model's DS list
    >>> loss(outputs, torch.randint(0, 3, (2, 8, 8))).shape
    torch.Size([])
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Activation",
    "DeepSupervisionLoss",
    "DeepSupervisionWeights",
    "DiceCELoss",
    "DiceLoss",
    "IoULoss",
    "NearestMode",
    "RAUNetLoss",
    "Reduction",
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

Activation = Literal["auto", "sigmoid", "softmax"] | None
Reduction = Literal["mean", "sum", "none"]
DeepSupervisionWeights = Literal["nnunet", "same", "exponential"] | Sequence[float]
NearestMode = Literal["nearest-exact", "nearest"]
Weights = Sequence[float] | torch.Tensor | None

_ACTIVATIONS = ("auto", "sigmoid", "softmax", None)
_REDUCTIONS = ("mean", "sum", "none")
_DS_SCHEMES = ("nnunet", "same", "exponential")
_NEAREST_MODES = ("nearest-exact", "nearest")


# ------------------------------------------------------------------ validation helpers


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    if isinstance(value, str | type(None)) and value in choices:
        return
    raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_number(name: str, value: object, *, low: float, strict: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}, got {value!r}")
    return float(value)


def _check_smoothing(smooth_nr: float, smooth_dr: float) -> None:
    _check_number("smooth_nr", smooth_nr, low=0.0, strict=False)
    try:
        _check_number("smooth_dr", smooth_dr, low=0.0, strict=True)
    except ValueError as err:
        raise ValueError(
            f"{err}: a positive smooth_dr keeps the ratio defined when both the prediction "
            f"and the target are empty (use e.g. 1e-5 for a near-unsmoothed loss)"
        ) from None


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """float64 stays float64; half precision is promoted so sums over volumes cannot
    overflow."""
    return torch.promote_types(x.dtype, torch.float32)


def _check_logits(logits: torch.Tensor, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(logits).__name__}")
    if logits.dim() < 3:
        raise ValueError(
            f"expected {name} of shape (B, C, *spatial) with at least one spatial axis, got "
            f"{list(logits.shape)}; add the missing axes, e.g. x[:, None] for a channel axis"
        )
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {logits.dtype}")
    if logits.shape[1] < 1:
        raise ValueError(f"{name} must have at least one channel, got {list(logits.shape)}")


def _resolve_activation(activation: Activation, channels: int) -> str | None:
    _check_choice("activation", activation, _ACTIVATIONS)
    if activation == "auto":
        return "sigmoid" if channels == 1 else "softmax"
    if activation == "softmax" and channels == 1:
        raise ValueError(
            "activation='softmax' over a single channel is the constant 1; use 'sigmoid' "
            "(or 'auto') for a binary output with one channel"
        )
    return activation


def _check_ignore_index(ignore_index: object) -> int | None:
    if ignore_index is None:
        return None
    value = ignore_index
    if isinstance(value, torch.Tensor) and value.dim() == 0 and not value.is_floating_point():
        value = value.item()  # a torch integer scalar
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # np.int64 passes
        raise TypeError(
            f"ignore_index must be an int (a label value, e.g. 255 or -100) or None, got "
            f"{ignore_index!r}"
        )
    return int(value)


def _min_max(values: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a non-empty tensor, read back in one host synchronisation (NaN
    if it holds any)."""
    lo, hi = torch.aminmax(values)
    low, high = torch.stack((lo, hi)).tolist()
    return low, high


def _label_map_advice(c: int, label_shape: list[int]) -> str:
    """How to make a valid label map; for one channel never by argmax (which is 0)."""
    if c == 1:
        return (
            f"or pass a label map of 0/1 of shape {label_shape} (one channel is a binary "
            f"output): threshold it, e.g. (target > 0).long() for a 0/1 or 0/255 mask"
        )
    return (
        f"or pass an integer label map of shape {label_shape} with values 0..{c - 1} "
        f"(e.g. target.argmax(1) for a one-hot target)"
    )


def _check_dense_range(target: torch.Tensor, logits_shape: list[int]) -> None:
    """A dense target must hold values in ``[0, 1]`` (to a few rounding steps of its dtype):
    one host synchronisation."""
    if target.dtype == torch.bool or target.numel() == 0:
        return
    lo, hi = _min_max(target)
    # a few rounding steps of slack: interpolated or averaged soft labels can land an ulp
    # outside [0, 1] (bf16: 0.03); a 0/255 mask or a target of 2 is far beyond it
    slack = 4 * torch.finfo(target.dtype).eps if target.is_floating_point() else 0.0
    if lo >= -slack and hi <= 1 + slack:  # False for NaN
        return
    c = logits_shape[1]
    label_shape = [logits_shape[0], *logits_shape[2:]]
    floating = target.is_floating_point()
    kind = "a float" if floating else "an integer"
    head = (
        f"{kind} target of the logits' shape {logits_shape} is read as one-hot, multi-hot "
        f"or probabilistic and must lie in [0, 1]"
    )
    nan = torch.isnan(target) if floating else None
    if nan is not None and bool(nan.any()):
        rest = target[~nan]
        found = (
            f"the other values lie in [{rest.min().item():g}, {rest.max().item():g}]"
            if rest.numel()
            else "every value is NaN"
        )
        raise ValueError(
            f"{head}, got {int(nan.sum())} NaN value(s) ({found}); replace them, e.g. with "
            f"torch.nan_to_num, or find where they come from"
        )
    fixes = []
    if lo >= 0 and hi == 255:
        fixes.append(
            "it looks like a 0/255 mask: divide it by 255 "
            + ("(target / 255)" if floating else "(target // 255)")
        )
    elif lo >= 0:
        fixes.append(f"scale it into [0, 1] (e.g. target / {hi:g} for a mask)")
    else:
        fixes.append(
            "a target holds probabilities, not logits (apply torch.sigmoid or "
            "torch.softmax to soft logits)"
        )
    fixes.append(_label_map_advice(c, label_shape))
    raise ValueError(f"{head}, got values in [{lo:g}, {hi:g}]; {'; '.join(fixes)}")


def _check_label_range(
    lo: int,
    hi: int,
    c: int,
    label_shape: list[int],
    ignore_index: int | None,
    ignore_supported: bool = True,
) -> None:
    high = max(c - 1, 1)
    if lo >= 0 and hi <= high:
        return
    message = (
        f"target labels must lie in 0..{high} for {c} output channel(s), got values in {lo}..{hi}"
    )
    if c == 1:
        message += "; a single channel is a binary output (0 or 1)"
        if lo >= 0:
            message += ": for a 0/255 (or any non-zero) mask pass (target > 0).long()"
    elif lo >= 0 and hi == 255:
        message += (
            "; a 0/255 binary mask (for two output channels) is (target > 0).long(), or "
            "target // 255"
        )
    if ignore_index is not None:
        message += f" (ignore_index={ignore_index} exempts that one value only)"
    elif ignore_supported and (c > 1 or lo < 0):
        outside = hi if hi > high else lo
        message += (
            f"; if {outside} marks voxels to leave out (unlabelled), pass ignore_index={outside}"
        )
    if c > 1 and lo >= 1 and hi == c:
        message += "; if the labels count from 1, subtract 1"
    raise ValueError(message)


def _parse_target(
    target: torch.Tensor,
    logits: torch.Tensor,
    ignore_index: int | None = None,
    ignore_supported: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Return ``(labels, dense, valid)``: exactly one of ``labels`` and ``dense`` is set.

    ``labels`` is an int64 label map ``(B, *S)``; ``dense`` a float tensor ``(B, C, *S)``
    in the logits' compute dtype. ``valid`` is ``None`` without ``ignore_index``, else the
    bool mask ``(B, *S)`` of the voxels not ignored (ignored voxels hold label 0 in
    ``labels``; every loss masks them out). Label maps must lie in ``0..C-1`` (``0..1``
    for one channel) and dense targets in ``[0, 1]``; either check reads back the min
    and max in one host synchronisation.
    """
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a tensor, got {type(target).__name__}")
    b, c = logits.shape[:2]
    spatial = tuple(logits.shape[2:])
    label_shape = [b, *spatial]
    dense_shape = list(logits.shape)
    hint = (
        f"for logits of shape {dense_shape}, pass a label map of integers with shape "
        f"{label_shape} or {[b, 1, *spatial]}, or a float (one-hot or probabilistic) target "
        f"of shape {dense_shape}"
    )
    if target.is_complex():
        raise TypeError(f"target must be real, got {target.dtype}; {hint}")
    if target.dim() not in (logits.dim() - 1, logits.dim()):
        raise ValueError(f"target has shape {list(target.shape)}: {hint}")
    if target.shape[0] != b:
        raise ValueError(
            f"target batch size {target.shape[0]} differs from the logits' {b}; {hint}"
        )
    if tuple(target.shape[-len(spatial) :]) != spatial:
        raise ValueError(
            f"target spatial size {list(target.shape[-len(spatial) :])} differs from the "
            f"logits' {list(spatial)}; resize the target with nearest-neighbour "
            f"(resize_nearest), or wrap the loss in DeepSupervisionLoss for a list of "
            f"outputs at several resolutions"
        )
    dense_form = target.dim() == logits.dim() and target.shape[1] == c
    if target.is_floating_point():
        if not dense_form:
            if c == 1:
                advice = (
                    "for a one-channel (binary) output pass a label map of 0/1, e.g. "
                    "(target > 0).long() for a 0/1 or 0/255 mask, or a float mask in "
                    f"[0, 1] of shape {dense_shape}"
                )
            else:
                advice = (
                    "if it holds class indices, convert it with target.long(); a 0/1 or "
                    "0/255 binary mask is (target > 0).long()"
                )
            raise ValueError(
                f"a float target is read as one-hot or probabilistic and needs the logits' "
                f"shape {dense_shape}, got {list(target.shape)}; {advice}"
            )
        dense: torch.Tensor | None = target
    elif dense_form and c > 1:
        dense = target  # integer one-hot / multi-hot
    else:
        dense = None
    if dense is not None:
        if ignore_index is not None:
            raise ValueError(
                f"ignore_index={ignore_index} applies to label maps (integers of shape "
                f"{label_shape} or {[b, 1, *spatial]}), but this target of shape "
                f"{list(target.shape)} and dtype {target.dtype} is dense (one-hot or "
                f"probabilistic): pass a label map, or ignore_index=None"
            )
        _check_dense_range(dense, dense_shape)
        return None, dense.to(_compute_dtype(logits)), None
    if target.dim() == logits.dim():
        if target.shape[1] != 1:
            raise ValueError(f"target has shape {list(target.shape)}: {hint}")
        target = target[:, 0]
    valid = None
    if ignore_index is not None:
        target = target.long()  # compare in int64: a narrow dtype would wrap the value
        valid = target != ignore_index
        target = target.masked_fill(~valid, 0)
    if target.dtype != torch.bool and target.numel():
        lo, hi = _min_max(target)
        _check_label_range(int(lo), int(hi), c, label_shape, ignore_index, ignore_supported)
    return target.long(), None, valid


def _mask_ignored(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Zero ``(B, C, *S)`` values at ignored voxels (their gradient is exactly 0)."""
    return values if valid is None else values.masked_fill(~valid.unsqueeze(1), 0.0)


def _one_hot(labels: torch.Tensor, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, *S)`` labels -> ``(B, C, *S)``; one channel means the binary mask itself."""
    if channels == 1:
        return labels.unsqueeze(1).to(dtype)
    classes = torch.arange(channels, device=labels.device).view(1, -1, *[1] * (labels.dim() - 1))
    return (labels.unsqueeze(1) == classes).to(dtype)


def _dense_target(
    labels: torch.Tensor | None, dense: torch.Tensor | None, channels: int, dtype: torch.dtype
) -> torch.Tensor:
    if dense is not None:
        return dense
    assert labels is not None
    return _one_hot(labels, channels, dtype)


def _class_weights(
    class_weights: Weights, channels: int, like: torch.Tensor
) -> torch.Tensor | None:
    if class_weights is None:
        return None
    w = torch.as_tensor(class_weights, dtype=like.dtype, device=like.device)
    if w.dim() != 1 or w.shape[0] != channels:
        raise ValueError(
            f"class_weights must hold one number per logits channel ({channels}), got shape "
            f"{list(w.shape)}; with include_background=False the first one is still given "
            f"(and used by the cross-entropy term only)"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"class_weights must be finite and >= 0, got {w.tolist()}")
    return w


def _activate(logits: torch.Tensor, activation: str | None) -> torch.Tensor:
    x = logits.to(_compute_dtype(logits))
    if activation == "sigmoid":
        return torch.sigmoid(x)
    if activation == "softmax":
        return torch.softmax(x, dim=1)
    return x


def _reduce(values: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


# ------------------------------------------------------------------ overlap losses


def _overlap_sums(
    probs: torch.Tensor, target: torch.Tensor, squared: bool, batch: bool
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
    logits: torch.Tensor, target: torch.Tensor, activation: Activation, ignore_index: int | None
) -> tuple[torch.Tensor, str | None, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Validate ``logits`` and ``target``; return the logits in the compute dtype, the
    resolved activation and the parsed target ``(labels, dense, valid)``."""
    _check_logits(logits)
    act = _resolve_activation(activation, logits.shape[1])
    labels, dense, valid = _parse_target(target, logits, ignore_index)
    return logits.to(_compute_dtype(logits)), act, labels, dense, valid


def _overlap_terms(
    kind: Literal["dice", "iou"],
    probs: torch.Tensor,
    g: torch.Tensor,
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
    inter, total = _overlap_sums(probs, g, bool(squared), bool(batch))
    if kind == "dice":
        score = (2.0 * inter + smooth_nr) / (total + smooth_dr)
    else:
        score = (inter + smooth_nr) / (total - inter + smooth_dr)
    return 1.0 - score, weights


def _overlap_loss(
    kind: Literal["dice", "iou"],
    logits: torch.Tensor,
    target: torch.Tensor,
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
    x, act, labels, dense, valid = _prepare(logits, target, activation, ignore_index)
    probs = _activate(x, act)
    g = _dense_target(labels, dense, x.shape[1], x.dtype)
    weights = _class_weights(class_weights, x.shape[1], x)
    terms, weights = _overlap_terms(
        kind, probs, g, weights, include_background, squared, smooth_nr, smooth_dr, batch, valid
    )
    return _reduce(_weighted(terms, weights), reduction)


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
        "dice",
        logits,
        target,
        activation,
        include_background,
        squared,
        smooth_nr,
        smooth_dr,
        class_weights,
        batch,
        reduction,
        ignore_index,
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
        "iou",
        logits,
        target,
        activation,
        include_background,
        squared,
        smooth_nr,
        smooth_dr,
        class_weights,
        batch,
        reduction,
        ignore_index,
    )


# ------------------------------------------------------------------ cross-entropy


def _ce_terms(
    logits: torch.Tensor,
    labels: torch.Tensor | None,
    dense: torch.Tensor | None,
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


def _safe_ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """``num / den`` with ``0 / 0 = 0`` (only when every weight of the present classes
    is 0), keeping finite gradients."""
    return num / den.masked_fill(den == 0, 1.0)


def _bce_mean(bce: torch.Tensor, valid: torch.Tensor | None, per_image: bool) -> torch.Tensor:
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
    weights: torch.Tensor | None,
    pos_weight: torch.Tensor | None,
) -> torch.Tensor:
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
    labels, dense, valid = _parse_target(target, logits, ignore_index)
    x = logits.to(_compute_dtype(logits))
    weights = _class_weights(class_weights, logits.shape[1], x)
    loss, norm = _ce_terms(x, labels, dense, weights, valid)
    if reduction == "mean":
        return _safe_ratio(loss.sum(), norm.sum())
    return _reduce(loss, reduction)


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
    labels, dense, valid = _parse_target(target, logits, ignore_index)
    x = logits.to(_compute_dtype(logits))
    channels = logits.shape[1]
    g = _dense_target(labels, dense, channels, x.dtype)
    weights = _class_weights(class_weights, channels, x)
    pos = _class_weights(pos_weight, channels, x)
    loss = _mask_ignored(_bce_terms(x, g, weights, pos), valid)
    if reduction == "mean" and valid is not None:
        return _bce_mean(loss, valid, per_image=False)
    return _reduce(loss, reduction)


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
    if batch and reduction != "mean":
        raise ValueError(
            f"reduction={reduction!r} needs batch=False: the batch Dice pools the images, "
            f"so there is no loss per image"
        )
    _check_smoothing(smooth_nr, smooth_dr)
    ignore_index = _check_ignore_index(ignore_index)
    x, act, labels, dense, valid = _prepare(logits, target, activation, ignore_index)
    channels = x.shape[1]
    g = _dense_target(labels, dense, channels, x.dtype)
    weights = _class_weights(class_weights, channels, x)
    terms, dice_w = _overlap_terms(
        "dice",
        _activate(x, act),
        g,
        weights,
        include_background,
        squared,
        smooth_nr,
        smooth_dr,
        batch,
        valid,
    )
    dice = _weighted(terms, dice_w)
    if act == "softmax":
        ce, norm = _ce_terms(x, labels, dense, weights, valid)
        if reduction == "mean":
            ce_value = _safe_ratio(ce.sum(), norm.sum())
        else:
            ce_value = _safe_ratio(ce.flatten(1).sum(1), norm.flatten(1).sum(1))
    else:
        bce = _mask_ignored(_bce_terms(x, g, weights, None), valid)
        ce_value = _bce_mean(bce, valid, per_image=reduction != "mean")
    if reduction == "mean":
        return lambda_dice * dice.mean() + lambda_ce * ce_value
    return _reduce(lambda_dice * dice.mean(1) + lambda_ce * ce_value, reduction)


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
    if batch and reduction != "mean":
        raise ValueError(
            f"reduction={reduction!r} needs batch=False: the batch Dice pools the images, "
            f"so there is no loss per image"
        )
    labels, dense, _ = _parse_target(target, logits, ignore_supported=False)
    x = logits.to(_compute_dtype(logits))
    if x.shape[1] == 1:
        # two-class softmax of (0, z): background 1 - sigmoid(z), foreground sigmoid(z)
        log_probs = torch.cat([F.logsigmoid(-x), F.logsigmoid(x)], dim=1)
        fg = _dense_target(labels, dense, 1, x.dtype)
        g = torch.cat([1.0 - fg, fg], dim=1)
    else:
        log_probs = F.log_softmax(x, dim=1)
        g = _dense_target(labels, dense, x.shape[1], x.dtype)
    nll = -(g * log_probs).sum(1).flatten(1).mean(1)  # (B,)
    probs = log_probs.exp()
    if not include_background:
        probs, g = probs[:, 1:], g[:, 1:]
    inter, total = _overlap_sums(probs, g, squared=False, batch=bool(batch))
    log_dice = torch.log((2.0 * inter + smooth) / (total + smooth)).sum(-1)
    if batch:
        return (1.0 - w) * nll.mean() - w * log_dice
    return _reduce((1.0 - w) * nll - w * log_dice, reduction)


# ------------------------------------------------------------------ deep supervision


def deep_supervision_weights(
    n: int, scheme: Literal["nnunet", "same", "exponential"] = "nnunet"
) -> list[float]:
    """Per-output weights for ``n`` deep-supervision outputs, summing to 1.

    Index 0 is the first output of the model's list (full resolution); larger indices
    are coarser.

    Args:
        n: number of outputs, ``>= 1``.
        scheme: ``"same"``: ``1/n`` each; ``"exponential"``: proportional to
            ``1, 1/2, 1/4, ...``; ``"nnunet"`` (default): the same halving, but the last
            (coarsest) output gets weight 0, as nnU-Net does (for ``n = 1``: ``[1.0]``).

    Returns:
        A list of ``n`` floats.

    Raises:
        ValueError: ``n < 1`` or an unknown scheme.

    Examples:
        >>> deep_supervision_weights(3, "nnunet")  # (1, 1/2, 0) / 1.5
        [0.6666666666666666, 0.3333333333333333, 0.0]
        >>> deep_supervision_weights(3, "exponential")  # (1, 1/2, 1/4) / 1.75
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
    target: torch.Tensor, size: Sequence[int], mode: NearestMode = "nearest-exact"
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


def _ds_weights(
    weights: DeepSupervisionWeights,
) -> Literal["nnunet", "same", "exponential"] | tuple[float, ...]:
    if isinstance(weights, str):
        _check_choice("weights", weights, _DS_SCHEMES)
        return weights
    if isinstance(weights, torch.Tensor):
        weights = weights.tolist()
    if not isinstance(weights, Sequence) or not weights:
        raise ValueError(
            f"weights must be one of {', '.join(map(repr, _DS_SCHEMES))} or a non-empty "
            f"sequence of numbers, got {weights!r}"
        )
    values = tuple(
        _check_number(f"weights[{i}]", v, low=0.0, strict=False) for i, v in enumerate(weights)
    )
    if sum(values) <= 0:
        raise ValueError(f"explicit weights must not all be 0, got {list(values)}")
    return values


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
            nearest-neighbour resizing keeps an ``ignore_index`` value as it is).
        weights: ``"nnunet"`` (default), ``"same"``, ``"exponential"`` (see
            :func:`deep_supervision_weights`; computed for the list's length), or one
            non-negative number per output, used as given (not normalised).
        mode: nearest-neighbour convention, ``"nearest-exact"`` (default) or
            ``"nearest"``.

    Returns:
        The weighted sum of the per-output losses.

    Raises:
        ValueError: an empty list, outputs of different ranks, explicit weights of the
            wrong length, or an unknown scheme or mode.

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
    if isinstance(outputs, torch.Tensor):
        factors: Sequence[float] = [1.0]
    elif isinstance(scheme, str):
        factors = deep_supervision_weights(len(items), scheme)
    else:
        if len(scheme) != len(items):
            raise ValueError(
                f"got {len(scheme)} weights for {len(items)} outputs; give one per output "
                f"(index 0 = full resolution)"
            )
        factors = scheme
    total: torch.Tensor | None = None
    for y, factor in zip(items, factors, strict=True):
        t = resize_nearest(target, list(y.shape[2:]), mode)
        term = factor * loss(y, t)
        total = term if total is None else total + term
    assert total is not None
    return total


# ------------------------------------------------------------------ modules


def _weights_buffer(class_weights: Weights) -> torch.Tensor | None:
    if class_weights is None:
        return None
    w = torch.as_tensor(class_weights, dtype=torch.float32).detach().clone()
    if w.dim() != 1 or w.numel() == 0:
        raise ValueError(
            f"class_weights must be a 1-D sequence with one number per channel, got shape "
            f"{list(w.shape)}"
        )
    if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
        raise ValueError(f"class_weights must be finite and >= 0, got {w.tolist()}")
    return w


class _OverlapLoss(nn.Module):
    """Stores the options shared by the overlap losses; subclasses name the function."""

    class_weights: torch.Tensor | None
    _loss: ClassVar[Callable[..., torch.Tensor]]

    def __init__(
        self,
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
    ) -> None:
        super().__init__()
        _check_choice("activation", activation, _ACTIVATIONS)
        _check_choice("reduction", reduction, _REDUCTIONS)
        _check_smoothing(smooth_nr, smooth_dr)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.activation: Activation = activation
        self.include_background = bool(include_background)
        self.squared = bool(squared)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = bool(batch)
        self.reduction: Reduction = reduction
        self.register_buffer("class_weights", _weights_buffer(class_weights))

    def _options(self) -> dict[str, object]:
        return {
            "activation": self.activation,
            "include_background": self.include_background,
            "squared": self.squared,
            "smooth_nr": self.smooth_nr,
            "smooth_dr": self.smooth_dr,
            "batch": self.batch,
            "reduction": self.reduction,
            "ignore_index": self.ignore_index,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._options().items())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss function with the stored options."""
        loss = type(self)._loss
        return loss(logits, target, class_weights=self.class_weights, **self._options())


class DiceLoss(_OverlapLoss):
    """Soft Dice loss as a module: stores the options of :func:`dice_loss` and calls it.

    ``class_weights`` is registered as a (float32) buffer, so it follows ``.to()`` and is
    saved in the state dict; it is cast to the logits' dtype at each call.

    Args:
        activation: ``"auto"`` (default), ``"sigmoid"``, ``"softmax"`` or ``None``.
        include_background: score channel 0 too (default ``True``).
        squared: squared-denominator (Sorensen / V-Net) form (default ``False``).
        smooth_nr: numerator smoothing (default 1.0).
        smooth_dr: denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel, or ``None``.
        batch: batch Dice (default ``False``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        ignore_index: a label value whose voxels are left out, or ``None`` (default).

    Shape:
        As :func:`dice_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = DiceLoss(include_background=False, class_weights=[0.0, 1.0, 2.0])
        >>> logits = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
        >>> value = loss(logits, torch.randint(0, 3, (2, 8, 8, 8)))
        >>> value.backward()
        >>> logits.grad.shape
        torch.Size([2, 3, 8, 8, 8])
    """

    _loss = staticmethod(dice_loss)


class IoULoss(_OverlapLoss):
    """Soft IoU (Jaccard) loss as a module: stores the options of :func:`iou_loss`.

    Args:
        activation: ``"auto"`` (default), ``"sigmoid"``, ``"softmax"`` or ``None``.
        include_background: score channel 0 too (default ``True``).
        squared: squared terms in ``P`` and ``G`` (default ``False``).
        smooth_nr: numerator smoothing (default 1.0).
        smooth_dr: denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel (a buffer), or ``None``.
        batch: pool the sums over the batch (default ``False``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        ignore_index: a label value whose voxels are left out, or ``None`` (default).

    Shape:
        As :func:`dice_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = IoULoss(activation=None)
        >>> probs = torch.tensor([[[0.5, 1.0, 0.0, 0.5]]])
        >>> loss(probs, torch.tensor([[1, 1, 0, 0]]))
        tensor(0.2857)
    """

    _loss = staticmethod(iou_loss)


class DiceCELoss(_OverlapLoss):
    """Dice + cross-entropy as a module: stores the options of :func:`dice_ce_loss`.

    Args:
        lambda_dice: weight of the Dice term (default 1.0).
        lambda_ce: weight of the cross-entropy term (default 1.0).
        activation: ``"auto"`` (default), ``"sigmoid"`` or ``"softmax"``.
        include_background: whether the Dice term scores channel 0 (default ``True``).
        squared: squared Dice denominator (default ``False``).
        smooth_nr: Dice numerator smoothing (default 1.0).
        smooth_dr: Dice denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel (a buffer), used by both terms.
        batch: batch Dice (default ``False``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per image).
        ignore_index: a label value whose voxels count in neither term, or ``None``
            (default).

    Shape:
        As :func:`dice_ce_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = DiceCELoss(lambda_ce=0.5, class_weights=[0.5, 1.0, 1.5])
        >>> loss(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 1, 16, 16))).shape
        torch.Size([])
        >>> labels = torch.randint(0, 3, (2, 16, 16))
        >>> labels[:, :4] = 255  # unlabelled rows
        >>> DiceCELoss(ignore_index=255)(torch.randn(2, 3, 16, 16), labels).shape
        torch.Size([])
    """

    def __init__(
        self,
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
    ) -> None:
        if activation is None:
            raise ValueError("DiceCELoss needs logits: activation must not be None")
        super().__init__(
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
        self.lambda_dice = _check_number("lambda_dice", lambda_dice, low=0.0, strict=False)
        self.lambda_ce = _check_number("lambda_ce", lambda_ce, low=0.0, strict=False)
        if batch and reduction != "mean":
            raise ValueError(f"reduction={reduction!r} needs batch=False")

    def _options(self) -> dict[str, object]:
        return {"lambda_dice": self.lambda_dice, "lambda_ce": self.lambda_ce, **super()._options()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`dice_ce_loss` with the stored options."""
        activation = self.activation
        assert activation is not None
        return dice_ce_loss(
            logits,
            target,
            lambda_dice=self.lambda_dice,
            lambda_ce=self.lambda_ce,
            activation=activation,
            include_background=self.include_background,
            squared=self.squared,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            class_weights=self.class_weights,
            batch=self.batch,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
        )


class RAUNetLoss(nn.Module):
    """RAUNet's CE + log-Dice loss as a module: stores the options of
    :func:`raunet_loss`. The defaults reproduce the reference (``w = 0.2``,
    ``eps = 1e-15``, batch-wise sums over every class).

    Args:
        dice_weight: ``w`` in ``[0, 1]`` (default 0.2).
        smooth: ``eps`` (default 1e-15, ``> 0``).
        include_background: sum the log-Dice over channel 0 too (default ``True``).
        batch: pool the Dice sums over the batch (default ``True``).
        reduction: ``"mean"`` (default); ``"sum"``/``"none"`` need ``batch=False``.

    Shape:
        As :func:`raunet_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = RAUNetLoss()
        >>> loss(torch.randn(2, 4, 32, 32), torch.randint(0, 4, (2, 32, 32))).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        dice_weight: float = 0.2,
        smooth: float = 1e-15,
        include_background: bool = True,
        batch: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_choice("reduction", reduction, _REDUCTIONS)
        self.dice_weight = _check_number("dice_weight", dice_weight, low=0.0, strict=False)
        if self.dice_weight > 1:
            raise ValueError(f"dice_weight must lie in [0, 1], got {dice_weight!r}")
        self.smooth = _check_number("smooth", smooth, low=0.0, strict=True)
        if batch and reduction != "mean":
            raise ValueError(f"reduction={reduction!r} needs batch=False")
        self.include_background = bool(include_background)
        self.batch = bool(batch)
        self.reduction: Reduction = reduction

    def extra_repr(self) -> str:
        return (
            f"dice_weight={self.dice_weight}, smooth={self.smooth}, "
            f"include_background={self.include_background}, batch={self.batch}, "
            f"reduction={self.reduction!r}"
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`raunet_loss` with the stored options."""
        return raunet_loss(
            logits,
            target,
            dice_weight=self.dice_weight,
            smooth=self.smooth,
            include_background=self.include_background,
            batch=self.batch,
            reduction=self.reduction,
        )


class DeepSupervisionLoss(nn.Module):
    """Score a model's deep-supervision list with one loss and per-output weights.

    See :func:`deep_supervision_loss` for the order convention (index 0 = full
    resolution, the model's list order), the nearest-neighbour target resizing and the
    weight schemes. A module ``loss`` is registered as a submodule (its buffers follow
    ``.to()``).

    Args:
        loss: any callable ``loss(logits, target) -> scalar``.
        weights: ``"nnunet"`` (default: ``1, 1/2, 1/4, ...`` with the coarsest output at
            0, normalised), ``"same"``, ``"exponential"`` (``1, 1/2, 1/4, ...``
            normalised), or one non-negative number per output (used as given).
        mode: ``"nearest-exact"`` (default) or ``"nearest"`` target resizing.

    Shape:
        ``outputs``: a list of ``(B, C, *S_k)`` (or one tensor); ``target`` at full
        resolution. Output: whatever the loss returns (a scalar).

    Raises:
        ValueError: unknown scheme or mode, invalid explicit weights (at construction);
            see :func:`deep_supervision_loss` (at call).

    Examples:
        >>> import torch
        >>> from attnunet.losses import DeepSupervisionLoss, DiceCELoss
        >>> ds = DeepSupervisionLoss(DiceCELoss(), weights=[0.5, 0.3, 0.2])
        >>> outputs = [torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
        >>> ds(outputs, torch.randint(0, 3, (2, 16, 16))).shape
        torch.Size([])
    """

    def __init__(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        weights: DeepSupervisionWeights = "nnunet",
        *,
        mode: NearestMode = "nearest-exact",
    ) -> None:
        super().__init__()
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        _check_choice("mode", mode, _NEAREST_MODES)
        self.loss = loss
        self.weights = _ds_weights(weights)
        self.mode: NearestMode = mode

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}, mode={self.mode!r}"

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """:func:`deep_supervision_loss` with the stored loss, weights and mode."""
        weights: DeepSupervisionWeights = (
            self.weights if isinstance(self.weights, str) else list(self.weights)
        )
        return deep_supervision_loss(self.loss, outputs, target, weights=weights, mode=self.mode)
