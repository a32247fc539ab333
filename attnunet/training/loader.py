"""Training batches drawn ahead of time in background worker processes.

:class:`PatchLoader` runs a :class:`~attnunet.training.sampling.PatchSampler` in a
:class:`torch.utils.data.DataLoader`'s worker processes, a few batches ahead of the
training step, with page-locked ("pinned") memory when a GPU is present, so that the
main process spends its time on the model rather than on cropping and augmentation.

The batch of a step does not depend on which process draws it, nor on when: batch ``k``
(the global optimisation step, counted from 0 over the whole run) is always::

    sampler.sample(torch.Generator().manual_seed(batch_seed(seed, rank, k)))

so, for a given seed and rank, the batches are the same whatever the number of workers
(0 included: the main process then draws them itself) and however the workers are
scheduled, and a run resumed at step ``k`` continues exactly the stream it left. Every
batch is drawn with one intra-op thread, in a worker or in the main process, so the
floating-point work of the augmentation (blur) is split the same way everywhere.

* :func:`batch_seed`: the seed of one batch (SplitMix64 of seed, rank and step).
* :class:`PatchBatches`: the map-style dataset ``step -> batch``.
* :class:`PatchLoader`: the stream of batches ``start_step .. total_steps - 1``.
* :func:`default_workers`: a default number of workers from the CPUs this process may use.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from types import TracebackType

import torch
from torch.utils.data import DataLoader, Dataset

from attnunet.training.distributed import torch_threads
from attnunet.training.sampling import PatchSampler

__all__ = ["PatchBatches", "PatchLoader", "batch_seed", "default_workers"]

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15  # 2**64 / golden ratio: SplitMix64's increment
MAX_WORKERS = 8
"""The most workers :func:`default_workers` proposes (more rarely pays on a CPU)."""

BATCH_TIMEOUT_S = 600.0
"""How long the training engine waits for one batch from its workers before it stops with
an error (read when :func:`~attnunet.training.train` starts, so it can be raised): drawing
a batch takes well under a second for the bundled recipes, so only a worker that hangs,
or is far too slow, waits this long."""

_POLL_S = 5.0
"""How often a loader with a timeout wakes to check its workers and its pin-memory
thread while it waits (torch's own interval for that check)."""


def _mix64(x: int) -> int:
    """SplitMix64's step: add the golden increment, then its finaliser (a bijection of
    64-bit integers whose every output bit depends on every input bit)."""
    z = (x + _GOLDEN) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def batch_seed(seed: int, rank: int, step: int) -> int:
    """The seed of the training batch of ``step`` on process ``rank`` of a run seeded ``seed``.

    The three numbers are chained through SplitMix64's mixing function,
    ``mix(mix(mix(seed) ^ rank) ^ step)``, and the top 63 bits kept, so the result is a
    valid seed for :meth:`torch.Generator.manual_seed` and any numpy generator. The mixing
    is a bijection at each stage, so for one seed and rank distinct steps (and for one seed
    distinct ranks at a step) give distinct 64-bit values before the last bit is dropped;
    neighbouring inputs (steps ``k`` and ``k + 1``, seeds 0 and 1) give unrelated seeds,
    unlike ``seed + step`` whose streams of two runs would overlap shifted by a step.

    Args:
        seed: the run's seed; any integer (taken modulo ``2**64``).
        rank: the process's rank under DistributedDataParallel (0 alone), ``>= 0``.
        step: the global optimisation step, counted from 0 over the whole run, ``>= 0``.

    Returns:
        An integer in ``[0, 2**63)``.

    Raises:
        ValueError: a negative ``rank`` or ``step``.

    Examples:
        >>> batch_seed(0, 0, 0) == batch_seed(0, 0, 0)
        True
        >>> len({batch_seed(0, 0, k) for k in range(1000)})
        1000
        >>> 0 <= batch_seed(-1, 3, 10**6) < 2**63
        True
    """
    if rank < 0 or step < 0:
        raise ValueError(f"rank and step must be >= 0, got rank={rank}, step={step}")
    h = _mix64(seed & _MASK64)
    h = _mix64(h ^ (rank & _MASK64))
    h = _mix64(h ^ (step & _MASK64))
    return h >> 1


def default_workers() -> int:
    """A default number of data workers: one per CPU this process may use, less one.

    The main process keeps a core for the model's step, so the workers take the others,
    at most :data:`MAX_WORKERS` (a sampler drawing a batch in a fraction of the step's time
    needs few, and each worker holds a prefetched batch or two in memory). One CPU gives 0:
    the main process then draws the batches itself, as a worker would only compete with
    the step. The CPUs counted are those of :func:`os.sched_getaffinity` where the platform
    has it (a container's or ``taskset``'s limit), else :func:`os.cpu_count`.

    Returns:
        ``min(8, cpus - 1)``, at least 0.

    Examples:
        >>> 0 <= default_workers() <= MAX_WORKERS
        True
    """
    getaffinity = getattr(os, "sched_getaffinity", None)
    cpus = len(getaffinity(0)) if getaffinity is not None else (os.cpu_count() or 1)
    return max(0, min(MAX_WORKERS, cpus - 1))


class PatchBatches(Dataset[tuple[torch.Tensor, torch.Tensor]]):
    """The training batches of a run as a map-style dataset: index ``k`` is the batch of step ``k``.

    ``batches[k]`` is ``sampler.sample(torch.Generator().manual_seed(batch_seed(seed, rank,
    k)))``, drawn with one intra-op thread: the same batch in any process, at any time, so
    a :class:`~torch.utils.data.DataLoader` may hand the indices to any number of workers.
    The dataset has no length (the steps are not bounded); the loader's sampler says which
    steps to draw.

    Args:
        sampler: draws one batch from a generator.
        seed: the run's seed.
        rank: the process's rank under DistributedDataParallel (0 alone).

    Examples:
        >>> import numpy as np
        >>> from attnunet.training import PatchSampler, Volume
        >>> image = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
        >>> volume = Volume(image, (image[0] > 40).astype(np.int64), "ramp")
        >>> batches = PatchBatches(PatchSampler([volume], (4, 4), batch_size=2), seed=0)
        >>> images, masks = batches[5]
        >>> tuple(images.shape), tuple(masks.shape)
        ((2, 1, 4, 4), (2, 4, 4))
        >>> torch.equal(images, batches[5][0])
        True
    """

    def __init__(self, sampler: PatchSampler, seed: int, rank: int = 0) -> None:
        self.sampler = sampler
        self.seed = seed
        self.rank = rank

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of ``step``: images ``(B, C, *patch)`` and label maps ``(B, *patch)``."""
        generator = torch.Generator().manual_seed(batch_seed(self.seed, self.rank, int(step)))
        with torch_threads(1):
            return self.sampler.sample(generator)


def _one_thread_worker(worker_id: int) -> None:
    """Start of every worker process: one intra-op thread.

    Each worker draws whole batches on its own, so its parallelism is the number of
    workers; torch's default (one thread per core in every worker) would put
    ``workers x cores`` busy threads on the cores the model's step needs. Torch's
    workers start with one thread already; saying it here keeps that a stated choice.
    """
    del worker_id
    torch.set_num_threads(1)


class PatchLoader:
    """The training batches of steps ``start_step .. total_steps - 1``, drawn ahead in workers.

    An iterator of ``(images, masks)`` pairs, the batches of :class:`PatchBatches` in step
    order, built on :class:`torch.utils.data.DataLoader` (``batch_size=None``, the steps as
    its sampler). With ``workers > 0`` the batches are drawn by that many worker processes,
    each keeping ``prefetch_factor`` batches ready; the workers start at the first batch
    asked for and stay until :meth:`close` (or the end of a ``with`` block). With
    ``workers=0`` the main process draws each batch when it is asked for. Either way the
    batches are identical, bit for bit, for a given ``seed``, ``rank`` and step, whatever
    the number of workers; a run resumed at step ``k`` (``start_step=k``) gets exactly the
    batches ``k, k + 1, ...`` of the uninterrupted run. Drawing leaves torch's global
    random state untouched (the DataLoader's own seed comes from a private generator).

    Workers are started by Python's default method, or by ``start_method``: ``fork`` on
    Linux (``forkserver`` from Python 3.14) shares the sampler's volumes with the workers
    at no cost; ``spawn`` (macOS, Windows) and ``forkserver`` send each worker a copy of
    the sampler once, at its start (its tensors through shared memory, its numpy arrays
    pickled). Under ``spawn`` and ``forkserver`` a script that trains must guard its entry
    point with ``if __name__ == "__main__":``.

    Args:
        sampler: draws one batch from a generator.
        seed: the run's seed.
        total_steps: the step after the last one (the run's number of steps).
        rank: the process's rank under DistributedDataParallel (0 alone).
        start_step: the first step (a resumed run's step count).
        workers: worker processes (0: draw in the main process); ``None``:
            :func:`default_workers`.
        pin_memory: copy batches to page-locked memory, for faster, asynchronous copies to
            a GPU (``None``: when CUDA is available; pinning gains nothing on a CPU).
        prefetch_factor: batches each worker keeps ready (ignored when ``workers=0``).
        timeout: seconds to wait for one batch from the workers before raising (0: wait
            for ever; ignored when ``workers=0``). Meanwhile the loader checks every 5 s
            that its workers and its pin-memory thread are alive, as torch's does without
            a timeout, so a worker that dies is reported within seconds either way; the
            timeout catches one that hangs.
        start_method: ``"fork"``, ``"spawn"`` or ``"forkserver"`` (``None``: the
            platform's default).

    Attributes:
        step: the step of the next batch (``start_step`` at first).
        pin_memory: whether batches come in page-locked memory.

    Raises:
        ValueError: ``start_step`` not in ``[0, total_steps]``, a negative ``workers``,
            ``rank`` or ``timeout``, or ``prefetch_factor < 1``.
        TimeoutError: (from iterating) no batch came from the workers within ``timeout``.

    Examples:
        >>> import numpy as np
        >>> from attnunet.training import PatchSampler, Volume
        >>> image = np.arange(64, dtype=np.float32).reshape(1, 8, 8)
        >>> sampler = PatchSampler([Volume(image, (image[0] > 40).astype(np.int64), "ramp")],
        ...                        (4, 4), batch_size=2)
        >>> with PatchLoader(sampler, seed=0, total_steps=4, workers=0) as loader:
        ...     batches = list(loader)
        >>> with PatchLoader(sampler, seed=0, start_step=2, total_steps=4, workers=0) as resumed:
        ...     all(torch.equal(a[0], b[0]) for a, b in zip(batches[2:], resumed))
        True
    """

    def __init__(
        self,
        sampler: PatchSampler,
        *,
        seed: int,
        total_steps: int,
        rank: int = 0,
        start_step: int = 0,
        workers: int | None = None,
        pin_memory: bool | None = None,
        prefetch_factor: int = 2,
        start_method: str | None = None,
        timeout: float = 0.0,
    ) -> None:
        workers = default_workers() if workers is None else workers
        _check(total_steps, rank, start_step, workers, prefetch_factor)
        if not (math.isfinite(timeout) and timeout >= 0):
            raise ValueError(
                f"timeout must be a finite number of seconds >= 0 (0: wait for ever), got {timeout}"
            )
        self.timeout = float(timeout) if workers else 0.0
        self.dataset = PatchBatches(sampler, seed, rank)
        self.start_step = start_step
        self.total_steps = total_steps
        self.workers = workers
        self.step = start_step
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._loader: DataLoader[tuple[torch.Tensor, torch.Tensor]] | None = DataLoader(
            self.dataset,
            batch_size=None,
            sampler=range(start_step, total_steps),
            num_workers=workers,
            persistent_workers=workers > 0,
            pin_memory=self.pin_memory,
            prefetch_factor=prefetch_factor if workers else None,
            worker_init_fn=_one_thread_worker if workers else None,
            multiprocessing_context=start_method if workers else None,
            # with a timeout, torch stops checking on its workers between batches: wait
            # in slices of _POLL_S instead, checking them after each (see _next_batch)
            timeout=min(self.timeout, _POLL_S),
            # the DataLoader draws a base seed for its workers: from a generator of its
            # own, so that drawing batches leaves torch's global random state alone
            generator=torch.Generator().manual_seed(batch_seed(seed, rank, 0)),
        )
        self._batches: Iterator[tuple[torch.Tensor, torch.Tensor]] | None = None

    def __iter__(self) -> PatchLoader:
        """The loader itself: it is an iterator, consumed once."""
        return self

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of :attr:`step`, then the step after."""
        if self._loader is None:
            raise RuntimeError("this PatchLoader is closed; build a new one to draw batches")
        if self._batches is None:  # the workers start with the first batch asked for
            self._batches = iter(self._loader)
        batch = self._next_batch(self._batches)
        self.step += 1
        return batch

    def _next_batch(
        self, batches: Iterator[tuple[torch.Tensor, torch.Tensor]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch, waiting at most :attr:`timeout` (when set) in slices of 5 s.

        After each slice torch has checked that the workers are alive (and raised if one
        died); this checks the pin-memory thread, which torch does not check when it
        waits with a timeout. A slice that ends without a batch leaves torch's iterator
        as it was, so asking again continues the wait.
        """
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                return next(batches)
            except RuntimeError as error:
                if not str(error).startswith("DataLoader timed out"):
                    raise
            pinning = getattr(batches, "_pin_memory_thread", None)
            if pinning is not None and not pinning.is_alive():
                raise RuntimeError("the loader's pin-memory thread exited unexpectedly")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"no training batch for step {self.step} came from the {self.workers} "
                    f"loader workers in {self.timeout:g} s: a worker hangs or is far too slow "
                    f"(a batch usually takes well under a second). Train with workers=0 "
                    f"(--workers 0) to draw in this process and see where it stops, or raise "
                    f"attnunet.training.loader.BATCH_TIMEOUT_S for a sampler that is slow "
                    f"on purpose"
                )

    def __len__(self) -> int:
        """The number of batches left to draw."""
        return self.total_steps - self.step

    def close(self) -> None:
        """Stop the workers (if any) and free their prefetched batches; idempotent."""
        self._batches = None
        self._loader = None  # the DataLoader's persistent iterator goes with it

    def __enter__(self) -> PatchLoader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _check(total_steps: int, rank: int, start_step: int, workers: int, prefetch: int) -> None:
    """Refuse arguments a :class:`PatchLoader` cannot use, saying what would work."""
    if not 0 <= start_step <= total_steps:
        raise ValueError(f"start_step must be in [0, total_steps={total_steps}], got {start_step}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0 (0: draw in the main process), got {workers}")
    if rank < 0:
        raise ValueError(f"rank must be >= 0, got {rank}")
    if prefetch < 1:
        raise ValueError(f"prefetch_factor must be >= 1, got {prefetch}")
