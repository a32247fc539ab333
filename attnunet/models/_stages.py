"""What the U-Net-shaped models share before their decoders differ: the stage
descriptions, the checks of the common arguments, the encoder, and the config.

A U-Net is described as a list of :class:`Stage` values, finest first: each stage says
its width, the kernel of its block convolutions and the stride that reaches it from the
stage before (1 for the first). :class:`~attnunet.models.UNetSkeleton` and
:class:`~attnunet.models.UNetPlusPlus` build their encoder, their down- and up-samplers
and their blocks from these fields, so a model whose stages differ (another kernel or
stride in some stage) is a different list of values, not another class.
"""

import inspect
import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from attnunet.blocks.conv import DoubleConv, ResidualBlock, check_channels
from attnunet.blocks.sampling import Down, DownMode
from attnunet.layers import (
    ActSpec,
    NormSpec,
    check_spatial_dims,
    get_dropout,
    norm_has_affine,
    parse_spec,
    unknown_choice,
)
from attnunet.models._checkpointing import CheckpointSegment, run_checkpointed
from attnunet.models.base import SegmentationModel, SizePolicy, check_size_policy

__all__ = [
    "BLOCKS",
    "Encoder",
    "EncoderStage",
    "Stage",
    "UNetTrunk",
    "build_block",
    "build_encoder",
    "capture_config",
    "channels_list",
    "unet_stages",
]

BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "double": DoubleConv,
    "residual": ResidualBlock,
}
"""Stage block names accepted by the ``block`` argument of the U-Net models."""


@dataclass(frozen=True)
class Stage:
    """One resolution level of a U-Net: its encoder stage, the skip it leaves and the
    decoder stage that comes back to it.

    Attributes:
        channels: the width of the stage's features.
        kernel_size: the kernel of the stage's block convolutions (odd).
        stride: the down-sampling factor from the previous stage (1 for the first stage;
            the encoder builds stride 2, which the up-samplers undo, and refuses others).
    """

    channels: int
    kernel_size: int = 3
    stride: int = 2


def channels_list(channels: int | Sequence[int], depth: int | None) -> list[int]:
    """The widths of every stage, finest first, from a list or a root width doubled
    ``depth`` times (default 4).

    Raises:
        TypeError: ``channels`` is a bool.
        ValueError: fewer than two widths, a width that is not a positive int, or a
            ``depth`` that contradicts ``channels``.

    Examples:
        >>> channels_list(16, 3), channels_list((8, 16, 32), None)
        ([16, 32, 64, 128], [8, 16, 32])
    """
    if isinstance(channels, bool):
        raise TypeError(f"channels must be an int or a sequence of ints, got {channels!r}")
    if isinstance(channels, int):
        return _doubled(channels, 4 if depth is None else depth)
    chans = list(channels)
    if len(chans) < 2:
        raise ValueError(
            f"channels needs at least two widths (one level and the bottleneck), got {chans}: "
            f"for example (16, 32, 64, 128, 256) for depth 4"
        )
    if depth is not None and depth != len(chans) - 1:
        raise ValueError(
            f"depth={depth} contradicts channels={chans} (which gives depth {len(chans) - 1}); "
            f"pass only one of them"
        )
    for c in chans:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"every channel width must be a positive int, got {chans}")
    return chans


def _doubled(root: int, depth: int) -> list[int]:
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(
            f"depth must be a positive int (the number of down-sampling steps), got {depth!r}"
        )
    if root < 1:
        raise ValueError(f"channels must be positive, got {root}")
    return [root * 2**i for i in range(depth + 1)]


def unet_stages(channels: int | Sequence[int], depth: int | None, kernel_size: int) -> list[Stage]:
    """The stages of a U-Net with the same kernel everywhere and every axis halved per
    level: the first stage at stride 1, each later one at stride 2.

    Examples:
        >>> [(s.channels, s.stride) for s in unet_stages((8, 16, 32), None, 3)]
        [(8, 1), (16, 2), (32, 2)]
    """
    return [
        Stage(c, kernel_size, 1 if i == 0 else 2)
        for i, c in enumerate(channels_list(channels, depth))
    ]


def build_block(
    spec: Any,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    norm: NormSpec,
    act: ActSpec,
    bias: bool | None,
) -> nn.Module:
    """Build a stage block from ``"double"``, ``"residual"``, a ``(name, kwargs)`` pair or a
    callable with the signature of :class:`~attnunet.blocks.DoubleConv`."""
    if callable(spec) and not isinstance(spec, str):
        return spec(spatial_dims, in_channels, out_channels, kernel_size, norm, act, bias)
    name, kwargs = parse_spec(spec, "block")
    if name is None or name not in BLOCKS:
        raise unknown_choice("block", str(name), tuple(BLOCKS))
    return BLOCKS[name](
        spatial_dims, in_channels, out_channels, kernel_size, norm, act, bias, **kwargs
    )


class EncoderStage(CheckpointSegment):
    """``down -> dropout -> block`` (the first stage has neither down nor dropout).

    One segment of activation checkpointing (see
    :meth:`~attnunet.models.SegmentationModel.set_checkpointing`).
    """

    def __init__(self, down: nn.Module, dropout: nn.Module, block: nn.Module) -> None:
        super().__init__()
        self.down = down
        self.dropout = dropout
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._checkpoint_now():
            return self._checkpointed(x)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.dropout(self.down(x)))

    @torch.jit.unused
    def _checkpointed(self, x: torch.Tensor) -> torch.Tensor:
        return run_checkpointed((self,), self._forward, x)


class Encoder(nn.Module):
    """The contracting path: ``stages[0]`` at full resolution, ``stages[-1]`` the bottleneck."""

    def __init__(self, stages: list[EncoderStage]) -> None:
        super().__init__()
        self.stages = nn.ModuleList(stages)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features: list[torch.Tensor] = []
        for stage in self.stages:
            x = stage(x)
            features.append(x)
        return features


def _down(spatial_dims: int, channels: int, stage: Stage, mode: DownMode) -> Down:
    if stage.stride != 2:
        raise ValueError(f"stage strides other than 2 are not supported yet, got {stage}")
    return Down(spatial_dims, channels, mode)


def build_encoder(
    spatial_dims: int,
    in_channels: int,
    stages: Sequence[Stage],
    make_block: Callable[[int, int, Stage], nn.Module],
    down: DownMode,
    dropout: float,
) -> Encoder:
    """The U-Net encoder: ``block(in -> c0)``, then ``down -> dropout -> block`` per stage,
    each built from its :class:`Stage`."""
    first = stages[0]
    block = make_block(in_channels, first.channels, first)
    encoder = [EncoderStage(nn.Identity(), nn.Identity(), block)]
    for previous, stage in itertools.pairwise(stages):
        encoder.append(
            EncoderStage(
                _down(spatial_dims, previous.channels, stage, down),
                get_dropout(dropout),
                make_block(previous.channels, stage.channels, stage),
            )
        )
    return Encoder(encoder)


def capture_config(
    init: Callable[..., None],
    values: Mapping[str, Any],
    exclude: Sequence[str] = (),
    **normalised: Any,
) -> dict[str, Any]:
    """The constructor keywords of ``init`` (in signature order) read from ``values`` (the
    constructor's ``locals()``), with ``normalised`` values replacing the raw ones and the
    names in ``exclude`` left out: the ``config`` that rebuilds the model.

    Examples:
        >>> def __init__(self, a, b=2, *, c=None, **kwargs): ...
        >>> capture_config(__init__, {"a": 1, "b": 2, "c": (3,)}, c=[3])
        {'a': 1, 'b': 2, 'c': [3]}
    """
    skip = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    names = [
        name
        for name, p in inspect.signature(init).parameters.items()
        if name != "self" and p.kind not in skip and name not in exclude
    ]
    return {name: normalised[name] if name in normalised else values[name] for name in names}


class UNetTrunk(SegmentationModel):
    """The base of the U-Net-shaped models: checks the arguments they share, describes
    the stages, and builds the encoder; the subclass adds its decoder and heads."""

    channels: list[int]

    def _check_trunk(
        self,
        *,
        spatial_dims: int,
        in_channels: int,
        num_classes: int,
        channels: int | Sequence[int],
        depth: int | None,
        kernel_size: int,
        size_policy: SizePolicy,
    ) -> list[Stage]:
        """Check the shared arguments and set the shared attributes; return the stages.
        Builds no module (the subclass checks its own arguments next, before any weight is
        drawn)."""
        check_spatial_dims(spatial_dims)
        check_channels(in_channels=in_channels, num_classes=num_classes)
        stages = unet_stages(channels, depth, kernel_size)
        check_size_policy(size_policy)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(stages) - 1
        self.divisor = math.prod(stage.stride for stage in stages)  # the first is 1
        self.size_policy = size_policy
        self.channels = [s.channels for s in stages]
        return stages

    def _build_encoder(
        self,
        stages: Sequence[Stage],
        *,
        block: Any,
        norm: NormSpec,
        act: ActSpec,
        dropout: float,
        conv_bias: bool | None,
        down: DownMode,
    ) -> Callable[[int, int, Stage], nn.Module]:
        """Build ``self.encoder`` from ``stages``; return the block builder
        (``make_block(cin, cout, stage)``) for the decoder."""
        bias = (not norm_has_affine(norm)) if conv_bias is None else conv_bias
        spatial_dims = self.spatial_dims

        def make_block(cin: int, cout: int, stage: Stage) -> nn.Module:
            return build_block(block, spatial_dims, cin, cout, stage.kernel_size, norm, act, bias)

        self.encoder = build_encoder(
            spatial_dims, self.in_channels, stages, make_block, down, dropout
        )
        return make_block
