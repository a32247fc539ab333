"""Option types and the checks of options and logits that the loss functions and modules
share: one wording for every message, whichever form of a loss raises it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch

from attnunet.layers.values import int_value

Activation = Literal["auto", "sigmoid", "softmax"] | None
"""How the overlap losses turn logits into probabilities (``None``: they already are)."""
Reduction = Literal["mean", "sum", "none"]
"""How a loss reduces its terms: their mean, their sum, or none (the terms themselves)."""
DeepSupervisionWeights = Literal["nnunet", "same", "exponential"] | Sequence[float]
"""A named weight scheme for deep-supervision outputs, or one weight per output."""
NearestMode = Literal["nearest-exact", "nearest"]
"""The nearest-neighbour convention of target resizing (centre-aligned, or legacy)."""
Weights = Sequence[float] | torch.Tensor | None

_ACTIVATIONS = ("auto", "sigmoid", "softmax", None)
_REDUCTIONS = ("mean", "sum", "none")
_DS_SCHEMES = ("nnunet", "same", "exponential")
_NEAREST_MODES = ("nearest-exact", "nearest")


def _check_choice(name: str, value: object, choices: Sequence[object]) -> None:
    """``value`` (of the option ``name``) must be one of ``choices``."""
    if isinstance(value, str | type(None)) and value in choices:
        return
    raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")


def _check_number(name: str, value: object, *, low: float, strict: bool) -> float:
    """``value`` as a float: a finite real number ``>= low`` (``> low`` when ``strict``)."""
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


def _resolve_activation(activation: Activation, *, channels: int) -> str | None:
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
    value = int_value(ignore_index)  # Python, NumPy or torch integer scalars; no bools
    if value is None:
        raise TypeError(
            f"ignore_index must be an int (a label value, e.g. 255 or -100) or None, got "
            f"{ignore_index!r}"
        )
    return value


def _check_per_image(*, batch: bool, reduction: str) -> None:
    """``"sum"`` and ``"none"`` reduce one loss per image, which a batch Dice does not
    have."""
    if batch and reduction != "mean":
        raise ValueError(
            f"reduction={reduction!r} needs batch=False: the batch Dice pools the images, "
            f"so there is no loss per image"
        )


def _class_weights(
    class_weights: Weights, *, channels: int, like: torch.Tensor
) -> torch.Tensor | None:
    """``class_weights`` as a ``(C,)`` tensor of ``like``'s dtype and device (``None``
    stays ``None``): one finite, non-negative number per logits channel."""
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
