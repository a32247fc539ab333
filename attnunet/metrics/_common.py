"""Input handling shared by the metrics: NumPy or torch in, per-class masks out.

Every metric accepts the same three input forms (see :doc:`/metrics`):

* binary masks or instance maps ``(B, *spatial)``: every non-zero value is foreground;
* label maps ``(B, *spatial)`` with ``num_classes=C``: one mask per class ``0..C-1``;
* one-hot or multi-label masks ``(B, C, *spatial)`` with ``one_hot=True``: channel ``c``
  is the mask of class ``c`` (channels may overlap).

Results come back as the input kind: a torch tensor on the input's device, or a NumPy
array (``float64``) for NumPy input.
"""

from __future__ import annotations

import warnings
from typing import Literal, TypeAlias

import numpy as np
import torch

Array: TypeAlias = "torch.Tensor | np.ndarray"
Reduction = Literal["mean", "none"]
REDUCTIONS = ("mean", "none")


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got {reduction!r}"
        )


def as_tensor(x: object, label: str) -> tuple[torch.Tensor, bool]:
    """``x`` as a tensor (NumPy arrays are wrapped without a copy) and whether it was NumPy."""
    if isinstance(x, torch.Tensor):
        if x.dtype in (torch.uint16, torch.uint32, torch.uint64):  # few ops support these
            x = x.long()
        return x, False
    if isinstance(x, np.ndarray):
        if x.dtype in (np.uint16, np.uint32, np.uint64):
            x = x.astype(np.int64)
        elif not x.dtype.isnative:  # big-endian data from some NIfTI/DICOM readers
            x = x.astype(x.dtype.newbyteorder("="))
        x = np.ascontiguousarray(x)
        with warnings.catch_warnings():  # read-only arrays are fine: nothing writes to them
            warnings.filterwarnings("ignore", message=".*not writable.*")
            return torch.from_numpy(x), True
    raise TypeError(f"{label} must be a torch.Tensor or a numpy.ndarray, got {type(x).__name__}")


def tensor_pair(
    pred: Array, target: Array, one_hot: bool = False
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Both inputs as tensors after checking they agree in shape and device and have a
    batch axis (and a class axis with ``one_hot``) plus at least one spatial axis.

    Returns ``(pred, target, whether pred was NumPy)``.
    """
    p, p_numpy = as_tensor(pred, "pred")
    t, _ = as_tensor(target, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target must have the same shape, got {list(p.shape)} and {list(t.shape)}"
        )
    if p.device != t.device:
        raise ValueError(f"pred is on {p.device} but target is on {t.device}")
    if p.dim() < (3 if one_hot else 2):
        form = "(B, C, *spatial)" if one_hot else "(B, *spatial)"
        raise ValueError(
            f"expected inputs of shape {form} with at least one spatial axis, got {list(p.shape)}"
        )
    return p, t, p_numpy


def class_masks(
    pred: Array,
    target: Array,
    num_classes: int | None,
    include_background: bool,
    one_hot: bool = False,
    check_labels: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, bool, bool]:
    """Validate a prediction/target pair and turn it into per-class boolean masks.

    Returns:
        ``(P, T, binary, numpy)``: boolean tensors of shape ``(B, K, *spatial)`` on the
        inputs' device (``K = 1`` for binary input), whether the input was binary (so
        ``reduction="none"`` drops the class axis), and whether ``pred`` was NumPy.
    """
    p, t, p_numpy = tensor_pair(pred, target, one_hot)
    for label, x in (("pred", p), ("target", t)):
        if x.is_floating_point() or x.is_complex():
            raise TypeError(
                f"{label} must be a label map (integer) or a mask (bool), got {x.dtype}: "
                f"threshold probabilities or logits first, e.g. (logits > 0) or "
                f"logits.argmax(1)"
            )
    if one_hot:
        if num_classes is not None:
            raise ValueError(
                "pass either one_hot=True (the class axis is dim 1) or num_classes (label "
                "maps), not both"
            )
        first = 0 if include_background or p.shape[1] == 1 else 1
        return p[:, first:] != 0, t[:, first:] != 0, False, p_numpy
    if num_classes is None:
        p, t = (x if x.dtype == torch.bool else x != 0 for x in (p, t))
        return p.unsqueeze(1), t.unsqueeze(1), True, p_numpy
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(
            f"num_classes must be an int >= 2 (background included), or None for binary "
            f"masks, got {num_classes!r}"
        )
    if check_labels:
        for label, x in (("pred", p), ("target", t)):
            if x.numel() and (int(x.min()) < 0 or int(x.max()) >= num_classes):
                raise ValueError(
                    f"{label} holds labels outside 0..{num_classes - 1} "
                    f"(min {int(x.min())}, max {int(x.max())}); pass the right num_classes, "
                    f"or None to score every non-zero label as foreground"
                )
    first = 0 if include_background else 1
    shape = (1, -1) + (1,) * (p.dim() - 1)
    classes = torch.arange(first, num_classes, device=p.device).view(shape)
    return p.unsqueeze(1) == classes, t.unsqueeze(1) == classes, False, p_numpy


def reduce(values: torch.Tensor, binary: bool, reduction: str) -> torch.Tensor:
    """``values`` of shape ``(B, K)``: ``"none"`` keeps them (``(B,)`` when binary),
    ``"mean"`` averages everything, leaving NaN entries out (NaN if all are NaN).

    Runs on the tensor's device without a host synchronisation.
    """
    if reduction == "none":
        return values[:, 0] if binary else values
    return values.nanmean()


def output(values: torch.Tensor, numpy: bool) -> torch.Tensor | np.ndarray:
    """Return ``values`` as the input kind: NumPy ``float64`` or the tensor itself."""
    if numpy:
        out = values.detach().cpu().numpy().astype(np.float64)
        return out if out.ndim else np.float64(out)
    return values
