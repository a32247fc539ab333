"""UNet++ (nested U-Net with dense skip pathways) and Attention UNet++.

Nodes ``X[i, j]``: ``i`` is the depth level (0 is full resolution, ``d`` the bottleneck)
and ``j`` the column. Column 0 is the encoder; every other node fuses all earlier nodes
of its level with the up-sampled node below-left of it::

    X[0, 0] = block(x)
    X[i, 0] = block(down(X[i - 1, 0]))                                     i = 1 .. d
    X[i, j] = block(cat[g(X[i, 0]), ..., g(X[i, j - 1]), up(X[i + 1, j - 1])])
                                                                j >= 1, i + j <= d

``g`` is the skip gate (the identity in plain UNet++). The column-``c`` output
``X[0, c]`` depends exactly on the nodes with ``i + j <= c``, which is what makes the
network prunable at inference time.
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final, Literal, Union

import torch
from torch import nn

from attnunet.blocks.gates import GateSpec, SkipGate, build_skip_gate
from attnunet.blocks.heads import SegmentationHead
from attnunet.blocks.sampling import Up, UpMode
from attnunet.layers import ActSpec, NormSpec, get_dropout
from attnunet.models._attention import AttentionMaps
from attnunet.models._decoder import DecoderStage
from attnunet.models._deep_supervision import DeepSupervisionSwitch, ds_heads_config
from attnunet.models._registry import register_model
from attnunet.models._stages import (
    BlockBuilder,
    Stage,
    StageDown,
    UNetTrunk,
    build_up,
    capture_config,
    check_flags,
    plain_ints,
)
from attnunet.models.base import SizePolicy

__all__ = ["DS_MODES", "AttentionUNetPlusPlus", "NestedNode", "UNetPlusPlus"]

Output = Union[torch.Tensor, list[torch.Tensor]]  # noqa: UP007 (TorchScript needs Union)

DSMode = Literal["accurate", "fast", "list"]
DS_MODES = ("accurate", "fast", "list")
"""Values of the ``ds_mode`` argument of :class:`UNetPlusPlus`."""

ZHOU_PAPER = (
    "Zhou et al., UNet++: A Nested U-Net Architecture for Medical Image Segmentation, "
    "DLMIA 2018, arXiv:1807.10165"
)


class NestedNode(DecoderStage):
    """One node ``X[i, j]`` (``j >= 1``) of UNet++: a
    :class:`~attnunet.models._decoder.DecoderStage` whose skips are every same-level node
    so far, each with its own gate when gated.

    ``up(X[i + 1, j - 1])`` is matched to the size of the level's skips; each skip
    ``X[i, k]``, ``k < j``, passes through its own gate (when gated); then
    ``concat[gated skips..., up] -> dropout -> block``.

    Each gate is fed, as its gating signal, the coarse node ``X[i + 1, j - 1]`` before
    up-sampling, or the up-sampled feature when its ``gating`` attribute is
    ``"upsampled"`` (gates without a gating signal ignore it).

    Args:
        up: the up-sampler of ``X[i + 1, j - 1]``.
        gates: one gate per same-level skip (``j`` of them), or an empty list.
        dropout: applied to the concatenation.
        block: the stage block.
    """

    gated: Final[bool]
    if TYPE_CHECKING:  # what the nn.ModuleList holds; TorchScript never sees this
        gates: Sequence[SkipGate]

    def __init__(self, up: Up, gates: list[SkipGate], dropout: nn.Module, block: nn.Module) -> None:
        super().__init__(up, ("gates", nn.ModuleList(gates)), dropout, block)
        self.gated = len(gates) > 0

    def _parts(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``[gated skips..., up(coarse)]`` and the gates' maps."""
        up = self.up(coarse, list(skips[0].shape[2:]))
        parts: list[torch.Tensor] = []
        maps: list[torch.Tensor] = []
        if self.gated:
            for k, gate in enumerate(self.gates):
                gated, alpha = gate.attend(skips[k], self._gate_input(gate.gating, up, gating))
                parts.append(gated)
                maps.append(alpha)
        else:
            for skip in skips:
                parts.append(skip)
        parts.append(up)
        return parts, maps


def _check_deep_supervision(
    deep_supervision: bool, ds_mode: str, fast_column: int | None, depth: int, heads: bool
) -> bool:
    """Check ``ds_mode`` and ``fast_column``; return whether the network is pruned."""
    if ds_mode not in DS_MODES:
        raise ValueError(
            f"ds_mode must be one of {', '.join(map(repr, DS_MODES))}, got {ds_mode!r}"
        )
    fast = bool(deep_supervision) and ds_mode == "fast"
    if fast_column is None:
        return fast
    if not (heads and ds_mode == "fast"):
        raise ValueError(
            f"fast_column={fast_column!r} applies only with deep_supervision=True and "
            f"ds_mode='fast' (or ds_heads=True, to switch deep supervision on later; got "
            f"deep_supervision={deep_supervision!r}, ds_mode={ds_mode!r})"
        )
    if (
        isinstance(fast_column, bool)
        or not isinstance(fast_column, int)
        or not 1 <= fast_column <= depth
    ):
        raise ValueError(
            f"fast_column must be a column in 1..{depth} (the depth), got {fast_column!r}"
        )
    return fast


@register_model(
    "unet_plus_plus",
    spatial_dims=(1, 2, 3),
    paper=ZHOU_PAPER,
    description="UNet++: nested U-Net with dense skip pathways and prunable deep supervision",
)
class UNetPlusPlus(AttentionMaps, DeepSupervisionSwitch, UNetTrunk):
    """UNet++ (Zhou et al., DLMIA 2018, arXiv:1807.10165) for any ``spatial_dims``.

    Nested U-Net: between the encoder and the full-resolution output sit dense skip
    pathways of nodes ``X[i, j]`` (see the module docs). With ``gate`` set, every
    same-level skip passes through its own attention gate before concatenation
    (:class:`AttentionUNetPlusPlus`).

    Layout (depth ``d = len(channels) - 1``)::

        encoder.stages[i]     X[i, 0]: down -> dropout -> block(channels[i-1] -> channels[i])
                              (stage 0: block(in_channels -> channels[0]))
        nodes[j][i]           X[i, j], j = 1 .. d, i = 0 .. d - j (nodes[0] is empty:
                              column 0 is the encoder)
          .up                 Up(channels[i+1] -> channels[i]), matched to the skip size
          .gates[k]           gate of the skip X[i, k], k = 0 .. j - 1 (empty without gate)
          .dropout            on the concatenation
          .block              block((j + 1) * channels[i] -> channels[i]), or
                              block(j * channels[i] + channels[i+1] -> ...) with up="upsample"
        heads[k]              1x1 conv on X[0, d - k] -> num_classes (heads[0]: full depth)

    Deep supervision (the paper's heads on ``X[0, 1..d]``):

    * ``deep_supervision=False``: one head on ``X[0, d]``; returns a tensor.
    * ``deep_supervision=True, ds_mode="list"``: returns
      ``[y(X[0, d]), y(X[0, d-1]), ..., y(X[0, 1])]``, all at full resolution, in
      training and evaluation alike: sum a loss over it to train.
    * ``ds_mode="accurate"``: the mean of those ``d`` logits (one tensor).
    * ``ds_mode="fast"``: the head of column ``fast_column`` only; the network is pruned,
      so only the nodes ``X[i, j]`` with ``i + j <= fast_column`` (and the encoder stages
      ``0 .. fast_column``) are run.

    The state dict does not depend on ``ds_mode`` (nor on ``fast_column``), so a model
    trained with ``ds_mode="list"`` loads strictly into one built with
    ``ds_mode="fast"``: ``UNetPlusPlus(**{**model.config, "ds_mode": "fast",
    "fast_column": 2}).load_state_dict(model.state_dict())``. ``heads[0]`` is always the
    head of ``X[0, d]``, so a deep-supervision checkpoint also loads into a model without
    deep supervision with ``strict=False``.

    Args:
        spatial_dims: 2 (images) or 3 (volumes); 1 also works.
        in_channels: input channels.
        num_classes: output channels (logits); 1 for a binary mask.
        channels: widths from the finest level to the bottleneck, e.g.
            ``(16, 32, 64, 128, 256)``; or an int root width, doubled ``depth`` times.
        depth: number of down-sampling steps when ``channels`` is an int (default 4).
        block: ``"double"``, ``"residual"``, a ``(name, kwargs)`` pair or a callable (see
            :func:`~attnunet.models.unet.build_block`).
        gate: skip gate spec (see :func:`~attnunet.blocks.build_gate`); ``None`` (default)
            for plain skips. One gate module is built per (node, skip) pair. A gate gets
            ``g = X[i + 1, j - 1]`` (``"grid"`` and other coarse gates) or the up-sampled
            feature (gates whose ``gating`` is ``"upsampled"``, e.g. ``"additive"``);
            ``"self"`` ignores ``g``.
        norm: norm spec (``"batch"``, ``"instance"``, ``"group"``, ``"layer"``, ``None``, a
            pair or a callable).
        act: activation spec.
        dropout: element-wise dropout after each down-sampling and after each concat.
        kernel_size: odd kernel of the block convolutions: one for every stage or one per
            stage, each an int or one per axis (see
            :class:`~attnunet.models.UNetSkeleton`).
        strides: the down-sampling factor of each stage, finest first, the first 1; each
            an int or one per axis (see :class:`~attnunet.models.UNetSkeleton`). Every
            node's up-sampler undoes its level's stride.
        convs_per_stage: convolutions in each encoder stage's block (one for all or one
            per stage).
        decoder_convs_per_stage: convolutions in the blocks of the nested nodes of each
            level ``0 .. d - 1`` (one for all or one per level, finest first); default the
            encoder's count of that level.
        conv_bias: bias of the block convolutions; ``None`` means "only when no affine
            norm follows".
        down: ``"maxpool"``, ``"avgpool"``, ``"conv"`` or ``"strided"`` (the first
            convolution of each encoder block carries the stride).
        up: ``"transpose"``, ``"interp"`` or ``"upsample"`` (parameter-free; the blocks
            then take ``j * channels[i] + channels[i + 1]`` channels).
        up_kernel_size: kernel of the up-sampler (default: the stride for transpose, 1
            for interp).
        deep_supervision: heads on ``X[0, 1..d]`` instead of ``X[0, d]`` alone. Also a
            run-time switch (``model.deep_supervision = False``, or
            :meth:`set_deep_supervision`) when the heads exist.
        ds_heads: build the ``d`` heads even with ``deep_supervision=False`` so that the
            switch can turn it on later; default: built with ``deep_supervision``.
        ds_mode: ``"list"`` (default), ``"accurate"`` or ``"fast"``; see above. Used only
            with ``deep_supervision=True``.
        fast_column: the column ``1 .. d`` whose head ``ds_mode="fast"`` returns (default
            ``d``); only valid with ``deep_supervision=True, ds_mode="fast"``.
        size_policy: ``"pad"`` (default), ``"resize"`` or ``"error"``: what to do with
            sizes not divisible by ``2**depth`` (see
            :class:`~attnunet.models.unet.UNetSkeleton`).

    Shape:
        input ``(B, in_channels, *S)``; output ``(B, num_classes, *S)``, or a list of
        ``d`` such tensors with ``ds_mode="list"``. Attention maps from
        :meth:`forward_with_attention` have shape ``(B, 1, *s_i)``, ``s_i`` the size of
        level ``i`` (``ceil(S / 2**i)`` under ``"pad"``; ``S`` floor-halved ``i`` times
        under ``"resize"``).

    Raises:
        ValueError: invalid configuration (bad ``ds_mode``, ``fast_column`` out of range
            or without fast mode, bad widths, ...), or an input with the wrong number of
            dimensions or channels, or a size the policy rejects.

    Differences from the paper:
        the paper's network is 2D with depth 4 (five levels); here ``spatial_dims`` and
        depth are free, and norm, activation, block and up-sampler are arguments. The
        paper's heads end in a sigmoid and its accurate mode averages the branches'
        outputs; here heads return logits and ``"accurate"`` averages logits. Skips are
        concatenated before the up-sampled feature. Gated skips (Attention UNet++) follow
        the attention-based forward passing of Xu et al.'s electron-microscopy study, not
        the UNet++ paper.

    Examples:
        >>> import torch
        >>> model = UNetPlusPlus(2, 1, 2, channels=(4, 8, 16), deep_supervision=True,
        ...                      ds_mode="list")
        >>> [tuple(y.shape) for y in model(torch.randn(1, 1, 30, 45))]
        [(1, 2, 30, 45), (1, 2, 30, 45)]
    """

    num_classes: Final[int]
    ds_mode: Final[str]
    fast_column: Final[int]
    fast: bool
    last_column: int
    channels: list[int]
    if TYPE_CHECKING:  # what the nested nn.ModuleList holds; TorchScript never sees this
        nodes: Sequence[Sequence[NestedNode]]

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
        deep_supervision: bool = False,
        ds_mode: DSMode = "list",
        fast_column: int | None = None,
        ds_heads: bool | None = None,
        size_policy: SizePolicy = "pad",
    ) -> None:
        super().__init__()
        check_flags(deep_supervision=deep_supervision, ds_heads=ds_heads)
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
        heads = bool(deep_supervision) if ds_heads is None else bool(ds_heads)
        fast = _check_deep_supervision(deep_supervision, ds_mode, fast_column, d, heads)
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
        if deep_supervision and not heads:
            raise ValueError(
                "deep_supervision=True needs its heads: leave ds_heads out (or pass True)"
            )
        self._ds_heads = heads
        self._deep_supervision = bool(deep_supervision)
        self.ds_mode = ds_mode
        self.fast_column = d if fast_column is None else fast_column
        self.fast = fast
        self.last_column = self.fast_column if fast else d

        self.nodes = self._build_nodes(  # type: ignore[assignment]
            stages, make_block, gate, up, up_kernel_size, norm, dropout
        )
        self.heads = nn.ModuleList(
            [
                SegmentationHead(spatial_dims, chans[0], num_classes)
                for _ in range(d if heads else 1)
            ]
        )
        self._config = capture_config(
            UNetPlusPlus.__init__,
            locals(),
            exclude=("depth",),
            channels=list(chans),
            strides=plain_ints(strides),
            kernel_size=plain_ints(kernel_size),
            convs_per_stage=plain_ints(convs_per_stage),
            decoder_convs_per_stage=plain_ints(decoder_convs_per_stage),
            up_kernel_size=plain_ints(up_kernel_size),
            deep_supervision=bool(deep_supervision),
            ds_heads=ds_heads_config(heads, bool(deep_supervision)),
        )

    def _deep_supervision_changed(self) -> None:
        """Prune (``ds_mode="fast"``) only while deep supervision is on."""
        self.fast = self._deep_supervision and self.ds_mode == "fast"
        self.last_column = self.fast_column if self.fast else self.depth

    def _build_nodes(
        self,
        stages: list[Stage],
        make_block: BlockBuilder,
        gate: GateSpec,
        up: UpMode,
        up_kernel_size: Any,
        norm: NormSpec,
        dropout: float,
    ) -> nn.ModuleList:
        """The nested nodes by column: ``nodes[j][i]`` is ``X[i, j]`` (column 0, the
        encoder, is empty)."""
        spatial_dims, chans, d = self.spatial_dims, self.channels, self.depth
        up_channels = [chans[i + 1] if up == "upsample" else chans[i] for i in range(d)]
        columns: list[nn.ModuleList] = [nn.ModuleList()]  # column 0 is the encoder
        for j in range(1, d + 1):
            rows: list[nn.Module] = []
            for i in range(d - j + 1):
                gates: list[SkipGate] = []
                stride = stages[i + 1].stride  # from level i to level i + 1
                for _ in range(j):  # one gate per same-level skip X[i, 0..j-1]
                    built = build_skip_gate(
                        gate, spatial_dims, chans[i], chans[i + 1], up_channels[i], norm, stride
                    )
                    if built is not None:
                        gates.append(built)
                up_i = build_up(
                    spatial_dims, chans[i + 1], up_channels[i], up, up_kernel_size, stride, i
                )
                block = make_block(j * chans[i] + up_channels[i], chans[i], stages[i], decoder=True)
                rows.append(NestedNode(up_i, gates, get_dropout(dropout), block))
            columns.append(nn.ModuleList(rows))
        return nn.ModuleList(columns)

    def _weight_dtype(self) -> torch.dtype | None:
        weight = self.heads[0].conv.weight  # type: ignore[union-attr]
        return weight.dtype  # type: ignore[return-value]

    def _node_rows(
        self, x: torch.Tensor
    ) -> tuple[list[list[torch.Tensor]], list[torch.Tensor], torch.Tensor, list[int], bool]:
        """Run the encoder and the nodes up to ``last_column``: ``rows[i][j]`` is
        ``X[i, j]`` on the padded grid, ``maps`` the gates' coefficients (unrestored),
        then the padded input, the original size and whether the input changed layout
        (for :meth:`_restore`)."""
        self._check_input(x)
        x, size, converted = self._prepare(x)
        last = self.last_column
        # rows[i] = [X[i, 0], X[i, 1], ...], filled column by column
        rows: list[list[torch.Tensor]] = []
        feature = x
        for i, stage in enumerate(self.encoder.stages):
            if i <= last:
                feature = stage(feature)
                rows.append([feature])
        maps: list[torch.Tensor] = []
        for j, column in enumerate(self.nodes):
            for i, node in enumerate(column):
                if i + j <= last:
                    coarse = rows[i + 1][j - 1]  # also the gating feature of coarse gates
                    out, alphas = node(rows[i], coarse, coarse)
                    rows[i].append(out)
                    maps.extend(alphas)
        return rows, maps, x, size, converted

    def _run(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Return the head logits (in list order) and the gate maps, both restored."""
        rows, maps, x, size, converted = self._node_rows(x)
        last = self.last_column
        logits: list[torch.Tensor] = []
        for k, head in enumerate(self.heads):  # heads[k] reads X[0, d - k]
            if k == 0 and not self.fast:
                logits.append(head(rows[0][self.depth]))
            elif self._deep_supervision and (not self.fast or k == self.depth - last):
                logits.append(head(rows[0][self.depth - k]))
        return self._restore(logits, size, x, converted), self._restore(maps, size, x, converted)

    def _select(self, logits: list[torch.Tensor]) -> Output:
        if not self._deep_supervision:
            return logits[0]
        if self.ds_mode == "list":
            return logits
        if self.ds_mode == "accurate":
            return torch.stack(logits, dim=0).mean(dim=0)
        return logits[0]

    def forward(self, x: torch.Tensor) -> Output:
        """Logits ``(B, num_classes, *S)``, or the deep-supervision list (see class docs)."""
        logits, _ = self._run(x)
        return self._select(logits)

    def _attention_run(self, x: torch.Tensor) -> tuple[Output, list[torch.Tensor]]:
        """``forward``'s output and every gate's coefficients.

        ``maps`` runs over the nodes that were computed by column ``j``, then row ``i``,
        then source skip ``k`` (the gate of ``X[i, k]`` in node ``X[i, j]``): for depth 2,
        ``(i, j, k) = (0, 1, 0), (1, 1, 0), (0, 2, 0), (0, 2, 1)``. Each map has shape
        ``(B, 1, *s_i)`` (one channel per gate of a ``"multi"`` gate) with ``s_i`` the
        size of level ``i``, cropped like the outputs under ``size_policy="pad"``. With
        ``ds_mode="fast"`` only the gates of the nodes that run are listed. Models without
        gates return an empty list.
        """
        logits, maps = self._run(x)
        return self._select(logits), maps


@register_model(
    "attention_unet_plus_plus",
    spatial_dims=(1, 2, 3),
    paper=ZHOU_PAPER + "; attention-based forward passing of Xu et al.'s electron-microscopy study",
    description="UNet++ with a self-attention gate on every same-level skip",
)
class AttentionUNetPlusPlus(UNetPlusPlus):
    """Attention UNet++: UNet++ whose same-level skips are all gated.

    Every skip ``X[i, k]`` entering a node ``X[i, j]`` passes through its own gate before
    the concatenation, so node ``X[i, j]`` holds ``j`` gates (``nodes[j][i].gates[k]``).
    The default gate is :class:`~attnunet.blocks.gates.SelfAttentionSkip`
    (``alpha = sigmoid(Conv1(x))``, ``C + 1`` parameters per gate), the attention-based
    forward passing of Xu et al.'s electron-microscopy study; any other gate spec works
    (``"grid"`` is fed ``X[i + 1, j - 1]``, ``"additive"`` the up-sampled feature).

    Args:
        spatial_dims: 2 or 3 (1 also works).
        in_channels: input channels.
        num_classes: output channels (logits).
        channels: widths from the finest level to the bottleneck, or an int root width.
        gate: gate spec (see :func:`~attnunet.blocks.build_gate`); default ``"self"``.
        **kwargs: any other keyword of :class:`UNetPlusPlus` (``norm``, ``act``,
            ``deep_supervision``, ``ds_mode``, ``fast_column``, ``size_policy``, ...).

    Shape:
        as :class:`UNetPlusPlus`; :meth:`~UNetPlusPlus.forward_with_attention` returns
        ``sum_j j * (d - j + 1)`` maps for depth ``d`` (fewer with ``ds_mode="fast"``).

    Raises:
        ValueError: ``gate=None`` (use :class:`UNetPlusPlus`), or any error of
            :class:`UNetPlusPlus`.

    Differences from the paper:
        see :class:`UNetPlusPlus`; the gates are not part of the UNet++ paper.

    Examples:
        >>> import torch
        >>> model = AttentionUNetPlusPlus(2, 1, 1, channels=(4, 8, 16))
        >>> y, maps = model.forward_with_attention(torch.randn(1, 1, 20, 30))
        >>> tuple(y.shape), [tuple(a.shape[2:]) for a in maps]
        ((1, 1, 20, 30), [(20, 30), (10, 15), (20, 30), (20, 30)])
    """

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 1,
        num_classes: int = 1,
        channels: int | Sequence[int] = (16, 32, 64, 128, 256),
        *,
        gate: GateSpec = "self",
        **kwargs: Any,
    ) -> None:
        if gate is None:
            raise ValueError(
                "AttentionUNetPlusPlus needs a gate spec (default 'self'); use "
                "UNetPlusPlus for plain skips"
            )
        super().__init__(spatial_dims, in_channels, num_classes, channels, gate=gate, **kwargs)
