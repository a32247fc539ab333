"""Whole-image prediction by sliding-window inference with the training patch size."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from attnunet.training.settings import TrainSettings, resolve_precision

__all__ = ["autocast_context", "predict", "predict_logits"]

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_context(
    precision: str, device: torch.device | str
) -> contextlib.AbstractContextManager[Any]:
    """The autocast context of a precision on a device: ``torch.autocast`` to bfloat16 or
    float16, nothing for fp32 (``"auto"`` is resolved by :func:`resolve_precision`).

    Args:
        precision: ``"auto"``, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: where the model runs.

    Returns:
        A context manager.

    Examples:
        >>> conv = nn.Conv2d(1, 2, 3)
        >>> with autocast_context("bf16", "cpu"):
        ...     out = conv(torch.ones(1, 1, 5, 5))
        >>> out.dtype, conv.weight.dtype
        (torch.bfloat16, torch.float32)
    """
    device = torch.device(device)
    dtype = _DTYPES.get(resolve_precision(precision, device))
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def _main_output(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    """The final output of a model (the first of a deep-supervision list)."""
    return out if isinstance(out, torch.Tensor) else out[0]


def predict_logits(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    settings: TrainSettings,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Logits ``(num_classes, *S)`` for one image ``(C, *S)`` of any size, by sliding-window
    inference with the training patch size (on the CPU).

    The model runs in eval mode without gradients, under the autocast of
    ``settings.precision`` (:func:`autocast_context`; the windows are blended in float32), and is
    put back in the mode it had.

    Args:
        model: a model of the zoo (a deep-supervision list gives its final output).
        image: one image ``(C, *S)``.
        settings: the recipe: its patch size, overlap and blending are used.
        device: where the model runs (default: the model's device).

    Returns:
        The logits on the CPU, ``(num_classes, *S)``.
    """
    from attnunet.inference import sliding_window_inference

    device = device or next(model.parameters()).device
    x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)[None].to(device)
    precision = settings.precision

    def window(batch: torch.Tensor) -> torch.Tensor:
        with autocast_context(precision, device):
            return _main_output(model(batch)).float()

    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = sliding_window_inference(
                x,
                window,
                settings.patch_size,
                overlap=settings.overlap,
                blend=settings.blend,
                output_device=torch.device("cpu"),
            )
    finally:
        model.train(was_training)
    return logits[0]


def predict(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    settings: TrainSettings,
    device: torch.device | None = None,
) -> np.ndarray:
    """Label map ``(*S)`` (``int64``) for one image ``(C, *S)``.

    Args:
        model: a model of the zoo.
        image: one image ``(C, *S)`` of any size.
        settings: the recipe: its patch size, overlap and blending are used.
        device: where the model runs (default: the model's device).

    Returns:
        The argmax over :func:`predict_logits`, as a NumPy array.
    """
    return predict_logits(model, image, settings, device).argmax(0).numpy()
