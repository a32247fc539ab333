"""How a training step's time and peak memory grow with the input size.

For each model and setting, a 2D training step (batch 1, one input channel, sizes 128^2 to
1024^2) and a 3D one (batch 1, 48^3 to 128^3) run in a fresh subprocess per size, with
the workload, loss, optimizer and memory measurement of ``bench_models.py`` (W1/W2 at
other sizes; channels ``(16, 32, 64, 128, 256)``). Each child runs ``--warmup`` untimed
steps, then ``--repeats`` timed ones, and reports their median time and the peak
resident memory of the timed steps above the resident memory between steps (``VmHWM``
after a reset through ``/proc/self/clear_refs``, minus ``VmRSS`` after the warm-up: the
measure of ``bench_models.py``), with glibc's mmap threshold fixed as there.

Growth is linear when the cost per voxel is constant. The table gives, per size, the
median step time, the time per megavoxel, the peak memory, the memory per voxel, and
both "per voxel" figures relative to the largest size's (1.00 = exactly linear). A
least-squares line through the origin ``cost = a * voxels`` and its coefficient of
determination ``R^2`` summarise each series.

Usage::

    python benchmarks/bench_scaling.py                      # AttentionUNet, eager and ckpt
    python benchmarks/bench_scaling.py --models unet --settings eager,cl --dims 2
    python benchmarks/bench_scaling.py --smoke --json scaling.json   # tiny: seconds

Sizes a model cannot take are refused by the model itself (every size here is a multiple
of 16, the divisor of a depth-4 U-Net).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_models as bm

SIZES_2D = (128, 256, 384, 512, 768, 1024)
SIZES_3D = (48, 64, 80, 96, 112, 128)
SMOKE_2D = (32, 48, 64)
SMOKE_3D = (16, 24, 32)
CHILD_FLAG = "--_scaling-child"


def child(model_key: str, setting: str, dims: int, size: int, smoke: bool, args: Any) -> dict:
    """Runs in a fresh process: time and peak memory of one model at one size."""
    spec = next(s for s in bm.model_specs() if s.key == model_key)
    channels = bm.SMOKE_CHANNELS if smoke else bm.CHANNELS
    wl = bm.Workload(
        "scaling", f"train {dims}D {size}", "train", dims, 1, (size,) * dims, channels, 1
    )
    torch.manual_seed(0)
    step = bm.make_step(spec.build(dims, channels), wl, torch.device("cpu"), setting)
    import gc

    for _ in range(args.warmup):
        step()
    gc.collect()
    can_reset = bm._reset_peak_rss()  # first, so the peak cannot fall below the baseline
    base = bm._rss_kib("VmRSS")  # between steps: weights, optimizer state, data
    can_reset = can_reset and base is not None
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    peak = bm._rss_kib("VmHWM") if can_reset else None
    return {
        "seconds": statistics.median(times),
        "seconds_all": times,
        "peak_memory_mib": None if peak is None or base is None else bm.peak_above_mib(peak, base),
    }


def run_child(model_key: str, setting: str, dims: int, size: int, args: Any) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), CHILD_FLAG]
    cmd += [f"{model_key}:{setting}:{dims}:{size}", "--threads", str(torch.get_num_threads())]
    cmd += ["--warmup", str(args.warmup), "--repeats", str(args.repeats)]
    if args.smoke:
        cmd.append("--smoke")
    return bm.run_json_child(cmd, f"{model_key} / {setting} / {dims}D {size}", bm.child_env())


def fit_through_origin(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Slope ``a`` of ``y = a x`` by least squares, and ``R^2`` about the mean of ``y``.

    Example:
        >>> a, r2 = fit_through_origin([1, 2, 4], [2, 4, 8])
        >>> round(a, 12), round(r2, 12)
        (2.0, 1.0)
    """
    a = sum(xi * yi for xi, yi in zip(x, y, strict=True)) / sum(xi * xi for xi in x)
    mean = sum(y) / len(y)
    ss_res = sum((yi - a * xi) ** 2 for xi, yi in zip(x, y, strict=True))
    ss_tot = sum((yi - mean) ** 2 for yi in y)
    return a, (1.0 - ss_res / ss_tot) if ss_tot > 0 else 1.0


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (model, setting, dims) series: fits, and per-voxel costs relative to the largest size."""
    series: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault((r["model_key"], r["setting"], r["spatial_dims"]), []).append(r)
    fits = []
    for (model_key, setting, dims), group in series.items():
        group.sort(key=lambda r: r["voxels"])
        last = group[-1]
        for r in group:
            r["seconds_per_voxel_vs_largest"] = (r["seconds"] / r["voxels"]) / (
                last["seconds"] / last["voxels"]
            )
            if r["peak_memory_mib"] is not None and last["peak_memory_mib"]:
                r["memory_per_voxel_vs_largest"] = (r["peak_memory_mib"] / r["voxels"]) / (
                    last["peak_memory_mib"] / last["voxels"]
                )
        voxels = [r["voxels"] for r in group]
        slope, r2 = fit_through_origin(voxels, [r["seconds"] for r in group])
        fit = {
            "model_key": model_key,
            "setting": setting,
            "spatial_dims": dims,
            "seconds_per_megavoxel": slope * 1e6,
            "seconds_r2": r2,
        }
        if all(r["peak_memory_mib"] is not None for r in group):
            mslope, mr2 = fit_through_origin(voxels, [r["peak_memory_mib"] for r in group])
            fit |= {"mib_per_megavoxel": mslope * 1e6, "memory_r2": mr2}
        fits.append(fit)
    return fits


def markdown(rows: list[dict[str, Any]], fits: list[dict[str, Any]]) -> str:
    lines = [
        "| model | setting | input | megavoxels | median s | s per Mvox | vs largest"
        " | peak MiB | MiB per Mvox | vs largest |",
        "|" + "---|" * 10,
    ]
    for r in rows:
        mvox = r["voxels"] / 1e6
        mem = r["peak_memory_mib"]
        rel = r.get("memory_per_voxel_vs_largest")  # absent when the largest rose by 0 MiB
        size = "x".join(str(s) for s in r["size"])
        lines.append(
            f"| {r['model']} | {r['setting']} | {size} | {mvox:.3f} | {r['seconds']:.3f} | "
            f"{r['seconds'] / mvox:.3f} | {r['seconds_per_voxel_vs_largest']:.2f} | "
            + (
                "n/a | n/a | n/a |"
                if mem is None
                else f"{mem:.0f} | {mem / mvox:.0f} | "
                + ("n/a |" if rel is None else f"{rel:.2f} |")
            )
        )
    lines += ["", "| model | setting | dims | s per Mvox (fit) | R^2 | MiB per Mvox (fit) | R^2 |"]
    lines.append("|" + "---|" * 7)
    nan = float("nan")
    for f in fits:
        lines.append(
            f"| {f['model_key']} | {f['setting']} | {f['spatial_dims']}D | "
            f"{f['seconds_per_megavoxel']:.3f} | {f['seconds_r2']:.4f} | "
            f"{f.get('mib_per_megavoxel', nan):.0f} | {f.get('memory_r2', nan):.4f} |"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    """The command line of the script (and, hidden, of its children)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="attention_unet", help="model keys of bench_models")
    parser.add_argument(
        "--settings", type=bm.parse_settings, default=["eager", "ckpt"], help="as bench_models"
    )
    parser.add_argument("--dims", default="2,3", help="2, 3 or 2,3")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes and channels")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(CHILD_FLAG, dest="child", help=argparse.SUPPRESS)
    return parser


def model_keys(models: str, specs: dict[str, bm.ModelSpec]) -> list[str]:
    """The keys of ``--models`` (comma-separated), in its order; exits naming the known keys
    if one is not in ``specs``."""
    keys = [k.strip() for k in models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in specs]
    if unknown:
        sys.exit(f"unknown model key(s) {unknown}; known: {sorted(specs)}")
    return keys


def dims_of(text: str) -> list[int]:
    """The spatial dimensions of ``--dims`` (``2``, ``3`` or ``2,3``); exits on others."""
    dims_list = [int(d) for d in text.split(",")]
    if any(d not in (2, 3) for d in dims_list):
        sys.exit(f"--dims takes 2, 3 or 2,3; got {text!r}")
    return dims_list


def measure_series(
    spec: bm.ModelSpec, setting: str, dims: int, sizes: Sequence[int], args: Any
) -> list[dict[str, Any]]:
    """One row per size of ``spec`` under ``setting`` in ``dims`` dimensions, each measured
    in its own subprocess (see :func:`run_child`); each time also goes to stderr."""
    rows = []
    for size in sizes:
        result = run_child(spec.key, setting, dims, size, args)
        rows.append(
            {
                "model": spec.label,
                "model_key": spec.key,
                "setting": setting,
                "spatial_dims": dims,
                "size": [size] * dims,
                "voxels": size**dims,
                **result,
            }
        )
        print(
            f"{spec.key} {setting} {dims}D {size}: {result['seconds']:.3f} s",
            file=sys.stderr,
            flush=True,
        )
    return rows


def measure_all(
    specs: list[bm.ModelSpec], dims_list: list[int], sizes: Mapping[int, Sequence[int]], args: Any
) -> list[dict[str, Any]]:
    """The rows of every model, setting (of ``--settings``, where it applies), dimension
    and size, in that nesting order."""
    rows: list[dict[str, Any]] = []
    for spec in specs:
        for setting in args.settings:
            if not bm.applies(spec, setting):
                continue
            for dims in dims_list:
                rows += measure_series(spec, setting, dims, sizes[dims], args)
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    """Run the scaling benchmark, or one child, as the command line ``argv`` says.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        model_key, setting, dims, size = args.child.split(":")
        print(json.dumps(child(model_key, setting, int(dims), int(size), args.smoke, args)))
        return
    if args.json and args.json.exists():
        sys.exit(f"{args.json} exists; choose another name (nothing was overwritten)")
    specs = {s.key: s for s in bm.model_specs()}
    keys = model_keys(args.models, specs)
    dims_list = dims_of(args.dims)
    sizes = {2: SMOKE_2D if args.smoke else SIZES_2D, 3: SMOKE_3D if args.smoke else SIZES_3D}
    info = bm.machine(torch.device("cpu"))
    print(f"{info['cpu']}, {torch.get_num_threads()} threads, torch {info['torch']}", flush=True)
    started = time.perf_counter()
    rows = measure_all([specs[k] for k in keys], dims_list, sizes, args)
    fits = summarise(rows)
    out = {
        "machine": info,
        "config": {
            "channels": list(bm.SMOKE_CHANNELS if args.smoke else bm.CHANNELS),
            "batch": 1,
            "repeats": args.repeats,
            "warmup": args.warmup,
            "sizes": {str(d): list(sizes[d]) for d in dims_list},
            "smoke": args.smoke,
        },
        "rows": rows,
        "fits": fits,
        "total_seconds": time.perf_counter() - started,
    }
    print(markdown(rows, fits))
    print(f"\nTotal {out['total_seconds']:.0f} s.")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
