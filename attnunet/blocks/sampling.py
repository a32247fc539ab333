"""Down- and up-sampling blocks for any ``spatial_dims``."""

from collections.abc import Sequence
from typing import Final, Literal

import torch
from torch import nn

from attnunet.layers import (
    avg_pool_type,
    check_spatial_dims,
    compact_axes,
    conv_transpose_type,
    conv_type,
    max_pool_type,
    per_axis,
)
from attnunet.layers.shape import interp_mode, keep_layout, match_size, resize

__all__ = ["Down", "Up", "Upsample", "Upsample2x"]

DownMode = Literal["maxpool", "avgpool", "conv"]
UpMode = Literal["transpose", "interp", "upsample"]


Axes = int | Sequence[int]


class Down(nn.Module):
    """Down-sample every spatial axis by its stride (floor division) with a pool or a
    strided convolution whose kernel equals the stride.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: channels of the input (and output).
        mode: ``"maxpool"`` (default), ``"avgpool"`` or ``"conv"`` (a learned convolution
            with kernel and stride equal to ``stride``, with bias).
        stride: the factor per axis, an int or one per axis (``(1, 2, 2)`` keeps the
            first axis, as for thick-slice volumes); 2 by default. A stride of 1 on
            every axis gives the identity.

    Shape:
        ``(B, C, *S)`` -> ``(B, C, *floor(S / stride))``.

    Examples:
        >>> Down(3, 4)(torch.randn(1, 4, 9, 10, 11)).shape
        torch.Size([1, 4, 4, 5, 5])
        >>> Down(3, 4, stride=(1, 2, 2))(torch.randn(1, 4, 9, 10, 11)).shape
        torch.Size([1, 4, 9, 5, 5])
    """

    def __init__(
        self, spatial_dims: int, channels: int, mode: DownMode = "maxpool", stride: Axes = 2
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if mode not in ("maxpool", "avgpool", "conv"):
            raise ValueError(f"down mode must be 'maxpool', 'avgpool' or 'conv', got {mode!r}")
        axes = per_axis(stride, spatial_dims, "stride")
        step = compact_axes(axes)
        if all(a == 1 for a in axes):
            self.op: nn.Module = nn.Identity()
        elif mode == "maxpool":
            self.op = max_pool_type(spatial_dims)(step)
        elif mode == "avgpool":
            self.op = avg_pool_type(spatial_dims)(step)
        else:
            self.op = conv_type(spatial_dims)(channels, channels, step, stride=step)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return keep_layout(self.op(x), x)


class Upsample(nn.Module):
    """Parameter-free up-sampling by an integer factor per axis: ``nn.Upsample(
    scale_factor=scale, mode=mode)`` (``align_corners=False`` for the linear modes).

    Eager mode and TorchScript call :func:`torch.nn.functional.interpolate`; under
    :func:`torch.compile` a doubling of every axis is computed with slices and sums
    (:func:`attnunet.layers.shape.upsample_x2`), which inductor fuses, instead of the
    gather/scatter kernels it generates for the interpolation. A factor of 1 leaves that
    axis as it is (linear interpolation at scale 1 with ``align_corners=False`` is the
    identity).

    Args:
        mode: ``"nearest"``, ``"linear"``, ``"bilinear"`` or ``"trilinear"``.
        scale: the factor, an int for every axis or one per axis (default 2).

    Shape:
        ``(B, C, *S)`` -> ``(B, C, *(scale * S))``; a channels-last input gives a
        channels-last output.

    Examples:
        >>> Upsample("trilinear", (1, 2, 2))(torch.randn(1, 2, 3, 5, 4)).shape
        torch.Size([1, 2, 3, 10, 8])
    """

    def __init__(self, mode: str = "nearest", scale: Axes = 2) -> None:
        super().__init__()
        if mode not in ("nearest", "linear", "bilinear", "trilinear"):
            raise ValueError(
                f"mode must be 'nearest', 'linear', 'bilinear' or 'trilinear', got {mode!r}"
            )
        dims = {"linear": 1, "bilinear": 2, "trilinear": 3}.get(mode)
        if isinstance(scale, int) or dims is None:
            factors = [scale] if isinstance(scale, int) else list(scale)
        else:
            factors = list(per_axis(scale, dims, "scale"))
        for f in factors:
            if isinstance(f, bool) or not isinstance(f, int) or f < 1:
                raise ValueError(f"scale must hold positive ints, got {scale!r}")
        self.mode: Final[str] = mode
        self.scale: list[int] = factors

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.dim() - 2
        size: list[int] = []
        for d in range(n):
            factor = self.scale[0] if len(self.scale) == 1 else self.scale[d]
            size.append(factor * x.shape[d + 2])
        return resize(x, size, self.mode, None if self.mode == "nearest" else False)

    def extra_repr(self) -> str:
        scale = self.scale[0] if len(self.scale) == 1 else tuple(self.scale)
        return f"scale_factor={scale}, mode={self.mode!r}"


class Upsample2x(Upsample):
    """Parameter-free doubling of every spatial axis: :class:`Upsample` with scale 2.

    Args:
        mode: ``"nearest"``, ``"linear"``, ``"bilinear"`` or ``"trilinear"``.

    Shape:
        ``(B, C, *S)`` -> ``(B, C, *2S)``; a channels-last input gives a channels-last
        output.

    Examples:
        >>> Upsample2x("bilinear")(torch.randn(1, 2, 3, 5)).shape
        torch.Size([1, 2, 6, 10])
    """

    def __init__(self, mode: str = "nearest") -> None:
        super().__init__(mode, 2)


def _transpose_padding(
    kernel: tuple[int, ...], stride: tuple[int, ...]
) -> tuple[list[int], list[int]]:
    """Padding and output padding per axis that make a transposed convolution's output
    exactly ``stride`` times its input: ``p = ceil((k - s) / 2)``, ``op = s - k + 2p``
    (kernel 2 at stride 2: no padding; kernel 3: padding 1, output padding 1)."""
    padding, output_padding = [], []
    for k, s in zip(kernel, stride, strict=True):
        p = max(0, (k - s + 1) // 2)
        op = s - k + 2 * p
        if s >= 2 and k < 2:
            raise ValueError(f"a transposed-conv up-sampler needs kernel_size >= 2, got {k}")
        if not 0 <= op < s:
            raise ValueError(
                f"a transposed-conv kernel of {k} cannot up-sample an axis by {s} to exactly "
                f"{s} times its size; on an axis with stride 1 the kernel must be odd (1 or 3): "
                f"give up_kernel_size one value per axis, or leave it out (kernel = stride)"
            )
        padding.append(p)
        output_padding.append(op)
    return padding, output_padding


class Up(nn.Module):
    """Up-sample every spatial axis by its stride (2 by default), then match a target size.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        mode: ``"transpose"`` (default): a transposed convolution with the stride, whose
            padding is chosen so the output is exactly ``stride`` times the input for any
            kernel (kernel 2 at stride 2: no padding; kernel 3: padding 1, output padding
            1, as in the knee-ultrasound reference). ``"interp"``: nearest or linear
            interpolation followed by a convolution. ``"upsample"``: interpolation alone,
            no parameters and no change of channels (``out_channels`` must equal
            ``in_channels``), as in Oktay's Attention U-Net.
        kernel_size: kernel of the learned layer, an int or one per axis; default the
            stride for ``"transpose"`` (2, or nnU-Net's kernel = stride per axis) and 1
            for ``"interp"``.
        interp: ``"nearest"`` or ``"linear"`` (bi/trilinear, ``align_corners=False``) for
            the interpolating modes; default ``"nearest"`` for ``"interp"`` and
            ``"linear"`` for ``"upsample"``.
        bias: bias of the learned layer.
        stride: the factor per axis, an int or one per axis (default 2).

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *(stride * S))``, or ``size`` when
        given to :meth:`forward` (the end of each axis is replicate-padded or cropped).

    Examples:
        >>> up = Up(2, 16, 8, kernel_size=3)
        >>> up(torch.randn(1, 16, 10, 12), size=[21, 24]).shape
        torch.Size([1, 8, 21, 24])
        >>> Up(3, 16, 8, stride=(1, 2, 2))(torch.randn(1, 16, 5, 6, 7)).shape
        torch.Size([1, 8, 5, 12, 14])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mode: UpMode = "transpose",
        kernel_size: Axes | None = None,
        interp: Literal["nearest", "linear"] | None = None,
        bias: bool = True,
        stride: Axes = 2,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        strides = per_axis(stride, spatial_dims, "stride")
        if mode == "transpose":
            self.op: nn.Module = self._transpose(
                spatial_dims, in_channels, out_channels, kernel_size, strides, bias
            )
        elif mode in ("interp", "upsample"):
            how = interp or ("nearest" if mode == "interp" else "linear")
            if how not in ("nearest", "linear"):
                raise ValueError(f"interp must be 'nearest' or 'linear', got {interp!r}")
            scale = compact_axes(strides)
            upsample = (
                Upsample2x("nearest" if how == "nearest" else interp_mode(spatial_dims))
                if scale == 2
                else Upsample("nearest" if how == "nearest" else interp_mode(spatial_dims), scale)
            )
            if mode == "upsample":
                if out_channels != in_channels:
                    raise ValueError(
                        f"mode='upsample' keeps the channels, so out_channels must equal "
                        f"in_channels ({in_channels}), got {out_channels}"
                    )
                self.op = upsample
            else:
                k = 1 if kernel_size is None else kernel_size
                kernel = per_axis(k, spatial_dims, "kernel_size")
                if any(a % 2 == 0 for a in kernel):
                    raise ValueError(f"mode='interp' needs an odd kernel_size, got {k}")
                self.op = nn.Sequential(
                    upsample,
                    conv_type(spatial_dims)(
                        in_channels,
                        out_channels,
                        compact_axes(kernel),
                        padding=compact_axes(tuple(a // 2 for a in kernel)),
                        bias=bias,
                    ),
                )
        else:
            raise ValueError(f"up mode must be 'transpose', 'interp' or 'upsample', got {mode!r}")

    @staticmethod
    def _transpose(
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Axes | None,
        strides: tuple[int, ...],
        bias: bool,
    ) -> nn.Module:
        kernel = strides if kernel_size is None else per_axis(kernel_size, spatial_dims, "kernel")
        padding, output_padding = _transpose_padding(kernel, strides)
        return conv_transpose_type(spatial_dims)(
            in_channels,
            out_channels,
            compact_axes(kernel),
            stride=compact_axes(strides),
            padding=compact_axes(tuple(padding)),
            output_padding=compact_axes(tuple(output_padding)),
            bias=bias,
        )

    def forward(self, x: torch.Tensor, size: list[int] | None = None) -> torch.Tensor:
        y = keep_layout(self.op(x), x)
        if size is not None:
            y = match_size(y, size)
        return y
