"""benchmarks/bench_scaling.py: its linear fit is exact and ``--smoke`` runs end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_scaling.py"


def _scaling():
    sys.path.insert(0, str(SCRIPT.parent))
    spec = importlib.util.spec_from_file_location("bench_scaling_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_fit_through_origin_matches_the_hand_computed_line():
    # y = 3x exactly: slope 3, R^2 = 1; y = (2, 2, 8) against x = (1, 2, 3):
    # a = (2 + 4 + 24) / 14 = 15 / 7, residuals (2 - 15/7, 2 - 30/7, 8 - 45/7)
    fit = _scaling().fit_through_origin
    assert fit([1, 2, 4], [3, 6, 12]) == pytest.approx((3.0, 1.0))
    a, r2 = fit([1, 2, 3], [2, 2, 8])
    ss_res = (2 - 15 / 7) ** 2 + (2 - 30 / 7) ** 2 + (8 - 45 / 7) ** 2
    ss_tot = (2 - 4) ** 2 + (2 - 4) ** 2 + (8 - 4) ** 2
    assert a == pytest.approx(15 / 7) and r2 == pytest.approx(1 - ss_res / ss_tot)


def test_summary_reports_per_voxel_costs_relative_to_the_largest_size():
    rows = [
        {"model_key": "m", "setting": "eager", "spatial_dims": 2, "voxels": v, **cost}
        for v, cost in [
            (100, {"seconds": 2.0, "peak_memory_mib": 10.0}),  # twice the largest's per voxel
            (400, {"seconds": 4.0, "peak_memory_mib": 20.0}),
        ]
    ]
    (fit,) = _scaling().summarise(rows)
    assert rows[0]["seconds_per_voxel_vs_largest"] == pytest.approx(2.0)
    assert rows[0]["memory_per_voxel_vs_largest"] == pytest.approx(2.0)
    assert rows[1]["seconds_per_voxel_vs_largest"] == 1.0
    assert fit["seconds_per_megavoxel"] == pytest.approx((200 + 1600) / (100**2 + 400**2) * 1e6)


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    out = tmp_path / "scaling.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--dims", "2", "--threads", "1"]
    cmd += ["--settings", "eager", "--repeats", "1", "--models", "unet", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text(encoding="utf-8"))
    assert [r["size"] for r in result["rows"]] == [[32, 32], [48, 48], [64, 64]]
    for r in result["rows"]:
        assert r["seconds"] > 0 and r["voxels"] == r["size"][0] ** 2
        assert r["peak_memory_mib"] is None or r["peak_memory_mib"] >= 0
    assert len(result["fits"]) == 1 and "| model | setting | input |" in done.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0 and "exists" in again.stderr  # never overwritten
