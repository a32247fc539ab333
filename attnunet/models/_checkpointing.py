"""Activation checkpointing of model segments: which modules are segments, when they
recompute, and how a decoder stage is cut in two so that its concatenation and later
activations are never alive together while it is recomputed.

Private to :mod:`attnunet.models`; users switch it with
:meth:`~attnunet.models.SegmentationModel.set_checkpointing`.
"""

import contextlib
import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from attnunet.blocks.conv import ConvNormAct, ResidualBlock

__all__ = [
    "CheckpointSegment",
    "checkpoint_active",
    "parts_fast_path",
    "run_checkpointed",
    "run_split_checkpointed",
    "split_last",
]


def checkpoint_active(enabled: bool, training: bool) -> bool:
    """Whether a segment with checkpointing ``enabled`` recomputes its activations now:
    only in training mode, with gradients enabled and in eager Python (never in TorchScript,
    under ``torch.no_grad()`` or in ``torch.inference_mode()``)."""
    return enabled and training and torch.is_grad_enabled() and not torch.jit.is_scripting()


class _RestoreBuffers:
    """Recompute context of a checkpointed segment: every buffer of ``modules`` ends as it
    was before the recomputation.

    In training mode a recomputed batch norm updates its running statistics (and
    ``num_batches_tracked``) a second time; restoring the buffers after the recomputation
    leaves exactly the one update of the original forward pass. The outputs are unaffected:
    in training mode batch norm normalises with the batch statistics."""

    def __init__(self, modules: tuple[nn.Module, ...]) -> None:
        self.modules = modules
        self.saved: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __enter__(self) -> None:
        self.saved = [(b, b.clone()) for m in self.modules for b in m.buffers()]

    def __exit__(self, *exc: object) -> None:
        with torch.no_grad():
            for buffer, value in self.saved:
                buffer.copy_(value)
        self.saved = []


def _segment_contexts(
    modules: tuple[nn.Module, ...],
) -> tuple[contextlib.AbstractContextManager[None], _RestoreBuffers]:
    return contextlib.nullcontext(), _RestoreBuffers(modules)


def run_checkpointed(modules: tuple[nn.Module, ...], fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` under non-reentrant activation checkpointing
    (``torch.utils.checkpoint.checkpoint(..., use_reentrant=False)``): nothing inside is
    kept for backward but the inputs; backward runs ``fn`` again (with the forward pass's
    RNG state, so dropout draws the same masks). The recomputation leaves the buffers of
    ``modules`` (the modules ``fn`` runs) as it found them, so batch-norm running
    statistics are updated once per step. Under ``torch.compile`` the compiler's own
    recomputation never replays buffer updates, and checkpoint is called plainly.

    Pass tensors as top-level ``args`` (not inside lists): checkpoint preserves the RNG
    state of the devices of those tensors only.
    """
    if torch.compiler.is_compiling():
        return checkpoint(fn, *args, use_reentrant=False)
    context_fn = functools.partial(_segment_contexts, modules)
    return checkpoint(fn, *args, use_reentrant=False, context_fn=context_fn)


_Lead = Callable[[list[torch.Tensor]], tuple[torch.Tensor, ...]]


def split_last(
    block: nn.Module, dropout: nn.Module
) -> tuple[_Lead, Callable[..., torch.Tensor], nn.Module] | None:
    """Cut a decoder stage ``block(dropout(torch.cat(parts, dim=1)))`` in two for
    checkpointing: a sequential block of two or more modules (``DoubleConv``) before its
    last module, a :class:`~attnunet.blocks.ResidualBlock` after its first unit and
    shortcut.

    Returns ``(lead, tail, tail_module)``: ``lead(parts)`` gives the tensors at the cut,
    ``tail(*those)`` the block's output, and ``tail_module`` holds every module ``tail``
    runs. ``None`` for any other block, and for a residual block after dropout.

    When there is no dropout, the first convolution never sees the concatenation: it sums
    one convolution per part (:meth:`~attnunet.blocks.ConvNormAct.forward_parts`).
    Checkpointing the two halves as separate segments means the concatenation and the
    later activations are never alive together while a level is recomputed, and skipping
    the concatenation keeps no second copy of the skip: at the finest level of the W2
    benchmark the recomputation's peak fell from about 9 to 6 full-resolution feature maps.
    """
    if isinstance(block, ResidualBlock):
        if not isinstance(dropout, nn.Identity):
            return None
        return block.branches_parts, block.merge, block
    if not isinstance(block, nn.Sequential) or len(block) < 2:
        return None
    first, *middle, last = block
    if isinstance(dropout, nn.Identity) and isinstance(first, ConvNormAct):

        def run_lead(parts: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
            x = first.forward_parts(parts)
            for module in middle:
                x = module(x)
            return (x,)

    else:

        def run_lead(parts: list[torch.Tensor]) -> tuple[torch.Tensor, ...]:
            x = dropout(torch.cat(parts, dim=1))
            for module in (first, *middle):
                x = module(x)
            return (x,)

    return run_lead, last, last


def run_split_checkpointed(
    owner: nn.Module,
    split: tuple[_Lead, Callable[..., torch.Tensor], nn.Module],
    parts_fn: Callable[..., tuple[list[torch.Tensor], Any]],
    *args: torch.Tensor,
) -> tuple[torch.Tensor, Any]:
    """A decoder stage as two checkpoint segments: ``parts_fn(*args)`` (the stage's parts
    and its extra output, e.g. attention maps) then ``lead`` of :func:`split_last` in the
    first, owned by ``owner``; ``tail`` in the second. Returns ``(output, extra)``."""
    lead, tail, tail_module = split

    def head(*inputs: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], Any]:
        parts, extra = parts_fn(*inputs)
        return lead(parts), extra

    cut, extra = run_checkpointed((owner,), head, *args)
    return run_checkpointed((tail_module,), tail, *cut), extra


def parts_fast_path(x: torch.Tensor, enabled: bool) -> bool:
    """Whether a decoder stage fed ``x`` (a skip) runs its first convolution per part
    (see :func:`split_last`) instead of on the concatenation, outside checkpointing.

    True for genuinely channels-last activations (after ``model.to_channels_last()``):
    concatenating those along channels interleaves every pixel's channels in a copy, which
    took 9 % of a 2D training step of AttentionUNet, while one convolution per part was
    as fast as or faster than the convolution of the concatenation (0.74-1.01x its time
    forward and backward). In the default layout the concatenation is a block copy and
    the per-part convolutions were not reliably faster, so it stays. Never in TorchScript.
    """
    if not enabled or torch.jit.is_scripting() or x.is_contiguous():
        return False
    if x.dim() == 4:
        return x.is_contiguous(memory_format=torch.channels_last)
    if x.dim() == 5:
        return x.is_contiguous(memory_format=torch.channels_last_3d)
    return False


class CheckpointSegment(nn.Module):
    """A module that is one segment of activation checkpointing (an encoder stage, a decoder
    level, a UNet++ node, ...).

    Its ``checkpointing`` attribute is set by
    :meth:`SegmentationModel.set_checkpointing`; its ``forward`` asks
    :meth:`_checkpoint_now` and then runs under :func:`run_checkpointed` from a
    ``@torch.jit.unused`` method, so TorchScript never sees the checkpoint call. The
    attribute is a plain ``bool``: state-dict keys are unchanged.
    """

    checkpointing: bool

    def __init__(self) -> None:
        super().__init__()
        self.checkpointing = False

    def _checkpoint_now(self) -> bool:
        return checkpoint_active(self.checkpointing, self.training)
