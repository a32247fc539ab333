"""Oktay et al.'s Attention U-Net: grid gating, multi-gate skips, deep supervision.

The model is the U-Net skeleton with Oktay's choices: a gating signal computed from the
bottleneck, grid attention gates on every skip except the finest (each fed by the coarser
decoder output, the deepest by the gating signal), two gates per skip merged by a 1x1 conv
("multi"), parameter-free linear up-sampling, and deep-supervision heads that can be fused
as in the released code.
"""

from collections.abc import Sequence
from typing import Any, ClassVar

from attnunet.blocks.gates import GateSpec
from attnunet.models._factory import build_preset
from attnunet.models._registry import register_model
from attnunet.models._stages import channels_list, check_flags
from attnunet.models.unet import OKTAY_PAPER, UNetSkeleton

__all__ = [
    "OKTAY_PRESET",
    "AttentionUNet",
    "attention_unet_oktay",
    "attention_unet_oktay_1024",
    "attention_unet_oktay_conv_mapped",
    "attention_unet_oktay_single",
]


@register_model(
    "attention_unet",
    spatial_dims=(1, 2, 3),
    paper=OKTAY_PAPER,
    description="Oktay's Attention U-Net: grid gating signal, multi-gate skips, deep supervision",
)
class AttentionUNet(UNetSkeleton):
    """Attention U-Net (Oktay et al., MIDL 2018, arXiv:1804.03999), in 2D and 3D.

    Layout (depth ``d``): double-convolution encoder with max-pooling; gating signal
    ``Conv1 -> norm -> ReLU`` on the bottleneck; decoder levels ``upsample (linear, x2) ->
    gate(skip) -> concat[skip, up] -> double conv``; gates on skips ``1 .. d-1`` (the finest
    skip is not gated), the deepest fed by the gating signal and each other by the coarser
    decoder output; deep-supervision heads on every decoder level.

    Each gated skip holds ``num_gates`` grid gates whose outputs are concatenated and merged
    by ``Conv1 -> norm -> ReLU`` (:class:`~attnunet.blocks.MultiAttentionGate`);
    ``num_gates=2`` is the released "multi" form, ``1`` the "single" form and ``0`` a
    plain gate without merge. ``conv_mapping=True`` swaps each grid gate for
    :class:`~attnunet.blocks.ConvMappedAttentionGate`.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        num_classes: output channels (logits).
        channels: widths from the finest level to the bottleneck (Oktay's CT models:
            ``(16, 32, 64, 128, 256)``, i.e. 64..1024 divided by feature scale 4).
        gate: spec of each grid gate; default ``"grid_oktay"`` (``F_int = C_x``, output
            transform ``Conv1 -> norm``). ``("grid_oktay", {"act": "softplus"})`` and
            ``("grid_oktay", {"normalization": "softmax"})`` are the reference code's other
            modes.
        num_gates: gates per skip (2 multi, 1 single, 0 plain).
        conv_mapping: use conv-mapped gates (``"conv_mapped_oktay"``) instead of ``gate``.
        gate_levels: gated skips; default all but the finest.
        gating_signal: compute Oktay's gating signal for the deepest gate.
        up: up-sampler; default ``"upsample"`` (parameter-free, as in the reference).
        conv_bias: conv bias; default ``True`` (the reference's convolutions are biased).
        deep_supervision: return ``[y_0, ..., y_{d-1}]`` (see :class:`UNetSkeleton`).
        ds_fusion: return the reference's fused output (see :class:`UNetSkeleton`).
        **kwargs: any other keyword of :class:`UNetSkeleton` except ``block``.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``, any ``S``; lists as
        documented in :class:`UNetSkeleton` with deep supervision. Attention maps from
        :meth:`forward_with_attention` have ``num_gates`` channels (one per gate).

    Differences from the reference code:
        the reference returns only the fused output (``ds_fusion=True``); its
        interpolations use PyTorch's default ``align_corners=False`` (as here); its
        up-sampling pads a skip that is smaller than the up-sampled feature, whereas here
        the up-sampled feature is matched to the skip, so any input size works.

    Examples:
        >>> import torch
        >>> model = AttentionUNet(3, 1, 2, channels=(4, 8, 16, 32))
        >>> y, maps = model.forward_with_attention(torch.randn(1, 1, 16, 20, 12))
        >>> tuple(y.shape), [tuple(a.shape) for a in maps]
        ((1, 2, 16, 20, 12), [(1, 2, 4, 5, 3), (1, 2, 8, 10, 6)])
    """

    _fixed: ClassVar[dict[str, Any]] = {"block": "double"}

    def __init__(
        self,
        spatial_dims: int = 3,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: int | Sequence[int] = (16, 32, 64, 128, 256),
        *,
        gate: GateSpec = "grid_oktay",
        num_gates: int = 2,
        conv_mapping: bool = False,
        gate_levels: Sequence[int] | None = None,
        gating_signal: bool = True,
        up: Any = "upsample",
        conv_bias: bool | None = True,
        deep_supervision: bool = False,
        ds_fusion: bool = False,
        **kwargs: Any,
    ) -> None:
        if "block" in kwargs:
            raise TypeError(
                "AttentionUNet fixes block='double'; use attnunet.UNetSkeleton to choose it"
            )
        check_flags(conv_mapping=conv_mapping)
        if isinstance(num_gates, bool) or not isinstance(num_gates, int) or num_gates < 0:
            raise ValueError(f"num_gates must be 0, 1, 2, ..., got {num_gates!r}")
        if conv_mapping and gate != "grid_oktay":
            raise ValueError(
                f"conv_mapping=True replaces the gate with 'conv_mapped_oktay', so gate={gate!r} "
                f"would be ignored: pass gate=('conv_mapped_oktay', {{...}}) (or any "
                f"'conv_mapped' spec) with conv_mapping=False instead"
            )
        base = "conv_mapped_oktay" if conv_mapping else gate
        skeleton_gate = ("multi", {"gate": base, "num_gates": num_gates}) if num_gates > 0 else base
        probe = channels_list(channels, kwargs.get("depth"))
        levels = list(range(1, len(probe) - 1)) if gate_levels is None else gate_levels
        super().__init__(
            spatial_dims,
            in_channels,
            num_classes,
            channels,
            block="double",
            gate=skeleton_gate,
            gate_levels=levels,
            gating_signal=gating_signal,
            up=up,
            conv_bias=conv_bias,
            deep_supervision=deep_supervision,
            ds_fusion=ds_fusion,
            **kwargs,
        )
        config = self._config
        del config["block"]
        config["gate"] = gate
        config["num_gates"] = num_gates
        config["conv_mapping"] = bool(conv_mapping)
        config["gate_levels"] = None if gate_levels is None else config["gate_levels"]


OKTAY_PRESET: dict[str, Any] = {
    "spatial_dims": 3,
    "in_channels": 1,
    "num_classes": 4,
    "channels": [16, 32, 64, 128, 256],
    "norm": "batch",
    "act": "relu",
    "gate": "grid_oktay",
    "num_gates": 2,
    "ds_fusion": True,
}
"""The released CT configuration (``config_unet_ct_multi_att_dsv.json``): one input
channel, four output classes, feature scale 4, two gates per skip, fused deep supervision."""


def _register_oktay(name: str, description: str, **extra: Any) -> Any:
    return register_model(
        name,
        model_class=AttentionUNet,
        spatial_dims=(1, 2, 3),
        paper=OKTAY_PAPER,
        description=description,
        defaults={**OKTAY_PRESET, **extra},
    )


@_register_oktay("attention_unet_oktay", "Oktay's released 3D CT Attention U-Net (multi gates)")
def attention_unet_oktay(**overrides: Any) -> AttentionUNet:
    """The released 3D CT Attention U-Net (``unet_CT_multi_att_dsv_3D``, :data:`OKTAY_PRESET`).

    Same parameter count as the reference code (6,473,322 with its four classes), and
    reference weights converted with :func:`attnunet.models.convert.convert_oktay_state_dict`
    reproduce its outputs. Keyword arguments override the preset.

    Examples:
        >>> attention_unet_oktay().num_parameters()
        6473322
    """
    return build_preset("attention_unet_oktay", overrides)


@_register_oktay(
    "attention_unet_oktay_single",
    "Oktay's 3D CT Attention U-Net, single-gate form",
    num_gates=1,
)
def attention_unet_oktay_single(**overrides: Any) -> AttentionUNet:
    """The released single-gate form (``unet_CT_single_att_dsv_3D``): 6,214,151 parameters.

    Examples:
        >>> attention_unet_oktay_single().num_parameters()
        6214151
    """
    return build_preset("attention_unet_oktay_single", overrides)


@_register_oktay(
    "attention_unet_oktay_1024",
    "Oktay's Attention U-Net at full width (encoder widths 64 to 1024)",
    channels=[64, 128, 256, 512, 1024],
)
def attention_unet_oktay_1024(**overrides: Any) -> AttentionUNet:
    """The deeper-feature form: the reference filters (64, 128, 256, 512, 1024) at feature
    scale 1 (103,457,946 parameters, as the reference code at ``feature_scale=1``).

    Examples:
        >>> attention_unet_oktay_1024().channels
        [64, 128, 256, 512, 1024]
    """
    return build_preset("attention_unet_oktay_1024", overrides)


@_register_oktay(
    "attention_unet_oktay_conv_mapped",
    "Oktay's Attention U-Net with conv-mapped gates",
    conv_mapping=True,
)
def attention_unet_oktay_conv_mapped(**overrides: Any) -> AttentionUNet:
    """:func:`attention_unet_oktay` with every grid gate conv-mapped (``conv_mapping=True``).

    Each of the six gates gains a ``2 F_int -> F_int`` 1x1 conv with ``F_int = C_x``:
    ``6,473,322 + 2 * (2*32**2 + 32 + 2*64**2 + 64 + 2*128**2 + 128) = 6,559,786``.

    Examples:
        >>> attention_unet_oktay_conv_mapped().num_parameters()
        6559786
    """
    return build_preset("attention_unet_oktay_conv_mapped", overrides)
