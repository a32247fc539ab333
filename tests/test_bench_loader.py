"""benchmarks/bench_loader.py: its data share is the hand-computed one and ``--smoke`` runs
end to end."""

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_loader.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_loader_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_data_share_is_total_wait_over_total_step_time():
    # waits 20 + 10 ms, model steps 270 + 200 ms: 30 / 500
    assert _bench().data_share([0.02, 0.01], [0.27, 0.2]) == pytest.approx(0.06)
    assert _bench().data_share([0.0, 0.0], [0.1, 0.1]) == 0.0


def test_the_loop_times_only_the_steps_after_the_warmup():
    calls = {"batches": 0, "steps": 0}

    def next_batch():
        calls["batches"] += 1
        time.sleep(0.004)
        return None, None

    def step(images, masks):
        calls["steps"] += 1

    row = _bench().run_loop(next_batch, step, warmup=2, steps=3)
    assert calls == {"batches": 5, "steps": 5}
    assert row["wait_s"] >= 0.004 and row["wait_max_s"] >= row["wait_s"]
    assert row["step_s"] == pytest.approx(row["wait_s"] + row["model_step_s"])
    assert 0.0 < row["data_share"] <= 1.0


def test_smoke_run_end_to_end(tmp_path):
    out = tmp_path / "loader.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--step", "sleep", "--sleep", "0.005"]
    cmd += ["--steps", "3", "--warmup", "1", "--threads", "1", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "| case | config | wait ms |" in done.stdout

    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["machine"]["threads"] == 1 and result["config"]["smoke"] is True
    configs = ["main", "workers=0", "workers=1", "workers=2"]
    assert [(r["case"], r["config"]) for r in result["rows"]] == [
        (case, config) for case in ("3D", "2D") for config in configs
    ]
    for r in result["rows"]:
        assert r["model_step_s"] >= 0.005, r  # the sleep
        assert r["step_s"] == pytest.approx(r["wait_s"] + r["model_step_s"]), r
        assert 0.0 <= r["data_share"] < 1.0, r
    assert all(r["sample_s"] > 0 for r in result["rows"] if r["config"] == "main")

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0 and "exists" in again.stderr  # never overwritten
