"""The decoder scaffold every U-Net-shaped model shares.

A decoder stage up-samples a coarse feature to the size of its skips, passes the skips
through their gates (when gated), concatenates ``[skips..., up]``, applies dropout and
runs a block. The U-Net skeleton's levels (one skip) and the UNet++ nodes (every
same-level skip so far) are such stages and differ only in which skips they gate and how
the gates are held; :class:`DecoderStage` runs everything else once for both: the choice
between eager, per-part and checkpointed execution, and the two checkpoint segments.
"""

from typing import Final

import torch
from torch import nn

from attnunet.blocks.sampling import Up
from attnunet.layers import has_hooks
from attnunet.models._checkpointing import (
    CheckpointSegment,
    parts_fast_path,
    run_checkpointed,
    run_split_checkpointed,
    split_last,
)

__all__ = ["DecoderStage"]

StageOutput = tuple[torch.Tensor, list[torch.Tensor]]


class DecoderStage(CheckpointSegment):
    """``up(coarse) -> gates(skips) -> concat[skips..., up] -> dropout -> block``.

    Subclasses hold their gates (one attribute, registered between ``up`` and ``dropout``
    so state-dict keys keep their order) and implement :meth:`_parts`. The stage is one
    segment of activation checkpointing, or two when its block can be cut after the
    concatenation (see :func:`~attnunet.models._checkpointing.split_last`); with
    channels-last inputs its first convolution runs per part instead of on the
    concatenation.

    Args:
        up: the up-sampler of the coarse feature.
        gates: ``(attribute name, module)`` of the stage's gates (a gate, ``None`` or an
            ``nn.ModuleList``).
        dropout: applied to the concatenation.
        block: the stage block.
    """

    by_parts: Final[bool]

    def __init__(
        self,
        up: Up,
        gates: tuple[str, nn.Module | None],
        dropout: nn.Module,
        block: nn.Module,
    ) -> None:
        super().__init__()
        self.up = up
        self.add_module(gates[0], gates[1])
        self.dropout = dropout
        self.block = block
        self.by_parts = isinstance(dropout, nn.Identity) and split_last(block, dropout) is not None

    def forward(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> StageOutput:
        """Return ``(output, maps)`` from the same-level ``skips``, the ``coarse`` feature
        to up-sample and the coarse ``gating`` feature of coarse gates; ``maps`` holds one
        coefficient map per gate, in the order of ``skips``."""
        if self._checkpoint_now():
            return self._checkpointed(skips, coarse, gating)
        if parts_fast_path(skips[0], self.by_parts):
            return self._forward_by_parts(skips, coarse, gating)
        return self._forward(skips, coarse, gating)

    def _parts(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``[gated skips..., up(coarse)]`` and the gates' maps (subclasses)."""
        raise NotImplementedError

    def _gate_input(self, kind: str, up: torch.Tensor, gating: torch.Tensor) -> torch.Tensor:
        """The ``g`` a gate with ``gating == kind`` is fed: the up-sampled feature for
        ``"upsampled"``, the coarse gating feature otherwise (``"none"`` ignores it)."""
        return up if kind == "upsampled" else gating

    def _forward(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> StageOutput:
        x, maps = self._fuse(skips, coarse, gating)
        x = self.dropout(x)  # drops the reference to the concatenation
        return self.block(x), maps

    def _fuse(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> StageOutput:
        """The concatenation and the gates' maps; the up-sampled and gated features die on
        return, so they are not alive while the block runs."""
        parts, maps = self._parts(skips, coarse, gating)
        return torch.cat(parts, dim=1), maps

    @torch.jit.unused
    def _forward_by_parts(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> StageOutput:
        """``_forward`` with the first convolution run per part (channels-last inputs);
        ``_forward`` itself while a hook watches the block or a module in it, since the
        per-part path calls their code without going through the modules (their hooks
        would not run: MONAI's GradCAM reads ``decoder.levels.0.block``)."""
        if has_hooks(self.block):
            return self._forward(skips, coarse, gating)
        split = split_last(self.block, self.dropout)
        assert split is not None
        lead, tail, _ = split
        parts, maps = self._parts(skips, coarse, gating)
        return tail(*lead(parts)), maps

    @torch.jit.unused
    def _checkpointed(
        self, skips: list[torch.Tensor], coarse: torch.Tensor, gating: torch.Tensor
    ) -> StageOutput:
        # tensors as top-level arguments, so checkpoint saves every device's RNG state
        def run(coarse: torch.Tensor, gating: torch.Tensor, *skips: torch.Tensor) -> StageOutput:
            return self._forward(list(skips), coarse, gating)

        def parts(
            coarse: torch.Tensor, gating: torch.Tensor, *skips: torch.Tensor
        ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
            return self._parts(list(skips), coarse, gating)

        split = split_last(self.block, self.dropout)
        if split is None:
            return run_checkpointed((self,), run, coarse, gating, *skips)
        return run_split_checkpointed(self, split, parts, coarse, gating, *skips)
