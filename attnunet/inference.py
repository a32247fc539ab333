"""Sliding-window inference: segment images larger than the patches a model was trained on.

The image is covered by overlapping windows of ``roi_size`` voxels; each window goes
through the predictor (a model, or any callable returning logits of the window's size),
and the window outputs are blended into one full-size output: a weighted sum divided by
the summed weights. Works for any number of spatial axes.

Examples:
    >>> import torch
    >>> image = torch.randn(1, 1, 37, 50)
    >>> out = sliding_window_inference(image, lambda x: 2 * x + 1, roi_size=16, overlap=0.5)
    >>> out.shape
    torch.Size([1, 1, 37, 50])
    >>> bool(torch.allclose(out, 2 * image + 1, atol=1e-6))
    True
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["BLEND_MODES", "gaussian_weights", "sliding_window_inference", "window_slices"]

BLEND_MODES = ("constant", "gaussian")

# Smallest blending weight: keeps every voxel's summed weight positive (a Gaussian's far
# corners underflow to 0 for small ``sigma_scale``) while changing the blend negligibly.
_MIN_WEIGHT = 1e-6


# ---------------------------------------------------------------------------- helpers
def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _per_axis_sizes(value: object, ndim: int, name: str) -> list[int]:
    """``value`` (an int, or one int per axis) as a list of ``ndim`` positive ints."""
    if _is_int(value):
        sizes = [int(value)] * ndim  # type: ignore[call-overload]
    elif isinstance(value, Sequence) and not isinstance(value, str):
        sizes = list(value)
        if len(sizes) != ndim:
            raise ValueError(
                f"{name} has {len(sizes)} entries but the image has {ndim} spatial axes: "
                f"give one size per spatial axis or a single int for all, got {value!r}"
            )
        if not all(_is_int(s) for s in sizes):
            raise ValueError(f"{name} must hold ints, got {value!r}")
        sizes = [int(s) for s in sizes]
    else:
        raise ValueError(
            f"{name} must be an int or a sequence of {ndim} ints (one per spatial axis), "
            f"got {value!r}"
        )
    if any(s < 1 for s in sizes):
        raise ValueError(f"every entry of {name} must be at least 1, got {value!r}")
    return sizes


def _check_overlap(overlap: object) -> float:
    if isinstance(overlap, bool) or not isinstance(overlap, numbers.Real):
        raise ValueError(f"overlap must be a number in [0, 1), got {overlap!r}")
    if not 0.0 <= float(overlap) < 1.0:
        raise ValueError(
            f"overlap must lie in [0, 1) (a fraction of the window shared with the next "
            f"one; 0.25 or 0.5 are usual), got {overlap!r}"
        )
    return float(overlap)


def _index(batch: int | slice, window: Sequence[slice]) -> tuple[int | slice, ...]:
    """An index into ``(B, C, *spatial)``: ``batch``, every channel, then ``window``."""
    return (batch, slice(None), *window)


def _sigma_scales(sigma_scale: object, ndim: int) -> list[float]:
    """``sigma_scale`` (a number, or one per axis) as a list of ``ndim`` positive floats."""
    if isinstance(sigma_scale, Sequence) and not isinstance(sigma_scale, str):
        values = list(sigma_scale)
        if len(values) != ndim:
            raise ValueError(
                f"sigma_scale has {len(values)} entries for {ndim} spatial axes: give one "
                f"number for all or one per axis, got {sigma_scale!r}"
            )
    else:
        values = [sigma_scale] * ndim
    if not all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) and 0 < float(v) < math.inf
        for v in values
    ):
        raise ValueError(
            f"sigma_scale must be a positive finite number (0.125 is usual), got {sigma_scale!r}"
        )
    return [float(v) for v in values]


def _axis_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Window start positions along one axis: step ``floor(roi * (1 - overlap))``.

    The last window is placed flush with the end of the axis, so the windows cover it.
    An axis no longer than the window gets a single window at 0.
    """
    if size <= roi:
        return [0]
    # The tiny epsilon keeps e.g. 20 * (1 - 0.9) = 1.9999999999999996 from flooring to 1.
    step = max(1, math.floor(roi * (1.0 - overlap) + 1e-9))
    count = math.ceil((size - roi) / step) + 1
    return [min(i * step, size - roi) for i in range(count)]


# ---------------------------------------------------------------------------- public helpers
def window_slices(
    image_size: Sequence[int], roi_size: int | Sequence[int], overlap: float = 0.25
) -> list[tuple[slice, ...]]:
    """The windows that tile an image, as tuples of one ``slice`` per spatial axis.

    Along each axis the windows start every ``step = max(1, floor(roi * (1 - overlap)))``
    voxels, and the last one is moved back to end flush with the axis, so every voxel is
    covered. An axis no longer than the window gets one window over the whole axis
    (:func:`sliding_window_inference` pads such axes to the window size first). Windows
    are listed in raster order, the last axis varying fastest.

    Args:
        image_size: the spatial size of the image, one int per axis.
        roi_size: the window size: an int for all axes or one int per axis.
        overlap: fraction of a window shared with its neighbour, in ``[0, 1)``.

    Returns:
        A list of ``tuple[slice, ...]``, one per window; index a ``(*spatial)`` array with
        it, or prefix ``(slice(None), slice(None))`` for a ``(B, C, *spatial)`` one.

    Raises:
        ValueError: ``image_size`` or ``roi_size`` hold non-positive or non-int entries,
            their lengths differ, or ``overlap`` is outside ``[0, 1)``.

    Examples:
        >>> # size 10, roi 4, overlap 0.5: step 4 * 0.5 = 2, starts 0, 2, 4, 6 (6 + 4 = 10).
        >>> [s[0].start for s in window_slices([10], 4, overlap=0.5)]
        [0, 2, 4, 6]
        >>> window_slices([5, 3], (4, 8), overlap=0.0)  # axis 1 shorter than the window
        [(slice(0, 4, None), slice(0, 3, None)), (slice(1, 5, None), slice(0, 3, None))]
    """
    if isinstance(image_size, (str, bytes)) or not isinstance(image_size, Sequence):
        raise ValueError(f"image_size must be a sequence of ints, got {image_size!r}")
    size = _per_axis_sizes(list(image_size), len(image_size), "image_size")
    roi = _per_axis_sizes(roi_size, len(size), "roi_size")
    ov = _check_overlap(overlap)
    per_axis = [
        [slice(start, start + min(r, s)) for start in _axis_starts(s, r, ov)]
        for s, r in zip(size, roi, strict=True)
    ]
    return list(itertools.product(*per_axis))


def gaussian_weights(
    roi_size: int | Sequence[int],
    sigma_scale: float | Sequence[float] = 0.125,
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A separable Gaussian blending map for one window, largest (1) at its centre.

    Along each axis of size ``r`` the weight of voxel ``i`` is
    ``exp(-(i - (r - 1) / 2) ** 2 / (2 * sigma ** 2))`` with ``sigma = sigma_scale * r``,
    divided by the axis maximum (below 1 at even sizes, where the centre falls between
    two voxels); the map is the product over axes, so its maximum is exactly 1. Weights
    are clamped below at ``1e-6`` so that a voxel seen only by window borders never has
    a summed weight of 0.

    Args:
        roi_size: the window size; an int gives a 1D map.
        sigma_scale: the standard deviation as a fraction of the window size, one number
            for all axes or one per axis (default 0.125: a window border lies 4 sigma from
            its centre).
        dtype: floating dtype of the map.
        device: device of the map (default: the CPU).

    Returns:
        A tensor of shape ``roi_size``, symmetric along every axis, values in
        ``[1e-6, 1]``.

    Raises:
        ValueError: non-positive sizes or ``sigma_scale``, or lengths that do not match.

    Examples:
        >>> gaussian_weights(5, sigma_scale=0.2)  # sigma = 1: exp(-2), exp(-1/2), 1, ...
        tensor([0.1353, 0.6065, 1.0000, 0.6065, 0.1353])
        >>> gaussian_weights((4, 6)).shape
        torch.Size([4, 6])
    """
    if _is_int(roi_size):
        ndim = 1
    elif isinstance(roi_size, Sequence) and not isinstance(roi_size, str):
        ndim = len(roi_size)
    else:
        raise ValueError(f"roi_size must be an int or a sequence of ints, got {roi_size!r}")
    roi = _per_axis_sizes(roi_size, ndim, "roi_size")
    scales = _sigma_scales(sigma_scale, ndim)
    weights = torch.ones((), dtype=torch.float64)
    for axis, (r, scale) in enumerate(zip(roi, scales, strict=True)):
        pos = torch.arange(r, dtype=torch.float64) - (r - 1) / 2
        g = torch.exp(-0.5 * (pos / (scale * r)) ** 2)
        g = g / g.max()
        shape = [1] * ndim
        shape[axis] = r
        weights = weights * g.reshape(shape)
    return weights.clamp_min(_MIN_WEIGHT).to(dtype=dtype, device=device)


# ---------------------------------------------------------------------------- main entry point
def sliding_window_inference(
    inputs: torch.Tensor,
    predictor: Callable[[torch.Tensor], Any],
    roi_size: int | Sequence[int],
    *,
    overlap: float = 0.25,
    blend: str = "gaussian",
    sigma_scale: float | Sequence[float] = 0.125,
    sw_batch_size: int = 4,
    pad_value: float = 0.0,
    output_device: torch.device | str | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> torch.Tensor:
    """Run ``predictor`` over overlapping windows of ``inputs`` and blend the results.

    Steps: axes shorter than the window are padded with ``pad_value`` (split evenly
    between both ends, the extra voxel at the end) up to the window size; the windows of
    :func:`window_slices` are cut out of every image of the batch and passed to
    ``predictor`` ``sw_batch_size`` at a time; each window output is multiplied by the
    blending map and added into the full-size output, and the result is divided by the
    summed blending maps; finally the padding is cropped off. When a single window covers
    the (padded) image there is nothing to blend and the predictor's output is returned
    as it is (cropped), so it equals a direct forward exactly.

    Gradients are not switched off here: wrap the call in ``with torch.inference_mode():``
    (or ``torch.no_grad()``) and put the model in ``eval()`` mode for inference, otherwise
    autograd keeps every window's activations alive.

    Args:
        inputs: a ``(B, C, *spatial)`` tensor with any number of spatial axes.
        predictor: any callable mapping a ``(N, C, *roi_size)`` batch of windows to
            ``(N, C_out, *roi_size)`` outputs (usually logits), e.g. a model. If it returns
            a list or tuple (a deep-supervision model), its first element, the
            full-resolution output, is used. It receives windows on ``inputs.device``;
            to run a model on another device wrap it, e.g.
            ``lambda x: model(x.cuda())``.
        roi_size: the window size: an int for all axes or one int per spatial axis. Sizes
            larger than the image are fine (the image is padded).
        overlap: fraction of a window shared with its neighbour along each axis, in
            ``[0, 1)``; the window step is ``max(1, floor(roi * (1 - overlap)))``.
        blend: ``"gaussian"`` (default): weights from :func:`gaussian_weights`, which
            trust window centres more than borders and hide seams; ``"constant"``: every
            window voxel weighs 1, a plain average of the overlapping predictions.
        sigma_scale: the Gaussian's standard deviation as a fraction of ``roi_size``
            (``"gaussian"`` only), one number or one per axis.
        sw_batch_size: how many windows go through ``predictor`` at once; windows of
            different images of the batch share these batches.
        pad_value: the constant used to pad axes shorter than the window.
        output_device: where the output is accumulated and returned (default:
            ``inputs.device``); use ``"cpu"`` to keep a large 3D output off the GPU.
        progress: ``None`` or a callable ``progress(done, total)``, called after each
            batch of windows with the number of windows processed so far and the total
            (``B`` times the windows per image), e.g. to drive a progress bar.

    Returns:
        A ``(B, C_out, *spatial)`` tensor, the spatial size of ``inputs``, with the dtype
        of the predictor's output (accumulated in at least ``float32``) on
        ``output_device``. Under ``torch.autocast`` a model usually returns
        ``bfloat16``/``float16`` logits, so the result has that dtype too (blended in
        ``float32``, then rounded once); pass ``lambda w: model(w).float()`` to get
        ``float32``.

    Raises:
        TypeError: ``inputs`` is not a tensor or ``predictor`` is not callable.
        ValueError: ``inputs`` has fewer than 3 dimensions or an empty axis, ``roi_size``
            has the wrong length or a non-positive entry, ``overlap`` is outside
            ``[0, 1)``, ``blend`` is unknown, ``sw_batch_size < 1``, or the predictor's
            output is not ``(N, C_out, *roi_size)``.

    Examples:
        >>> model = torch.nn.Conv3d(1, 2, kernel_size=1)
        >>> volume = torch.randn(1, 1, 20, 30, 25)
        >>> with torch.inference_mode():
        ...     logits = sliding_window_inference(volume, model, roi_size=(16, 16, 16))
        >>> logits.shape
        torch.Size([1, 2, 20, 30, 25])
    """
    roi, ov = _check_arguments(
        inputs, predictor, roi_size, overlap, blend, sigma_scale, sw_batch_size, progress
    )
    out_device = inputs.device if output_device is None else torch.device(output_device)
    inputs, keep = _pad_to_window(inputs, roi, pad_value)
    padded = list(inputs.shape[2:])
    windows = window_slices(padded, roi, ov)
    batch = inputs.shape[0]
    total = batch * len(windows)
    single = len(windows) == 1
    weights: torch.Tensor | None = None
    output: torch.Tensor | None = None
    weight_sum: torch.Tensor | None = None
    out_dtype = inputs.dtype
    for first in range(0, total, sw_batch_size):
        jobs = [
            (i // len(windows), windows[i % len(windows)])
            for i in range(first, min(first + sw_batch_size, total))
        ]
        crops = [inputs[_index(slice(b, b + 1), win)] for b, win in jobs]
        result = _check_result(
            predictor(crops[0] if len(crops) == 1 else torch.cat(crops)),
            [len(jobs), inputs.shape[1], *roi],
            None if output is None else output.shape[1],
            blended=not single,
        )
        if output is None:
            out_dtype = result.dtype
            acc_dtype = (
                torch.promote_types(out_dtype, torch.float32)
                if out_dtype.is_floating_point
                else out_dtype
            )
            output = torch.zeros(
                [batch, result.shape[1], *padded], dtype=acc_dtype, device=out_device
            )
            if not single:
                weights, weight_sum = _blend_weights(
                    windows, roi, padded, blend, sigma_scale, acc_dtype, out_device
                )
        result = result.to(device=out_device, dtype=output.dtype)
        for k, (b, win) in enumerate(jobs):
            index = _index(b, win)
            if weights is None:
                output[index] = result[k]
            else:
                output[index] += result[k] * weights
        if progress is not None:
            progress(first + len(jobs), total)
    assert output is not None  # total >= 1: the loop ran at least once
    if weight_sum is not None:
        output = output.div_(weight_sum)
    output = output[_index(slice(None), keep)]
    return output.to(out_dtype)


def _check_arguments(
    inputs: object,
    predictor: object,
    roi_size: object,
    overlap: object,
    blend: object,
    sigma_scale: object,
    sw_batch_size: object,
    progress: object,
) -> tuple[list[int], float]:
    """Validate :func:`sliding_window_inference`'s arguments; returns the window size and
    the overlap."""
    if not isinstance(inputs, torch.Tensor):
        raise TypeError(
            f"inputs must be a torch.Tensor of shape (B, C, *spatial), got "
            f"{type(inputs).__name__}; convert arrays with torch.as_tensor"
        )
    if not callable(predictor):
        raise TypeError(f"predictor must be callable (e.g. a model), got {predictor!r}")
    if inputs.dim() < 3:
        raise ValueError(
            f"inputs must be (B, C, *spatial) with at least one spatial axis, got shape "
            f"{list(inputs.shape)}; add batch/channel axes with inputs[None] or "
            f"inputs[None, None]"
        )
    if inputs.numel() == 0:
        raise ValueError(f"inputs is empty: shape {list(inputs.shape)}")
    ndim = inputs.dim() - 2
    roi = _per_axis_sizes(roi_size, ndim, "roi_size")
    ov = _check_overlap(overlap)
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {', '.join(map(repr, BLEND_MODES))}, got {blend!r}")
    _sigma_scales(sigma_scale, ndim)
    if not _is_int(sw_batch_size) or sw_batch_size < 1:  # type: ignore[operator]
        raise ValueError(f"sw_batch_size must be a positive int, got {sw_batch_size!r}")
    if progress is not None and not callable(progress):
        raise TypeError(f"progress must be None or a callable(done, total), got {progress!r}")
    return roi, ov


def _pad_to_window(
    inputs: torch.Tensor, roi: list[int], pad_value: float
) -> tuple[torch.Tensor, list[slice]]:
    """Pad the axes shorter than the window (centred); returns the padded inputs and where
    the image lies in them."""
    spatial = list(inputs.shape[2:])
    keep = [
        slice(max(r - n, 0) // 2, max(r - n, 0) // 2 + n) for n, r in zip(spatial, roi, strict=True)
    ]
    pad: list[int] = []  # F.pad order: last axis first, (before, after) pairs
    for d in range(len(spatial) - 1, -1, -1):
        extra = max(roi[d] - spatial[d], 0)
        pad += [extra // 2, extra - extra // 2]
    if any(pad):
        inputs = F.pad(inputs, pad, mode="constant", value=pad_value)
    return inputs, keep


def _check_result(
    result: object, expected: list[object], channels: int | None, *, blended: bool
) -> torch.Tensor:
    """The predictor's output for one window batch (the first of a list/tuple), checked
    against ``expected`` = ``[N, C_in, *roi]`` and the channel count seen before."""
    if isinstance(result, (list, tuple)):
        if len(result) == 0:
            raise ValueError("predictor returned an empty list/tuple")
        result = result[0]
    if not isinstance(result, torch.Tensor):
        raise ValueError(
            f"predictor must return a tensor (or a list/tuple of tensors), got "
            f"{type(result).__name__}"
        )
    jobs, roi = expected[0], expected[2:]
    if (
        result.dim() != len(roi) + 2
        or result.shape[0] != jobs
        or list(result.shape[2:]) != roi
        or (channels is not None and result.shape[1] != channels)
    ):
        raise ValueError(
            f"predictor output has shape {list(result.shape)} for a window batch of "
            f"shape {expected}; expected (N, C_out, *roi_size) "
            f"= {[jobs, 'C_out', *roi]} with the same C_out for every batch. "
            f"Predictors that change the spatial size (strided outputs) are not supported"
        )
    if blended and not result.dtype.is_floating_point:
        raise ValueError(
            f"predictor returned {result.dtype} outputs, which cannot be blended: "
            f"return logits or probabilities and take the argmax after inference"
        )
    return result


def _blend_weights(
    windows: list[tuple[slice, ...]],
    roi: list[int],
    padded: list[int],
    blend: str,
    sigma_scale: float | Sequence[float],
    dtype: torch.dtype,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """A window's blending weights and their sum over all windows of the padded grid."""
    if blend == "gaussian":
        weights = gaussian_weights(roi, sigma_scale, dtype=dtype, device=device)
    else:
        weights = torch.ones(roi, dtype=dtype, device=device)
    weight_sum = torch.zeros(padded, dtype=dtype, device=device)
    for win in windows:
        weight_sum[win] += weights
    return weights, weight_sum
