"""attnunet's families as nnU-Net v2 networks: built from PlainConvUNet's ``arch_kwargs``.

nnU-Net's ``get_network_from_plans`` calls the class named in the plans with
``input_channels``, ``num_classes``, ``deep_supervision`` and the ``arch_kwargs``, then
applies the class's ``initialize`` to every module; its trainer switches deep supervision
with ``network.decoder.deep_supervision = enabled``. Each class here takes exactly those
keywords (PlainConvUNet's signature), maps them once with
:func:`~attnunet.integrations.nnunet.plans_to_kwargs`, and is the attnunet model it names,
so everything of that model (``forward_with_attention``, checkpointing, TorchScript, ...)
works. Its ``config`` holds those keywords in JSON types, so ``type(net)(**net.config)``
rebuilds it.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, cast

import torch
from torch import nn

from attnunet.blocks import SegmentationHead
from attnunet.integrations.nnunet.arch import PLAINCONVUNET_KEYS, _dotted_name, plans_to_kwargs
from attnunet.models import AgResUNet as _AgResUNet
from attnunet.models import AgUNet as _AgUNet
from attnunet.models import AttentionUNet as _AttentionUNet
from attnunet.models import AttentionUNetPlusPlus as _AttentionUNetPlusPlus
from attnunet.models import ResUNet as _ResUNet
from attnunet.models import UNet as _UNet
from attnunet.models import UNetPlusPlus as _UNetPlusPlus
from attnunet.models.unet import Decoder

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


def _plain(value: Any) -> Any:
    """``value`` in JSON types: classes as their dotted names, tuples as lists (a copy)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return copy.deepcopy(_dotted_name(value))


class _TrainerDecoder(Decoder):
    """The U-Net skeleton's decoder with the attribute nnU-Net's trainer sets:
    ``decoder.deep_supervision`` reads the network's switch and sets it through the
    network's ``set_deep_supervision`` (so the network's config follows). Same modules and
    state-dict keys as the skeleton's decoder."""

    __jit_unused_properties__ = ("deep_supervision",)
    __jit_ignored_attributes__ = ("_network",)

    def __init__(self, levels: list[Any], network: Any) -> None:
        super().__init__(levels)
        # in a tuple, so that the network is not registered as a module of its decoder
        self._network = (network,)

    @property
    def deep_supervision(self) -> bool:
        """The network's switch (settable, as nnU-Net's trainer does)."""
        return bool(self._network[0].deep_supervision)

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self._network[0].set_deep_supervision(enabled)


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
    """What every family shares: nnU-Net's constructor, ``config`` and ``initialize``."""

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
        arch = {
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
        }
        kwargs = plans_to_kwargs(arch, residual=self._residual)
        base = cast(Any, super())
        base.__init__(
            in_channels=input_channels,
            num_classes=num_classes,
            **{**kwargs, **self._heads(bool(deep_supervision))},
        )
        # the constructor's own keywords, in its order (deep_supervision: see `config`)
        self._arch_config = {
            "input_channels": input_channels,
            "num_classes": num_classes,
            **{key: _plain(arch[key]) for key in PLAINCONVUNET_KEYS[:-1]},
            "deep_supervision": bool(deep_supervision),
            "nonlin_first": bool(nonlin_first),
        }
        self._finish(bool(deep_supervision))

    @property
    def config(self) -> dict[str, Any]:
        """This class's constructor keywords in JSON types: ``input_channels``,
        ``num_classes``, PlainConvUNet's ``arch_kwargs`` as a plans file writes them
        (classes as dotted names) and ``deep_supervision``, which follows the switch.
        ``type(network)(**network.config)`` rebuilds the network (same state-dict keys
        and shapes). Not a registry config: ``attnunet.create_model`` does not build
        these classes (nnU-Net builds them from its plans)."""
        config = copy.deepcopy(self._arch_config)
        config["deep_supervision"] = bool(cast(Any, self).deep_supervision)
        return config

    def save_pretrained(self, directory: str | os.PathLike[str], **kwargs: Any) -> NoReturn:
        """Refused: nnU-Net's checkpoints persist these networks (see the error).

        Raises:
            ValueError: always; the message says what persists the network instead.
        """
        raise ValueError(
            f"{type(self).__name__} is an nnU-Net network, which save_pretrained does not "
            f"write (from_pretrained rebuilds registered attnunet models only): nnU-Net "
            f"saves it, the weights as network_weights in checkpoint_final.pth and its "
            f"arch_kwargs in the plans.json of the results folder. To keep one yourself, "
            f"save network.config (JSON) and network.state_dict(), then rebuild with "
            f"type(network)(**network.config) and load_state_dict; or build attnunet's own "
            f"model (e.g. attnunet.create_model) to use save_pretrained"
        )

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

    The network keeps its switch as every attnunet model does; its decoder is a
    :class:`_TrainerDecoder`, whose ``deep_supervision`` (where nnU-Net's trainer sets it)
    goes through ``network.set_deep_supervision``, so ``network.deep_supervision``,
    ``network.set_deep_supervision`` and ``network.decoder.deep_supervision = ...`` are
    one switch with one path.
    """

    def _build_decoder(self, *args: Any, **kwargs: Any) -> Decoder:
        decoder = cast(Any, super())._build_decoder(*args, **kwargs)
        return _TrainerDecoder(list(decoder.levels), self)


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
    torch classes or as the dotted names of a plans file); ``config`` holds them in JSON
    types (classes as dotted names), so ``type(net)(**net.config)`` rebuilds the network.
    PlainConvUNet's own weights load after
    :func:`~attnunet.models.convert.convert_plainconvunet_state_dict`.

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

    if TYPE_CHECKING:  # what UNet++ provides; TorchScript never sees this
        depth: int
        _deep_supervision: bool
        heads: nn.ModuleList
        aux_heads: nn.ModuleList

        def _node_rows(
            self, x: torch.Tensor
        ) -> tuple[list[list[torch.Tensor]], list[torch.Tensor], torch.Tensor, list[int], bool]: ...

        def _restore(
            self,
            tensors: list[torch.Tensor],
            size: list[int],
            prepared: torch.Tensor,
            converted: bool = False,
        ) -> list[torch.Tensor]: ...

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
        rows, maps, padded, size, converted = self._node_rows(x)
        d = self.depth
        logits = [self.heads[0](rows[0][d])]
        if self._deep_supervision:
            for k, head in enumerate(self.aux_heads):  # aux_heads[k] reads X[k + 1, d - k - 1]
                logits.append(head(rows[k + 1][d - k - 1]))
        return (
            self._restore(logits, size, padded, converted),
            self._restore(maps, size, padded, converted),
        )


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
