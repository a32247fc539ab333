"""Down- and up-sampling blocks for any ``spatial_dims``."""

from typing import Final, Literal

import torch
from torch import nn

from attnunet.layers import (
    avg_pool_type,
    check_spatial_dims,
    conv_transpose_type,
    conv_type,
    max_pool_type,
)
from attnunet.layers.shape import interp_mode, match_size, resize

__all__ = ["Down", "Up", "Upsample2x"]

DownMode = Literal["maxpool", "avgpool", "conv"]
UpMode = Literal["transpose", "interp", "upsample"]


class Down(nn.Module):
    """Halve every spatial axis (floor division) with a pool or a strided convolution.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: channels of the input (and output).
        mode: ``"maxpool"`` (default), ``"avgpool"`` or ``"conv"`` (a learned convolution
            with kernel 2 and stride 2, with bias).

    Shape:
        ``(B, C, *S)`` -> ``(B, C, *floor(S / 2))``.

    Examples:
        >>> Down(3, 4)(torch.randn(1, 4, 9, 10, 11)).shape
        torch.Size([1, 4, 4, 5, 5])
    """

    def __init__(self, spatial_dims: int, channels: int, mode: DownMode = "maxpool") -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if mode == "maxpool":
            self.op: nn.Module = max_pool_type(spatial_dims)(2)
        elif mode == "avgpool":
            self.op = avg_pool_type(spatial_dims)(2)
        elif mode == "conv":
            self.op = conv_type(spatial_dims)(channels, channels, 2, stride=2)
        else:
            raise ValueError(f"down mode must be 'maxpool', 'avgpool' or 'conv', got {mode!r}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample2x(nn.Module):
    """Parameter-free doubling of every spatial axis: ``nn.Upsample(scale_factor=2,
    mode=mode)`` (``align_corners=False`` for the linear modes).

    Eager mode and TorchScript call :func:`torch.nn.functional.interpolate`; under
    :func:`torch.compile` the same values are computed with slices and sums
    (:func:`attnunet.layers.shape.upsample_x2`), which inductor fuses, instead of the
    gather/scatter kernels it generates for the interpolation.

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
        super().__init__()
        if mode not in ("nearest", "linear", "bilinear", "trilinear"):
            raise ValueError(
                f"mode must be 'nearest', 'linear', 'bilinear' or 'trilinear', got {mode!r}"
            )
        self.mode: Final[str] = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = [2 * n for n in x.shape[2:]]
        return resize(x, size, self.mode, None if self.mode == "nearest" else False)

    def extra_repr(self) -> str:
        return f"scale_factor=2, mode={self.mode!r}"


class Up(nn.Module):
    """Double every spatial axis, then match a target size.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        mode: ``"transpose"`` (default): a transposed convolution with stride 2, whose
            padding is chosen so the output is exactly twice the input for any kernel
            (kernel 2: no padding; kernel 3: padding 1, output padding 1, as in the
            knee-ultrasound reference). ``"interp"``: nearest or linear interpolation
            followed by a convolution. ``"upsample"``: interpolation alone, no parameters
            and no change of channels (``out_channels`` must equal ``in_channels``), as in
            Oktay's Attention U-Net.
        kernel_size: kernel of the learned layer; default 2 for ``"transpose"`` and 1 for
            ``"interp"``.
        interp: ``"nearest"`` or ``"linear"`` (bi/trilinear, ``align_corners=False``) for
            the interpolating modes; default ``"nearest"`` for ``"interp"`` and
            ``"linear"`` for ``"upsample"``.
        bias: bias of the learned layer.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *2S)``, or ``size`` when given to
        :meth:`forward` (the end of each axis is replicate-padded or cropped).

    Examples:
        >>> up = Up(2, 16, 8, kernel_size=3)
        >>> up(torch.randn(1, 16, 10, 12), size=[21, 24]).shape
        torch.Size([1, 8, 21, 24])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        mode: UpMode = "transpose",
        kernel_size: int | None = None,
        interp: Literal["nearest", "linear"] | None = None,
        bias: bool = True,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        if mode == "transpose":
            k = 2 if kernel_size is None else kernel_size
            if k < 2:
                raise ValueError(f"a transposed-conv up-sampler needs kernel_size >= 2, got {k}")
            padding = (k - 1) // 2
            self.op: nn.Module = conv_transpose_type(spatial_dims)(
                in_channels,
                out_channels,
                k,
                stride=2,
                padding=padding,
                output_padding=2 - k + 2 * padding,
                bias=bias,
            )
        elif mode in ("interp", "upsample"):
            how = interp or ("nearest" if mode == "interp" else "linear")
            if how not in ("nearest", "linear"):
                raise ValueError(f"interp must be 'nearest' or 'linear', got {interp!r}")
            upsample = Upsample2x("nearest" if how == "nearest" else interp_mode(spatial_dims))
            if mode == "upsample":
                if out_channels != in_channels:
                    raise ValueError(
                        f"mode='upsample' keeps the channels, so out_channels must equal "
                        f"in_channels ({in_channels}), got {out_channels}"
                    )
                self.op = upsample
            else:
                k = 1 if kernel_size is None else kernel_size
                if k % 2 == 0:
                    raise ValueError(f"mode='interp' needs an odd kernel_size, got {k}")
                self.op = nn.Sequential(
                    upsample,
                    conv_type(spatial_dims)(
                        in_channels, out_channels, k, padding=k // 2, bias=bias
                    ),
                )
        else:
            raise ValueError(f"up mode must be 'transpose', 'interp' or 'upsample', got {mode!r}")

    def forward(self, x: torch.Tensor, size: list[int] | None = None) -> torch.Tensor:
        y = self.op(x)
        if size is not None:
            y = match_size(y, size)
        return y
