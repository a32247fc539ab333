"""Processes and threads: joining a ``torchrun`` process group, torch's thread count."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = ["init_distributed", "torch_threads"]


@dataclass
class _Dist:
    """Where this process stands: its rank, the number of processes, its local GPU index."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Whether this is the main process (rank 0), the one that validates and writes."""
        return self.rank == 0


def init_distributed(device: torch.device) -> _Dist:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1).

    Args:
        device: the device the process trains on: gloo for the CPU, nccl for GPUs.

    Returns:
        The process's rank, the number of processes and its local rank (a single process
        outside ``torchrun``: rank 0 of 1).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it).

    Args:
        n: threads inside the block; the previous count is restored after it.

    Examples:
        >>> before = torch.get_num_threads()
        >>> with torch_threads(1):
        ...     torch.get_num_threads()
        1
        >>> torch.get_num_threads() == before
        True
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
