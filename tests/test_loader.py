"""attnunet.training.loader: batches drawn in workers are those of the per-step seed.

The oracle of every batch is the contract written out by hand: batch ``k`` is
``sampler.sample(torch.Generator().manual_seed(batch_seed(seed, rank, k)))`` drawn in this
process; the oracle of :func:`batch_seed` is SplitMix64 written again here with numpy's
wrapping ``uint64`` arithmetic and checked against the generator's published output.
Tests with worker processes are few, since starting workers is their cost.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time

import numpy as np
import pytest
import torch

from attnunet.data.transforms import default_augmentation
from attnunet.training import PatchBatches, PatchLoader, PatchSampler, Volume, batch_seed
from attnunet.training import loader as loader_module

# ----------------------------------------------------------------------------- oracles
GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def splitmix64(state: np.uint64) -> np.uint64:
    """The output of SplitMix64 (Steele, Lea and Flood 2014; Vigna's ``splitmix64.c``)
    after advancing ``state`` once, in wrapping ``uint64`` arithmetic."""
    with np.errstate(over="ignore"):
        z = state + GOLDEN
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def reference_seed(seed: int, rank: int, step: int) -> int:
    """``batch_seed`` as documented: ``mix(mix(mix(seed) ^ rank) ^ step) >> 1``."""
    h = splitmix64(np.uint64(seed % 2**64))
    h = splitmix64(h ^ np.uint64(rank))
    h = splitmix64(h ^ np.uint64(step))
    return int(h >> np.uint64(1))


def oracle(sampler, seed, rank, step):
    return sampler.sample(torch.Generator().manual_seed(reference_seed(seed, rank, step)))


def assert_same_batches(got, expected):
    assert len(got) == len(expected)
    for (images, masks), (want_images, want_masks) in zip(got, expected, strict=True):
        assert torch.equal(images, want_images) and torch.equal(masks, want_masks)


# ----------------------------------------------------------------------------- data
def make_sampler(spatial_dims: int) -> PatchSampler:
    rng = np.random.default_rng(spatial_dims)
    shapes = [(40, 36), (28, 44)] if spatial_dims == 2 else [(20, 24, 18), (16, 20, 26)]
    volumes = [
        Volume(
            rng.standard_normal((2, *shape)).astype(np.float32),
            (rng.random(shape) > 0.8).astype(np.int64) * rng.integers(1, 3, shape),
            f"case{i}",
        )
        for i, shape in enumerate(shapes)
    ]
    return PatchSampler(
        volumes,
        (16,) * spatial_dims,
        batch_size=2,
        transform=default_augmentation(spatial_dims, strength="standard"),
    )


@pytest.fixture(scope="module")
def sampler_3d() -> PatchSampler:
    return make_sampler(3)


@pytest.fixture(scope="module")
def sampler_2d() -> PatchSampler:
    return make_sampler(2)


# ----------------------------------------------------------------------------- batch_seed
def test_the_reference_mixer_is_splitmix64():
    # Vigna's splitmix64.c seeded with 1234567: its first five outputs
    published = [
        6457827717110365317,
        3203168211198807973,
        9817491932198370423,
        4593380528125082431,
        16408922859458223821,
    ]
    state = np.uint64(1234567)
    outputs = []
    for _ in published:
        outputs.append(int(splitmix64(state)))
        with np.errstate(over="ignore"):
            state = state + GOLDEN
    assert outputs == published


def test_batch_seed_is_the_documented_chain_distinct_and_63_bit():
    grid = [(s, r, k) for s in (0, 1, 2, 12345, -1) for r in range(4) for k in range(50)]
    seeds = [batch_seed(s, r, k) for s, r, k in grid]
    assert seeds == [reference_seed(s, r, k) for s, r, k in grid]
    assert len(set(seeds)) == len(grid)
    assert all(0 <= x < 2**63 for x in seeds)
    assert batch_seed(7, 0, 10**12) == reference_seed(7, 0, 10**12)
    # neighbouring inputs are unrelated: the step's stream is not the next seed's shifted
    assert batch_seed(0, 0, 1) != batch_seed(1, 0, 0)


def test_batch_seed_refuses_negative_rank_or_step():
    with pytest.raises(ValueError, match="rank and step must be >= 0"):
        batch_seed(0, -1, 0)
    with pytest.raises(ValueError, match="step=-3"):
        batch_seed(0, 0, -3)


# ----------------------------------------------------------------------------- batches
@pytest.mark.parametrize("dims", [2, 3])
def test_batch_k_is_the_sampler_seeded_by_hand(dims, sampler_2d, sampler_3d):
    sampler = sampler_2d if dims == 2 else sampler_3d
    batches = PatchBatches(sampler, seed=3, rank=1)
    for step in (0, 1, 17):
        images, masks = batches[step]
        want_images, want_masks = oracle(sampler, 3, 1, step)
        assert images.shape == (2, 2, *(16,) * dims) and masks.dtype == torch.int64
        assert torch.equal(images, want_images) and torch.equal(masks, want_masks)


def test_different_seed_rank_or_step_gives_different_batches(sampler_2d):
    base = PatchBatches(sampler_2d, seed=0, rank=0)[4][0]
    others = [
        PatchBatches(sampler_2d, seed=1, rank=0)[4][0],
        PatchBatches(sampler_2d, seed=0, rank=1)[4][0],
        PatchBatches(sampler_2d, seed=0, rank=0)[5][0],
    ]
    assert all(not torch.equal(base, other) for other in others)
    assert torch.equal(base, PatchBatches(sampler_2d, seed=0, rank=0)[4][0])


def test_drawing_leaves_torch_global_random_state_alone(sampler_2d):
    before = torch.get_rng_state()
    with PatchLoader(sampler_2d, seed=0, total_steps=3, workers=0) as loader:
        list(loader)
    assert torch.equal(torch.get_rng_state(), before)


def test_resumed_stream_continues_the_uninterrupted_one(sampler_2d):
    with PatchLoader(sampler_2d, seed=5, total_steps=7, workers=0) as loader:
        assert len(loader) == 7
        full = list(loader)
        assert loader.step == 7 and len(loader) == 0
    with PatchLoader(sampler_2d, seed=5, start_step=4, total_steps=7, workers=0) as resumed:
        assert len(resumed) == 3
        assert_same_batches(list(resumed), full[4:])
    assert_same_batches(full, [oracle(sampler_2d, 5, 0, k) for k in range(7)])


def test_workers_draw_the_same_batches_bit_for_bit(sampler_3d):
    """Workers 1 and 2 (forked on Linux), and a resumed run with 2 workers, give the
    batches of the main process and of the hand-seeded oracle."""
    expected = [oracle(sampler_3d, 11, 2, k) for k in range(6)]
    with PatchLoader(sampler_3d, seed=11, rank=2, total_steps=6, workers=0) as loader:
        assert_same_batches(list(loader), expected)
    for workers in (1, 2):
        with PatchLoader(sampler_3d, seed=11, rank=2, total_steps=6, workers=workers) as loader:
            assert_same_batches(list(loader), expected)
    with PatchLoader(
        sampler_3d, seed=11, rank=2, start_step=3, total_steps=6, workers=2, prefetch_factor=1
    ) as resumed:
        assert_same_batches(list(resumed), expected[3:])


def test_spawned_workers_draw_the_same_batches(sampler_2d):
    """macOS and Windows start workers by spawning: the sampler travels pickled."""
    expected = [oracle(sampler_2d, 2, 0, k) for k in range(3)]
    with PatchLoader(sampler_2d, seed=2, total_steps=3, workers=1, start_method="spawn") as loader:
        assert_same_batches(list(loader), expected)


class _WhoDraws:
    """A stand-in sampler whose batch says which process drew it, with how many threads."""

    def sample(self, generator):
        return torch.tensor([os.getpid()]), torch.tensor([torch.get_num_threads()])


def test_workers_are_other_processes_with_one_thread_each_until_closed():
    with PatchLoader(_WhoDraws(), seed=0, total_steps=4, workers=2) as loader:
        drawn = list(loader)
        pids = {int(pid) for pid, _ in drawn}
        assert pids <= {p.pid for p in multiprocessing.active_children()}
    assert os.getpid() not in pids and len(pids) == 2
    assert all(int(threads) == 1 for _, threads in drawn)
    assert not pids & {p.pid for p in multiprocessing.active_children()}  # stopped by close()


class _InWorkers:
    """A stand-in sampler that draws at once in the main process and, in a worker, first
    sleeps ``delay`` seconds, or dies."""

    def __init__(self, delay: float = 0.0, die: bool = False) -> None:
        self.delay = delay
        self.die = die

    def sample(self, generator):
        if torch.utils.data.get_worker_info() is not None:
            if self.die:
                os._exit(3)
            time.sleep(self.delay)
        return torch.full((1,), float(generator.initial_seed() % 1000)), torch.zeros(1)


FORK = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs the fork start method"
)


def _new_children(before: set[int]) -> set[int]:
    """Child processes started since ``before`` (a set of pids) that are still alive,
    after giving them a few seconds to go."""
    deadline = time.monotonic() + 15
    while True:
        alive = {p.pid for p in multiprocessing.active_children()} - before
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.1)


@FORK
def test_a_hung_worker_is_reported_after_the_timeout():
    """A worker that hangs stops the run after ``timeout`` seconds with the step, the
    workers and the way to find the cause; ``close`` stops the hung worker."""
    before = {p.pid for p in multiprocessing.active_children()}
    with PatchLoader(
        _InWorkers(delay=4.0), seed=0, total_steps=4, workers=1, timeout=1.5, start_method="fork"
    ) as loader:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"step 0 came from the 1 loader workers in 1.5 s"):
            next(loader)
        assert 1.4 < time.monotonic() - start < 30
    gc.collect()
    assert not _new_children(before)
    # without workers the timeout has nothing to watch: the main process draws
    with PatchLoader(_InWorkers(delay=60), seed=0, total_steps=2, workers=0, timeout=1) as inline:
        assert inline.timeout == 0.0 and len(list(inline)) == 2


@FORK
def test_a_slow_worker_within_the_timeout_delivers_the_batch(monkeypatch):
    """The wait runs in slices (here 0.3 s): a batch that takes several slices still
    arrives whole, the same as the main process draws, within the timeout."""
    monkeypatch.setattr(loader_module, "_POLL_S", 0.3)
    sampler = _InWorkers(delay=1.2)
    expected = [oracle(sampler, 4, 0, k) for k in range(2)]
    with PatchLoader(
        sampler, seed=4, total_steps=2, workers=1, timeout=20, start_method="fork"
    ) as loader:
        assert_same_batches(list(loader), expected)


@FORK
def test_a_dead_worker_is_reported_long_before_the_timeout():
    """With a timeout the loader still notices a worker that died within seconds (torch
    checks its workers after each slice of the wait), not after the whole timeout."""
    with PatchLoader(
        _InWorkers(die=True), seed=0, total_steps=2, workers=1, timeout=120, start_method="fork"
    ) as loader:
        start = time.monotonic()
        with pytest.raises(RuntimeError, match="exited unexpectedly"):
            next(loader)
        assert time.monotonic() - start < 30


def test_an_infinite_timeout_is_refused_with_the_way_to_wait_for_ever(sampler_2d):
    with pytest.raises(ValueError, match=r"finite .* \(0: wait for ever\), got inf"):
        PatchLoader(sampler_2d, seed=0, total_steps=2, workers=1, timeout=float("inf"))


def test_a_closed_loader_refuses_to_draw(sampler_2d):
    loader = PatchLoader(sampler_2d, seed=0, total_steps=3, workers=0)
    next(loader)
    loader.close()
    loader.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        next(loader)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_step": 5, "total_steps": 4}, r"start_step must be in \[0, total_steps=4\]"),
        ({"start_step": -1}, "start_step"),
        ({"workers": -1}, "workers must be >= 0"),
        ({"rank": -2}, "rank must be >= 0"),
        ({"prefetch_factor": 0}, "prefetch_factor must be >= 1"),
        ({"timeout": -1.0}, "timeout must be a finite number of seconds >= 0"),
        ({"timeout": float("nan")}, "timeout must be a finite number of seconds >= 0"),
    ],
)
def test_bad_arguments_are_refused(sampler_2d, kwargs, message):
    arguments = {"seed": 0, "total_steps": 4, "workers": 0, **kwargs}
    with pytest.raises(ValueError, match=message):
        PatchLoader(sampler_2d, **arguments)


# ----------------------------------------------------------------------------- defaults
@pytest.mark.parametrize(("cpus", "workers"), [(1, 0), (2, 1), (4, 3), (9, 8), (64, 8)])
def test_default_workers_leave_a_core_to_the_main_process(monkeypatch, cpus, workers):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 1000)  # the affinity mask comes first
    assert loader_module.default_workers() == workers


@pytest.mark.parametrize(("cpus", "workers"), [(None, 0), (1, 0), (3, 2), (32, 8)])
def test_default_workers_without_affinity_count_the_cpus(monkeypatch, cpus, workers):
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: cpus)
    assert loader_module.default_workers() == workers


def test_memory_is_not_pinned_without_cuda(monkeypatch, sampler_2d):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with PatchLoader(sampler_2d, seed=0, total_steps=1, workers=0) as loader:
        assert loader.pin_memory is False
        images, masks = next(loader)
    assert not images.is_cuda and not masks.is_cuda


@pytest.mark.skipif(not torch.cuda.is_available(), reason="pinned memory needs CUDA")
def test_memory_is_pinned_with_cuda(sampler_2d):
    with PatchLoader(sampler_2d, seed=0, total_steps=2, workers=1) as loader:
        assert loader.pin_memory is True
        batches = list(loader)
    assert all(images.is_pinned() and masks.is_pinned() for images, masks in batches)
    assert_same_batches(
        [(i.clone(), m.clone()) for i, m in batches],
        [oracle(sampler_2d, 0, 0, k) for k in range(2)],
    )
