"""How long a training step waits for its batch: the sampler in the main process against
:class:`attnunet.training.PatchLoader` with 0, 1 and 2 workers.

Two cases, each a :class:`~attnunet.training.PatchSampler` with the ``"standard"``
augmentation over a few random volumes with a blob of foreground:

* ``3D``: batches of 2 x 64^3 patches from four 96^3 volumes;
* ``2D``: batches of 16 x 128^2 patches from four 384^2 images.

Each configuration runs ``--steps`` timed steps after ``--warmup`` untimed ones (which
include the workers' start), as a training loop would: take the next batch, then a
stand-in for the model's step on it (``--step``):

* ``conv`` (default): forward and backward of three 3x3(x3) convolutions of ``--width``
  channels, a cross-entropy loss and an SGD update, with torch's threads;
* ``sleep``: a fixed ``--sleep`` seconds that leaves every core to the workers;
* ``unet``: forward and backward of an attnunet ``UNet`` with channels ``(8, 16, 32, 64)``.

The configurations: ``main`` draws each batch in the main process with the sampler and
torch's threads (the training loop before the loader); ``workers=N`` takes it from a
``PatchLoader`` with ``N`` workers (0: drawn in the main process, with one thread). The
**data share** is the time spent waiting for batches over the time of the steps (wait
plus model step); the loader aims at under 10 % with 2 workers on a CPU. ``sample_s`` is
the sampler's own time per batch in the main process, without a model step.

Usage::

    python benchmarks/bench_loader.py                        # both cases, conv step
    python benchmarks/bench_loader.py --cases 3d --step sleep --sleep 0.1
    python benchmarks/bench_loader.py --smoke --json loader.json   # tiny: seconds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models as bm

from attnunet.data.transforms import default_augmentation
from attnunet.training import PatchLoader, PatchSampler, Volume

WORKER_COUNTS = (0, 1, 2)


@dataclass(frozen=True)
class Case:
    """One sampling workload: ``volumes`` images of ``volume`` voxels, batches of ``batch``
    patches of ``patch`` voxels."""

    name: str
    volume: tuple[int, ...]
    patch: tuple[int, ...]
    batch: int
    volumes: int = 4


CASES = {
    "3d": Case("3D", (96, 96, 96), (64, 64, 64), 2),
    "2d": Case("2D", (384, 384), (128, 128), 16),
}
SMOKE_CASES = {
    "3d": Case("3D", (24, 24, 24), (16, 16, 16), 2, volumes=2),
    "2d": Case("2D", (48, 48), (32, 32), 4, volumes=2),
}


def make_sampler(case: Case, seed: int = 0) -> PatchSampler:
    """The case's sampler: normal-noise images, each with a ball of foreground (label 1)
    around a random centre, and the standard augmentation."""
    rng = np.random.default_rng(seed)
    volumes = []
    for i in range(case.volumes):
        grid = np.indices(case.volume, dtype=np.float32)
        centre = rng.uniform(0.3, 0.7, len(case.volume)) * np.array(case.volume)
        radius = 0.2 * min(case.volume)
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < radius**2
        image = rng.standard_normal((1, *case.volume)).astype(np.float32) + inside
        volumes.append(Volume(image, inside.astype(np.int64), f"case{i}"))
    return PatchSampler(
        volumes, case.patch, case.batch, transform=default_augmentation(len(case.volume))
    )


def model_step(kind: str, dims: int, width: int, sleep: float) -> Callable[..., None]:
    """A stand-in for the training step on a batch ``(images, masks)``."""
    if kind == "sleep":
        return lambda images, masks: time.sleep(sleep)
    if kind == "unet":
        from attnunet import UNet

        net: nn.Module = UNet(dims, 1, 2, channels=(8, 16, 32, 64))
    else:
        conv = nn.Conv3d if dims == 3 else nn.Conv2d
        net = nn.Sequential(
            conv(1, width, 3, padding=1),
            nn.ReLU(),
            conv(width, width, 3, padding=1),
            nn.ReLU(),
            conv(width, 2, 3, padding=1),
        )
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3)

    def step(images: torch.Tensor, masks: torch.Tensor) -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(net(images), masks).backward()
        optimizer.step()

    return step


def data_share(waits: Sequence[float], steps: Sequence[float]) -> float:
    """The fraction of the loop's time spent waiting for batches: total wait over total wait
    plus model-step time.

    Example:
        >>> data_share([0.1, 0.3], [0.9, 0.7])
        0.2
    """
    wait = sum(waits)
    return wait / (wait + sum(steps))


def run_loop(
    next_batch: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    step: Callable[..., None],
    warmup: int,
    steps: int,
) -> dict[str, Any]:
    """``warmup + steps`` iterations of: wait for a batch, run the step; the timings of the
    last ``steps`` (and the first wait, which includes starting the workers)."""
    waits, times = [], []
    first_wait = None
    for i in range(warmup + steps):
        start = time.perf_counter()
        images, masks = next_batch()
        waited = time.perf_counter() - start
        step(images, masks)
        if first_wait is None:
            first_wait = waited
        if i >= warmup:
            waits.append(waited)
            times.append(time.perf_counter() - start - waited)
    return {
        "wait_s": statistics.mean(waits),
        "wait_max_s": max(waits),
        "model_step_s": statistics.mean(times),
        "step_s": statistics.mean(w + t for w, t in zip(waits, times, strict=True)),
        "data_share": data_share(waits, times),
        "first_batch_s": first_wait,
    }


def sampler_alone(sampler: PatchSampler, batches: int) -> float:
    """The sampler's mean time per batch in the main process, with torch's threads."""
    generator = torch.Generator().manual_seed(0)
    sampler.sample(generator)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        sampler.sample(generator)
    return (time.perf_counter() - start) / batches


def measure_case(case: Case, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of one case: the main-process sampler, then the loader per worker count."""
    sampler = make_sampler(case)
    step = model_step(args.step, len(case.patch), args.width, args.sleep)
    total = args.warmup + args.steps
    base = {"case": case.name, "patch": list(case.patch), "batch": case.batch}
    sample_s = sampler_alone(sampler, max(3, args.steps // 2))
    generator = torch.Generator().manual_seed(0)
    rows: list[dict[str, Any]] = [
        {**base, "config": "main", "workers": None, "sample_s": sample_s}
        | run_loop(lambda: sampler.sample(generator), step, args.warmup, args.steps)
    ]
    for workers in args.workers:
        with PatchLoader(sampler, seed=0, total_steps=total, workers=workers) as loader:
            row = run_loop(loader.__next__, step, args.warmup, args.steps)
        rows.append({**base, "config": f"workers={workers}", "workers": workers, **row})
    for row in rows:
        print(
            f"{case.name} {row['config']}: wait {row['wait_s'] * 1e3:.1f} ms, "
            f"step {row['step_s'] * 1e3:.1f} ms, data share {100 * row['data_share']:.1f} %",
            file=sys.stderr,
            flush=True,
        )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table."""
    lines = [
        "| case | config | wait ms | max wait ms | model step ms | step ms | data share "
        "| first batch ms |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['config']} | {r['wait_s'] * 1e3:.1f} | "
            f"{r['wait_max_s'] * 1e3:.1f} | {r['model_step_s'] * 1e3:.1f} | "
            f"{r['step_s'] * 1e3:.1f} | {100 * r['data_share']:.1f} % | "
            f"{r['first_batch_s'] * 1e3:.0f} |"
        )
    return "\n".join(lines)


def machine(device: torch.device) -> dict[str, Any]:
    """``bench_models.machine`` (CPU, threads, versions of Python, torch and MONAI, the
    GPU) with the number of CPUs this process may use."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {**bm.machine(device), "cpus": cpus}


def build_parser() -> argparse.ArgumentParser:
    """The command line of the script."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", default="3d,2d", help="3d, 2d or 3d,2d")
    parser.add_argument("--step", choices=["conv", "sleep", "unet"], default="conv")
    parser.add_argument("--width", type=int, default=16, help="channels of the conv step")
    parser.add_argument("--sleep", type=float, default=0.1, help="seconds of the sleep step")
    parser.add_argument("--workers", default="0,1,2", help="worker counts of the loader")
    parser.add_argument("--steps", type=int, default=30, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: finishes in seconds")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark as the command line ``argv`` says.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.json and args.json.exists():
        sys.exit(f"{args.json} exists; choose another name (nothing was overwritten)")
    table = SMOKE_CASES if args.smoke else CASES
    keys = [k.strip().lower() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in keys if k not in table]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; known: {sorted(table)}")
    args.workers = [int(w) for w in args.workers.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    info = machine(torch.device("cpu"))
    print(f"{info['cpu']}, {info['threads']} threads, torch {info['torch']}", flush=True)
    started = time.perf_counter()
    rows = [row for key in keys for row in measure_case(table[key], args)]
    out = {
        "machine": info,
        "config": {
            "step": args.step,
            "width": args.width,
            "sleep": args.sleep,
            "steps": args.steps,
            "warmup": args.warmup,
            "workers": args.workers,
            "cases": {k: vars(table[k]) for k in keys},
            "smoke": args.smoke,
        },
        "rows": rows,
        "total_seconds": time.perf_counter() - started,
    }
    print(markdown(rows))
    print(f"\nTotal {out['total_seconds']:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
