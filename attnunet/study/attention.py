"""Attention maps of one case as a PNG: what ``attnunet predict --save-attention`` writes.

:func:`save_attention` runs a gated model's ``forward_with_attention`` on one window of a
preprocessed case and draws the input and every spatial attention map over it with
:func:`~attnunet.study.plots.attention_figure` (colour bar on). A 3D case is shown by one
slice, the middle one along its coarsest axis (:func:`coarsest_axis`): for thick-slice
data that is the slice axis, so the figure shows one acquired slice.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from attnunet.study.plots import attention_figure

__all__ = ["coarsest_axis", "save_attention"]

_SPACING_RTOL = 1e-3
"""Spacings within this relative difference of the largest count as equally coarse."""


def coarsest_axis(spacing: Sequence[float] | None) -> int:
    """The axis with the largest voxel spacing; the first such axis on a tie.

    Spacings within 0.1 % of the largest tie with it, so that header rounding
    (1.0 vs 1.0000001 mm) does not pick an axis of an isotropic volume.

    Args:
        spacing: the voxel size along each array axis, or ``None`` (unknown).

    Returns:
        The axis index; 0 when ``spacing`` is ``None`` or isotropic.

    Examples:
        >>> coarsest_axis((0.8, 0.8, 5.0)), coarsest_axis((1.0, 1.0, 1.0)), coarsest_axis(None)
        (2, 0, 0)
    """
    if spacing is None:
        return 0
    values = [float(s) for s in spacing]
    largest = max(values)
    return next(i for i, s in enumerate(values) if s >= largest * (1 - _SPACING_RTOL))


def _patch_shape(patch_size: int | Sequence[int], dims: int) -> tuple[int, ...]:
    """``patch_size`` as one positive size per spatial axis."""
    sizes = (patch_size,) * dims if isinstance(patch_size, int) else tuple(patch_size)
    if len(sizes) != dims or any(int(s) < 1 for s in sizes):
        raise ValueError(
            f"patch_size {patch_size!r} does not fit a {dims}D image: give {dims} positive "
            f"sizes (or one int for all axes)"
        )
    return tuple(int(s) for s in sizes)


def _centre_window(image: np.ndarray, patch: Sequence[int]) -> np.ndarray:
    """The ``(C, *patch)`` window of ``image`` ``(C, *S)`` centred on the image's centre;
    zeros where the image is smaller than the window."""
    window = np.zeros((image.shape[0], *patch), dtype=np.float32)
    source: list[slice] = [slice(None)]
    target: list[slice] = [slice(None)]
    for size, want in zip(image.shape[1:], patch, strict=True):
        if size >= want:
            start = (size - want) // 2
            source.append(slice(start, start + want))
            target.append(slice(None))
        else:
            start = (want - size) // 2
            source.append(slice(None))
            target.append(slice(start, start + size))
    window[tuple(target)] = image[tuple(source)]
    return window


def _placement(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """The device of the model's first parameter (or buffer) and its floating dtype."""
    for tensor in (*model.parameters(), *model.buffers()):
        dtype = tensor.dtype if tensor.is_floating_point() else torch.float32
        return tensor.device, dtype
    return torch.device("cpu"), torch.float32


def _spatial_maps(model: nn.Module, window: np.ndarray) -> list[torch.Tensor]:
    """The model's spatial attention maps over ``window`` ``(C, *P)``, each averaged over
    its gates ``(1, 1, *s)`` on the CPU in float32, in ``forward_with_attention``'s order.

    The model runs in eval mode without gradients; every module's mode is restored."""
    device, dtype = _placement(model)
    x = torch.from_numpy(window)[None].to(device=device, dtype=dtype)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.inference_mode():
            _, maps = model.forward_with_attention(x)  # type: ignore[operator]
            return [
                m[:1].float().mean(1, keepdim=True).cpu()
                for m in maps
                if m.dim() == x.dim() and max(m.shape[2:]) > 1
            ]
    finally:
        for module, mode in modes:
            module.training = mode


def _factor(window: int, size: int) -> int:
    """The down-sampling factor ``f`` of a map axis of ``size`` over a window axis: the
    models give ``ceil(window / f)``, so ``f`` lies in ``[window / size, window / (size -
    1))``; the power of two in that range if there is one (U-Net strides), else its
    smallest integer."""
    low = window / size
    high = window / (size - 1) if size > 1 else math.inf
    power = 1 << max(0, math.ceil(math.log2(low)))
    return power if power < high else math.ceil(low)


def _scale_label(window: Sequence[int], size: Sequence[int]) -> str:
    """A map's size relative to the window: ``"1/4"`` when one factor gives every axis's
    size (tried from the longest window axis, whose factor is the least ambiguous), else
    one ratio per axis (``"1/1x1/4x1/4"``)."""
    factors = [_factor(w, s) for w, s in zip(window, size, strict=True)]
    for i in sorted(range(len(window)), key=lambda i: -window[i]):
        if all(math.ceil(w / factors[i]) == s for w, s in zip(window, size, strict=True)):
            return f"1/{factors[i]}"
    return "x".join(f"1/{f}" for f in factors)


def save_attention(
    model: nn.Module,
    image: np.ndarray,
    path: Path,
    *,
    patch_size: int | Sequence[int],
    spacing: Sequence[float] | None = None,
    title: str = "",
) -> Path | None:
    """Draw the model's spatial attention maps over one window of a case into a PNG.

    The window is ``patch_size`` large, centred on the image's centre (zero-padded where
    the image is smaller). The model runs ``forward_with_attention`` on it in eval mode
    without gradients, on the device of its parameters; the mode of every module is
    restored afterwards. Each map is averaged over its gates (a multi-gate skip gives one
    panel) and resized (bilinear in 2D, trilinear in 3D) to the window. A 2D case shows
    the window; a 3D case shows the middle slice of the window along the coarsest axis
    (:func:`coarsest_axis` of ``spacing``, axis 0 when it is ``None`` or isotropic) of the
    input's first channel and of every map.

    Panels: ``"input"``, then ``"gate 1 (1/4)"``, ``"gate 2 (1/2)"``, ... in the order of
    ``forward_with_attention`` (coarsest first for the U-Net family; UNet++ lists its
    nodes column by column), each with the map's size relative to the window (one ratio
    per axis, ``"1/1x1/4x1/4"``, where no one factor fits all axes). Maps are drawn in
    ``[0, 1]`` (a ``tanh`` gate's negative values show as 0). Panels are upscaled 2x when
    the shown window is at most 256 pixels on each side, else shown at 1x.

    Args:
        model: a segmentation model; only those whose ``forward_with_attention`` returns
            spatial maps are drawn.
        image: one preprocessed case ``(C, *S)``, 2D or 3D, float32.
        path: the PNG to write (its folder is created).
        patch_size: the window, one size per spatial axis (or one int for all).
        spacing: the voxel size per spatial axis of ``image`` (picks the 3D slice axis).
        title: a heading above the panels (e.g. the case's name); none when empty.

    Returns:
        ``path``, or ``None`` (nothing written) for a model without spatial attention
        maps: one without ``forward_with_attention``, one that returns no maps (a plain
        U-Net), or only channel weights (RAUNet).

    Raises:
        ValueError: ``image`` is not ``(C, H, W)`` or ``(C, D, H, W)``, or ``patch_size``
            or ``spacing`` has another number of axes.

    Examples:
        >>> import tempfile
        >>> from attnunet.models import create_model
        >>> model = create_model("unet", spatial_dims=2, channels=(4, 8))
        >>> image = np.zeros((1, 16, 16), dtype=np.float32)
        >>> print(save_attention(model, image, Path(tempfile.mkdtemp()) / "a.png",
        ...                      patch_size=16))
        None
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim not in (3, 4):
        raise ValueError(
            f"image has shape {image.shape}: give one case as (C, H, W) or (C, D, H, W)"
        )
    dims = image.ndim - 1
    patch = _patch_shape(patch_size, dims)
    if spacing is not None and len(spacing) != dims:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} values for {dims} axes")
    if not callable(getattr(model, "forward_with_attention", None)):
        return None
    window = _centre_window(image, patch)
    maps = _spatial_maps(model, window)
    if not maps:
        return None
    mode = "bilinear" if dims == 2 else "trilinear"
    resized = [F.interpolate(m, size=patch, mode=mode, align_corners=False)[0, 0] for m in maps]
    shown = window[0]
    panels = [m.numpy() for m in resized]
    if dims == 3:
        axis = coarsest_axis(spacing)
        middle = patch[axis] // 2
        shown = shown.take(middle, axis=axis)
        panels = [p.take(middle, axis=axis) for p in panels]
    titles = ["input"] + [
        f"gate {i + 1} ({_scale_label(patch, m.shape[2:])})" for i, m in enumerate(maps)
    ]
    scale = 2 if max(shown.shape) <= 256 else 1
    return attention_figure(shown, panels, titles, path, scale=scale, heading=title)
