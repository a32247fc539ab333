"""RAUNet's blocks: the augmented attention module and the LinkNet decoder block."""

from collections.abc import Sequence
from typing import Final

import torch
from torch import nn

from attnunet.blocks.conv import ConvNormAct, check_channels
from attnunet.layers import (
    ActSpec,
    NormSpec,
    check_spatial_dims,
    compact_axes,
    conv_transpose_type,
    conv_type,
    get_act,
    get_norm,
    per_axis,
)

__all__ = ["AugmentedAttentionModule", "LinkNetDecoderBlock", "check_factor_two"]


def check_factor_two(
    stride: int | Sequence[int], spatial_dims: int, what: str = "stride"
) -> tuple[int, ...]:
    """``stride`` as one int per axis, each 1 or 2: the factors RAUNet's decoder undoes.

    Raises:
        ValueError: an entry other than 1 or 2, or not one per axis (the message names
            ``what``).

    Examples:
        >>> check_factor_two([1, 2, 2], 3)
        (1, 2, 2)
    """
    axes = per_axis(stride if isinstance(stride, int) else tuple(stride), spatial_dims, what)
    if any(a not in (1, 2) for a in axes):
        raise ValueError(
            f"{what} must be 1 or 2 on every axis, got {stride!r}: RAUNet's LinkNet decoder "
            f"blocks and head undo each step by a factor of 2 (stride 2) or keep the size "
            f"(stride 1)"
        )
    return axes


def _conv_norm_act(
    spatial_dims: int, cin: int, cout: int, norm: NormSpec, act: ActSpec
) -> ConvNormAct:
    """1x1 conv (bias, as in the reference) -> norm -> act, named conv/norm/act."""
    return ConvNormAct(spatial_dims, cin, cout, 1, 1, norm, act, bias=True)


class AugmentedAttentionModule(nn.Module):
    """RAUNet's augmented attention module (AAM): fuse a decoder and an encoder feature.

    With ``high`` the decoder feature and ``low`` the encoder skip (same size), ``GAP``
    global average pooling over space and ``softmax_c`` a softmax over channels::

        w   = softmax_c( conv3( act(norm(conv1(GAP(high)))) + act(norm(conv2(GAP(low)))) ) )
        out = high + w * act(norm(conv4(low)))

    All convolutions are 1x1 with bias. Ni et al., "RAUNet: Residual Attention U-Net for
    Semantic Segmentation of Cataract Surgical Instruments", ICONIP 2019,
    arXiv:1909.10360.

    ``pool_norm`` is the norm applied after global pooling. The reference uses batch norm
    there, which cannot train on a batch of one image (there is one value per channel to
    normalise); the default, ``"layer"``, normalises each image's pooled vector over its
    channels instead, has the same parameter count, and works at any batch size. Pass
    ``pool_norm="batch"`` for the reference's behaviour.

    Args:
        spatial_dims: 1, 2 or 3.
        channels: channels of ``high`` and of the output.
        low_channels: channels of ``low`` (default ``channels``).
        norm: norm spec of the ``conv4`` path (full-resolution; batch norm by default).
        pool_norm: norm spec after global pooling (``"layer"``; ``"batch"`` = reference).
        act: activation spec.

    Shape:
        ``high``: ``(B, channels, *S)``; ``low``: ``(B, low_channels, *S)``; output
        ``(B, channels, *S)``. The channel weights ``w`` have shape ``(B, channels, 1...)``.

    Examples:
        >>> import torch
        >>> aam = AugmentedAttentionModule(3, 8)
        >>> aam(torch.randn(1, 8, 4, 5, 6), torch.randn(1, 8, 4, 5, 6)).shape
        torch.Size([1, 8, 4, 5, 6])
    """

    spatial_dims: Final[int]

    def __init__(
        self,
        spatial_dims: int,
        channels: int,
        low_channels: int | None = None,
        norm: NormSpec = "batch",
        pool_norm: NormSpec = "layer",
        act: ActSpec = "relu",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        low = channels if low_channels is None else low_channels
        check_channels(channels=channels, low_channels=low)
        self.spatial_dims = spatial_dims
        self.conv1 = _conv_norm_act(spatial_dims, channels, channels, pool_norm, act)
        self.conv2 = _conv_norm_act(spatial_dims, low, channels, pool_norm, act)
        self.conv3 = conv_type(spatial_dims)(channels, channels, 1, bias=True)
        self.conv4 = _conv_norm_act(spatial_dims, low, channels, norm, act)
        self.weights = nn.Identity()  # sees w on every call: hook it to read the weights

    def channel_weights(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        """The softmax channel weights ``w``, shape ``(B, channels, 1, ...)``."""
        dims = list(range(2, high.dim()))
        pooled_high = high.mean(dim=dims, keepdim=True)
        pooled_low = low.mean(dim=dims, keepdim=True)
        logits = self.conv3(self.conv1(pooled_high) + self.conv2(pooled_low))
        return self.weights(torch.softmax(logits, dim=1))

    def attend(self, high: torch.Tensor, low: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(fused, w)``."""
        w = self.channel_weights(high, low)
        return high + self.conv4(low) * w, w

    def forward(self, high: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
        return self.attend(high, low)[0]


class LinkNetDecoderBlock(nn.Module):
    """LinkNet's decoder block: squeeze, up-sample by a transposed conv, expand.

    ``Conv1(in -> in/4) -> norm -> act -> ConvT(in/4 -> in/4, k4, s2, p1) -> norm -> act
    -> Conv1(in/4 -> out) -> norm -> act``, all convolutions with bias (as in the RAUNet
    and LinkNet reference code). Doubles every spatial axis exactly.

    With ``stride`` 1 on an axis (an anisotropic RAUNet) the transposed convolution has
    kernel 3, stride 1 and padding 1 along it, which keeps that axis's size.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels (divided by 4 inside, at least 1).
        out_channels: output channels.
        norm: norm spec.
        act: activation spec.
        stride: the up-sampling factor, 2 (default) or 1, one for all axes or one per axis.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *(stride * S))``.

    Raises:
        ValueError: a ``stride`` other than 1 or 2 on some axis.

    Examples:
        >>> import torch
        >>> LinkNetDecoderBlock(2, 64, 32)(torch.randn(1, 64, 5, 7)).shape
        torch.Size([1, 32, 10, 14])
        >>> LinkNetDecoderBlock(3, 64, 32, stride=(1, 2, 2))(torch.randn(1, 64, 3, 5, 7)).shape
        torch.Size([1, 32, 3, 10, 14])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        *,
        stride: int | Sequence[int] = 2,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_channels(in_channels=in_channels, out_channels=out_channels)
        strides = check_factor_two(stride, spatial_dims)
        kernel = compact_axes([4 if s == 2 else 3 for s in strides])  # both with padding 1
        mid = max(1, in_channels // 4)
        self.squeeze = _conv_norm_act(spatial_dims, in_channels, mid, norm, act)
        up = nn.Sequential()
        transposed = conv_transpose_type(spatial_dims)
        up.add_module(
            "conv", transposed(mid, mid, kernel, stride=compact_axes(strides), padding=1, bias=True)
        )
        norm_layer = get_norm(norm, spatial_dims, mid)
        if norm_layer is not None:
            up.add_module("norm", norm_layer)
        act_layer = get_act(act)
        if act_layer is not None:
            up.add_module("act", act_layer)
        self.up = up
        self.expand = _conv_norm_act(spatial_dims, mid, out_channels, norm, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.expand(self.up(self.squeeze(x)))
