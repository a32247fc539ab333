"""The U-Net skeleton and the UNet / AgUNet / ResUNet / AgResUNet family.

All four models are one skeleton with two choices: the stage ``block`` (double
convolution or residual block) and the skip ``gate`` (none or an attention gate). None of
them re-implements ``forward``.
"""

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Final, Union

import torch
from torch import nn

from attnunet.blocks.gates import GateSpec, GridGatingSignal, SkipGate, build_skip_gate
from attnunet.blocks.heads import SegmentationHead
from attnunet.blocks.sampling import Up, UpMode
from attnunet.layers import (
    ActSpec,
    NormSpec,
    get_dropout,
)
from attnunet.layers.shape import interp_mode, resize
from attnunet.models._attention import AttentionMaps
from attnunet.models._decoder import DecoderStage
from attnunet.models._deep_supervision import DeepSupervisionSwitch, ds_heads_config
from attnunet.models._factory import build_preset
from attnunet.models._registry import register_model
from attnunet.models._stages import (
    BLOCKS,
    BlockBuilder,
    Encoder,
    EncoderStage,
    Stage,
    StageDown,
    UNetTrunk,
    build_block,
    build_encoder,
    build_up,
    capture_config,
    check_flags,
    plain_ints,
)
from attnunet.models.base import SizePolicy

__all__ = [
    "BLOCKS",
    "Decoder",
    "Encoder",
    "EncoderStage",
    "KRD_PRESET",
    "AgResUNet",
    "AgUNet",
    "ResUNet",
    "UNet",
    "UNetSkeleton",
    "ag_res_unet_krd",
    "ag_unet_krd",
    "build_block",
    "build_encoder",
    "res_unet_krd",
    "unet_krd",
]

Output = Union[torch.Tensor, list[torch.Tensor]]  # noqa: UP007 (TorchScript needs Union)


class DecoderLevel(DecoderStage):
    """``up -> gate(skip) -> concat[skip, up] -> dropout -> block``: a
    :class:`~attnunet.models._decoder.DecoderStage` with one skip and at most one gate.

    The gate's gating signal is the coarse decoder feature *before* up-sampling (grid
    gates) or the up-sampled feature (same-resolution gates), as the gate's ``gating``
    says. The level is two segments of activation checkpointing when its block is a
    ``DoubleConv`` or a ``ResidualBlock`` and one otherwise.
    """

    if TYPE_CHECKING:  # TorchScript never sees this
        gate: SkipGate | None

    def __init__(self, up: Up, gate: SkipGate | None, dropout: nn.Module, block: nn.Module) -> None:
        super().__init__(up, ("gate", gate), dropout, block)

    def _parts(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``[gate(skip), up(coarse)]`` and the gate's coefficients (none without a gate)."""
        skip = skips[0]
        up = self.up(coarse, list(skip.shape[2:]))
        maps: list[torch.Tensor] = []
        gate = self.gate
        if gate is not None:
            skip, alpha = gate.attend(skip, self._gate_input(gate.gating, up, gating))
            maps.append(alpha)
        return [skip, up], maps


class Decoder(nn.Module):
    """The expanding path; ``levels[0]`` runs first (coarsest), ``levels[-1]`` last (finest)."""

    def __init__(self, levels: list[DecoderLevel]) -> None:
        super().__init__()
        self.levels = nn.ModuleList(levels)

    def forward(
        self, features: list[torch.Tensor], gating: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Run the levels; ``gating`` feeds the deepest gate, each later gate gets the
        previous level's output."""
        x = features[-1]
        n = len(features)
        outputs: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        for i, level in enumerate(self.levels):
            x, alphas = level([features[n - 2 - i]], x, gating)
            gating = x
            outputs.append(x)
            maps.extend(alphas)
        return outputs, maps


def _gate_levels(gate_levels: Sequence[int] | None, depth: int) -> list[int]:
    """The gated skip indices, checked (default all ``0 .. depth - 1``)."""
    levels = list(range(depth)) if gate_levels is None else sorted(set(gate_levels))
    for level in levels:
        if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < depth:
            raise ValueError(
                f"gate_levels must hold skip indices in 0..{depth - 1} (0 is the finest), "
                f"got {list(gate_levels or [])}"
            )
    return levels


class UNetSkeleton(AttentionMaps, DeepSupervisionSwitch, UNetTrunk):
    """A configurable U-Net: encoder stages, gated skips, decoder levels, heads.

    The four models of the knee-ultrasound study are this skeleton with a fixed
    ``block`` and ``gate``: :class:`UNet` (double conv, no gate), :class:`AgUNet`
    (double conv, grid gate), :class:`ResUNet` (residual, no gate), :class:`AgResUNet`
    (residual, grid gate). Use the skeleton directly for other combinations.

    Layout (depth ``d = len(channels) - 1``)::

        encoder.stages[0]        block(in_channels -> channels[0])
        encoder.stages[i]        down -> dropout -> block(channels[i-1] -> channels[i])
        decoder.levels[j]        up(channels[i+1] -> channels[i]) -> gate(skip i) ->
                                 concat[skip, up] -> dropout -> block(2 channels[i] -> channels[i])
                                 with i = d - 1 - j (levels[0] is the coarsest)
        head                     1x1 conv -> num_classes
        aux_heads[k - 1]         1x1 conv on the level at 1/2**k resolution (deep supervision)

    Args:
        spatial_dims: 2 (images) or 3 (volumes); 1 also works.
        in_channels: input channels.
        num_classes: output channels (logits); 1 for a binary mask.
        channels: widths from the finest level to the bottleneck, e.g.
            ``(16, 32, 64, 128, 256)``; or an int root width, doubled ``depth`` times.
        depth: number of down-sampling steps when ``channels`` is an int (default 4).
        block: ``"double"``, ``"residual"``, a ``(name, kwargs)`` pair (e.g.
            ``("residual", {"shortcut": "auto"})``) or a callable with the signature
            of :class:`~attnunet.blocks.DoubleConv`.
        gate: skip gate spec (see :func:`~attnunet.blocks.build_gate`); ``None`` for plain
            skips.
        gate_levels: skip indices to gate (0 is the finest); default all.
        norm: norm spec (``"batch"``, ``"instance"``, ``"group"``, ``"layer"``, ``None``, a
            pair or a callable).
        act: activation spec.
        dropout: element-wise dropout after each down-sampling and after each concat.
        kernel_size: odd kernel of the block convolutions: one int for every stage, or one
            per stage (finest first), each an int or one per axis (``[[1, 3, 3], [1, 3, 3],
            [3, 3, 3], ...]`` for thick slices; MONAI DynUNet's and nnU-Net's form).
        strides: the down-sampling factor of each stage from the one before, finest first
            (``len(channels)`` entries, the first 1), each an int or one per axis:
            ``[1, [1, 2, 2], [1, 2, 2], 2, 2]`` halves only the in-plane axes of a
            thick-slice volume in the first two steps. Down-sampling, up-sampling, the
            grid gates' subsampling and the size policy all follow it. Default: 1, then 2
            for every stage.
        convs_per_stage: convolutions in each encoder stage's block, one for all or one
            per stage (default 2: the double convolution, or a residual body of two).
        decoder_convs_per_stage: convolutions in each decoder level's block, one for all
            or one per decoder level, finest first (``depth`` entries); default the
            encoder's count of that level.
        conv_bias: bias of the block convolutions; ``None`` means "only when no affine
            norm follows".
        down: ``"maxpool"``, ``"avgpool"``, ``"conv"`` (a separate layer whose kernel and
            stride equal the stage's stride) or ``"strided"`` (the first convolution of
            each stage's block carries the stride, as in nnU-Net and DynUNet).
        up: ``"transpose"``, ``"interp"`` or ``"upsample"`` (see :class:`~attnunet.blocks.Up`).
        up_kernel_size: kernel of the up-sampler (default: the stage's stride for
            transpose, 1 for interp), an int or one per axis. With ``up="upsample"``
            (parameter-free linear interpolation) the decoder block takes
            ``channels[i] + channels[i + 1]`` channels, as in Oktay's code.
        gating_signal: feed the deepest gate ``Conv1 -> norm -> act`` of the bottleneck
            (:class:`~attnunet.blocks.GridGatingSignal`, Oktay) instead of the bottleneck.
        deep_supervision: return a list of logits, one per decoder level. A run-time
            switch as well: ``model.deep_supervision = False`` (or
            :meth:`set_deep_supervision`) makes the same model, with the same state dict,
            return the tensor alone.
        ds_heads: build the deep-supervision heads even with ``deep_supervision=False``,
            so that the switch can turn it on later (nnU-Net's networks always have them);
            default: built when ``deep_supervision`` or ``ds_fusion`` is on. Without
            heads the switch refuses to turn on.
        ds_fusion: add Oktay's fused output: every head's logits, linearly up-sampled to
            full resolution, concatenated (finest first) and mapped by a 1x1 conv to
            ``num_classes``. The fused logits become the output (``deep_supervision=False``)
            or the first item of the list, before ``y_0, ..., y_{d-1}``.
        size_policy: what to do with spatial sizes not divisible by ``2**depth``:
            ``"pad"`` (default) zero-pads the end of each axis to the next multiple and
            crops every output back, so the network always sees exact grids;
            ``"resize"`` runs on the raw size (pooling floors, up-sampled features are
            replicate-padded to the skip's size), which needs every size to be at least
            ``2**depth``; ``"error"`` raises and names the nearest sizes that work.

    Shape:
        input ``(B, in_channels, *S)``; output ``(B, num_classes, *S)``. With
        ``deep_supervision=True`` a list ``[y_0, y_1, ..., y_{d-1}]``, full resolution
        first, the same in training and evaluation: ``y_k`` has shape
        ``(B, num_classes, *ceil(S / 2**k))`` under ``size_policy="pad"``, and the size of
        skip ``k`` (``S`` floor-halved ``k`` times) under ``"resize"``.

    Raises:
        ValueError: invalid configuration (message says what works), or an input with
            the wrong number of dimensions or channels, or a size the policy rejects.

    Examples:
        >>> model = UNetSkeleton(3, 1, 2, channels=(4, 8, 16), block="residual", gate="grid")
        >>> model(torch.randn(1, 1, 12, 15, 18)).shape
        torch.Size([1, 2, 12, 15, 18])
    """

    num_classes: Final[int]
    ds_fusion: Final[bool]
    interp_mode: Final[str]
    channels: list[int]

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: int | Sequence[int] = (16, 32, 64, 128, 256),
        *,
        depth: int | None = None,
        block: Any = "double",
        gate: GateSpec = None,
        gate_levels: Sequence[int] | None = None,
        norm: NormSpec = "batch",
        act: ActSpec = "relu",
        dropout: float = 0.0,
        kernel_size: Any = 3,
        strides: Sequence[Any] | None = None,
        convs_per_stage: int | Sequence[int] = 2,
        decoder_convs_per_stage: int | Sequence[int] | None = None,
        conv_bias: bool | None = None,
        down: StageDown = "maxpool",
        up: UpMode = "transpose",
        up_kernel_size: Any = None,
        gating_signal: bool = False,
        deep_supervision: bool = False,
        ds_fusion: bool = False,
        ds_heads: bool | None = None,
        size_policy: SizePolicy = "pad",
    ) -> None:
        super().__init__()
        check_flags(
            gating_signal=gating_signal,
            deep_supervision=deep_supervision,
            ds_fusion=ds_fusion,
            ds_heads=ds_heads,
        )
        stages = self._check_trunk(
            spatial_dims=spatial_dims,
            in_channels=in_channels,
            num_classes=num_classes,
            channels=channels,
            depth=depth,
            kernel_size=kernel_size,
            size_policy=size_policy,
            strides=strides,
            convs_per_stage=convs_per_stage,
            decoder_convs_per_stage=decoder_convs_per_stage,
            down=down,
        )
        chans = self.channels
        d = self.depth
        levels_to_gate = _gate_levels(gate_levels, d)
        make_block = self._build_encoder(
            stages,
            block=block,
            norm=norm,
            act=act,
            dropout=dropout,
            conv_bias=conv_bias,
            down=down,
        )
        self.num_classes = num_classes
        self.interp_mode = interp_mode(spatial_dims)
        heads = bool(deep_supervision or ds_fusion) if ds_heads is None else bool(ds_heads)
        if (deep_supervision or ds_fusion) and not heads:
            flag = "deep_supervision" if deep_supervision else "ds_fusion"
            raise ValueError(f"{flag}=True needs its heads: leave ds_heads out (or pass True)")

        self.gating_signal = (
            GridGatingSignal(spatial_dims, chans[d], chans[d], norm, act)
            if gating_signal
            else nn.Identity()
        )
        self.decoder = self._build_decoder(
            stages, make_block, gate, levels_to_gate, up, up_kernel_size, norm, dropout
        )
        self.head = SegmentationHead(spatial_dims, chans[0], num_classes)
        self.aux_heads = nn.ModuleList(
            [SegmentationHead(spatial_dims, chans[k], num_classes) for k in range(1, d)]
            if heads
            else []
        )
        self._ds_heads = heads
        self._deep_supervision = bool(deep_supervision)
        self.fuse = (
            SegmentationHead(spatial_dims, d * num_classes, num_classes)
            if ds_fusion
            else nn.Identity()
        )
        self.ds_fusion = bool(ds_fusion)
        self._config = capture_config(
            UNetSkeleton.__init__,
            locals(),
            exclude=("depth",),
            channels=list(chans),
            strides=plain_ints(strides),
            kernel_size=plain_ints(kernel_size),
            convs_per_stage=plain_ints(convs_per_stage),
            decoder_convs_per_stage=plain_ints(decoder_convs_per_stage),
            up_kernel_size=plain_ints(up_kernel_size),
            gate_levels=None if gate_levels is None else levels_to_gate,
            gating_signal=bool(gating_signal),
            deep_supervision=bool(deep_supervision),
            ds_fusion=bool(ds_fusion),
            ds_heads=ds_heads_config(heads, bool(deep_supervision), bool(ds_fusion)),
        )

    def _build_decoder(
        self,
        stages: list[Stage],
        make_block: BlockBuilder,
        gate: GateSpec,
        levels_to_gate: list[int],
        up: UpMode,
        up_kernel_size: Any,
        norm: NormSpec,
        dropout: float,
    ) -> Decoder:
        """The decoder levels, coarsest first: ``up -> gate(skip) -> concat -> block``."""
        spatial_dims, chans = self.spatial_dims, self.channels
        levels = []
        for i in range(self.depth - 1, -1, -1):
            up_channels = chans[i + 1] if up == "upsample" else chans[i]
            stride = stages[i + 1].stride  # from this level to the coarser one
            skip_gate = (
                build_skip_gate(
                    gate, spatial_dims, chans[i], chans[i + 1], up_channels, norm, stride
                )
                if i in levels_to_gate
                else None
            )
            levels.append(
                DecoderLevel(
                    build_up(
                        spatial_dims, chans[i + 1], up_channels, up, up_kernel_size, stride, i
                    ),
                    skip_gate,
                    get_dropout(dropout),
                    make_block(chans[i] + up_channels, chans[i], stages[i], decoder=True),
                )
            )
        return Decoder(levels)

    def _weight_dtype(self) -> torch.dtype | None:
        return self.head.conv.weight.dtype  # type: ignore[return-value]

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        self._check_input(x)
        x, size, converted = self._prepare(x)
        features = self.encoder(x)
        decoded, maps = self.decoder(features, self.gating_signal(features[-1]))
        logits = [self.head(decoded[-1])]
        if self._deep_supervision or self.ds_fusion:
            for k, head in enumerate(self.aux_heads):
                logits.append(head(decoded[len(decoded) - 2 - k]))
        if self.ds_fusion:
            full = list(x.shape[2:])
            resized = [logits[0]]
            for y in logits[1:]:
                resized.append(resize(y, full, self.interp_mode, False))
            fused = self.fuse(torch.cat(resized, dim=1))
            logits = [fused] + logits if self._deep_supervision else [fused]  # noqa: RUF005
        return self._restore(logits, size, x, converted), self._restore(maps, size, x, converted)

    def _select(self, logits: list[torch.Tensor]) -> Output:
        if self._deep_supervision:
            return logits
        return logits[0]

    def forward(self, x: torch.Tensor) -> Output:
        """Logits ``(B, num_classes, *S)``, or the deep-supervision list (see class docs)."""
        logits, _ = self._run(x)
        return self._select(logits)

    def _attention_run(self, x: torch.Tensor) -> tuple[Output, list[torch.Tensor]]:
        """``forward``'s output and the gates' maps, coarsest first (see
        :meth:`~attnunet.models._attention.AttentionMaps.forward_with_attention`)."""
        logits, maps = self._run(x)
        return self._select(logits), maps


# ---------------------------------------------------------------------------- family
KRD_PAPER = (
    "Analyzing Attention Gate Variants in Knee Recess Distention Ultrasound Segmentation "
    "(the agv-unet study): UNet, AgUNet, ResUNet and AgResUNet at root width 16, depth 4"
)
OKTAY_PAPER = (
    "Oktay et al., Attention U-Net: Learning Where to Look for the Pancreas, MIDL 2018, "
    "arXiv:1804.03999"
)
RONNEBERGER_PAPER = (
    "Ronneberger et al., U-Net: Convolutional Networks for Biomedical Image Segmentation, "
    "MICCAI 2015, arXiv:1505.04597"
)


class _FamilyDefault:
    """The default of an argument that each family member sets (``_defaults``)."""

    def __repr__(self) -> str:
        return "<the family's default>"


FAMILY_DEFAULT: Any = _FamilyDefault()


class _FixedUNet(UNetSkeleton):
    """A family member: the skeleton with the choices in ``_fixed`` fixed and those in
    ``_defaults`` given other defaults. Members are data (their two mappings and their
    docstring); none re-implements a method. ``gate`` stays the fifth positional
    parameter, as in the members' own signatures before."""

    _fixed: ClassVar[dict[str, Any]] = {}
    _defaults: ClassVar[dict[str, Any]] = {}

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: int | Sequence[int] = (16, 32, 64, 128, 256),
        gate: GateSpec = FAMILY_DEFAULT,
        **kwargs: Any,
    ) -> None:
        if gate is not FAMILY_DEFAULT:
            kwargs["gate"] = gate
        for key in self._fixed:
            if key in kwargs:
                raise TypeError(
                    f"{type(self).__name__} fixes {key}={self._fixed[key]!r}; use "
                    f"attnunet.UNetSkeleton to choose {key} freely"
                )
        super().__init__(
            spatial_dims,
            in_channels,
            num_classes,
            channels,
            **{**self._defaults, **kwargs, **self._fixed},
        )
        for key in self._fixed:
            self._config.pop(key)


@register_model(
    "unet",
    spatial_dims=(1, 2, 3),
    paper=RONNEBERGER_PAPER,
    description="U-Net with double conv blocks",
)
class UNet(_FixedUNet):
    """U-Net (Ronneberger et al., 2015): double convolution stages, plain skips.

    The knee-ultrasound study's baseline; the :func:`unet_krd` preset reproduces it.
    All keywords of :class:`UNetSkeleton` except ``block`` and ``gate`` are accepted.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        num_classes: output channels (logits).
        channels: widths from the finest level to the bottleneck, or an int root width.
        **kwargs: any other keyword of :class:`UNetSkeleton` (``norm``, ``act``,
            ``dropout``, ``deep_supervision``, ``size_policy``, ...).

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``, any ``S``.

    Examples:
        >>> UNet(2, 1, 2, channels=(8, 16, 32))(torch.randn(1, 1, 37, 50)).shape
        torch.Size([1, 2, 37, 50])
    """

    _fixed: ClassVar[dict[str, Any]] = {"block": "double", "gate": None}


@register_model(
    "res_unet", spatial_dims=(1, 2, 3), paper=KRD_PAPER, description="U-Net with residual blocks"
)
class ResUNet(_FixedUNet):
    """Residual U-Net: :class:`~attnunet.blocks.ResidualBlock` in every encoder stage, the
    bottleneck and every decoder level; plain skips.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        num_classes: output channels (logits).
        channels: widths from the finest level to the bottleneck, or an int root width.
        **kwargs: any other keyword of :class:`UNetSkeleton` except ``block`` and ``gate``.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``, any ``S``.

    Examples:
        >>> ResUNet(3, 1, 1, channels=(4, 8, 16))(torch.randn(1, 1, 9, 16, 20)).shape
        torch.Size([1, 1, 9, 16, 20])
    """

    _fixed: ClassVar[dict[str, Any]] = {"block": "residual", "gate": None}


@register_model(
    "ag_unet",
    spatial_dims=(1, 2, 3),
    paper=KRD_PAPER,
    description="U-Net with a grid attention gate per skip",
)
class AgUNet(_FixedUNet):
    """Attention-gated U-Net: double convolution stages, a grid attention gate on every
    skip (the finest included), fed by the coarser decoder feature before up-sampling.

    The default gate is the knee-ultrasound study's (``"grid_krd"``: ``F_int = C_x``,
    biased strided ``theta``, ``align_corners=True``, no output transform); pass
    ``gate="grid"`` or ``("grid", {...})`` for Oktay's parametrisation.

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        num_classes: output channels (logits).
        channels: widths from the finest level to the bottleneck, or an int root width.
        gate: gate spec (see :func:`~attnunet.blocks.build_gate`).
        **kwargs: any other keyword of :class:`UNetSkeleton` except ``block``
            (``gate_levels`` chooses which skips are gated).

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``, any ``S``.

    Examples:
        >>> model = AgUNet(2, 1, 1, channels=(8, 16, 32))
        >>> y, maps = model.forward_with_attention(torch.randn(1, 1, 40, 30))
        >>> [tuple(a.shape[2:]) for a in maps]
        [(20, 15), (40, 30)]
    """

    _fixed: ClassVar[dict[str, Any]] = {"block": "double"}
    _defaults: ClassVar[dict[str, Any]] = {"gate": "grid_krd"}


@register_model(
    "ag_res_unet",
    spatial_dims=(1, 2, 3),
    paper=KRD_PAPER,
    description="Residual U-Net with a grid attention gate per skip",
)
class AgResUNet(_FixedUNet):
    """Attention-gated residual U-Net: residual blocks everywhere and a grid attention gate
    on every skip (the finest included). The best model of the knee-ultrasound study by
    mean IoU (0.672).

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        num_classes: output channels (logits).
        channels: widths from the finest level to the bottleneck, or an int root width.
        gate: gate spec; default ``"grid_krd"`` (see :class:`AgUNet`).
        **kwargs: any other keyword of :class:`UNetSkeleton` except ``block``.

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``, any ``S``.

    Examples:
        >>> model = AgResUNet(spatial_dims=3, in_channels=1, num_classes=2, channels=(4, 8, 16))
        >>> model(torch.randn(1, 1, 10, 14, 18)).shape
        torch.Size([1, 2, 10, 14, 18])
    """

    _fixed: ClassVar[dict[str, Any]] = {"block": "residual"}
    _defaults: ClassVar[dict[str, Any]] = {"gate": "grid_krd"}


# ---------------------------------------------------------------------------- presets
KRD_PRESET: dict[str, Any] = {
    "spatial_dims": 2,
    "in_channels": 3,
    "num_classes": 1,
    "channels": [16, 32, 64, 128, 256],
    "norm": "batch",
    "act": "relu",
    "dropout": 0.0,
    "conv_bias": True,
    "up_kernel_size": 3,
}
"""The knee-ultrasound study's configuration: RGB input, one binary output, root width 16,
depth 4, batch norm after biased convolutions, transposed convolutions with kernel 3."""


def _register_krd(name: str, cls: type[UNetSkeleton], **extra: Any) -> Callable[[Any], Any]:
    return register_model(
        name,
        model_class=cls,
        spatial_dims=(1, 2, 3),
        paper=KRD_PAPER,
        description=f"{cls.__name__} preset of the knee-ultrasound study (root 16, depth 4)",
        defaults={**KRD_PRESET, **extra},
    )


@_register_krd("unet_krd", UNet)
def unet_krd(**overrides: Any) -> UNet:
    """:class:`UNet` as configured in the knee-ultrasound study (:data:`KRD_PRESET`).

    Keyword arguments override the preset. The reference implementation has 2,161,649
    parameters in this configuration; so does this model.

    Examples:
        >>> unet_krd().num_parameters()
        2161649
    """
    return build_preset("unet_krd", overrides)


@_register_krd("res_unet_krd", ResUNet)
def res_unet_krd(**overrides: Any) -> ResUNet:
    """:class:`ResUNet` as configured in the knee-ultrasound study (2,249,473 parameters).

    Examples:
        >>> res_unet_krd().num_parameters()
        2249473
    """
    return build_preset("res_unet_krd", overrides)


@_register_krd("ag_unet_krd", AgUNet, gate="grid_krd")
def ag_unet_krd(**overrides: Any) -> AgUNet:
    """:class:`AgUNet` as configured in the knee-ultrasound study (2,292,933 parameters).

    Examples:
        >>> ag_unet_krd().num_parameters()
        2292933
    """
    return build_preset("ag_unet_krd", overrides)


@_register_krd("ag_res_unet_krd", AgResUNet, gate="grid_krd")
def ag_res_unet_krd(**overrides: Any) -> AgResUNet:
    """:class:`AgResUNet` as configured in the knee-ultrasound study (2,380,757 parameters).

    Examples:
        >>> ag_res_unet_krd().num_parameters()
        2380757
    """
    return build_preset("ag_res_unet_krd", overrides)
