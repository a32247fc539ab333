"""Input handling shared by the metrics: NumPy or torch in, per-class masks out.

The input contract (see :doc:`/metrics`): ``spatial_dims`` says how many trailing axes of an
input are spatial, and so how the leading axes read. It is required, because no shape alone
tells a batch of 2-D slices ``(B, H, W)`` from one volume ``(D, H, W)``, or a thresholded
model output ``(B, 1, H, W)`` from a batch of volumes. With ``S = spatial_dims``:

===========================  ================  ================================================
shape                        ``one_hot``       read as
===========================  ================  ================================================
``(*spatial)``               ``False``         one unbatched mask or label map (a batch of 1)
``(B, *spatial)``            ``False``         a batch of masks or label maps
``(B, 1, *spatial)``         ``False``         the same with a channel axis (``logits > 0`` of a
                                               one-channel model, MONAI's ``argmax(keepdim)``)
``(B, C, *spatial)``, C > 1  ``False``         refused: pass ``one_hot=True``, or ``argmax(1)``
``(B, C, *spatial)``         ``True``          per-class masks (one-hot or multi-label), 0/1
===========================  ================  ================================================

Integer and boolean inputs are taken as they are. Floating-point inputs are accepted when
every value is a whole number (MONAI's one-hot and ``AsDiscrete`` outputs are float 0/1
tensors); probabilities and logits are refused with the thresholding that fits their shape.

Results come back as the input kind: a torch tensor on the input's device, or a NumPy array
(``float64``) for NumPy input.
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Sequence
from typing import Literal, NamedTuple, TypeAlias

import numpy as np
import torch

from attnunet.layers.values import int_value, min_max

Array: TypeAlias = "torch.Tensor | np.ndarray"
Reduction = Literal["mean", "mean_batch", "none"]
REDUCTIONS = ("mean", "mean_batch", "none")

LAYOUTS = (
    "(*spatial) or (B, *spatial) masks or label maps, (B, 1, *spatial) with a channel axis, "
    "or (B, C, *spatial) per-class masks with one_hot=True"
)


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


# ------------------------------------------------------------------------------ layouts


def _size(shape: Sequence[int]) -> str:
    return " x ".join(str(n) for n in shape)


def _reading(shape: Sequence[int], spatial_dims: int, one_hot: bool) -> str:
    """How ``shape`` reads under ``spatial_dims`` (and ``one_hot``), for messages."""
    n, s = len(shape), spatial_dims
    spatial = _size(shape[n - s :]) if n >= s else ""
    if one_hot:
        return f"a batch of {shape[0]} image(s) with {shape[1]} class masks of {spatial}"
    if n == s:
        return f"one unbatched image of {spatial}"
    if n == s + 1:
        return f"a batch of {shape[0]} image(s) of {spatial}"
    return f"a batch of {shape[0]} image(s) with {shape[1]} channel(s) of {spatial}"


def check_spatial_dims(
    spatial_dims: object, shape: Sequence[int], label: str, one_hot: bool
) -> int:
    """``spatial_dims`` as an int, or a ValueError that lists how ``shape`` could be read."""
    if spatial_dims is None:
        n = len(shape)
        readings = []
        for s in range(min(3, n), 0, -1):
            extra = n - s
            fits = extra == 2 if one_hot else extra in (0, 1) or (extra == 2 and shape[1] == 1)
            if fits:
                readings.append(f"spatial_dims={s}: {_reading(shape, s, one_hot)}")
            elif not one_hot and extra == 2:
                readings.append(f"spatial_dims={s} with one_hot=True: {_reading(shape, s, True)}")
        options = "; ".join(readings) or "none of 1..3 fits this shape"
        how = (
            ", which reads more than one way:"
            if len(readings) > 1
            else ": the metrics never guess,"
        )
        raise ValueError(
            f"{label} has shape {list(shape)}{how} pass spatial_dims, the number of spatial "
            f"axes ({options}). Accepted layouts: {LAYOUTS}"
        )
    if (
        isinstance(spatial_dims, bool)
        or not isinstance(spatial_dims, numbers.Integral)
        or int(spatial_dims) < 1
    ):
        raise ValueError(
            f"spatial_dims must be a positive int (2 for images, 3 for volumes), got "
            f"{spatial_dims!r}"
        )
    return int(spatial_dims)


def canonical(x: torch.Tensor, spatial_dims: int, one_hot: bool, label: str) -> torch.Tensor:
    """``x`` as ``(B, *spatial)`` (masks, label maps) or ``(B, C, *spatial)`` (``one_hot``).

    Raises:
        ValueError: ``x`` has too few or too many axes for ``spatial_dims``, or a channel
            axis of more than one channel without ``one_hot=True``.
    """
    shape, n, s = list(x.shape), x.dim(), spatial_dims
    if one_hot and n == s + 1:
        raise ValueError(
            f"{label} has shape {shape}, but with one_hot=True and spatial_dims={s} every "
            f"input needs a batch and a class axis, (B, C, *spatial), {s + 2} axes. For one "
            f"image add the batch axis (x[None]); for a label map (B, *spatial) drop "
            f"one_hot=True and pass num_classes; to score a one-hot prediction against a "
            f"label map, make both label maps (pred.argmax(1), with num_classes=C)"
        )
    if n < s or n > s + 2:
        need = (
            f"{s + 2} axes ((B, C, *spatial)) with one_hot=True"
            if one_hot
            else f"{s}, {s + 1} or {s + 2} axes ((*spatial), (B, *spatial) or (B, 1, *spatial))"
        )
        raise ValueError(
            f"{label} has shape {shape} ({n} axes), but spatial_dims={s} needs {need}; "
            f"pass the spatial_dims that matches the data"
        )
    if one_hot:
        return x
    if n == s:
        return x.unsqueeze(0)
    if n == s + 2:
        if shape[1] != 1:
            raise ValueError(
                f"{label} has shape {shape}; with spatial_dims={s} that is "
                f"{_reading(shape, s, False)}, but a mask or label map has one channel or "
                f"none. Pass one_hot=True if channel c is the mask of class c (MONAI and "
                f"torchmetrics one-hot), or make a label map first (x.argmax(1), then "
                f"num_classes={shape[1]})"
            )
        return x[:, 0]
    return x


def _not_whole(x: torch.Tensor, label: str, multi_channel: bool) -> TypeError:
    """The error for a floating-point input that holds other than whole numbers."""
    bad = x[~torch.isfinite(x) | (x != torch.round(x))].flatten()[0].item()
    advice = (
        "for these per-class channels take x.argmax(1) (a label map, with num_classes) or "
        "threshold each channel (probs > 0.5) for multi-label outputs"
        if multi_channel
        else "threshold them: (logits > 0) for a one-channel model's logits, (probs > 0.5) "
        "for probabilities; for a C-channel model's output (B, C, *spatial) take "
        "logits.argmax(1) and pass num_classes=C"
    )
    return TypeError(
        f"{label} holds floating-point values that are not whole numbers (e.g. {bad:g}): "
        f"probabilities or logits, not a mask or label map; {advice}"
    )


def _as_whole(inputs: list[tuple[str, torch.Tensor]], multi_channel: bool) -> list[torch.Tensor]:
    """The inputs with floating-point ones that hold whole numbers only as ``int64``; the
    check of every floating-point input together reads back one value (none without)."""
    for label, x in inputs:
        if x.is_complex():
            raise TypeError(f"{label} must be real, got {x.dtype}")
    floats = [i for i, (_, x) in enumerate(inputs) if x.is_floating_point()]
    if not floats:
        return [x for _, x in inputs]
    checks = [inputs[i][1] for i in floats]
    whole = torch.stack([(torch.isfinite(x) & (x == torch.round(x))).all() for x in checks])
    for i, ok in zip(floats, whole.tolist(), strict=True):
        if not ok:
            raise _not_whole(inputs[i][1], inputs[i][0], multi_channel)
    return [x.long() if x.is_floating_point() else x for _, x in inputs]


def refuse_positional(name: str, misplaced: tuple[object, ...], spacing: bool = False) -> None:
    """Only ``pred`` and ``target`` are positional. A third positional argument is refused
    with what it probably meant: the classes of a label map (torchmetrics passes them
    third) or, for the surface distances, a voxel spacing (MedPy passes it third), which an
    int spacing would otherwise be silently taken for."""
    if not misplaced:
        return
    value = misplaced[0]
    meant = f"num_classes={value!r} for the classes of a label map"
    if spacing:
        meant += f", or spacing={value!r} for a voxel spacing (MedPy's third argument)"
    raise TypeError(
        f"{name}() takes pred and target positionally and everything else by name, got "
        f"{len(misplaced)} more positional argument(s): "
        f"{', '.join(repr(v) for v in misplaced)}. Pass it by name: {meant}"
    )


def num_classes_value(num_classes: object, one_hot: bool = False) -> int | None:
    """``num_classes`` as an int >= 2 or None; NumPy and torch integer scalars accepted.
    With ``one_hot`` the classes come from the class axis, so ``num_classes`` must be
    None."""
    if num_classes is None:
        return None
    if one_hot:
        raise ValueError(
            "pass either one_hot=True (the class axis is dim 1) or num_classes (label "
            "maps), not both"
        )
    value = int_value(num_classes)  # Python, NumPy or torch integer scalars; no bools
    if value is not None and value >= 2:
        return value
    hint = ""
    if value == 1 or num_classes is True:  # True is 1 to Python
        hint = " For binary masks leave num_classes out (None): every non-zero voxel counts."
    elif isinstance(num_classes, float | np.floating) or (
        isinstance(num_classes, Sequence | np.ndarray | torch.Tensor)
        and not isinstance(num_classes, str)
    ):
        hint = (
            " If this is a voxel spacing (MedPy passes it third), pass it by name: "
            f"spacing={num_classes!r}"
        )
    raise ValueError(
        f"num_classes must be an int >= 2 (background included), or None for binary "
        f"masks, got {num_classes!r}.{hint}"
    )


class Masks(NamedTuple):
    """Per-class boolean masks of a prediction/target pair, ``(B, K, *spatial)``."""

    pred: torch.Tensor
    target: torch.Tensor
    binary: bool  # K = 1 from a mask: reduction="none" drops the class axis
    numpy: bool  # pred was NumPy


def layout_pair(
    pred: Array,
    target: Array,
    spatial_dims: int | None,
    one_hot: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """Both inputs as canonical tensors of one shape: ``(B, *spatial)``, or
    ``(B, C, *spatial)`` with ``one_hot``. Float inputs holding whole numbers become
    ``int64``; other floats are refused.

    Returns ``(pred, target, whether pred was NumPy)``.
    """
    p, p_numpy = as_tensor(pred, "pred")
    t, _ = as_tensor(target, "target")
    s = check_spatial_dims(spatial_dims, list(p.shape), "pred", one_hot)
    if p.device != t.device:
        raise ValueError(f"pred is on {p.device} but target is on {t.device}")
    p, t = canonical(p, s, one_hot, "pred"), canonical(t, s, one_hot, "target")
    if p.shape != t.shape:
        raise ValueError(
            f"pred and target must hold the same images, got shapes {list(pred.shape)} and "
            f"{list(target.shape)} (read with spatial_dims={s} as {list(p.shape)} and "
            f"{list(t.shape)})"
        )
    p, t = _as_whole([("pred", p), ("target", t)], one_hot and p.shape[1] > 1)
    return p, t, p_numpy


def class_masks(
    pred: Array,
    target: Array,
    *,
    num_classes: object,
    spatial_dims: int | None,
    include_background: bool,
    one_hot: bool = False,
    check_labels: bool = True,
) -> Masks:
    """Validate a prediction/target pair and turn it into per-class boolean masks.

    Returns:
        :class:`Masks`: boolean tensors of shape ``(B, K, *spatial)`` on the inputs' device
        (``K = 1`` for binary input), whether the input was binary (so ``reduction="none"``
        drops the class axis), and whether ``pred`` was NumPy.
    """
    k = num_classes_value(num_classes, one_hot)
    p, t, p_numpy = layout_pair(pred, target, spatial_dims, one_hot)
    if one_hot:
        if check_labels:
            check_mask_values(p, t)
        first = 0 if include_background or p.shape[1] == 1 else 1
        return Masks(p[:, first:] != 0, t[:, first:] != 0, False, p_numpy)
    if k is None:
        p, t = (x if x.dtype == torch.bool else x != 0 for x in (p, t))
        return Masks(p.unsqueeze(1), t.unsqueeze(1), True, p_numpy)
    if check_labels:
        check_label_range(p, t, k)
    first = 0 if include_background else 1
    shape = (1, -1) + (1,) * (p.dim() - 1)
    classes = torch.arange(first, k, device=p.device).view(shape)
    return Masks(p.unsqueeze(1) == classes, t.unsqueeze(1) == classes, False, p_numpy)


def check_mask_values(p: torch.Tensor, t: torch.Tensor) -> None:
    """Per-class masks (``one_hot=True``) must hold 0 and 1 only: a label map passed as
    one-hot would otherwise score every non-zero label as a class's mask. One host read."""
    pairs = [(label, x) for label, x in (("pred", p), ("target", t)) if x.dtype != torch.bool]
    for (label, _), found in zip(pairs, min_max(*(x for _, x in pairs)), strict=True):
        if found is not None and (found[0] < 0 or found[1] > 1):
            raise ValueError(
                f"with one_hot=True every channel must be a 0/1 mask, but {label} holds "
                f"values in {found[0]}..{found[1]}: a label map? Pass it without one_hot "
                f"and with num_classes, as (B, *spatial) or (B, 1, *spatial)"
            )


def check_label_range(p: torch.Tensor, t: torch.Tensor, num_classes: int) -> None:
    """Label maps must hold ``0..C-1``; one host read for both."""
    for label, found in zip(("pred", "target"), min_max(p, t), strict=True):
        if found is not None and (found[0] < 0 or found[1] >= num_classes):
            raise ValueError(
                f"{label} holds labels outside 0..{num_classes - 1} (min {found[0]}, max "
                f"{found[1]}); pass the right num_classes, or None to score every non-zero "
                f"label as foreground"
            )


def reduce(values: torch.Tensor, binary: bool, reduction: str) -> torch.Tensor:
    """``values`` of shape ``(B, K)``: ``"none"`` keeps them (``(B,)`` when binary),
    ``"mean_batch"`` averages over images per class (``(K,)``, a scalar when binary),
    ``"mean"`` averages each image's classes, then the images (MONAI's and torchmetrics'
    order: with classes absent from some images, a flat mean over all entries differs).
    NaN entries are left out of every mean (NaN if all are NaN).

    Runs on the tensor's device without a host synchronisation.
    """
    if reduction == "none":
        return values[:, 0] if binary else values
    if reduction == "mean_batch":
        per_class = values.nanmean(dim=0)
        return per_class[0] if binary else per_class
    return values.nanmean(dim=1).nanmean()


def output(values: torch.Tensor, numpy: bool) -> torch.Tensor | np.ndarray:
    """Return ``values`` as the input kind: NumPy ``float64`` or the tensor itself."""
    if numpy:
        out = values.detach().cpu().numpy().astype(np.float64)
        return out if out.ndim else np.float64(out)
    return values
