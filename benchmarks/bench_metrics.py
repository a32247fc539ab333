"""Speed of HD95 and ASSD: attnunet against MONAI and MedPy, in one process and run.

Each workload is a pair of 3D masks of N^3 voxels whose target is a smooth ellipsoidal
organ (about 8% of the volume):

* ``blobs`` ("organ + blobs"): the prediction is the same organ shifted by two voxels with
  slightly different radii, plus a few small false-positive blobs scattered through the
  volume (the case HD95 exists for);
* ``flipped`` ("organ + 0.1 % flipped"): the same prediction with 0.1 % of all its voxels
  flipped at random (seeded), so thousands of isolated false positives far from the organ
  and a few holes in it, as a noisy network output without post-processing.

Every library is timed on the same masks, taking turns within each repeat so that load on
the machine affects all alike; the script prints medians, the speed-up ratios and the
values, which must agree under the matching convention (MONAI: the larger directed
percentile and the pooled ASSD; MedPy 0.5: the pooled percentile and the pooled ASSD).

Usage::

    python benchmarks/bench_metrics.py              # both workloads at 128^3 and 256^3
    python benchmarks/bench_metrics.py --sizes 128 --repeats 7 --workloads flipped
    python benchmarks/bench_metrics.py --json results.json

MONAI and MedPy come with ``pip install -e ".[test]"``; a missing one is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attnunet.metrics import assd, hd95

WORKLOADS = {"blobs": "organ + blobs", "flipped": "organ + 0.1 % flipped"}
FLIP_FRACTION = 0.001


def make_pair(n: int, workload: str = "blobs", seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, target) boolean volumes of shape (n, n, n) for a workload of
    :data:`WORKLOADS`."""
    rng = np.random.default_rng(seed)
    z, y, x = np.ogrid[:n, :n, :n]
    c, r = n / 2, 0.3 * n

    def ellipsoid(shift: float, radii: tuple[float, float, float]) -> np.ndarray:
        return ((z - c - shift) / (r * radii[0])) ** 2 + ((y - c) / (r * radii[1])) ** 2 + (
            (x - c + shift / 2) / (r * radii[2])
        ) ** 2 <= 1

    target = ellipsoid(0.0, (1.0, 0.8, 0.9))
    pred = ellipsoid(2.0, (1.04, 0.78, 0.92))
    seeds = np.zeros_like(pred)
    for point in rng.integers(0, n, size=(6, 3)):
        seeds[tuple(point)] = True
    pred |= ndimage.binary_dilation(seeds, iterations=max(1, n // 64))
    if workload == "flipped":
        flips = np.random.default_rng(seed + 1).choice(
            pred.size, size=round(FLIP_FRACTION * pred.size), replace=False
        )
        pred.reshape(-1)[flips] ^= True
    elif workload != "blobs":
        raise ValueError(f"unknown workload {workload!r}; choose from {', '.join(WORKLOADS)}")
    return pred, target


def timed(fn: Callable[[], float]) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def candidates(pred: np.ndarray, target: np.ndarray) -> dict[str, dict[str, Callable[[], float]]]:
    """metric -> library -> a call returning the value. Libraries are optional."""
    p, t = pred[None], target[None]
    out: dict[str, dict[str, Callable[[], float]]] = {
        "hd95": {
            "attnunet (max)": lambda: float(hd95(p, t, spatial_dims=3, convention="max")),
            "attnunet (pooled)": lambda: float(hd95(p, t, spatial_dims=3, convention="pooled")),
        },
        "assd": {"attnunet": lambda: float(assd(p, t, spatial_dims=3))},
    }
    try:
        from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

        pt, tt = torch.from_numpy(pred)[None, None], torch.from_numpy(target)[None, None]
        out["hd95"]["MONAI"] = lambda: float(
            compute_hausdorff_distance(pt, tt, include_background=True, percentile=95)
        )
        out["assd"]["MONAI"] = lambda: float(
            compute_average_surface_distance(pt, tt, include_background=True, symmetric=True)
        )
    except ImportError:
        print("MONAI is not installed: skipped", file=sys.stderr)
    try:
        from medpy.metric import binary as medpy

        out["hd95"]["MedPy"] = lambda: float(medpy.hd95(pred, target))
        out["assd"]["MedPy"] = lambda: float(medpy.assd(pred, target))
    except ImportError:
        print("MedPy is not installed: skipped", file=sys.stderr)
    return out


PEERS = {  # our entry that uses the peer's convention
    ("hd95", "MONAI"): "attnunet (max)",
    ("hd95", "MedPy"): "attnunet (pooled)",
    ("assd", "MONAI"): "attnunet",
    ("assd", "MedPy"): "attnunet",
}


def run(
    sizes: list[int], workloads: list[str], repeats: int, medpy_repeats: int
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for n, workload in ((n, w) for n in sizes for w in workloads):
        pred, target = make_pair(n, workload)
        table = candidates(pred, target)
        for metric, calls in table.items():
            times: dict[str, list[float]] = {name: [] for name in calls}
            values: dict[str, float] = {}
            for name, call in calls.items():  # warm-up (imports, caches)
                if name != "MedPy":
                    call()
            for i in range(repeats):
                for name, call in calls.items():
                    if name == "MedPy" and i >= medpy_repeats:
                        continue
                    seconds, values[name] = timed(call)
                    times[name].append(seconds)
            for (m, peer), ours in PEERS.items():
                if m != metric or peer not in calls:
                    continue
                ours_s = statistics.median(times[ours])
                peer_s = statistics.median(times[peer])
                rows.append(
                    {
                        "size": n,
                        "workload": WORKLOADS[workload],
                        "metric": metric,
                        "peer": peer,
                        "ours": ours,
                        "ours_ms": 1000 * ours_s,
                        "peer_ms": 1000 * peer_s,
                        "speedup": peer_s / ours_s,
                        "ours_value": values[ours],
                        "peer_value": values[peer],
                        "rel_diff": abs(values[ours] - values[peer])
                        / max(abs(values[peer]), 1e-12),
                        "repeats": (len(times[ours]), len(times[peer])),
                    }
                )
    return rows


def environment(args: argparse.Namespace) -> dict[str, object]:
    """The machine and library versions, for the JSON file."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str] = {}
    for name in ("monai", "medpy", "scipy"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "missing"
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        **versions,
        "repeats": args.repeats,
        "medpy_repeats": args.medpy_repeats,
        "flip_fraction": FLIP_FRACTION,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--workloads", nargs="+", choices=list(WORKLOADS), default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--medpy-repeats", type=int, default=3, help="MedPy is slow; time it fewer times"
    )
    parser.add_argument(
        "--json", type=Path, help="also write the machine and the rows to this new JSON file"
    )
    args = parser.parse_args()
    if args.json and args.json.exists():
        sys.exit(f"{args.json} exists; choose another name (nothing was overwritten)")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)

    print(
        f"python {platform.python_version()}, numpy {np.__version__}, torch {torch.__version__},"
        f" {platform.processor() or platform.machine()}; medians of {args.repeats} runs"
        f" ({args.medpy_repeats} for MedPy)\n"
    )
    rows = run(args.sizes, args.workloads, args.repeats, args.medpy_repeats)
    print(
        "| size | workload | metric | peer | attnunet ms | peer ms | speed-up "
        "| value (ours / peer) |"
    )
    print("|" + "---|" * 8)
    for r in rows:
        print(
            f"| {r['size']}^3 | {r['workload']} | {r['metric']} | {r['peer']} | "
            f"{r['ours_ms']:.1f} | {r['peer_ms']:.1f} | {r['speedup']:.1f}x | "
            f"{r['ours_value']:.4f} / {r['peer_value']:.4f} |"
        )
    worst = max(r["rel_diff"] for r in rows) if rows else 0.0  # type: ignore[type-var]
    print(f"\nlargest relative difference from a peer's value: {worst:.1e}")
    if args.json:
        result = {"machine": environment(args), "largest_rel_diff": worst, "rows": rows}
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
