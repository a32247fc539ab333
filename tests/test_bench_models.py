"""benchmarks/bench_models.py: its FLOP counter is exact and ``--smoke`` runs end to end."""

import argparse
import importlib.util
import json
import mmap
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "bench_models.py"
ROW_NAMES = {"W1 train 2D", "W2 train 3D", "W3 infer 2D", "W3 infer 3D sliding"}
ATTNUNET = {
    "attnunet AttentionUNet",
    "attnunet AgUNet",
    "attnunet UNet",
    "attnunet AgResUNet",
    "attnunet UNet (PlainConvUNet's config)",
}
HAS_MONAI = importlib.util.find_spec("monai") is not None
HAS_NNUNET = importlib.util.find_spec("dynamic_network_architectures") is not None


def _bench():
    spec = importlib.util.spec_from_file_location("bench_models_under_test", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("cin", "cout", "k", "h", "w"), [(3, 8, 3, 20, 24), (1, 16, 5, 17, 9)])
def test_conv2d_flops_match_the_hand_count(cin, cout, k, h, w):
    conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)
    x = torch.randn(1, cin, h, w)
    assert _bench().count_flops(lambda: conv(x)) == 2 * cin * cout * k * k * h * w


def test_conv3d_training_flops_are_forward_plus_backward():
    conv = nn.Conv3d(2, 4, 3, padding=1, bias=False)
    x = torch.randn(1, 2, 6, 5, 4, requires_grad=True)
    forward = 2 * 2 * 4 * 27 * 6 * 5 * 4
    # backward: one convolution for the input gradient, one for the weight gradient
    assert _bench().count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_json_is_never_overwritten(tmp_path):
    existing = tmp_path / "results.json"
    existing.write_text("{}", encoding="utf-8")
    with pytest.raises(SystemExit, match="exists"):
        _bench().main(["--smoke", "--json", str(existing)])
    assert existing.read_text(encoding="utf-8") == "{}"


def test_smoke_run_end_to_end(tmp_path):
    out = tmp_path / "smoke.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--memory-jobs", "2"]
    cmd += ["--settings", "eager,bf16+cl", "--memory-settings", "eager,ckpt"]
    done = subprocess.run(
        [*cmd, "--json", str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "| workload | model |" in done.stdout and "matmul peak" in done.stdout

    result = json.loads(out.read_text(encoding="utf-8"))
    for key in ("machine", "config", "matmul", "matmul_peak_gflops", "memory_method", "rows"):
        assert key in result
    assert {"cpu", "threads", "torch"} <= set(result["machine"])
    assert result["machine"]["threads"] == 1
    assert result["matmul_peak_gflops"] > 0

    rows = result["rows"]
    models = ATTNUNET | (
        {"MONAI AttentionUnet", "MONAI UNet (res units 2)"} if HAS_MONAI else set()
    )
    models |= {"nnU-Net PlainConvUNet"} if HAS_NNUNET else set()
    expected = {(n, m, "eager") for n in ROW_NAMES for m in models}
    expected |= {(n, m, "cl+bf16") for n in ROW_NAMES for m in models}
    expected |= {("W2 train 3D", m, "ckpt") for m in ATTNUNET}  # nor MONAI nor nnU-Net
    assert {(r["name"], r["model"], r["setting"]) for r in rows} == expected
    assert result["config"]["settings"] == ["eager", "cl+bf16"]  # canonical lever order
    for r in rows:
        assert r["params"] > 0 and r["flops"] > 0, r
        assert r["seconds"] > 0 and all(t > 0 for t in r["seconds_all"]), r
        assert r["process"] == "shared" and r["minor_faults_per_step"] >= 0, r
        assert r["gflops_per_s"] > 0 and r["fraction_of_matmul_peak"] > 0, r
        if HAS_MONAI:
            assert r["speed_vs_monai_attention_unet"] > 0, r
            if r["setting"] != "ckpt":  # MONAI has no checkpointing switch
                assert r["gflops_vs_monai_same_setting"] > 0, r
            else:
                assert "gflops_vs_monai_same_setting" not in r, r
        assert r["speed_vs_own_eager"] > 0, r
        if r["setting"] == "cl+bf16":
            assert 0 < r["fraction_of_bf16_matmul_peak"] < r["fraction_of_matmul_peak"] * 10, r
        if r["workload"] == "W2" and r["setting"] in ("eager", "ckpt"):
            assert r["peak_memory_mib"] >= 0 and r["memory_method"], r
        else:
            assert "peak_memory_mib" not in r, r
        if r["model"] == "attnunet UNet (PlainConvUNet's config)" and HAS_NNUNET:
            if r["setting"] == "ckpt":  # PlainConvUNet has no such switch
                assert "speed_vs_plain_conv_unet" not in r, r
            else:
                assert r["speed_vs_plain_conv_unet"] > 0, r
        same_model = [o for o in rows if o["model"] == r["model"] and o["name"] == r["name"]]
        assert {o["flops"] for o in same_model} == {r["flops"]}  # counted once per model
    if HAS_MONAI:
        shipped = [
            r for r in rows if r["model"] == "MONAI AttentionUnet" and r["setting"] == "eager"
        ]
        assert len(shipped) == len(ROW_NAMES)
        assert all(r["gflops_vs_monai_attention_unet"] == 1.0 for r in shipped)
        assert all(
            r["gflops_vs_monai_same_setting"] == 1.0
            for r in rows
            if r["model"] == "MONAI AttentionUnet"
        )


def test_layout_levers():
    """``nchw`` (attnunet's default layout) applies to attnunet models only and never with
    ``cl``; the levers reach the model and the input."""
    bench = _bench()
    specs = {s.key: s for s in bench.model_specs()}
    assert bench.applies(specs["ag_res_unet"], "nchw")
    assert not bench.applies(specs["ag_res_unet"], bench.parse_setting("cl+nchw"))
    for key in ("monai_attention_unet", "nnunet_plain_conv_unet"):
        if key in specs:
            assert not bench.applies(specs[key], "nchw") and bench.applies(specs[key], "cl")
    model = specs["unet"].build(2, (4, 8))
    x = torch.randn(1, 1, 8, 8)
    assert bench.apply_layout_levers(model, x, "nchw") is x and model.channels_last == "off"
    y = bench.apply_layout_levers(model, torch.randn(1, 3, 8, 8), "cl")
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert model.head.conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_plainconvunet_ratio_is_a_time_ratio_at_equal_flops():
    bench = _bench()
    rows = {
        (bench.PLAIN, "eager"): {"seconds": 3.0, "gflops_per_s": 10.0},
        ("unet_nnunet_config", "eager"): {"seconds": 2.0, "gflops_per_s": 15.0},
        ("unet_nnunet_config", "nchw"): {"seconds": 4.0, "gflops_per_s": 7.5},
        (bench.PLAIN, "cl"): {"seconds": 6.0, "gflops_per_s": 5.0},
        ("unet_nnunet_config", "cl"): {"seconds": 2.0, "gflops_per_s": 15.0},
        ("unet_nnunet_config", "cl+bf16"): {"seconds": 1.0, "gflops_per_s": 30.0},
        ("unet", "eager"): {"seconds": 1.0, "gflops_per_s": 30.0},
    }
    bench._add_speed_ratios(rows)
    assert rows[("unet_nnunet_config", "eager")]["speed_vs_plain_conv_unet"] == 1.5
    assert rows[("unet_nnunet_config", "nchw")]["speed_vs_plain_conv_unet"] == 0.75
    assert rows[("unet_nnunet_config", "cl")]["speed_vs_plain_conv_unet"] == 3.0  # same lever
    assert "speed_vs_plain_conv_unet" not in rows[("unet_nnunet_config", "cl+bf16")]
    assert "speed_vs_plain_conv_unet" not in rows[("unet", "eager")]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [("eager", "eager"), ("BF16+cl", "cl+bf16"), ("compile+ckpt+cl", "cl+ckpt+compile")],
)
def test_settings_are_canonical(text, canonical):
    assert _bench().parse_setting(text) == canonical


def test_unknown_lever_is_refused_with_the_known_ones():
    with pytest.raises(
        argparse.ArgumentTypeError, match=r"unknown lever.*nchw, cl, bf16, ckpt, compile"
    ):
        _bench().parse_setting("cl+fp8")


def test_peak_above_baseline_in_mib_never_negative():
    peak_above = _bench().peak_above_mib
    assert peak_above(2048 + 1536, 2048) == 1.5  # KiB in, MiB out
    assert peak_above(1000, 1012) == 0.0  # a lazily raised high-water mark: no rise


def test_compile_rows_are_not_silently_eager_past_the_recompile_limit():
    """Every attnunet model shares one ``forward``: with dynamo's default limit of 8
    entries per function, the ninth differently built model compiled in a run ran eagerly
    (seen in a benchmark run). ``allow_recompiles`` lifts the limit, so each of 12 models
    of different widths gets its own graph."""
    from attnunet import UNet

    compiled: list[int] = []

    def backend(gm, example_inputs):
        compiled.append(1)
        return gm.forward

    config = torch._dynamo.config
    saved = config.recompile_limit
    try:
        torch._dynamo.reset()
        _bench().allow_recompiles(64)
        assert config.recompile_limit >= 64
        x = torch.randn(1, 1, 8, 8)
        for width in range(1, 13):
            model = UNet(2, 1, 2, channels=(width, 2 * width)).eval()
            torch.testing.assert_close(torch.compile(model, backend=backend)(x), model(x))
        assert len(compiled) == 12
    finally:
        config.recompile_limit = saved
        torch._dynamo.reset()


@pytest.mark.skipif(not hasattr(mmap, "MADV_NOHUGEPAGE"), reason="Linux only")
def test_page_faults_of_a_step_are_counted():
    """Touching every page of a fresh anonymous mapping takes one minor fault per page
    (huge pages off for it); a step that touches nothing new takes none of those."""
    bench = _bench()
    pages = 2048
    size = pages * mmap.PAGESIZE

    def touch() -> None:
        buf = mmap.mmap(-1, size)
        buf.madvise(mmap.MADV_NOHUGEPAGE)
        for offset in range(0, size, mmap.PAGESIZE):
            buf[offset] = 1
        buf.close()

    seconds, faults = bench.timed_with_faults(touch, lambda: None)
    assert seconds > 0 and faults is not None
    if faults == 0:
        pytest.skip("this kernel does not count minor page faults (getrusage's ru_minflt)")
    assert pages <= faults < pages + 200  # the interpreter's own allocations add a few
    _, idle = bench.timed_with_faults(lambda: None, lambda: None)
    assert idle is not None and idle < 50


def _options(bench, **overrides):
    kwargs = {
        "device": torch.device("cpu"),
        "threads": 1,
        "smoke": True,
        "settings": ("eager",),
        "repeats": 2,
        "warmup": 0,
        "memory": False,
        "memory_settings": (),
        "memory_steps": 1,
        "memory_jobs": 1,
        "isolate": True,
        "rounds": 2,
    }
    return bench.Options(**{**kwargs, **overrides})


def test_rounds_rotate_so_no_pair_keeps_its_place():
    order = _bench().round_order
    keys = [(m, "eager") for m in "abcdef"]
    orders = [[k[0] for k in order(keys, 3, r)] for r in range(3)]
    assert orders == [list("abcdef"), list("cdefab"), list("efabcd")]
    for r in range(3):
        assert sorted(order(keys, 3, r)) == sorted(keys)
    positions = {m: {o.index(m) for o in orders} for m in "abcdef"}
    assert all(len(p) == 3 for p in positions.values())  # a new place in every round


def test_isolated_rounds_pool_each_pairs_children_in_round_order(monkeypatch):
    """``time_in_processes`` asks one child per pair and round, in :func:`round_order`,
    pools their times and faults per pair, and refuses a child that reports a process
    it already timed the pair in."""
    bench = _bench()
    specs = [s for s in bench.model_specs() if s.key in ("unet", "ag_unet")]
    keys = [("unet", "eager"), ("ag_unet", "eager")]
    calls = []

    def fake(spec, wl, setting, opt):
        calls.append(spec.key)
        n = len(calls)
        return {"times": [n, n + 0.5], "minor_faults": [10 * n], "pid": 1000 + n}

    monkeypatch.setattr(bench, "times_in_subprocess", fake)
    wl = bench.workloads(True)[0]
    times, faults = bench.time_in_processes(wl, specs, keys, _options(bench, rounds=2))
    assert calls == ["unet", "ag_unet", "ag_unet", "unet"]  # round 2 starts half-way
    assert times == {("unet", "eager"): [1, 1.5, 4, 4.5], ("ag_unet", "eager"): [2, 2.5, 3, 3.5]}
    assert faults == {("unet", "eager"): [10, 40], ("ag_unet", "eager"): [20, 30]}

    monkeypatch.setattr(
        bench, "times_in_subprocess", lambda *a: {"times": [1], "minor_faults": [], "pid": 7}
    )
    with pytest.raises(RuntimeError, match="timed twice in process 7"):
        bench.time_in_processes(wl, specs, keys[:1], _options(bench, rounds=2))


def test_a_child_that_ran_otherwise_than_asked_is_refused(monkeypatch):
    bench = _bench()
    spec = next(s for s in bench.model_specs() if s.key == "unet")
    wl = bench.workloads(True)[0]
    echo = {"pair": "unet:W1 train 2D:eager", "smoke": True, "threads": 1, "device": "cpu"}
    echo |= {"warmup": 0, "repeats": 2, "pid": 5}
    monkeypatch.setattr(bench, "run_child", lambda *a, **k: {**echo, "threads": 2})
    with pytest.raises(RuntimeError, match=r"ran with \{.*'threads': 2"):
        bench.times_in_subprocess(spec, wl, "eager", _options(bench))
    monkeypatch.setattr(bench, "run_child", lambda *a, **k: {**echo, "pair": "ag_unet:W1:x"})
    with pytest.raises(RuntimeError, match="ag_unet:W1:x"):
        bench.times_in_subprocess(spec, wl, "eager", _options(bench))
    monkeypatch.setattr(bench, "run_child", lambda *a, **k: dict(echo))
    assert bench.times_in_subprocess(spec, wl, "eager", _options(bench))["pid"] == 5


def test_isolated_timing_runs_each_pair_in_its_own_processes(tmp_path):
    """``--isolate`` end to end: every timed step comes from a child process (a fresh
    one per round: ``time_in_processes`` refuses a repeated one), and the rows say so."""
    out = tmp_path / "isolated.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--threads", "1", "--workloads", "W1"]
    cmd += ["--models", "unet", "--settings", "eager,nchw", "--isolate"]
    cmd += ["--rounds", "2", "--repeats", "1", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert "in a fresh process per model and setting, 2 rounds" in done.stdout
    result = json.loads(out.read_text(encoding="utf-8"))
    assert result["config"]["isolate"] is True and result["config"]["rounds"] == 2
    assert "allocator_environment" in result["machine"] and result["started_utc"]
    rows = result["rows"]
    assert {(r["model_key"], r["setting"]) for r in rows} == {("unet", "eager"), ("unet", "nchw")}
    for r in rows:
        assert r["process"] == "isolated" and r["rounds"] == 2, r
        assert len(r["seconds_all"]) == 2 and all(t > 0 for t in r["seconds_all"]), r
        assert r["seconds"] == sorted(r["seconds_all"])[0] / 2 + sorted(r["seconds_all"])[1] / 2
        assert r["minor_faults_per_step"] >= 0 and r["flops"] > 0, r


def test_a_failing_timing_child_names_the_pair_and_shows_its_error():
    bench = _bench()
    ghost = bench.ModelSpec("no_such_model", "a model that is not there", "none", lambda d, c: 0)
    wl = bench.workloads(True)[0]
    with pytest.raises(RuntimeError) as failure:
        bench.times_in_subprocess(ghost, wl, "eager", _options(bench, repeats=1))
    message = str(failure.value)
    assert "timing child for a model that is not there / W1 train 2D / eager" in message
    assert (
        "exit status 1" in message and "--_time-child 'no_such_model:W1 train 2D:eager'" in message
    )
    assert "ValueError: unknown model 'no_such_model'" in message  # the child's stderr


def test_rounds_must_be_positive_and_need_isolate(capsys):
    bench = _bench()
    assert bench.build_parser().parse_args(["--rounds", "1"]).rounds == 1
    with pytest.raises(SystemExit):
        bench.build_parser().parse_args(["--rounds", "0"])
    assert "must be at least 1, got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="add --isolate"):
        bench.main(["--smoke", "--rounds", "2"])
