"""Small, TorchScript-friendly helpers for matching spatial sizes."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def interp_mode(spatial_dims: int) -> str:
    """The linear interpolation mode for ``spatial_dims`` (linear/bilinear/trilinear)."""
    return ("linear", "bilinear", "trilinear")[spatial_dims - 1]


def per_axis(value: int | Sequence[int], spatial_dims: int, what: str) -> tuple[int, ...]:
    """``value`` as one positive int per spatial axis: an int is repeated, a sequence must
    have ``spatial_dims`` entries.

    Raises:
        ValueError: a bool, a non-positive or non-int entry, or a sequence of another
            length; the message names ``what`` and shows what works.

    Examples:
        >>> per_axis(2, 3, "stride"), per_axis([1, 2, 2], 3, "stride")
        ((2, 2, 2), (1, 2, 2))
    """
    items = [value] * spatial_dims if isinstance(value, int) else value
    if isinstance(value, bool) or not isinstance(items, Sequence) or isinstance(items, str):
        raise ValueError(
            f"{what} must be an int or one int per spatial axis ({spatial_dims}), got {value!r}"
        )
    axes = tuple(items)
    if len(axes) != spatial_dims or any(
        isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in axes
    ):
        example = ", ".join(["3" if "kernel" in what else "2"] * spatial_dims)
        raise ValueError(
            f"{what} must be a positive int or {spatial_dims} positive ints (one per spatial "
            f"axis, e.g. [{example}]), got {value!r}"
        )
    return axes


def compact_axes(axes: Sequence[int]) -> int | tuple[int, ...]:
    """One int when every axis agrees (a layer then reads as an isotropic one, as before
    per-axis values existed), else the tuple.

    Examples:
        >>> compact_axes((2, 2, 2)), compact_axes([1, 2, 2])
        (2, (1, 2, 2))
    """
    return axes[0] if len(set(axes)) == 1 else tuple(axes)


def match_size(x: torch.Tensor, size: list[int]) -> torch.Tensor:
    """Crop or replicate-pad ``x`` at the *end* of each spatial axis to ``size``.

    The upsampled decoder feature of an odd-sized skip is one voxel short at the end of
    the axis; replicate padding there keeps every voxel aligned with its skip voxel
    (interpolating would shift the grid by a fraction of a voxel).
    """
    spatial = x.shape[2:]
    pad: list[int] = []
    need_pad = False
    for d in range(len(size) - 1, -1, -1):
        diff = size[d] - spatial[d]
        pad.append(0)
        pad.append(max(diff, 0))
        if diff > 0:
            need_pad = True
    if need_pad:
        x = F.pad(x, pad, mode="replicate")
    return crop_to(x, size)


def ceil_div(a: int, b: int) -> int:
    """``ceil(a / b)`` for ``a >= 0`` and ``b > 0``, written ``(a + b - 1) // b``.

    Not ``-(-a // b)``: when a model is traced for ONNX (``torch.onnx.export`` with
    ``dynamo=False``) a floor division of sizes is exported as ONNX ``Div``, which
    truncates towards zero, so the negative operand made ``-(-45 // 2)`` export as 22
    instead of 23. With both operands non-negative, truncation and floor agree.
    """
    return (a + b - 1) // b


def crop_to(x: torch.Tensor, size: list[int], always: bool = False) -> torch.Tensor:
    """Keep the first ``size[d]`` voxels of every spatial axis ``d`` of ``x``.

    An axis already of length ``size[d]`` is left alone, unless ``always`` is set: then
    every axis is narrowed (a no-op at equal length), which keeps the crop in a graph
    captured at one size and run at another (see :func:`capturing`).
    """
    for d in range(len(size)):
        if always or x.shape[d + 2] > size[d]:
            x = x.narrow(d + 2, 0, size[d])
    return x


def channels_last_format(ndim: int) -> torch.memory_format:
    """The channels-last memory format of a tensor with ``ndim`` dimensions:
    ``torch.channels_last`` for 4 (2D images), ``torch.channels_last_3d`` for 5 (volumes),
    ``torch.contiguous_format`` otherwise (no channels-last layout exists). Not for
    TorchScript, which has no memory-format type.

    Examples:
        >>> channels_last_format(5)
        torch.channels_last_3d
    """
    if ndim == 4:
        return torch.channels_last
    if ndim == 5:
        return torch.channels_last_3d
    return torch.contiguous_format


def keep_layout(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """A convolution's output ``y`` in the channels-last layout of its input ``x``.

    PyTorch's CPU convolutions return their input's layout, except its native
    (non-oneDNN) kernels, which it chooses for some small batch-1 inputs (a 3x3x3
    convolution of ``(1, 16, 32, 32, 32)``, say) and which return the default layout. The
    rest of a channels-last network would then run in the default layout: in a 3D
    training step of batch 1 (``(1, 1, 64^3)``, UNet 16..128, 2 CPU cores) that cost
    1.2x. The conv units, the transposed-convolution up-sampling and the strided
    down-sampling of attnunet's blocks pass their outputs through it. Any other ``y`` is
    returned as it is.

    Examples:
        >>> x = torch.randn(1, 4, 6, 6).contiguous(memory_format=torch.channels_last)
        >>> keep_layout(torch.randn(1, 8, 6, 6), x).is_contiguous(memory_format=torch.channels_last)
        True
    """
    if not torch.jit.is_scripting() and (torch.jit.is_tracing() or torch.compiler.is_compiling()):
        return y  # a captured graph keeps no layout decision (its guards would fix sizes)
    if x.dim() == 4:
        layout = torch.channels_last
    elif x.dim() == 5:
        layout = torch.channels_last_3d
    else:
        return y
    lost = y.dim() == x.dim() and y.size(1) > 1 and y.is_contiguous()
    if lost and x.is_contiguous(memory_format=layout) and not x.is_contiguous():
        return y.contiguous(memory_format=layout)
    if lost and x.size(1) == 1 and x.stride(1) == 1 and x.is_contiguous(memory_format=layout):
        return y.contiguous(memory_format=layout)  # a one-channel input with NHWC strides
    return y


def capturing() -> bool:
    """True while a graph is captured for export: under ``torch.jit.trace`` (what the
    TorchScript-based ``torch.onnx.export(..., dynamo=False)`` runs) or ``torch.export``
    (``dynamo=True``). Such a graph keeps no Python ``if`` on sizes, only the branch taken
    at the export size; code that pads or crops "only when needed" must then pad and
    crop always (zero padding, a full-length crop), or the graph is wrong at sizes that
    needed the other branch. Call it only under ``if not torch.jit.is_scripting():``.
    """
    return torch.jit.is_tracing() or torch.compiler.is_exporting()


def _double_axis(x: torch.Tensor, d: int, linear: bool) -> torch.Tensor:
    """Double axis ``d`` of ``x``: nearest (each voxel twice) or linear with
    ``align_corners=False``. Output voxel ``2i`` is ``0.25 x[i-1] + 0.75 x[i]`` and ``2i+1``
    is ``0.75 x[i] + 0.25 x[i+1]``, the ends replicated (``x[-1] = x[0]``,
    ``x[n] = x[n-1]``): the weights of PyTorch's (bi/tri)linear interpolation at scale 2.
    """
    n = x.shape[d]
    if linear and n > 1:
        prev = torch.cat([x.narrow(d, 0, 1), x.narrow(d, 0, n - 1)], d)
        after = torch.cat([x.narrow(d, 1, n - 1), x.narrow(d, n - 1, 1)], d)
        centre = 0.75 * x
        pair = torch.stack([centre + 0.25 * prev, centre + 0.25 * after], d + 1)
    else:
        pair = torch.stack([x, x], d + 1)
    return pair.flatten(d, d + 1)


def upsample_x2(x: torch.Tensor, linear: bool = True) -> torch.Tensor:
    """``F.interpolate(x, scale_factor=2, mode=..., align_corners=False)`` for linear
    modes (or ``mode="nearest"`` with ``linear=False``) written with slices, sums and
    stacks only.

    The result equals the interpolation (float64: to 1e-15; float32: to a few ulp, the
    weights being summed in another order). It is the form :func:`torch.compile` is given
    (see :func:`resize`): inductor lowers PyTorch's interpolation to gathers and its
    backward to a scatter-add (``index_put``), which on CPU ran 7-14x slower than this
    form compiled, while this one fuses into a few element-wise kernels. A channels-last
    input is processed in its own layout, so the result is channels-last too.
    """
    channels_last = x.dim() > 3 and not x.is_contiguous()
    y = x.movedim(1, -1) if channels_last else x
    first = 1 if channels_last else 2
    for d in range(first, first + x.dim() - 2):
        y = _double_axis(y, d, linear)
    return y.movedim(-1, 1) if channels_last else y


def _compiling() -> bool:
    """True while dynamo traces for ``torch.compile`` (not ``torch.export``, whose graph
    keeps the interpolation op, e.g. a single ONNX ``Resize``)."""
    return torch.compiler.is_compiling() and not torch.compiler.is_exporting()


def resize(
    x: torch.Tensor, size: list[int], mode: str, align_corners: bool | None = None
) -> torch.Tensor:
    """``F.interpolate(x, size=size, mode=mode, align_corners=align_corners)``; under
    ``torch.compile``, an exact doubling of every axis (nearest or linear without
    ``align_corners``) takes :func:`upsample_x2` instead (same values, much faster
    compiled code)."""
    if not torch.jit.is_scripting():  # noqa: SIM102 (alone, or TorchScript compiles the rest)
        if not align_corners and _compiling():
            doubling = len(size) == x.dim() - 2 and all(
                size[d] == 2 * x.shape[d + 2] for d in range(len(size))
            )
            if doubling and mode in ("linear", "bilinear", "trilinear", "nearest"):
                return upsample_x2(x, linear=mode != "nearest")
    return F.interpolate(x, size=size, mode=mode, align_corners=align_corners)
