"""The whole training engine against MONAI's training loop: patches per second of each with
its data pipeline, of the model step alone, and the data share, in one run.

Both loops train the same model (an attnunet ``AgResUNet``, or ``UNet`` with ``--model``,
built from the same seed, in the same memory layout and precision) on the same volumes,
for the same number of steps, with the same batch size and worker count:

* **attnunet**: :func:`attnunet.training.train` with the ``"adam"`` recipe, the
  ``"standard"`` augmentation and half the patches centred on foreground; its
  :class:`~attnunet.training.PatchLoader` draws the batches in ``workers`` processes.
* **MONAI**: a ``monai.data.Dataset`` of ``{"image", "label"}`` dicts with
  ``RandCropByPosNegLabeld`` (pos 1, neg 1), ``RandFlipd`` per axis (p 0.5),
  ``RandRotate90d`` (p 0.5, first two axes), ``RandScaleIntensityd`` and
  ``RandShiftIntensityd`` (0.1, p 0.3), ``RandGaussianNoised`` (std 0.05, p 0.2) and
  ``RandGaussianSmoothd`` (sigma 0.5-1.0, p 0.2); a ``monai.data.DataLoader`` sampling the
  volumes with replacement; a plain loop of forward, ``monai.losses.DiceCELoss``
  (softmax, one-hot labels, background left out as in attnunet's loss), backward and
  Adam (attnunet's learning rate and weight decay).

Two cases: ``2D`` (batches of 8 x 64^2 patches from four 256^2 images) and ``3D`` (2 x
48^3 from four 96^3 volumes), each a noise image with a ball of foreground. Each loop runs
``--warmup`` untimed steps (the workers' start included) then ``--steps`` timed ones:

* ``patches/s``: batch size over the loop's time per step (timestamps after each step);
* ``model patches/s``: batch size over the median model step (forward, loss, backward,
  optimiser step, on a batch already on the device): attnunet's
  ``TrainResult.seconds_per_step``, timed the same way in the MONAI loop;
* ``data share``: ``1 - model step / loop step`` (0 when the median step is the longer),
  the part of the loop's time not spent in the model's step.

Usage::

    python benchmarks/bench_training.py                      # both cases, workers 0 and 2
    python benchmarks/bench_training.py --cases 3d --workers 2 --steps 20
    python benchmarks/bench_training.py --smoke --json training.json   # tiny: seconds
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

from attnunet import AgResUNet, UNet
from attnunet.training import TrainSettings, Volume, train
from attnunet.training.loop import resolve_device, resolve_settings, set_layout

MODELS = {"agresunet": AgResUNet, "unet": UNet}


@dataclass(frozen=True)
class Case:
    """One training workload: ``volumes`` images of ``volume`` voxels, batches of ``batch``
    patches of ``patch`` voxels, a model of ``channels`` per level."""

    name: str
    volume: tuple[int, ...]
    patch: tuple[int, ...]
    batch: int
    volumes: int = 4
    channels: tuple[int, ...] = (8, 16, 32, 64)


CASES = {
    "2d": Case("2D", (256, 256), (64, 64), 8),
    "3d": Case("3D", (96, 96, 96), (48, 48, 48), 2),
}
SMOKE_CASES = {
    "2d": Case("2D", (48, 48), (32, 32), 2, volumes=2, channels=(4, 8)),
    "3d": Case("3D", (24, 24, 24), (16, 16, 16), 2, volumes=2, channels=(4, 8)),
}


def make_volumes(case: Case, seed: int = 0) -> list[Volume]:
    """The case's volumes: normal noise plus 1 inside a ball of foreground (label 1) around
    a random centre."""
    rng = np.random.default_rng(seed)
    volumes = []
    for i in range(case.volumes):
        grid = np.indices(case.volume, dtype=np.float32)
        centre = rng.uniform(0.3, 0.7, len(case.volume)) * np.array(case.volume)
        radius = 0.2 * min(case.volume)
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) < radius**2
        image = rng.standard_normal((1, *case.volume)).astype(np.float32) + inside
        volumes.append(Volume(image, inside.astype(np.int64), f"case{i}"))
    return volumes


def make_model(kind: str, case: Case) -> nn.Module:
    """The case's model, initialised from seed 0 (the same weights for both loops)."""
    torch.manual_seed(0)
    return MODELS[kind](len(case.patch), 1, 2, channels=case.channels)


def settings_for(case: Case, steps: int) -> TrainSettings:
    """The engine's recipe for ``steps`` steps in one epoch."""
    return TrainSettings(
        spatial_dims=len(case.patch),
        patch_size=case.patch,
        batch_size=case.batch,
        epochs=1,
        steps_per_epoch=steps,
        augment="standard",
        foreground_fraction=0.5,
    )


def loop_figures(
    stamps: Sequence[float], model_step: float, warmup: int, batch: int
) -> dict[str, float]:
    """The figures of a loop from the time after each step and the median model step.

    Args:
        stamps: ``time.perf_counter()`` after each step, warm-up steps first.
        model_step: the model step's median seconds.
        warmup: untimed steps at the start (at least 1: the first timed step's start is the
            end of the last warm-up step).
        batch: patches per step.

    Returns:
        ``step_s``, ``model_step_s``, ``patches_per_s``, ``model_patches_per_s`` and
        ``data_share``.

    Example:
        >>> f = loop_figures([5.0, 5.5, 6.0, 6.5], 0.4, warmup=1, batch=8)
        >>> f["step_s"], f["patches_per_s"], f["model_patches_per_s"], round(f["data_share"], 3)
        (0.5, 16.0, 20.0, 0.2)
    """
    step = (stamps[-1] - stamps[warmup - 1]) / (len(stamps) - warmup)
    return {
        "step_s": step,
        "model_step_s": model_step,
        "patches_per_s": batch / step,
        "model_patches_per_s": batch / model_step,
        "data_share": max(0.0, 1.0 - model_step / step),
    }


def run_attnunet(
    case: Case, model_kind: str, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    """:func:`attnunet.training.train` for ``warmup + steps`` steps, timed by ``on_step``."""
    stamps: list[float] = []
    result = train(
        make_model(model_kind, case),
        make_volumes(case),
        [],
        settings_for(case, args.warmup + args.steps),
        device=args.device,
        progress=False,
        workers=workers,
        on_step=lambda epoch, step, loss: stamps.append(time.perf_counter()),
    )
    figures = loop_figures(stamps, result.seconds_per_step, args.warmup, case.batch)
    return {"loop": "attnunet", "steps_run": len(stamps), **figures}


def monai_loader(case: Case, workers: int, total: int, device: torch.device) -> Any:
    """MONAI's data pipeline over the case's volumes: ``total`` batches."""
    from monai import transforms as mt
    from monai.data import DataLoader, Dataset

    keys = ["image", "label"]
    dims = len(case.patch)
    flips = [mt.RandFlipd(keys, prob=0.5, spatial_axis=axis) for axis in range(dims)]
    pipeline = mt.Compose(
        [
            mt.RandCropByPosNegLabeld(
                keys, "label", spatial_size=case.patch, pos=1, neg=1, num_samples=1
            ),
            *flips,
            mt.RandRotate90d(keys, prob=0.5, spatial_axes=(0, 1)),
            mt.RandScaleIntensityd("image", factors=0.1, prob=0.3),
            mt.RandShiftIntensityd("image", offsets=0.1, prob=0.3),
            mt.RandGaussianNoised("image", prob=0.2, std=0.05),
            mt.RandGaussianSmoothd(
                "image", sigma_x=(0.5, 1.0), sigma_y=(0.5, 1.0), sigma_z=(0.5, 1.0), prob=0.2
            ),
        ]
    )
    data = [{"image": v.image, "label": np.asarray(v.mask)[None]} for v in make_volumes(case)]
    dataset = Dataset(data, pipeline)
    generator = torch.Generator().manual_seed(0)
    sampler = torch.utils.data.RandomSampler(
        dataset, replacement=True, num_samples=total * case.batch, generator=generator
    )
    return DataLoader(
        dataset,
        batch_size=case.batch,
        sampler=sampler,
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def run_monai(
    case: Case, model_kind: str, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    """A plain MONAI training loop on the same model, recipe and precision as the engine."""
    from monai.losses import DiceCELoss

    device = resolve_device(args.device)
    model = make_model(model_kind, case)
    settings = resolve_settings(settings_for(case, 1), model, device)
    model.to(device)
    # the engine's layout for the same model (weights and the model's own switch)
    set_layout(model, settings.channels_last == "on", len(case.patch))
    lr, decay = settings.learning_rate, settings.weight_decay
    assert lr is not None and decay is not None  # TrainSettings fills them in
    loss_fn = DiceCELoss(softmax=True, to_onehot_y=True, include_background=False)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    model.train()
    stamps, step_times = [], []
    for batch in monai_loader(case, workers, args.warmup + args.steps, device):
        images = batch["image"].as_tensor().to(device, non_blocking=True)
        labels = batch["label"].as_tensor().to(device, non_blocking=True)
        started = time.perf_counter()
        with torch.autocast(device.type, torch.bfloat16, enabled=settings.precision == "bf16"):
            loss = loss_fn(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        float(loss.detach())
        sync()
        stamps.append(time.perf_counter())
        step_times.append(stamps[-1] - started)
    figures = loop_figures(stamps, statistics.median(step_times), args.warmup, case.batch)
    return {"loop": "monai", "steps_run": len(stamps), **figures}


def measure_case(case: Case, args: argparse.Namespace) -> list[dict[str, Any]]:
    """The rows of one case: attnunet's engine then MONAI's loop, per worker count."""
    rows = []
    base = {"case": case.name, "patch": list(case.patch), "batch": case.batch}
    runners: dict[str, Callable[..., dict[str, Any]]] = {
        "attnunet": run_attnunet,
        "monai": run_monai,
    }
    for workers in args.workers:
        for name, runner in runners.items():
            row = {**base, "workers": workers, **runner(case, args.model, workers, args)}
            rows.append(row)
            print(
                f"{case.name} workers={workers} {name}: {row['patches_per_s']:.1f} patches/s, "
                f"model {row['model_patches_per_s']:.1f}, data share "
                f"{100 * row['data_share']:.1f} %",
                file=sys.stderr,
                flush=True,
            )
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """attnunet's patches per second over MONAI's, per case and worker count.

    Example:
        >>> rows = [{"case": "2D", "workers": 0, "loop": "attnunet", "patches_per_s": 30.0},
        ...         {"case": "2D", "workers": 0, "loop": "monai", "patches_per_s": 20.0}]
        >>> ratios(rows)
        [{'case': '2D', 'workers': 0, 'attnunet_over_monai': 1.5}]
    """
    speed = {(r["case"], r["workers"], r["loop"]): r["patches_per_s"] for r in rows}
    pairs = dict.fromkeys((r["case"], r["workers"]) for r in rows)
    return [
        {
            "case": case,
            "workers": workers,
            "attnunet_over_monai": speed[case, workers, "attnunet"] / speed[case, workers, "monai"],
        }
        for case, workers in pairs
    ]


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table, with attnunet's speed over MONAI's."""
    ratio = {(r["case"], r["workers"]): r["attnunet_over_monai"] for r in ratios(rows)}
    lines = [
        "| case | workers | loop | patches/s | model patches/s | data share | step ms "
        "| attnunet / MONAI |",
        "|" + "---|" * 8,
    ]
    for r in rows:
        shown = f"{ratio[r['case'], r['workers']]:.2f}x" if r["loop"] == "attnunet" else ""
        lines.append(
            f"| {r['case']} | {r['workers']} | {r['loop']} | {r['patches_per_s']:.1f} | "
            f"{r['model_patches_per_s']:.1f} | {100 * r['data_share']:.1f} % | "
            f"{r['step_s'] * 1e3:.0f} | {shown} |"
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
    parser.add_argument("--cases", default="2d,3d", help="2d, 3d or 2d,3d")
    parser.add_argument("--model", choices=sorted(MODELS), default="agresunet")
    parser.add_argument("--workers", default="0,2", help="worker counts of both loaders")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per loop")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (>= 1)")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
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
    if args.warmup < 1 or args.steps < 1:
        sys.exit(f"--warmup and --steps must be >= 1, got {args.warmup} and {args.steps}")
    table = SMOKE_CASES if args.smoke else CASES
    keys = [k.strip().lower() for k in args.cases.split(",") if k.strip()]
    unknown = [k for k in keys if k not in table]
    if unknown:
        sys.exit(f"unknown case(s) {unknown}; known: {sorted(table)}")
    args.workers = [int(w) for w in args.workers.split(",")]
    if args.threads:
        torch.set_num_threads(args.threads)
    args.device = str(resolve_device(args.device))
    info = machine(torch.device(args.device))
    print(
        f"{info['cpu']}, {info['threads']} threads, torch {info['torch']}, "
        f"MONAI {info['monai']}, device {args.device}",
        flush=True,
    )
    started = time.perf_counter()
    rows = [row for key in keys for row in measure_case(table[key], args)]
    out = {
        "machine": info,
        "config": {
            "model": args.model,
            "device": args.device,
            "steps": args.steps,
            "warmup": args.warmup,
            "workers": args.workers,
            "cases": {k: vars(table[k]) for k in keys},
            "smoke": args.smoke,
        },
        "rows": rows,
        "ratios": ratios(rows),
        "total_seconds": time.perf_counter() - started,
    }
    print(markdown(rows))
    print(f"\nTotal {out['total_seconds']:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
