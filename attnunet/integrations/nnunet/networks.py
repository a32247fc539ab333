"""attnunet's families as nnU-Net v2 networks: built from PlainConvUNet's ``arch_kwargs``.

nnU-Net's ``get_network_from_plans`` calls the class named in the plans with
``input_channels``, ``num_classes``, ``deep_supervision`` and the ``arch_kwargs``, then
applies the class's ``initialize`` to every module; its trainer switches deep supervision
with ``network.decoder.deep_supervision = enabled``. Each class here takes exactly those
keywords (PlainConvUNet's signature), maps them once with
:func:`~attnunet.integrations.nnunet.plans_to_kwargs`, and is the attnunet model it names,
so everything of that model (``forward_with_attention``, checkpointing, ...) works.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, cast

import torch
from torch import nn

from attnunet.blocks import SegmentationHead
from attnunet.integrations.nnunet.arch import plans_to_kwargs
from attnunet.models import AgResUNet as _AgResUNet
from attnunet.models import AgUNet as _AgUNet
from attnunet.models import AttentionUNet as _AttentionUNet
from attnunet.models import AttentionUNetPlusPlus as _AttentionUNetPlusPlus
from attnunet.models import ResUNet as _ResUNet
from attnunet.models import UNet as _UNet
from attnunet.models import UNetPlusPlus as _UNetPlusPlus

__all__ = [
    "AgResUNet",
    "AgUNet",
    "AttentionUNet",
    "AttentionUNetPlusPlus",
    "ResUNet",
    "UNet",
    "UNetPlusPlus",
    "he_initialize",
]

_CONV_TYPES = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def he_initialize(module: nn.Module, neg_slope: float = 1e-2) -> None:
    """nnU-Net's weight initialisation of one module: He (Kaiming) normal weights for a
    leaky ReLU of slope ``neg_slope`` and zero biases, for (transposed) convolutions; other
    modules are left as built. Apply it to a network with ``network.apply(he_initialize)``.

    Args:
        module: any module.
        neg_slope: the ``a`` of :func:`torch.nn.init.kaiming_normal_` (nnU-Net: 1e-2).

    Examples:
        >>> conv = torch.nn.Conv2d(64, 64, 3)
        >>> he_initialize(conv)
        >>> round(conv.weight.std().item(), 2), conv.bias.abs().max().item()
        (0.06, 0.0)
    """
    if isinstance(module, _CONV_TYPES):
        nn.init.kaiming_normal_(module.weight, a=neg_slope)
        if module.bias is not None:
            nn.init.zeros_(module.bias)


class _DeepSupervisionSwitch:
    """``network.decoder`` of a network without a decoder module (UNet++): the object
    nnU-Net's trainer sets ``deep_supervision`` on."""

    def __init__(self, network: Any) -> None:
        self._network = network

    @property
    def deep_supervision(self) -> bool:
        return bool(self._network.deep_supervision)

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self._network.deep_supervision = enabled


class _PlansNetwork:
    """What every family shares: nnU-Net's constructor and ``initialize``."""

    _residual: ClassVar[bool] = False

    def __init__(
        self,
        input_channels: int,
        num_classes: int,
        n_stages: int,
        features_per_stage: int | Sequence[int],
        conv_op: type[nn.Module],
        kernel_sizes: int | Sequence[Any],
        strides: int | Sequence[Any],
        n_conv_per_stage: int | Sequence[int],
        n_conv_per_stage_decoder: int | Sequence[int],
        conv_bias: bool = False,
        norm_op: type[nn.Module] | None = None,
        norm_op_kwargs: dict[str, Any] | None = None,
        dropout_op: type[nn.Module] | None = None,
        dropout_op_kwargs: dict[str, Any] | None = None,
        nonlin: type[nn.Module] | None = None,
        nonlin_kwargs: dict[str, Any] | None = None,
        deep_supervision: bool = False,
        nonlin_first: bool = False,
    ) -> None:
        kwargs = plans_to_kwargs(
            {
                "n_stages": n_stages,
                "features_per_stage": features_per_stage,
                "conv_op": conv_op,
                "kernel_sizes": kernel_sizes,
                "strides": strides,
                "n_conv_per_stage": n_conv_per_stage,
                "n_conv_per_stage_decoder": n_conv_per_stage_decoder,
                "conv_bias": conv_bias,
                "norm_op": norm_op,
                "norm_op_kwargs": norm_op_kwargs,
                "dropout_op": dropout_op,
                "dropout_op_kwargs": dropout_op_kwargs,
                "nonlin": nonlin,
                "nonlin_kwargs": nonlin_kwargs,
                "nonlin_first": nonlin_first,
            },
            residual=self._residual,
        )
        base = cast(Any, super())
        base.__init__(
            in_channels=input_channels,
            num_classes=num_classes,
            **{**kwargs, **self._heads(bool(deep_supervision))},
        )
        self._finish(bool(deep_supervision))

    def _heads(self, deep_supervision: bool) -> dict[str, Any]:
        """The attnunet keywords of the deep-supervision heads (all built, always)."""
        return {"deep_supervision": deep_supervision, "ds_heads": True}

    def _finish(self, deep_supervision: bool) -> None:
        """Complete the network after the attnunet class built it (nothing by default)."""

    @staticmethod
    def initialize(module: nn.Module) -> None:
        """nnU-Net's initialisation (``InitWeights_He(1e-2)``) of one module; nnU-Net calls
        ``network.apply(network.initialize)`` (see :func:`he_initialize`)."""
        he_initialize(module, 1e-2)


class _DecoderSwitch(_PlansNetwork):
    """The switch of the U-Net skeleton's families: ``decoder.deep_supervision``.

    The skeleton keeps its switch in ``_deep_supervision``; here that attribute lives on
    the decoder module, where nnU-Net's trainer sets it, so ``network.deep_supervision``,
    ``network.set_deep_supervision`` and ``network.decoder.deep_supervision = ...`` are
    one switch.
    """

    @property
    def _deep_supervision(self) -> bool:
        return bool(cast(Any, self).decoder.deep_supervision)

    @_deep_supervision.setter
    def _deep_supervision(self, enabled: bool) -> None:
        cast(Any, self).decoder.deep_supervision = bool(enabled)


class UNet(_DecoderSwitch, _UNet):
    """:class:`attnunet.UNet` (double-convolution stages, plain skips) built by nnU-Net v2
    from PlainConvUNet's plans: the parity anchor, PlainConvUNet itself in attnunet's terms.

    nnU-Net's ``get_network_from_plans`` builds it when the plans name
    ``attnunet.integrations.nnunet.UNet`` as ``network_class_name`` (see
    :func:`~attnunet.integrations.nnunet.write_plans`). The ``arch_kwargs`` map as
    :func:`~attnunet.integrations.nnunet.plans_to_kwargs` says: the first convolution of
    each encoder stage carries the stage's stride, each decoder level up-samples with a
    transposed convolution of kernel = stride, and every decoder level has its
    deep-supervision head (built whether deep supervision is on or not). With nnU-Net's
    plans (instance norm, leaky ReLU, conv bias) it has PlainConvUNet's parameter count and
    output shapes. The other classes of this module take the same arguments and return the
    same shapes. The arguments are PlainConvUNet's, as nnU-Net passes them (classes as
    torch classes or as the dotted names of a plans file).

    Args:
        input_channels, num_classes: input channels and output logits.
        n_stages, features_per_stage, conv_op, kernel_sizes, strides: the stages.
        n_conv_per_stage, n_conv_per_stage_decoder: convolutions per encoder stage, and per
            decoder stage in nnU-Net's order (from the bottleneck up).
        conv_bias, norm_op, norm_op_kwargs, nonlin, nonlin_kwargs: the units (bias on).
        dropout_op, dropout_op_kwargs: no dropout (``None``, or ``p = 0``).
        deep_supervision: start with deep supervision on.
        nonlin_first: ``False`` (conv -> norm -> activation).

    Shape:
        input ``(B, input_channels, *S)``; output ``(B, num_classes, *S)``, or with deep
        supervision the list ``[y_0, ..., y_{n_stages - 2}]``, full resolution first,
        ``y_k`` at ``S`` divided by the product of ``strides[1..k]``. The switch is
        ``network.decoder.deep_supervision`` (what nnU-Net's trainer sets), the same as
        ``network.deep_supervision``.

    Raises:
        PlansError: a plan value it cannot honour (the message names the key).

    Examples:
        >>> import torch
        >>> net = UNet(1, 3, 3, [4, 8, 16], torch.nn.Conv2d, 3, [1, 2, [2, 1]], 2, 2,
        ...     conv_bias=True, norm_op=torch.nn.InstanceNorm2d,
        ...     norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=torch.nn.LeakyReLU,
        ...     deep_supervision=True)
        >>> [tuple(y.shape) for y in net(torch.randn(1, 1, 16, 12))]
        [(1, 3, 16, 12), (1, 3, 8, 6)]
        >>> net.decoder.deep_supervision = False  # what nnU-Net's trainer does
        >>> tuple(net(torch.randn(1, 1, 16, 12)).shape)
        (1, 3, 16, 12)
    """


class AgUNet(_DecoderSwitch, _AgUNet):
    """:class:`attnunet.AgUNet` built by nnU-Net v2 from PlainConvUNet's plans: double
    convolutions and a grid attention gate on every skip, which subsamples the skip by the
    stage's stride. Arguments, shapes and errors as :class:`UNet`.
    """


class ResUNet(_DecoderSwitch, _ResUNet):
    """:class:`attnunet.ResUNet` built by nnU-Net v2 from PlainConvUNet's plans: residual
    blocks (1x1 projection shortcut) in every stage, plain skips. Arguments, shapes and
    errors as :class:`UNet`; ``n_conv_per_stage`` and ``n_conv_per_stage_decoder`` must be at
    least 2 (a residual body has two convolutions).
    """

    _residual: ClassVar[bool] = True


class AgResUNet(_DecoderSwitch, _AgResUNet):
    """:class:`attnunet.AgResUNet` built by nnU-Net v2 from PlainConvUNet's plans: residual
    blocks and a grid attention gate on every skip. Arguments, shapes and errors as
    :class:`UNet`; at least two convolutions per stage, as :class:`ResUNet`.
    """

    _residual: ClassVar[bool] = True


class AttentionUNet(_DecoderSwitch, _AttentionUNet):
    """:class:`attnunet.AttentionUNet` (Oktay et al.) built by nnU-Net v2 from
    PlainConvUNet's plans: the gating signal on the bottleneck and two grid gates on every
    skip but the finest, each subsampling by the stage's stride. Arguments, shapes and
    errors as :class:`UNet`.

    Differences from :class:`attnunet.AttentionUNet`:
        up-sampling is the plans' transposed convolution (as in every class here), not
        Oktay's parameter-free linear interpolation.
    """


class _NestedHeads(_PlansNetwork):
    """UNet++ with PlainConvUNet's deep-supervision scales: the heads read the last node
    of each level, ``X[k, d - k]`` for ``k = 0 .. d - 1`` (UNet++'s own heads all read
    full-resolution nodes, which nnU-Net's loss does not expect)."""

    heads: nn.ModuleList
    aux_heads: nn.ModuleList

    def _heads(self, deep_supervision: bool) -> dict[str, Any]:
        return {"deep_supervision": False, "ds_heads": False}

    def _finish(self, deep_supervision: bool) -> None:
        """Add the heads of levels ``1 .. d - 1`` and the ``decoder`` switch."""
        net = cast(Any, self)
        net.aux_heads = nn.ModuleList(
            [
                SegmentationHead(net.spatial_dims, net.channels[k], net.num_classes)
                for k in range(1, net.depth)
            ]
        )
        net._ds_heads = True
        net.decoder = _DeepSupervisionSwitch(self)
        net.set_deep_supervision(deep_supervision)

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        net = cast(Any, self)
        rows, maps, padded, size = net._node_rows(x)
        d = net.depth
        logits = [self.heads[0](rows[0][d])]
        if net.deep_supervision:
            for k, head in enumerate(self.aux_heads, start=1):
                logits.append(head(rows[k][d - k]))
        return net._restore(logits, size, padded), net._restore(maps, size, padded)


class UNetPlusPlus(_NestedHeads, _UNetPlusPlus):
    """:class:`attnunet.UNetPlusPlus` built by nnU-Net v2 from PlainConvUNet's plans: nested
    dense skips, each node's up-sampler undoing its level's stride. Arguments, shapes and
    errors as :class:`UNet`.

    Differences from :class:`attnunet.UNetPlusPlus`:
        the deep-supervision heads read the last node of each level, ``X[k, d - k]`` for
        ``k = 0 .. d - 1`` (``aux_heads[k - 1]`` for ``k >= 1``), so the list has
        PlainConvUNet's scales, which nnU-Net's loss expects; UNet++'s own heads all read
        full-resolution nodes. ``ds_mode`` is ``"list"``.
    """


class AttentionUNetPlusPlus(_NestedHeads, _AttentionUNetPlusPlus):
    """:class:`attnunet.AttentionUNetPlusPlus` built by nnU-Net v2 from PlainConvUNet's
    plans: UNet++ with a self-attention gate on every same-level skip. Arguments, shapes and
    errors as :class:`UNet`; heads as :class:`UNetPlusPlus`.
    """
