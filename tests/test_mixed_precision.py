"""Channels-last memory format, bfloat16 autocast (CPU, and CUDA where present), and the
losses and sliding-window inference under reduced precision.

Every model family is covered in 2D and 3D: the U-Net family, Attention U-Net (also its
conv-mapped form with deep supervision and fusion), UNet++ and Attention UNet++, and
RAUNet (a timm ResNet18 encoder in 2D, the native one in 3D; no weights, no network).
"""

import copy
from collections.abc import Callable

import pytest
import torch
from _reference import (
    CHANNELS_LAST,
    REORDERED_TOL,
    TINY_CHANNELS,
    output_tensors,
    randomise_norms,
)
from torch import nn
from torch.utils.hooks import RemovableHandle

from attnunet import (
    AgResUNet,
    AgUNet,
    AttentionUNet,
    AttentionUNetPlusPlus,
    RAUNet,
    ResUNet,
    UNet,
    UNetPlusPlus,
    create_model,
)
from attnunet.inference import sliding_window_inference
from attnunet.losses import (
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    IoULoss,
    RAUNetLoss,
    bce_loss,
    ce_loss,
    deep_supervision_loss,
    dice_ce_loss,
    dice_loss,
    iou_loss,
    raunet_loss,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SIZES = {2: (32, 32), 3: (16, 16, 16)}

FAMILIES: dict[str, Callable[[int], nn.Module]] = {
    "unet": lambda d: UNet(d, 1, 2, channels=TINY_CHANNELS),
    "res_unet": lambda d: ResUNet(d, 1, 2, channels=TINY_CHANNELS),
    "ag_unet": lambda d: AgUNet(d, 1, 2, channels=TINY_CHANNELS),
    "ag_res_unet": lambda d: AgResUNet(d, 1, 2, channels=TINY_CHANNELS),
    "attention_unet": lambda d: AttentionUNet(d, 1, 2, channels=TINY_CHANNELS),
    "attention_unet_conv_mapped_ds": lambda d: AttentionUNet(
        d, 1, 2, channels=TINY_CHANNELS, conv_mapping=True, deep_supervision=True, ds_fusion=True
    ),
    "unet_plus_plus": lambda d: UNetPlusPlus(d, 1, 2, channels=TINY_CHANNELS),
    "attention_unet_plus_plus": lambda d: AttentionUNetPlusPlus(d, 1, 2, channels=TINY_CHANNELS),
    "raunet": lambda d: RAUNet(d, 1, 2, encoder="resnet18"),
}
# models whose forward_with_attention returns maps (RAUNet: its AAMs' channel weights)
GATED = {
    "ag_unet",
    "ag_res_unet",
    "attention_unet",
    "attention_unet_conv_mapped_ds",
    "attention_unet_plus_plus",
    "raunet",
}
CASES = [(name, dims) for dims in (2, 3) for name in FAMILIES]
IDS = [f"{name}-{dims}d" for name, dims in CASES]


# ----------------------------------------------------------------------------- helpers
def _build(name: str, dims: int) -> nn.Module:
    if name == "raunet" and dims == 2:
        pytest.importorskip("timm")
    torch.manual_seed(0)
    return randomise_norms(FAMILIES[name](dims))


def _input(name: str, dims: int, batch: int = 2) -> torch.Tensor:
    size = SIZES[dims]
    if name == "raunet":  # stride 32: its deepest batch norm sees 4 (2D) or 1 (3D) voxels
        size = (64, 64) if dims == 2 else (32, 32, 32)  # per image, which rounding feels
    return torch.randn(batch, 1, *size, generator=torch.Generator().manual_seed(2))


def _target(x: torch.Tensor) -> torch.Tensor:
    return torch.randint(
        0, 2, (x.shape[0], *x.shape[2:]), generator=torch.Generator().manual_seed(3)
    )


def _loss(output: object, target: torch.Tensor) -> torch.Tensor:
    if isinstance(output, list):
        return DeepSupervisionLoss(DiceCELoss())(output, target)
    assert isinstance(output, torch.Tensor)
    return DiceCELoss()(output, target)


def _train_step(
    model: nn.Module, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor, list[torch.Tensor], dict[str, torch.Tensor]]:
    """One train-mode forward and backward: ``(loss, outputs, gradients)``."""
    model.train().zero_grad(set_to_none=True)
    output = model(x)
    loss = _loss(output, target)
    loss.backward()
    grads = {}
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        grads[key] = p.grad.detach().clone()
    return loss.detach(), [t.detach() for t in output_tensors(output)], grads


def _first_conv(model: nn.Module) -> nn.Module:
    """The first convolution whose weight layout tells the memory formats apart (more
    than one input channel, a kernel larger than 1)."""
    return next(
        m
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Conv3d)) and m.in_channels > 1 and max(m.kernel_size) > 1
    )


def _capture(module: nn.Module) -> tuple[list[torch.Tensor], RemovableHandle]:
    """Record the module's outputs; remove the returned handle to stop."""
    seen: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda mod, args, out: seen.append(out))
    return seen, handle


def _assert_bf16_close(actual: torch.Tensor, expected: torch.Tensor, what: str = "") -> None:
    """``actual`` (reduced precision) is a faithful rounding of the float32 ``expected``:
    finite; off by at most 5 % of the output range plus four bfloat16 steps (bf16 keeps 8
    significant bits, which matters for nearly constant maps such as an untrained gate's
    ~0.5); and, where the values spread over many bf16 steps (rounding then cannot
    dominate), correlated above 0.99. Random, shuffled or shifted values fail."""
    assert actual.shape == expected.shape, what
    a, e = actual.detach().double().flatten(), expected.detach().double().flatten()
    assert torch.isfinite(a).all(), what
    spread = float(e.max() - e.min())
    step = 2.0**-8 * float(e.abs().max())
    err = float((a - e).abs().max())
    assert err <= 0.05 * spread + 4 * step + 1e-6, (
        f"{what}: max error {err:.3g}, range {spread:.3g}, bf16 step {step:.3g}"
    )
    if spread > 128 * step:
        corr = float(torch.corrcoef(torch.stack([a, e]))[0, 1])
        assert corr > 0.99, f"{what}: correlation {corr:.5f}"


def _assert_close_within_noise(
    got: torch.Tensor, want: torch.Tensor, exact: torch.Tensor, what: str
) -> None:
    """``got`` is as close to the float64 result ``exact`` as the float32 ``want`` is, up
    to 1e-4 relative, 1e-5 absolute and ten times ``want``'s rounding noise (its largest
    distance from ``exact``): a layout bug gives errors of the size of the values."""
    noise = float((want.double() - exact).abs().max())
    torch.testing.assert_close(
        got.double(),
        exact,
        rtol=1e-4,
        atol=1e-5 + 10 * noise,
        msg=lambda m: f"{what} (float32 noise {noise:.2g}): {m}",
    )


def test_the_bf16_comparison_rejects_garbage():
    gen = torch.Generator().manual_seed(0)
    expected = torch.randn(2, 3, 16, 16, generator=gen)
    _assert_bf16_close(expected.bfloat16(), expected)
    for garbage in (
        torch.rand(expected.shape, generator=gen) * 6 - 3,  # random, same range
        expected.flatten()[torch.randperm(expected.numel(), generator=gen)].view_as(expected),
        expected + 0.1 * (expected.max() - expected.min()),  # shifted by 10 % of the range
    ):
        with pytest.raises(AssertionError):
            _assert_bf16_close(garbage.bfloat16(), expected)


# ----------------------------------------------------------------------------- channels-last
@pytest.mark.parametrize("how", ["weights", "auto"])
@pytest.mark.parametrize(("name", "dims"), CASES, ids=IDS)
def test_channels_last_matches_contiguous(name, dims, how):
    """Channels-last activations, from channels-last weights (``to_channels_last()``) or
    from the model's own ``channels_last="auto"`` on the CPU, give the values of the
    default layout (``set_channels_last("off")``, contiguous weights)."""
    fmt = CHANNELS_LAST[dims]
    model = _build(name, dims).set_channels_last("off")
    twin = copy.deepcopy(model)
    conv = _first_conv(twin)
    if how == "weights":
        assert twin.to_channels_last() is twin
        assert conv.weight.is_contiguous(memory_format=fmt)
    else:
        assert twin.set_channels_last("auto") is twin  # what every model starts with
        assert twin.channels_last == "auto" == _build(name, dims).channels_last
        assert not conv.weight.is_contiguous(memory_format=fmt)  # the weights stay put
    assert not _first_conv(model).weight.is_contiguous(memory_format=fmt)
    x = _input(name, dims)

    # eval: same values; the convolutions really run channels-last
    seen, handle = _capture(conv)
    seen_ref, handle_ref = _capture(_first_conv(model))
    with torch.no_grad():
        expected = model.eval()(x)
        actual = twin.eval()(x)
    handle.remove()
    handle_ref.remove()
    assert seen[0].is_contiguous(memory_format=fmt)
    assert not seen_ref[0].is_contiguous(memory_format=fmt)
    assert output_tensors(actual)[0].shape == output_tensors(expected)[0].shape
    for got, want in zip(output_tensors(actual), output_tensors(expected), strict=True):
        torch.testing.assert_close(got, want, **REORDERED_TOL)
        if how == "auto":  # a converted input gives outputs in the default layout
            assert got.is_contiguous()

    # train mode (batch statistics), float32: outputs and loss. Batch norm over few values
    # amplifies rounding (RAUNet's deepest features see 1-4 voxels per image), so both
    # layouts are held to a float64 run, with a tolerance that grows with the contiguous
    # model's own rounding noise.
    target = _target(x)
    exact = copy.deepcopy(model).double()
    twin64 = copy.deepcopy(exact)
    if how == "weights":
        twin64.to_channels_last()
    else:  # "auto" leaves float64 alone (oneDNN has no float64 kernels): "on" converts
        twin64.set_channels_last("on")
    loss, outputs, grads = _train_step(model, x, target)
    c_loss, c_outputs, c_grads = _train_step(twin, x, target)
    e_loss, e_outputs, e_grads = _train_step(exact, x.double(), target)
    _assert_close_within_noise(c_loss, loss, e_loss, "loss")
    for k, (got, want, ref) in enumerate(zip(c_outputs, outputs, e_outputs, strict=True)):
        _assert_close_within_noise(got, want, ref, f"output {k}")
    for key in grads:
        assert torch.isfinite(c_grads[key]).all(), key

    # Gradients are compared in float64: in float32 a ReLU input within rounding of 0 can
    # fall on different sides in the two layouts (channels-last batch norm sums in another
    # order), and that one voxel moves a whole layer's gradient by ~1 %.
    seen, handle = _capture(_first_conv(twin64))
    _, _, c_grads = _train_step(twin64, x.double(), target)
    handle.remove()
    if dims == 2:  # PyTorch's float64 3D convolution returns the default layout
        assert seen[0].is_contiguous(memory_format=fmt)
    scale = max(float(g.abs().max()) for g in e_grads.values())  # conv biases before a
    for key, grad in e_grads.items():  # batch norm have gradients of pure rounding noise
        torch.testing.assert_close(c_grads[key], grad, rtol=1e-7, atol=1e-10 * scale, msg=key)


def test_to_channels_last_leaves_1d_models_alone():
    model = UNet(1, 1, 2, channels=TINY_CHANNELS)
    weights = [p.data_ptr() for p in model.parameters()]
    assert model.to_channels_last() is model
    assert [p.data_ptr() for p in model.parameters()] == weights


# ----------------------------------------------------------------------------- bf16 autocast
def _autocast_eval_check(model: nn.Module, x: torch.Tensor, name: str, device: str, dtype):
    """Eval mode: autocast output and attention maps are close to float32's."""
    model.eval()
    with torch.no_grad():
        expected, maps = model.forward_with_attention(x)  # type: ignore[operator]
        with torch.autocast(device, dtype=dtype):
            actual, low_maps = model.forward_with_attention(x)  # type: ignore[operator]
    got, want = output_tensors(actual), output_tensors(expected)
    assert len(got) == len(want)
    for k, (a, e) in enumerate(zip(got, want, strict=True)):
        assert a.dtype == dtype, f"output {k} is {a.dtype}"
        _assert_bf16_close(a, e, f"{name} output {k}")
    assert len(low_maps) == len(maps)
    assert bool(maps) == (name in GATED)
    for k, (a, e) in enumerate(zip(low_maps, maps, strict=True)):
        _assert_bf16_close(a, e, f"{name} attention map {k}")


def _autocast_train_check(model: nn.Module, x: torch.Tensor, device: str, dtype) -> None:
    """Train mode: forward under autocast, backward outside; finite float32 loss and
    float32 gradients."""
    model.train().zero_grad(set_to_none=True)
    target = _target(x).to(x.device)
    with torch.autocast(device, dtype=dtype):
        output = model(x)
        loss = _loss(output, target)
    assert all(t.dtype == dtype for t in output_tensors(output))
    assert loss.dtype == torch.float32  # the losses compute in float32
    assert torch.isfinite(loss)
    loss.backward()
    for key, p in model.named_parameters():
        assert p.grad is not None, key
        assert p.grad.dtype == torch.float32, key
        assert torch.isfinite(p.grad).all(), key
    assert any(bool((p.grad != 0).any()) for p in model.parameters() if p.grad is not None)


@pytest.mark.parametrize(("name", "dims"), CASES, ids=IDS)
def test_bf16_autocast_on_cpu(name, dims):
    model = _build(name, dims)
    x = _input(name, dims)
    _autocast_eval_check(model, x, name, "cpu", torch.bfloat16)
    _autocast_train_check(model, x, "cpu", torch.bfloat16)


@pytest.mark.parametrize(("name", "dims"), CASES, ids=IDS)
def test_bf16_autocast_with_channels_last(name, dims):
    fmt = CHANNELS_LAST[dims]
    model = _build(name, dims).to_channels_last()
    x = _input(name, dims)
    seen, handle = _capture(_first_conv(model))
    _autocast_eval_check(model, x, name, "cpu", torch.bfloat16)
    handle.remove()
    assert seen[-1].dtype == torch.bfloat16
    assert seen[-1].is_contiguous(memory_format=fmt)
    _autocast_train_check(model, x, "cpu", torch.bfloat16)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize(("name", "dims"), CASES, ids=IDS)
def test_autocast_on_cuda(name, dims, dtype):
    if dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU has no bfloat16")
    model = _build(name, dims).cuda()
    x = _input(name, dims).cuda()
    _autocast_eval_check(model, x, name, "cuda", dtype)
    _autocast_train_check(model, x, "cuda", dtype)
    model = model.to_channels_last()
    _autocast_eval_check(model, x, name, "cuda", dtype)
    _autocast_train_check(model, x, "cuda", dtype)


# ----------------------------------------------------------------------------- losses
def _logits(channels: int, dims: int = 2, batch: int = 2) -> torch.Tensor:
    gen = torch.Generator().manual_seed(4)
    size = (12, 10, 8)[:dims]
    return (3 * torch.randn(batch, channels, *size, generator=gen)).bfloat16()


def _labels(logits: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(5)
    high = max(logits.shape[1], 2)
    return torch.randint(0, high, (logits.shape[0], *logits.shape[2:]), generator=gen)


WEIGHTS = [0.3, 1.7, 1.1]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# (name, loss, channel counts it is tried with)
LOSSES: list[tuple[str, LossFn, tuple[int, ...]]] = [
    ("DiceLoss", DiceLoss(), (1, 3)),
    ("DiceLoss-weighted-squared", DiceLoss(class_weights=WEIGHTS, squared=True), (3,)),
    ("IoULoss", IoULoss(include_background=False), (1, 3)),
    ("DiceCELoss", DiceCELoss(), (1, 3)),
    ("DiceCELoss-weighted-batch", DiceCELoss(class_weights=WEIGHTS, batch=True), (3,)),
    ("RAUNetLoss", RAUNetLoss(), (1, 3)),
    ("dice_loss", dice_loss, (1, 3)),
    ("iou_loss", iou_loss, (1, 3)),
    ("dice_ce_loss", dice_ce_loss, (1, 3)),
    ("ce_loss", ce_loss, (3,)),  # softmax cross-entropy needs two channels or more
    ("ce_loss-weighted", lambda x, t: ce_loss(x, t, class_weights=WEIGHTS), (3,)),
    ("bce_loss", bce_loss, (1, 3)),
    ("raunet_loss", raunet_loss, (1, 3)),
]
LOSS_CASES = [(name, fn, c) for name, fn, channels in LOSSES for c in channels]


@pytest.mark.parametrize(
    ("name", "loss_fn", "channels"), LOSS_CASES, ids=[f"{n}-{c}ch" for n, _, c in LOSS_CASES]
)
def test_losses_compute_bf16_logits_in_float32(name, loss_fn, channels):
    """A bf16 logits tensor gives the loss of its float32 cast (the losses compute in
    float32), in or out of an autocast region, and a finite bf16 gradient."""
    logits = _logits(channels)
    labels = _labels(logits) if channels > 1 else _labels(logits).clamp(max=1)
    targets = [labels]
    if channels > 1 and "raunet" not in name.lower():  # soft targets too
        soft = torch.softmax(
            torch.randn(logits.shape, generator=torch.Generator().manual_seed(7)), 1
        )
        targets.append(soft)
    for target in targets:
        expected = loss_fn(logits.float(), target)
        x = logits.clone().requires_grad_(True)
        low = loss_fn(x, target)
        assert low.dtype == torch.float32
        torch.testing.assert_close(low, expected, rtol=0, atol=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # inside the region as well
            torch.testing.assert_close(loss_fn(x, target), expected, rtol=0, atol=1e-6)
        if target.is_floating_point():  # a bf16 soft target is read in float32 too
            torch.testing.assert_close(
                loss_fn(x, target.bfloat16()),
                loss_fn(logits.float(), target.bfloat16().float()),
                rtol=0,
                atol=1e-6,
            )
        low.backward()
        assert x.grad is not None and x.grad.dtype == torch.bfloat16
        assert torch.isfinite(x.grad.float()).all()


def test_deep_supervision_loss_on_bf16_outputs():
    outputs = [_logits(3), _logits(3)[..., ::2, ::2].contiguous()]
    target = _labels(outputs[0])
    expected = deep_supervision_loss(DiceCELoss(), [o.float() for o in outputs], target)
    actual = DeepSupervisionLoss(DiceCELoss())(outputs, target)
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------- inference
@pytest.mark.parametrize("roi", [16, 64], ids=["blended", "single-window"])
def test_sliding_window_inference_under_autocast(roi):
    """Under autocast the model returns bf16 logits: windows are blended in float32 and
    the result comes back in the predictor's dtype (bf16), close to the float32 run."""
    model = _build("unet", 2).eval()
    image = torch.randn(1, 1, 40, 36, generator=torch.Generator().manual_seed(6))
    with torch.inference_mode():
        expected = sliding_window_inference(image, model, roi_size=roi, overlap=0.5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            actual = sliding_window_inference(image, model, roi_size=roi, overlap=0.5)
            as_float = sliding_window_inference(
                image, lambda w: model(w).float(), roi_size=roi, overlap=0.5
            )
    assert expected.dtype == torch.float32
    assert actual.dtype == torch.bfloat16
    assert as_float.dtype == torch.float32
    assert actual.shape == expected.shape == (1, 2, 40, 36)
    _assert_bf16_close(actual, expected, "sliding window (bf16)")
    _assert_bf16_close(as_float, expected, "sliding window (cast to float32)")
    torch.testing.assert_close(actual, as_float.bfloat16(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("name", "dims"), [("ag_unet", 2), ("res_unet", 3), ("attention_unet_plus_plus", 2)]
)
def test_channels_last_decoders_convolve_per_part(name, dims, monkeypatch):
    """With channels-last activations each decoder stage convolves the skip and the
    up-sampled feature separately (no interleaving concatenation): every stage takes that
    path, and no torch.cat of decoder inputs runs; the default layout keeps the
    concatenation. Equality with the default layout is tested above."""
    from attnunet.models import unet as unet_module
    from attnunet.models import unetpp as unetpp_module

    torch.manual_seed(0)
    model = create_model(name, spatial_dims=dims, channels=(4, 8, 16)).train()
    stages = [
        m
        for m in model.modules()
        if isinstance(m, (unet_module.DecoderLevel, unetpp_module.NestedNode))
    ]
    assert stages and all(m.by_parts for m in stages)
    calls: list[str] = []
    for cls in (unet_module.DecoderLevel, unetpp_module.NestedNode):
        original = cls._forward_by_parts
        monkeypatch.setattr(
            cls,
            "_forward_by_parts",
            lambda self, *a, _o=original: calls.append("parts") or _o(self, *a),
        )
    x = torch.randn(2, 1, *([16] * dims))
    model.set_channels_last("off")(x)
    assert calls == []  # default layout: the concatenation
    model.set_channels_last("auto")(x)  # the default: channels-last on the CPU
    assert len(calls) == len(stages)
    calls.clear()
    model.set_channels_last("off").to_channels_last()
    model(x).sum().backward()
    assert len(calls) == len(stages)
