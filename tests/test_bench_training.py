"""benchmarks/bench_training.py: its figures are the hand-computed ones and ``--smoke`` runs
attnunet's engine and MONAI's loop end to end."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_training.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_training_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_loop_figures_time_only_the_steps_after_the_warmup():
    # 2 warm-up steps end at 3.0 s; 4 timed steps end at 5.0 s: 0.5 s per step of 4 patches
    stamps = [1.0, 3.0, 3.4, 4.0, 4.5, 5.0]
    f = _bench().loop_figures(stamps, 0.4, warmup=2, batch=4)
    assert f["step_s"] == pytest.approx(0.5)
    assert f["patches_per_s"] == pytest.approx(8.0)
    assert f["model_patches_per_s"] == pytest.approx(10.0)
    assert f["data_share"] == pytest.approx(0.2)  # 1 - 0.4 / 0.5
    # a median model step longer than the mean loop step: no negative share
    assert _bench().loop_figures([0.0, 1.0, 2.0], 1.5, warmup=1, batch=1)["data_share"] == 0.0


def test_smoke_run_end_to_end(tmp_path):
    pytest.importorskip("monai", reason="the benchmark compares against MONAI's loop")
    out = tmp_path / "training.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--steps", "2", "--warmup", "1"]
    cmd += ["--threads", "1", "--device", "cpu", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "| case | workers | loop | patches/s |" in done.stdout

    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["machine"]["threads"] == 1 and result["config"]["smoke"] is True
    assert [(r["case"], r["workers"], r["loop"]) for r in result["rows"]] == [
        (case, workers, loop)
        for case in ("2D", "3D")
        for workers in (0, 2)
        for loop in ("attnunet", "monai")
    ]
    for r in result["rows"]:
        assert r["steps_run"] == 3, r  # both loops trained warm-up + timed steps
        for key in ("step_s", "model_step_s", "patches_per_s", "model_patches_per_s"):
            assert r[key] > 0, (key, r)
        assert r["patches_per_s"] == pytest.approx(r["batch"] / r["step_s"]), r
        assert r["data_share"] == pytest.approx(max(0.0, 1 - r["model_step_s"] / r["step_s"]))
    speed = {(r["case"], r["workers"], r["loop"]): r["patches_per_s"] for r in result["rows"]}
    for ratio in result["ratios"]:
        case, workers = ratio["case"], ratio["workers"]
        expected = speed[case, workers, "attnunet"] / speed[case, workers, "monai"]
        assert ratio["attnunet_over_monai"] == pytest.approx(expected)

    again = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode != 0 and "exists" in again.stderr  # never overwritten
