"""The training engine's recipes and speed switches (issue 17): the nnU-Net recipe against a
hand-computed SGD step and schedule, exact resumption with it (and with fp16's gradient
scaler), autocast, channels-last, compile, checkpointing, the device, and the options of
``attnunet train`` and ``attnunet compare`` that set them."""

import copy
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from _reference import inductor_problem
from PIL import Image
from torch import nn

from attnunet import AttentionUNet, UNet
from attnunet.cli import main
from attnunet.losses import DiceCELoss
from attnunet.training import (
    CHECKPOINT,
    PatchSampler,
    TrainSettings,
    Volume,
    batch_seed,
    recipe_changes,
    train,
)
from attnunet.training.loop import resolve_device, resolve_settings, use_channels_last
from attnunet.training.settings import resolve_precision


def _volume(shape=(40, 48), seed=0, name="v"):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.int64)
    mask[8:24, 10:30] = 1
    image = (mask + 0.3 * rng.standard_normal(shape)).astype(np.float32)[None]
    return Volume(image, mask, f"{name}{seed}")


DATA = [_volume(seed=0), _volume(seed=1)]
VAL = [_volume(seed=2)]


def _settings(**kw):
    base = dict(patch_size=(16, 16), batch_size=2, epochs=2, steps_per_epoch=3, augment="light")
    return TrainSettings(**{**base, **kw})


def _unet(**kw):
    torch.manual_seed(0)
    return UNet(spatial_dims=2, in_channels=1, num_classes=2, channels=(4, 8), **kw)


def _same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(
        torch.equal(x, y)
        for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )


# ------------------------------------------------------------------------- the recipes


def test_recipes_fill_their_learning_rate_and_weight_decay():
    assert (TrainSettings().learning_rate, TrainSettings().weight_decay) == (2e-3, 1e-5)
    nn_unet = TrainSettings(recipe="nnunet")
    assert (nn_unet.learning_rate, nn_unet.weight_decay) == (1e-2, 3e-5)
    own = TrainSettings(recipe="nnunet", learning_rate=0.05, weight_decay=0.0)
    assert (own.learning_rate, own.weight_decay) == (0.05, 0.0)
    assert TrainSettings.from_dict(own.to_dict()) == own
    for bad in (
        {"recipe": "sgd"},
        {"precision": "fp64"},
        {"channels_last": "yes"},
        {"compile": "true"},
        {"weight_decay": -1.0},
    ):
        with pytest.raises(ValueError):
            TrainSettings(**bad)


def test_nnunet_recipe_first_step_is_nesterov_sgd_with_weight_decay_clip_and_ds_weights():
    """One step by hand: the deep-supervision loss weighted 2/3, 1/3, 0 (nnU-Net's halving
    with the coarsest output off) on targets resized by F.interpolate, gradients clipped to
    norm 12, then SGD's first Nesterov step p - lr * (1 + 0.99) * (g + wd * p)."""
    settings = _settings(
        recipe="nnunet",
        augment="none",
        epochs=1,
        steps_per_epoch=1,
        channels_last="off",
        learning_rate=0.05,
        weight_decay=1e-3,
    )
    torch.manual_seed(0)
    model = UNet(2, 1, 2, channels=(4, 8, 16, 32), deep_supervision=True)
    start = copy.deepcopy(model)
    losses = []
    train(model, DATA, [], settings, progress=False, on_step=lambda e, s, v: losses.append(v))

    sampler = PatchSampler(DATA, settings.patch_size, settings.batch_size)
    # the engine's first batch: step 0 of rank 0 (attnunet.training.loader's contract)
    images, masks = sampler.sample(torch.Generator().manual_seed(batch_seed(settings.seed, 0, 0)))
    outputs = start.train()(images)
    assert len(outputs) == 3
    base = DiceCELoss(activation="softmax", include_background=False)
    weights = [1.0 / 1.5, 0.5 / 1.5, 0.0]
    loss = sum(
        w
        * base(
            o, F.interpolate(masks[:, None].float(), o.shape[2:], mode="nearest-exact")[:, 0].long()
        )
        for w, o in zip(weights, outputs, strict=True)
    )
    assert losses[0] == pytest.approx(float(loss.detach()), abs=1e-6)
    loss.backward()
    grads = [p.grad for p in start.parameters()]
    norm = math.sqrt(sum(float((g**2).sum()) for g in grads))
    scale = min(1.0, 12.0 / (norm + 1e-6))
    for p0, g, p1 in zip(start.parameters(), grads, model.parameters(), strict=True):
        expected = p0.detach() - 0.05 * 1.99 * (scale * g + 1e-3 * p0.detach())
        torch.testing.assert_close(p1.detach(), expected, atol=2e-6, rtol=1e-5)


def test_nnunet_learning_rate_decays_polynomially_per_epoch(tmp_path):
    settings = _settings(recipe="nnunet", epochs=4, steps_per_epoch=1)
    result = train(_unet(), DATA, [], settings, tmp_path, progress=False)
    # epoch k + 1 uses 1e-2 * (1 - k / 4) ** 0.9: 1e-2, 0.75 ** 0.9 = 0.771890..., ...
    by_hand = [1e-2, 1e-2 * 0.75**0.9, 1e-2 * 0.5**0.9, 1e-2 * 0.25**0.9]
    assert by_hand[1] == pytest.approx(7.71890e-3, abs=1e-8)
    assert [h.learning_rate for h in result.history] == pytest.approx(by_hand, rel=1e-12)
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    group = state["optimizer"]["param_groups"][0]
    assert (group["momentum"], group["nesterov"], group["weight_decay"]) == (0.99, True, 3e-5)
    assert group["initial_lr"] == 1e-2 and group["lr"] == pytest.approx(by_hand[-1])
    assert state["learning_rate"] == pytest.approx(by_hand[-1])
    # Adam keeps its rate
    adam = train(_unet(), DATA, [], _settings(epochs=2, steps_per_epoch=1), progress=False)
    assert [h.learning_rate for h in adam.history] == [2e-3, 2e-3]


class _Interrupt(Exception):
    pass


def _interrupt_at(epoch):
    def on_step(e, step, loss):
        if e == epoch:
            raise _Interrupt

    return on_step


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_resume_with_the_nnunet_recipe_is_exact(tmp_path, precision):
    """Two epochs in one go against one epoch, an interruption and a resumed second epoch:
    the same weights bit for bit, and the same gradient-scaler state for fp16."""
    settings = _settings(recipe="nnunet", precision=precision, epochs=2)
    whole = train(_unet(), DATA, VAL, settings, tmp_path / "whole", progress=False)
    with pytest.raises(_Interrupt):
        train(
            _unet(),
            DATA,
            VAL,
            settings,
            tmp_path / "parts",
            progress=False,
            on_step=_interrupt_at(2),
        )
    resumed = train(_unet(), DATA, VAL, settings, tmp_path / "parts", resume=True, progress=False)
    assert [h.epoch for h in resumed.history] == [1, 2]
    assert _same_weights(whole.model, resumed.model)
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=False)
    b = torch.load(tmp_path / "parts" / CHECKPOINT, weights_only=False)
    assert a["scaler"] == b["scaler"]
    assert a["learning_rate"] == b["learning_rate"] == pytest.approx(1e-2 * 0.5**0.9)
    if precision == "fp16":  # the scaler ran and its state came back on resuming
        assert a["scaler"]["scale"] > 0 and a["scaler"]["_growth_tracker"] >= 0
    else:
        assert a["scaler"] == {}


def test_a_checkpoint_without_the_new_keys_still_resumes_exactly(tmp_path):
    settings = _settings(epochs=2)
    whole = train(_unet(), DATA, [], settings, tmp_path / "whole", progress=False)
    train(_unet(), DATA, [], _settings(epochs=1), tmp_path / "old", progress=False)
    path = tmp_path / "old" / CHECKPOINT
    state = torch.load(path, weights_only=False)
    for key in ("scaler", "learning_rate", "device"):
        del state[key]
    for key in ("recipe", "precision", "channels_last", "compile", "checkpointing"):
        del state["recipe"][key]
    for h in state["history"]:
        del h["learning_rate"]
    torch.save(state, path)
    resumed = train(_unet(), DATA, [], settings, tmp_path / "old", resume=True, progress=False)
    assert _same_weights(whole.model, resumed.model)
    assert math.isnan(resumed.history[0].learning_rate)


def test_resume_refuses_another_precision_or_recipe_but_not_a_speed_switch(tmp_path):
    train(_unet(), DATA, [], _settings(epochs=1, channels_last="off"), tmp_path, progress=False)
    for changed in ({"precision": "bf16"}, {"recipe": "nnunet"}, {"weight_decay": 0.0}):
        with pytest.raises(ValueError, match="another recipe"):
            train(_unet(), DATA, [], _settings(**changed), tmp_path, resume=True, progress=False)
    now = _settings(channels_last="on", checkpointing=True)
    result = train(_unet(), DATA, [], now, tmp_path, resume=True, progress=False)
    assert [h.epoch for h in result.history] == [1, 2]
    saved = {**now.to_dict(), "channels_last": "off", "compile": True, "checkpointing": False}
    assert recipe_changes(saved, now) == []
    assert recipe_changes({**saved, "precision": "fp16", "learning_rate": 1.0}, now) == [
        "learning_rate",
        "precision",
    ]


# ------------------------------------------------------------------ precision and device


def _head_dtypes(model):
    seen = []
    model.head.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    return seen


def test_bf16_autocast_on_cpu_trains_with_float32_weights():
    model = _unet()
    seen = _head_dtypes(model)
    result = train(model, DATA, VAL, _settings(precision="bf16", epochs=1), progress=False)
    assert seen and all(d == torch.bfloat16 for d in seen)  # training and validation
    assert math.isfinite(result.history[0].train_loss)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert result.settings is not None and result.settings.precision == "bf16"


def test_precision_auto_is_fp32_on_cpu_and_bf16_on_a_cuda_gpu_with_bf16(monkeypatch):
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("fp16", "cpu") == "fp16"
    model = _unet()
    seen = _head_dtypes(model)
    result = train(model, DATA, [], _settings(epochs=1, steps_per_epoch=1), progress=False)
    assert result.settings is not None and result.settings.precision == "fp32"
    assert seen == [torch.float32]
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", "cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_precision("auto", "cuda:1") == "bf16"
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_device("auto") == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert resolve_precision("auto", "cuda") == "fp32"


def test_the_checkpoint_and_the_best_model_record_the_resolved_switches(tmp_path):
    train(_unet(), DATA, VAL, _settings(epochs=1), tmp_path, progress=False, device="auto")
    state = torch.load(tmp_path / CHECKPOINT, weights_only=False)
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert state["device"] == expected
    recipe = state["recipe"]
    assert (recipe["precision"], recipe["channels_last"]) == (
        resolve_precision("auto", expected),
        "on",
    )
    assert (recipe["compile"], recipe["checkpointing"], recipe["recipe"]) == (False, False, "adam")
    meta = json.loads((tmp_path / "best" / "config.json").read_text())["metadata"]
    assert meta["device"] == expected and meta["settings"]["channels_last"] == "on"


# ------------------------------------------------------------ layout, compile, checkpointing


def test_channels_last_rule():
    unet2d, attention3d = _unet(), AttentionUNet(3, 1, 2, channels=(4, 8))
    assert use_channels_last(unet2d, "auto", 2) and use_channels_last(attention3d, "auto", 3)
    assert not use_channels_last(unet2d, "off", 2)
    plain = nn.Sequential(nn.Conv2d(1, 2, 3))
    assert not use_channels_last(plain, "auto", 2) and use_channels_last(plain, "on", 2)
    assert not use_channels_last(UNet(1, 1, 2, channels=(4, 8)), "on", 1)
    assert resolve_settings(TrainSettings(), plain, "cpu").channels_last == "off"

    def weight(m):  # a 3 x 3 convolution of several channels (others are contiguous both ways)
        return next(
            p for p in m.parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] == 3
        )

    on = train(_unet(), DATA, [], _settings(epochs=1, steps_per_epoch=1), progress=False)
    assert weight(on.model).is_contiguous(memory_format=torch.channels_last)
    assert not weight(on.model).is_contiguous()
    off = train(
        _unet(),
        DATA,
        [],
        _settings(epochs=1, steps_per_epoch=1, channels_last="off"),
        progress=False,
    )
    assert weight(off.model).is_contiguous()
    # the layout changes the arithmetic only by rounding
    for a, b in zip(on.model.parameters(), off.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_checkpointing_reaches_the_model_and_needs_set_checkpointing():
    model = _unet()
    plain_run = train(_unet(), DATA, [], _settings(epochs=1, channels_last="off"), progress=False)
    ckpt_run = train(
        model,
        DATA,
        [],
        _settings(epochs=1, checkpointing=True, channels_last="off"),
        progress=False,
    )
    assert model.checkpointing is True
    # the recomputation repeats the forward pass (its first convolution sums two parts)
    for a, b in zip(plain_run.model.parameters(), ckpt_run.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    plain = nn.Sequential(nn.Conv2d(1, 2, 1))
    with pytest.raises(ValueError, match="set_checkpointing"):
        train(plain, DATA, [], _settings(checkpointing=True), progress=False)


def test_the_engine_waits_a_bounded_time_for_each_batch(monkeypatch):
    """A hung loader worker cannot stall a run for ever: the engine's loader gets the
    module's timeout, read when the run starts (the loader's own tests check that it
    fires)."""
    from attnunet.training import loader, loop

    seen = []

    class Recording(loader.PatchLoader):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("timeout"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(loop, "PatchLoader", Recording)
    assert 60 <= loader.BATCH_TIMEOUT_S <= 3600
    train(_unet(), DATA, [], _settings(epochs=1, steps_per_epoch=1), progress=False)
    monkeypatch.setattr(loader, "BATCH_TIMEOUT_S", 1234.0)  # a user raising it is heard
    train(_unet(), DATA, [], _settings(epochs=1, steps_per_epoch=1), progress=False)
    assert seen == [600.0, 1234.0]


def test_compile_trains_through_the_compiled_model():
    reason = inductor_problem()  # skip only where inductor cannot compile at all
    if reason is not None:
        pytest.skip(reason)
    torch._dynamo.reset()
    compiling = []
    model = _unet()
    model.head.register_forward_hook(
        lambda m, i, o: compiling.append(torch.compiler.is_compiling())
    )
    eager = train(_unet(), DATA, [], _settings(epochs=1, steps_per_epoch=1), progress=False)
    try:
        compiled = train(
            model, DATA, [], _settings(epochs=1, steps_per_epoch=1, compile=True), progress=False
        )
    finally:
        torch._dynamo.reset()
    assert True in compiling
    assert compiled.history[0].train_loss == pytest.approx(eager.history[0].train_loss, abs=1e-4)
    for a, b in zip(compiled.model.parameters(), eager.model.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-3)


# ------------------------------------------------------------------------------- the CLI


def _folder(root, n=4, size=(32, 32)):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, dtype=np.uint8)
        mask[6 + i : 20 + i, 8:24] = 1
        image = (mask * 150 + rng.integers(0, 80, size)).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"case{i}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"case{i}.png")
    return root


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_options_reach_the_settings_and_resume_checks_them(tmp_path, capsys):
    data, out = _folder(tmp_path / "data"), tmp_path / "run"
    base = [
        "train",
        "--images",
        data,
        "--out",
        out,
        "--model",
        "unet",
        "--model-arg",
        "channels=[4,8]",
        "--steps-per-epoch",
        "2",
        "--patch-size",
        "16,16",
        "--quiet",
    ]
    code, _, err = _run(
        [
            *base,
            "--epochs",
            "1",
            "--recipe",
            "nnunet",
            "--precision",
            "bf16",
            "--channels-last",
            "off",
            "--checkpointing",
            "--weight-decay",
            "1e-4",
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads((out / "training.json").read_text())
    s = record["settings"]
    assert (s["recipe"], s["learning_rate"], s["weight_decay"]) == ("nnunet", 1e-2, 1e-4)
    assert (s["precision"], s["channels_last"], s["checkpointing"], s["compile"]) == (
        "bf16",
        "off",
        True,
        False,
    )
    assert record["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    state = torch.load(out / CHECKPOINT, weights_only=False)
    assert state["optimizer"]["param_groups"][0]["nesterov"] is True
    assert state["recipe"]["precision"] == "bf16"
    resume = [*base, "--epochs", "2", "--recipe", "nnunet", "--weight-decay", "1e-4", "--resume"]
    code, _, err = _run([*resume, "--precision", "fp32"], capsys)
    assert code == 2 and "precision" in err
    code, _, err = _run([*resume, "--precision", "bf16", "--channels-last", "on"], capsys)
    assert code == 0, err
    assert len(json.loads((out / "history.json").read_text())) == 2
    # predict and evaluate take --precision (default: the training's)
    code, _, err = _run(
        [
            "predict",
            "--model",
            out,
            "--images",
            data / "images",
            "--out",
            tmp_path / "pred",
            "--precision",
            "fp32",
            "--device",
            "cpu",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert len(list((tmp_path / "pred").iterdir())) == 4


def test_compare_honours_device_and_records_the_resolved_switches(tmp_path, capsys):
    out = tmp_path / "cmp"
    args = [
        "compare",
        "--models",
        "unet",
        "--channels",
        "4,8",
        "--epochs",
        "1",
        "--steps-per-epoch",
        "1",
        "--batch-size",
        "2",
        "--quiet",
        "--out",
        out,
    ]
    if not torch.cuda.is_available():  # it used to train on the CPU whatever --device said
        code, _, err = _run([*args, "--device", "cuda"], capsys)
        assert code == 2 and "--device cuda" in err
        assert not (out / "results.json").exists()
    code, printed, err = _run([*args, "--device", "cpu"], capsys)
    assert code == 0, err
    assert "fp32 on cpu" in printed
    report = json.loads((out / "results.json").read_text())
    assert report["environment"]["device"] == "cpu"
    s = report["settings"]
    assert (s["precision"], s["channels_last"], s["recipe"], s["compile"]) == (
        "fp32",
        "on",
        "adam",
        False,
    )


def test_trained_weights_do_not_depend_on_the_number_of_workers(tmp_path):
    """The loader draws batch k from batch_seed(seed, rank, k): training in the main
    process, with one worker or with two gives the same weights bit for bit, and a run
    resumed with another worker count continues exactly."""
    settings = _settings(augment="standard")
    results = []
    for workers in (0, 1, 2):
        model = _unet()
        train(model, DATA, [], settings, progress=False, workers=workers)
        results.append(model)
    assert _same_weights(results[0], results[1]) and _same_weights(results[0], results[2])
    first = _unet()
    half = TrainSettings(**{**settings.to_dict(), "epochs": 1})
    train(first, DATA, [], half, tmp_path, progress=False, workers=2)
    train(first, DATA, [], settings, tmp_path, resume=True, progress=False, workers=0)
    assert _same_weights(first, results[0])


def test_default_workers_are_zero_on_the_cpu_and_from_the_cpu_count_on_a_gpu(monkeypatch):
    from attnunet.training import loop

    monkeypatch.setattr(loop, "default_workers", lambda: 5)
    assert loop._workers(None, torch.device("cpu")) == 0
    assert loop._workers(None, torch.device("cuda", 0)) == 5
    assert loop._workers(2, torch.device("cpu")) == 2


def test_inference_resolves_the_precision_for_its_own_device(tmp_path):
    """A model trained in bf16 (on a GPU, say) is evaluated in fp32 on the CPU unless
    --precision asks otherwise: bf16 and fp16 run many times slower on most CPUs."""
    from attnunet.cli._common import _load_trained
    from attnunet.models import save_pretrained

    settings = _settings(precision="bf16")
    save_pretrained(_unet(), tmp_path / "m", metadata={"settings": settings.to_dict()})
    cpu = torch.device("cpu")
    _, loaded, _ = _load_trained(tmp_path / "m", cpu)
    assert loaded.precision == "fp32"
    _, asked, _ = _load_trained(tmp_path / "m", cpu, precision="bf16")
    assert asked.precision == "bf16"


def test_batches_are_pinned_only_for_a_cuda_device(monkeypatch):
    from attnunet.training import loop

    seen = {}
    real = loop.PatchLoader

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "PatchLoader", spy)
    train(_unet(), DATA, [], _settings(epochs=1, steps_per_epoch=1), progress=False, device="cpu")
    assert seen["pin_memory"] is False and seen["workers"] == 0
