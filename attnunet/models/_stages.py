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
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from attnunet.blocks.conv import DoubleConv, ResidualBlock, check_channels
from attnunet.blocks.sampling import Down, Up
from attnunet.layers import (
    ActSpec,
    NormSpec,
    check_spatial_dims,
    get_dropout,
    norm_has_affine,
    parse_spec,
    per_axis,
    unknown_choice,
)
from attnunet.models._checkpointing import CheckpointSegment, run_checkpointed
from attnunet.models.base import SegmentationModel, SizePolicy, check_size_policy

__all__ = [
    "BLOCKS",
    "DOWN_MODES",
    "Encoder",
    "EncoderStage",
    "Stage",
    "UNetTrunk",
    "build_block",
    "build_encoder",
    "build_up",
    "capture_config",
    "channels_list",
    "check_flags",
    "plain_ints",
    "stage_divisors",
    "unet_stages",
]

BLOCKS: dict[str, Callable[..., nn.Module]] = {
    "double": DoubleConv,
    "residual": ResidualBlock,
}
"""Stage block names accepted by the ``block`` argument of the U-Net models."""


Axes = int | tuple[int, ...]
"""A kernel size or stride: one int for every axis, or one int per axis."""


@dataclass(frozen=True)
class Stage:
    """One resolution level of a U-Net: its encoder stage, the skip it leaves and the
    decoder stage that comes back to it.

    Attributes:
        channels: the width of the stage's features.
        kernel_size: the kernel of the stage's block convolutions (odd), one int for
            every axis or one per axis (``(1, 3, 3)``: in-plane only).
        stride: the down-sampling factor from the previous stage, one int or one per axis
            (all 1 for the first stage; ``(1, 2, 2)`` keeps the first axis). The encoder
            down-samples by it and the decoder's up-sampler undoes it.
        convs: convolutions in the stage's encoder block.
        decoder_convs: convolutions in the block of the decoder stage that comes back to
            this level (unused for the bottleneck).
    """

    channels: int
    kernel_size: Axes = 3
    stride: Axes = 2
    convs: int = 2
    decoder_convs: int = 2


def check_flags(**flags: Any) -> None:
    """Raise ``TypeError`` naming the first flag that is not ``True`` or ``False`` (``None``
    passes: the flags that take it mean "the default"). A string such as ``"false"`` would
    otherwise switch the flag on.

    Examples:
        >>> check_flags(deep_supervision=True, ds_heads=None)
        >>> check_flags(ds_fusion="false")
        Traceback (most recent call last):
        ...
        TypeError: ds_fusion must be True or False, got 'false'
    """
    for name, value in flags.items():
        if value is not None and not isinstance(value, bool):
            raise TypeError(f"{name} must be True or False, got {value!r}")


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


def plain_ints(value: Any) -> Any:
    """``value`` with NumPy (or torch) integers and arrays turned into Python ints and
    lists, recursively through lists and tuples; anything else unchanged.

    Examples:
        >>> import numpy as np
        >>> plain_ints(np.array([[1, 2], [2, 2]])), plain_ints((np.int64(3), [np.int32(1)]))
        ([[1, 2], [2, 2]], (3, [1]))
    """
    if isinstance(value, bool):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if hasattr(value, "tolist") and not isinstance(value, list | tuple):
        return value.tolist()
    if isinstance(value, list):
        return [plain_ints(v) for v in value]
    if isinstance(value, tuple):
        return tuple(plain_ints(v) for v in value)
    return value


def _per_stage(value: Any, n: int, what: str, unit: str, example: str) -> list[Any]:
    """``value`` repeated for ``n`` items (an int), or checked to hold one entry per item
    (``unit`` says what an item is, e.g. "stage (the finest first, the bottleneck last)")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ValueError(
            f"{what} must be an int or a list with one entry per {unit}; e.g. "
            f"{example}; got {value!r}"
        )
    return _entries(value, n, what, unit, "or one int for all", example)


def _entries(
    value: Sequence[Any], n: int, what: str, unit: str, rule: str, example: Any
) -> list[Any]:
    """``value`` as a list, checked to hold ``n`` entries (``rule`` ends the message)."""
    items = list(value)
    if len(items) != n:
        raise ValueError(
            f"{what} must give one entry per {unit}, {n} in all, {rule}; got "
            f"{len(items)} entries {items!r}; e.g. {example}"
        )
    return items


def _axes(value: Any, spatial_dims: int, what: str) -> Axes:
    """One int for an isotropic value, a tuple per axis otherwise (checked)."""
    if isinstance(value, list):
        value = tuple(value)
    axes = per_axis(value, spatial_dims, what)
    return axes[0] if len(set(axes)) == 1 else axes


_STAGE = "stage (the finest first, the bottleneck last)"


def _stage_strides(strides: Any, n: int, spatial_dims: int) -> list[Axes]:
    example = [1] + [2] * (n - 1)
    if strides is None:
        default: list[Axes] = [1]
        return default + [2] * (n - 1)
    if isinstance(strides, str) or not isinstance(strides, Sequence):
        raise ValueError(
            f"strides must give one stride per stage ({n}, the first 1), e.g. {example}, "
            f"or [[1, 1, 1], [1, 2, 2], [2, 2, 2], ...] per axis; got {strides!r}"
        )
    items = _entries(strides, n, "strides", _STAGE, "the first 1", example)
    out = [_axes(v, spatial_dims, f"strides[{i}]") for i, v in enumerate(items)]
    if out[0] != 1:
        raise ValueError(
            f"strides[0] is the first stage's, which runs at the input resolution: it must "
            f"be 1 on every axis, got {items[0]!r}"
        )
    return out


def _stage_kernels(kernel_size: Any, n: int, spatial_dims: int) -> list[Axes]:
    if isinstance(kernel_size, int) and not isinstance(kernel_size, bool):
        return [kernel_size] * n
    one_per_axis = _flat(kernel_size) and len(kernel_size) == spatial_dims
    if one_per_axis and n == spatial_dims and len(set(kernel_size)) > 1:
        raise ValueError(
            f"kernel_size={list(kernel_size)!r} is ambiguous for {n} stages in "
            f"{spatial_dims}D: one kernel per stage, or one per-axis kernel for every stage? "
            f"Write one per-axis kernel per stage, e.g. {[list(kernel_size)] * n!r}"
        )
    if one_per_axis:
        items: list[Any] = [tuple(kernel_size)] * n  # one per-axis kernel for every stage
    else:
        example = "3, or [[1, 3, 3], [1, 3, 3], [3, 3, 3], ...]"
        items = _per_stage(kernel_size, n, "kernel_size", _STAGE, example)
    kernels = [_axes(v, spatial_dims, f"kernel_size[{i}]") for i, v in enumerate(items)]
    for i, k in enumerate(kernels):
        if any(a % 2 == 0 for a in ((k,) if isinstance(k, int) else k)):
            raise ValueError(
                f"kernel_size[{i}] = {items[i]!r} has an even entry, so 'same' padding cannot "
                f"keep the size: use odd kernels such as 1, 3 or 5"
            )
    return kernels


def _flat(value: Any) -> bool:
    """Whether ``value`` is a sequence of ints (a per-axis kernel), not of entries."""
    return isinstance(value, Sequence) and all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    )


def _stage_convs(convs: Any, n: int, what: str, unit: str) -> list[int]:
    items = _per_stage(convs, n, what, unit, f"2, or {[2] * (n - 1) + [3]}")
    for c in items:
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise ValueError(f"{what} must hold positive ints, got {convs!r}")
    return items


def unet_stages(
    channels: int | Sequence[int],
    depth: int | None,
    kernel_size: Any = 3,
    *,
    strides: Any = None,
    convs_per_stage: Any = 2,
    decoder_convs_per_stage: Any = None,
    spatial_dims: int = 2,
) -> list[Stage]:
    """The stages of a U-Net, finest first, from the models' arguments.

    By default every stage has the same kernel and two convolutions, the first stage runs
    at stride 1 and each later one halves every axis. ``strides`` gives one stride per
    stage (an int or one per axis; the first must be 1), ``kernel_size`` one kernel for
    all stages or one per stage (each an int or one per axis), ``convs_per_stage`` the
    encoder blocks' convolutions (one for all or one per stage) and
    ``decoder_convs_per_stage`` the decoder blocks' (one for all or one per decoder
    level, finest first; default the encoder's count of that level).

    Raises:
        ValueError: a list of the wrong length, a first stride other than 1, an even
            kernel, a non-positive count; the message shows what works.

    Examples:
        >>> [(s.channels, s.stride) for s in unet_stages((8, 16, 32), None, 3)]
        [(8, 1), (16, 2), (32, 2)]
        >>> [s.stride for s in unet_stages((8, 16, 32), None, strides=[1, (1, 2, 2), 2],
        ...                                 spatial_dims=3)]
        [1, (1, 2, 2), 2]
    """
    chans = channels_list(plain_ints(channels), depth)
    n = len(chans)
    strides_ = _stage_strides(plain_ints(strides), n, spatial_dims)
    kernels = _stage_kernels(plain_ints(kernel_size), n, spatial_dims)
    convs = _stage_convs(plain_ints(convs_per_stage), n, "convs_per_stage", _STAGE)
    if decoder_convs_per_stage is None:
        decoder = convs[:-1]
    else:
        decoder = _stage_convs(
            plain_ints(decoder_convs_per_stage),
            n - 1,
            "decoder_convs_per_stage",
            "decoder level (the finest first; the bottleneck has none)",
        )
    decoder = [*decoder, 0]  # the bottleneck has no decoder stage
    return [
        Stage(c, k, st, cv, dc)
        for c, k, st, cv, dc in zip(chans, kernels, strides_, convs, decoder, strict=True)
    ]


def stage_divisors(stages: Sequence[Stage], spatial_dims: int) -> list[int]:
    """The product of the stages' strides per axis: what each input axis must be a
    multiple of for the network to see exact grids.

    Examples:
        >>> stage_divisors(unet_stages(8, 3, strides=[1, (1, 2, 2), 2, 2], spatial_dims=3), 3)
        [4, 8, 8]
    """
    divisors = [1] * spatial_dims
    for stage in stages:
        for d, s in enumerate(per_axis(stage.stride, spatial_dims, "stride")):
            divisors[d] *= s
    return divisors


def build_block(
    spec: Any,
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    kernel_size: Axes,
    norm: NormSpec,
    act: ActSpec,
    bias: bool | None,
    *,
    num_convs: int = 2,
    stride: Axes = 1,
) -> nn.Module:
    """Build a stage block from ``"double"``, ``"residual"``, a ``(name, kwargs)`` pair or a
    callable with the signature of :class:`~attnunet.blocks.DoubleConv`.

    ``num_convs`` and ``stride`` reach a callable only when they differ from 2 and 1 (so a
    callable written for the double-convolution signature keeps working in a model that
    does not use them); one that does not accept them then raises a ``TypeError`` that
    says which argument it needs.
    """
    extra: dict[str, Any] = {}
    if num_convs != 2:
        extra["num_convs"] = num_convs
    if stride != 1:
        extra["stride"] = stride
    if callable(spec) and not isinstance(spec, str):
        try:
            return spec(
                spatial_dims, in_channels, out_channels, kernel_size, norm, act, bias, **extra
            )
        except TypeError as error:
            if not extra or not any(key in str(error) for key in extra):
                raise
            raise TypeError(
                f"the block callable {spec!r} does not accept {sorted(extra)}: the model's "
                f"convs_per_stage / decoder_convs_per_stage / down='strided' need a block "
                f"that takes num_convs= (convolutions) and stride= (of its first convolution), "
                f"as attnunet.blocks.DoubleConv does"
            ) from error
    name, kwargs = parse_spec(spec, "block")
    if name is None or name not in BLOCKS:
        raise unknown_choice("block", str(name), tuple(BLOCKS))
    for key, model_argument in (("num_convs", "convs_per_stage"), ("stride", "strides")):
        if key in kwargs:
            raise ValueError(
                f"the block spec {spec!r} sets {key}, which the model sets per stage: give "
                f"the model {model_argument}= (and decoder_convs_per_stage= or "
                f"down='strided') instead"
            )
    return BLOCKS[name](
        spatial_dims, in_channels, out_channels, kernel_size, norm, act, bias, **kwargs, **extra
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


StageDown = Literal["maxpool", "avgpool", "conv", "strided"]
"""Values of the models' ``down`` argument: a :class:`~attnunet.blocks.Down` mode, or
``"strided"`` (the first convolution of each stage's block carries the stride)."""

BlockBuilder = Callable[..., nn.Module]
"""``make_block(cin, cout, stage, decoder=False)``: a stage's block, for its encoder
stage or (``decoder=True``) for the decoder stage that comes back to it."""


def build_encoder(
    spatial_dims: int,
    in_channels: int,
    stages: Sequence[Stage],
    make_block: BlockBuilder,
    down: StageDown,
    dropout: float,
) -> Encoder:
    """The U-Net encoder: ``block(in -> c0)``, then ``down -> dropout -> block`` per stage,
    each built from its :class:`Stage` (with ``down="strided"``, ``down`` is the identity
    and the block's first convolution has the stride)."""
    first = stages[0]
    block = make_block(in_channels, first.channels, first)
    encoder = [EncoderStage(nn.Identity(), nn.Identity(), block)]
    for previous, stage in itertools.pairwise(stages):
        if down == "strided":
            sampler: nn.Module = nn.Identity()
            stage_block = make_block(previous.channels, stage.channels, stage, strided=True)
        else:
            sampler = Down(spatial_dims, previous.channels, down, stage.stride)
            stage_block = make_block(previous.channels, stage.channels, stage)
        encoder.append(EncoderStage(sampler, get_dropout(dropout), stage_block))
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


def build_up(
    spatial_dims: int,
    in_channels: int,
    out_channels: int,
    mode: Any,
    kernel_size: Any,
    stride: Axes,
    level: int,
) -> Up:
    """The up-sampler from level ``level + 1`` to ``level``, with errors that name the
    model's ``up_kernel_size`` and the level."""
    try:
        return Up(spatial_dims, in_channels, out_channels, mode, kernel_size, stride=stride)
    except ValueError as error:
        if kernel_size is None:
            raise
        raise ValueError(
            f"up_kernel_size={kernel_size!r} does not fit the up-sampler to level {level} "
            f"(stride {stride!r}): {error}"
        ) from error


DOWN_MODES = ("maxpool", "avgpool", "conv", "strided")


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
        kernel_size: Any,
        size_policy: SizePolicy,
        strides: Any = None,
        convs_per_stage: Any = 2,
        decoder_convs_per_stage: Any = None,
        down: str = "maxpool",
    ) -> list[Stage]:
        """Check the shared arguments and set the shared attributes; return the stages.
        Builds no module (the subclass checks its own arguments next, before any weight is
        drawn)."""
        check_spatial_dims(spatial_dims)
        check_channels(in_channels=in_channels, num_classes=num_classes)
        stages = unet_stages(
            channels,
            depth,
            kernel_size,
            strides=strides,
            convs_per_stage=convs_per_stage,
            decoder_convs_per_stage=decoder_convs_per_stage,
            spatial_dims=spatial_dims,
        )
        check_size_policy(size_policy)
        if down not in DOWN_MODES:
            raise ValueError(
                f"down mode must be one of {', '.join(map(repr, DOWN_MODES))}, got {down!r}"
            )
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.depth = len(stages) - 1
        self.divisors = stage_divisors(stages, spatial_dims)
        self.divisor = math.lcm(*self.divisors)
        self.size_policy = size_policy
        self.channels = [s.channels for s in stages]
        self.strides = [list(per_axis(s.stride, spatial_dims, "stride")) for s in stages]
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
        down: StageDown,
    ) -> BlockBuilder:
        """Build ``self.encoder`` from ``stages``; return the block builder
        (``make_block(cin, cout, stage, decoder=True)`` for the decoder)."""
        bias = (not norm_has_affine(norm)) if conv_bias is None else conv_bias
        spatial_dims = self.spatial_dims

        def make_block(
            cin: int, cout: int, stage: Stage, *, strided: bool = False, decoder: bool = False
        ) -> nn.Module:
            return build_block(
                block,
                spatial_dims,
                cin,
                cout,
                stage.kernel_size,
                norm,
                act,
                bias,
                num_convs=stage.decoder_convs if decoder else stage.convs,
                stride=stage.stride if strided else 1,
            )

        self.encoder = build_encoder(
            spatial_dims, self.in_channels, stages, make_block, down, dropout
        )
        return make_block
