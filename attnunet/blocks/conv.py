"""Convolutional building blocks: conv-norm-act, DoubleConv and ResidualBlock."""

from collections.abc import Sequence
from typing import Final, Literal

import torch
from torch import nn

from attnunet.layers import (
    ActSpec,
    ChannelLayerNorm,
    NormSpec,
    check_spatial_dims,
    conv_type,
    get_act,
    get_norm,
    has_hooks,
    keep_layout,
    norm_has_affine,
    parse_spec,
    per_axis,
)

__all__ = ["ConvNormAct", "DoubleConv", "ResidualBlock", "check_channels", "conv_parts"]


def check_channels(**channels: int) -> None:
    """Raise ``ValueError`` naming the first keyword whose value is not a positive int."""
    for name, value in channels.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


_OUTPUT_NOT_SAVED = (
    nn.modules.conv._ConvNd,
    nn.modules.batchnorm._BatchNorm,
    nn.modules.instancenorm._InstanceNorm,
    nn.GroupNorm,
    ChannelLayerNorm,
)
"""Layers whose backward reads their input, never their output: a sum may overwrite
their output in place (autograd would raise at backward if one did read it)."""

Axes = int | Sequence[int]
"""A kernel size or stride: one int for every spatial axis, or one int per axis."""


def _check_kernel(kernel_size: Axes, spatial_dims: int = 1) -> Axes:
    """Check an odd kernel size (an int, or one int per axis) and return it."""
    if isinstance(kernel_size, Sequence) and not isinstance(kernel_size, str):
        if len(kernel_size) != spatial_dims:
            raise ValueError(
                f"kernel_size {list(kernel_size)} must have one entry per spatial axis "
                f"({spatial_dims}), or be one odd int for every axis"
            )
        for k in kernel_size:
            _check_kernel(k)
        return tuple(kernel_size)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}")
    if kernel_size % 2 == 0:
        raise ValueError(
            f"kernel_size={kernel_size} is even, so 'same' padding cannot keep the size: "
            f"use an odd kernel such as {kernel_size + 1}"
        )
    return kernel_size


def _same_padding(kernel_size: Axes) -> Axes:
    """``k // 2`` per axis: the padding that keeps the size of an odd kernel at stride 1."""
    if isinstance(kernel_size, int):
        return kernel_size // 2
    return tuple(k // 2 for k in kernel_size)


def _is_one(stride: Axes) -> bool:
    return stride == 1 if isinstance(stride, int) else all(s == 1 for s in stride)


def conv_parts(conv: nn.Module, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    """``conv(torch.cat(parts, dim=1))`` as a sum of one convolution per part.

    A convolution is linear in its input channels: each part is convolved with its slice of
    the weight and the results are summed (the bias added once), so the concatenation is
    never built. Equal to the concatenated form up to float rounding.

    Shape:
        parts ``(B, C_k, *S)`` with ``sum(C_k) == conv.in_channels`` -> the convolution's
        output for ``(B, in_channels, *S)``.

    Raises:
        TypeError: if ``conv`` is not a (non-transposed) ``Conv1d``/``Conv2d``/``Conv3d``.
        ValueError: if the parts' channels do not add up to ``conv.in_channels``, or the
            convolution is grouped.

    Examples:
        >>> conv = nn.Conv3d(5, 2, 3, padding=1)
        >>> a, b = torch.randn(1, 3, 4, 4, 4), torch.randn(1, 2, 4, 4, 4)
        >>> torch.allclose(conv_parts(conv, [a, b]), conv(torch.cat([a, b], 1)), atol=1e-5)
        True
    """
    if not isinstance(conv, nn.modules.conv._ConvNd) or conv.transposed:
        raise TypeError(f"conv_parts needs a Conv1d/2d/3d, got {type(conv).__name__}")
    sizes = [int(p.shape[1]) for p in parts]
    if not parts or sum(sizes) != conv.in_channels or conv.groups != 1:
        raise ValueError(
            f"the parts' channels must add up to in_channels={conv.in_channels} of an "
            f"ungrouped convolution; got channels {sizes}"
        )
    y: torch.Tensor | None = None
    start = 0
    for i, part in enumerate(parts):
        stop = start + sizes[i]
        bias = conv.bias if i == 0 else None
        out = conv._conv_forward(part, conv.weight[:, start:stop], bias)
        y = out if y is None else y.add_(out)
        start = stop
    assert y is not None
    return y


def _act_in_place(layer: nn.Module, spec: ActSpec) -> None:
    """Let a ReLU, a leaky ReLU with a non-negative slope or an ELU with a non-negative
    alpha overwrite its input. Inside :class:`ConvNormAct` that input is the fresh output of
    the norm (or conv), which nothing else reads: backward needs the norm's input and the
    activation's output. In a checkpointed decoder level this keeps one feature map fewer
    alive while the level is recomputed. A callable spec, or a spec that sets ``inplace``
    itself, is left as built."""
    if callable(spec) and not isinstance(spec, str):
        return
    _, kwargs = parse_spec(spec, "activation")
    if "inplace" in kwargs:
        return
    if (
        type(layer) is nn.ReLU
        or (type(layer) is nn.LeakyReLU and layer.negative_slope >= 0)
        or (type(layer) is nn.ELU and layer.alpha >= 0)
    ):
        layer.inplace = True


class ConvNormAct(nn.Sequential):
    """Convolution, then normalisation, then activation, for any ``spatial_dims``.

    Padding is ``kernel_size // 2`` (per axis) so an odd kernel at stride 1 keeps the
    spatial size.
    Submodules are named ``conv``, ``norm`` and ``act``; the last two are absent when
    their spec is ``None``. A ReLU, leaky ReLU or ELU named by its spec runs in place (on
    the fresh output of the norm or conv), unless the spec sets ``inplace`` itself.
    :meth:`forward_parts` applies the unit to a channel concatenation without building it.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size: one int for every axis, or one per axis (``(1, 3, 3)``
            convolves in-plane only).
        stride: convolution stride, an int or one per axis.
        norm: norm spec (see :func:`attnunet.layers.get_norm`).
        act: activation spec (see :func:`attnunet.layers.get_act`).
        bias: conv bias; ``None`` means "only when no affine norm follows".

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *S')`` with ``S' = ceil(S / stride)``.

    Examples:
        >>> block = ConvNormAct(3, 1, 8, norm="instance", act="leaky_relu")
        >>> block(torch.randn(1, 1, 9, 10, 11)).shape
        torch.Size([1, 8, 9, 10, 11])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Axes = 3,
        stride: Axes = 1,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        bias: bool | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_channels(in_channels=in_channels, out_channels=out_channels)
        kernel_size = _check_kernel(kernel_size, spatial_dims)
        if not isinstance(stride, int):
            stride = per_axis(stride, spatial_dims, "stride")
        if bias is None:
            bias = not norm_has_affine(norm)
        self.add_module(
            "conv",
            conv_type(spatial_dims)(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=_same_padding(kernel_size),
                bias=bias,
            ),
        )
        norm_layer = get_norm(norm, spatial_dims, out_channels)
        if norm_layer is not None:
            self.add_module("norm", norm_layer)
        act_layer = get_act(act)
        if act_layer is not None:
            _act_in_place(act_layer, act)
            self.add_module("act", act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        first = True
        for module in self:  # conv, then norm and act where present
            y = module(y)
            if first:
                y = keep_layout(y, x)
                first = False
        return y

    def forward_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """``self(torch.cat(parts, dim=1))`` without the concatenation.

        A convolution is linear in its input channels, so it equals the sum of one
        convolution per part with that part's slice of the weight (the bias added once).
        The parts need not be copied into a new tensor, which saves one feature map per
        part's worth of channels where memory is tight (checkpointed decoder levels).
        Results equal the concatenated form up to float rounding.

        Shape:
            parts ``(B, C_k, *S)`` with ``sum(C_k) == in_channels`` ->
            ``(B, out_channels, *S')`` as for :meth:`forward`.

        Raises:
            ValueError: if the parts' channels do not add up to ``in_channels``.

        Examples:
            >>> unit = ConvNormAct(2, 6, 4).eval()
            >>> a, b = torch.randn(1, 2, 5, 5), torch.randn(1, 4, 5, 5)
            >>> torch.allclose(unit.forward_parts([a, b]), unit(torch.cat([a, b], 1)), atol=1e-5)
            True
        """
        conv = self.conv
        assert isinstance(conv, nn.modules.conv._ConvNd)
        y = keep_layout(conv_parts(conv, parts), parts[0])
        for name, module in self.named_children():
            if name != "conv":
                y = module(y)
        return y


class DoubleConv(nn.Sequential):
    """Ronneberger's double convolution: ``[conv -> norm -> act] x 2`` (or ``x num_convs``).

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels of every convolution (unless ``mid_channels``).
        kernel_size: odd kernel size (3 in the paper), an int or one per axis; 'same'
            padding.
        norm: norm spec; ``None`` gives the original 2015 U-Net.
        act: activation spec.
        bias: conv bias; ``None`` means "only when no affine norm follows".
        mid_channels: output channels of the first convolution (default ``out_channels``).
        num_convs: how many ``conv -> norm -> act`` units (2, the double convolution, by
            default; nnU-Net's plans call it ``n_conv_per_stage``). They are named
            ``conv1``, ``conv2``, ...
        stride: stride of the first convolution (an int or one per axis): a stage that
            down-samples with its first convolution, as nnU-Net's and MONAI's DynUNet
            encoders do.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *ceil(S / stride))``.

    Examples:
        >>> DoubleConv(2, 3, 16)(torch.randn(2, 3, 33, 40)).shape
        torch.Size([2, 16, 33, 40])
        >>> block = DoubleConv(3, 1, 8, kernel_size=(1, 3, 3), num_convs=3, stride=(1, 2, 2))
        >>> block(torch.randn(1, 1, 5, 16, 16)).shape
        torch.Size([1, 8, 5, 8, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Axes = 3,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        bias: bool | None = None,
        mid_channels: int | None = None,
        num_convs: int = 2,
        stride: Axes = 1,
    ) -> None:
        super().__init__()
        check_channels(num_convs=num_convs)
        mid = out_channels if mid_channels is None else mid_channels
        cin = in_channels
        for n in range(1, num_convs + 1):
            cout = mid if n == 1 and n < num_convs else out_channels
            step = stride if n == 1 else 1
            self.add_module(
                f"conv{n}",
                ConvNormAct(spatial_dims, cin, cout, kernel_size, step, norm, act, bias),
            )
            cin = cout


class ResidualBlock(nn.Module):
    """Residual double convolution with a projection shortcut.

    ``out = act(shortcut(x) + norm(conv(act(norm(conv(x))))))``, where the shortcut is a
    1x1 convolution with bias and no norm (the ResUNet of the knee-ultrasound study), or
    the identity when asked for and the channel counts match. With ``num_convs`` units
    the body is ``conv1`` (with act), ``inner`` (``num_convs - 2`` more with act) and
    ``conv2`` (norm, no act) before the sum.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel size of the body convolutions (an int or one per axis).
        norm: norm spec for the body.
        act: activation spec (inside the body and after the sum).
        bias: body conv bias; ``None`` means "only when no affine norm follows".
        shortcut: ``"projection"`` (default, always a 1x1 conv), ``"identity"`` (requires
            ``in_channels == out_channels`` and stride 1) or ``"auto"`` (identity where the
            channel counts match and the stride is 1, projection elsewhere: the choice to
            pass to a whole U-Net).
        num_convs: convolutions in the body (2 by default, at least 2).
        stride: stride of the first body convolution and of the projection (an int or one
            per axis), for a stage that down-samples with its block.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, out_channels, *ceil(S / stride))``.

    Raises:
        ValueError: ``shortcut="identity"`` with ``in_channels != out_channels`` or a
            stride, or ``num_convs < 2``.

    Examples:
        >>> ResidualBlock(3, 4, 8)(torch.randn(1, 4, 6, 7, 8)).shape
        torch.Size([1, 8, 6, 7, 8])
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        out_channels: int,
        kernel_size: Axes = 3,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        bias: bool | None = None,
        shortcut: Literal["projection", "identity", "auto"] = "projection",
        num_convs: int = 2,
        stride: Axes = 1,
    ) -> None:
        super().__init__()
        if isinstance(num_convs, bool) or not isinstance(num_convs, int) or num_convs < 2:
            raise ValueError(
                f"a residual block needs num_convs >= 2 (a body of at least two "
                f"convolutions), got {num_convs!r}; use block='double' for one convolution"
            )
        self.conv1 = ConvNormAct(
            spatial_dims, in_channels, out_channels, kernel_size, stride, norm, act, bias
        )
        self.inner = nn.Sequential(
            *[
                ConvNormAct(
                    spatial_dims, out_channels, out_channels, kernel_size, 1, norm, act, bias
                )
                for _ in range(num_convs - 2)
            ]
        )
        self.conv2 = ConvNormAct(
            spatial_dims, out_channels, out_channels, kernel_size, 1, norm, None, bias
        )
        strided = not _is_one(stride)
        if shortcut == "auto":
            shortcut = "identity" if in_channels == out_channels and not strided else "projection"
        if shortcut == "projection":
            self.shortcut: nn.Module = conv_type(spatial_dims)(
                in_channels, out_channels, 1, stride=stride, bias=True
            )
        elif shortcut == "identity":
            if in_channels != out_channels or strided:
                raise ValueError(
                    f"an identity shortcut needs in_channels == out_channels and stride 1, "
                    f"got {in_channels} and {out_channels} channels, stride {stride!r}: use "
                    f"shortcut='projection'"
                )
            self.shortcut = nn.Identity()
        else:
            raise ValueError(f"shortcut must be 'projection' or 'identity', got {shortcut!r}")
        act_layer = get_act(act)
        if act_layer is not None:
            _act_in_place(act_layer, act)  # on the fresh sum
        self.act = act_layer or nn.Identity()
        # the sum may overwrite the body's output when its last layer is one whose
        # backward does not read its own output (a convolution or a built-in norm)
        self.sum_in_place: Final[bool] = isinstance(self.conv2[-1], _OUTPUT_NOT_SAVED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the body first: the sum takes its memory layout, which is channels-last after
        # model.to_channels_last() even where a 1x1 shortcut of a 1-channel input is not
        return self._sum(self.conv2(self.inner(self.conv1(x))), self.shortcut(x))

    def _sum(self, body: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        """``act(body + shortcut)``, adding into ``body`` where nothing saved it for
        backward (one full-size tensor less to allocate per block): not where the sum
        would change shape or dtype (autocast: a bf16 body, a float32 identity
        shortcut), nor while a hook watches ``conv2`` (it holds the body's output)."""
        in_place = (
            self.sum_in_place and body.shape == shortcut.shape and body.dtype == shortcut.dtype
        )
        if in_place and not torch.jit.is_scripting():
            in_place = not has_hooks(self.conv2)
        if in_place:
            return self.act(body.add_(shortcut))
        return self.act(body + shortcut)

    def branches_parts(self, parts: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The first unit and the shortcut on ``torch.cat(parts, dim=1)``, built without
        the concatenation where the shortcut is a projection; :meth:`merge` finishes the
        block. ``merge(*branches_parts([x]))`` equals ``self(x)``."""
        shortcut = self.shortcut
        if isinstance(shortcut, nn.Identity):
            s = torch.cat(parts, dim=1)
        else:
            s = conv_parts(shortcut, parts)
        return self.conv1.forward_parts(parts), s

    def merge(self, h: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """``act(conv2(inner(h)) + s)``: the block after :meth:`branches_parts`."""
        return self._sum(self.conv2(self.inner(h)), s)
