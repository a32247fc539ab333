"""The two forms of a loss target, label map and dense, told apart, shape- and
range-checked, and turned into what the losses compute with."""

from __future__ import annotations

import torch

from attnunet.layers.values import min_max
from attnunet.losses._checks import _compute_dtype


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


def _value_range(target: torch.Tensor) -> tuple[float, float]:
    """``(min, max)`` of a non-empty tensor, read back in one host synchronisation (NaN if
    it holds any)."""
    (extremes,) = min_max(target)
    assert extremes is not None  # the target is not empty
    return extremes


def _check_dense_range(target: torch.Tensor, logits_shape: list[int]) -> None:
    """A dense target must hold values in ``[0, 1]`` (to a few rounding steps of its dtype):
    one host synchronisation."""
    if target.dtype == torch.bool or target.numel() == 0:
        return
    lo, hi = _value_range(target)
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
        raise _nan_error(target, nan, head)
    fixes = [_dense_fix(lo, hi, floating=floating), _label_map_advice(c, label_shape)]
    raise ValueError(f"{head}, got values in [{lo:g}, {hi:g}]; {'; '.join(fixes)}")


def _nan_error(target: torch.Tensor, nan: torch.Tensor, head: str) -> ValueError:
    """The error for a dense target that holds NaN (``nan``: where), with the range of the
    other values."""
    rest = target[~nan]
    found = (
        f"the other values lie in [{rest.min().item():g}, {rest.max().item():g}]"
        if rest.numel()
        else "every value is NaN"
    )
    return ValueError(
        f"{head}, got {int(nan.sum())} NaN value(s) ({found}); replace them, e.g. with "
        f"torch.nan_to_num, or find where they come from"
    )


def _dense_fix(lo: float, hi: float, *, floating: bool) -> str:
    """The first fix for a dense target with values in ``[lo, hi]`` outside ``[0, 1]``."""
    if lo >= 0 and hi == 255:
        return "it looks like a 0/255 mask: divide it by 255 " + (
            "(target / 255)" if floating else "(target // 255)"
        )
    if lo >= 0:
        return f"scale it into [0, 1] (e.g. target / {hi:g} for a mask)"
    return (
        "a target holds probabilities, not logits (apply torch.sigmoid or "
        "torch.softmax to soft logits)"
    )


def _check_label_range(
    lo: int, hi: int, *, channels: int, ignore_index: int | None, ignore_supported: bool
) -> None:
    """Label values ``lo..hi`` must lie in ``0..C-1`` (``0..1`` for one channel); the error
    names the likely fix: a threshold, ``ignore_index``, or counting from 0."""
    c = channels
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


def _shapes_that_fit(logits: torch.Tensor) -> str:
    """The target shapes ``logits`` accept, for messages."""
    b, spatial, dense_shape = logits.shape[0], list(logits.shape[2:]), list(logits.shape)
    return (
        f"for logits of shape {dense_shape}, pass a label map of integers with shape "
        f"{[b, *spatial]} or {[b, 1, *spatial]}, or a float (one-hot or probabilistic) target "
        f"of shape {dense_shape}"
    )


def _check_target_shape(target: object, logits: torch.Tensor) -> None:
    """``target`` must be a real tensor with the logits' batch and spatial sizes, with or
    without a channel axis."""
    if not isinstance(target, torch.Tensor):
        raise TypeError(f"target must be a tensor, got {type(target).__name__}")
    b, spatial = logits.shape[0], tuple(logits.shape[2:])
    if target.is_complex():
        raise TypeError(f"target must be real, got {target.dtype}; {_shapes_that_fit(logits)}")
    if target.dim() not in (logits.dim() - 1, logits.dim()):
        raise ValueError(f"target has shape {list(target.shape)}: {_shapes_that_fit(logits)}")
    if target.shape[0] != b:
        raise ValueError(
            f"target batch size {target.shape[0]} differs from the logits' {b}; "
            f"{_shapes_that_fit(logits)}"
        )
    if tuple(target.shape[-len(spatial) :]) != spatial:
        raise ValueError(
            f"target spatial size {list(target.shape[-len(spatial) :])} differs from the "
            f"logits' {list(spatial)}; resize the target with nearest-neighbour "
            f"(resize_nearest), or wrap the loss in DeepSupervisionLoss for a list of "
            f"outputs at several resolutions"
        )


def _is_dense(target: torch.Tensor, logits: torch.Tensor) -> bool:
    """Whether ``target`` (of a checked shape) is dense: floats, or integers with the
    logits' ``C > 1`` channels (one-hot). A float target without the logits' shape raises
    the ValueError that says how to make it a label map or a dense target."""
    c = logits.shape[1]
    dense_form = target.dim() == logits.dim() and target.shape[1] == c
    if not target.is_floating_point():
        return dense_form and c > 1
    if dense_form:
        return True
    dense_shape = list(logits.shape)
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


def _parse_labels(
    target: torch.Tensor,
    logits: torch.Tensor,
    *,
    ignore_index: int | None,
    ignore_supported: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A label map (of a checked shape) as int64 ``(B, *S)`` and the mask of the voxels
    not ignored (``None`` without ``ignore_index``); ignored voxels hold label 0."""
    if target.dim() == logits.dim():
        if target.shape[1] != 1:
            raise ValueError(f"target has shape {list(target.shape)}: {_shapes_that_fit(logits)}")
        target = target[:, 0]
    valid = None
    if ignore_index is not None:
        target = target.long()  # compare in int64: a narrow dtype would wrap the value
        valid = target != ignore_index
        target = target.masked_fill(~valid, 0)
    if target.dtype != torch.bool and target.numel():
        lo, hi = _value_range(target)
        _check_label_range(
            int(lo),
            int(hi),
            channels=logits.shape[1],
            ignore_index=ignore_index,
            ignore_supported=ignore_supported,
        )
    return target.long(), valid


def _parse_target(
    target: torch.Tensor,
    logits: torch.Tensor,
    *,
    ignore_index: int | None = None,
    ignore_supported: bool = True,
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Return ``(labels, dense, valid)``: exactly one of ``labels`` and ``dense`` is set.

    ``labels`` is an int64 label map ``(B, *S)``; ``dense`` a float tensor ``(B, C, *S)``
    in the logits' compute dtype. ``valid`` is ``None`` without ``ignore_index``, else the
    bool mask ``(B, *S)`` of the voxels not ignored (ignored voxels hold label 0 in
    ``labels``; every loss masks them out). Label maps must lie in ``0..C-1`` (``0..1``
    for one channel) and dense targets in ``[0, 1]``; either check reads back the min
    and max in one host synchronisation. ``ignore_supported=False`` (a loss without
    ``ignore_index``) keeps its suggestion out of the messages.
    """
    _check_target_shape(target, logits)
    if not _is_dense(target, logits):
        labels, valid = _parse_labels(
            target, logits, ignore_index=ignore_index, ignore_supported=ignore_supported
        )
        return labels, None, valid
    if ignore_index is not None:
        b, spatial = logits.shape[0], list(logits.shape[2:])
        raise ValueError(
            f"ignore_index={ignore_index} applies to label maps (integers of shape "
            f"{[b, *spatial]} or {[b, 1, *spatial]}), but this target of shape "
            f"{list(target.shape)} and dtype {target.dtype} is dense (one-hot or "
            f"probabilistic): pass a label map, or ignore_index=None"
        )
    _check_dense_range(target, list(logits.shape))
    return None, target.to(_compute_dtype(logits)), None


def _mask_ignored(values: torch.Tensor, valid: torch.Tensor | None) -> torch.Tensor:
    """Zero ``(B, C, *S)`` values at ignored voxels (their gradient is exactly 0)."""
    return values if valid is None else values.masked_fill(~valid.unsqueeze(1), 0.0)


def _one_hot(labels: torch.Tensor, *, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """``(B, *S)`` labels -> ``(B, C, *S)``; one channel means the binary mask itself."""
    if channels == 1:
        return labels.unsqueeze(1).to(dtype)
    classes = torch.arange(channels, device=labels.device).view(1, -1, *[1] * (labels.dim() - 1))
    return (labels.unsqueeze(1) == classes).to(dtype)


def _dense_target(
    labels: torch.Tensor | None, dense: torch.Tensor | None, *, channels: int, dtype: torch.dtype
) -> torch.Tensor:
    """The target as ``(B, C, *S)`` values: ``dense`` as it is, or ``labels`` one-hot."""
    if dense is not None:
        return dense
    assert labels is not None
    return _one_hot(labels, channels=channels, dtype=dtype)
