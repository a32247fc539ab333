"""What makes the models fast as shipped (no levers): channels-last activations chosen by
the model on the CPU (``set_channels_last``), instance norm through the group-norm kernel,
and the residual sum added in place. Each is checked against the plain computation it
replaces: torch's own ``InstanceNorm``, the same model in the default layout, and a
residual block that allocates its sum."""

import copy

import pytest
import torch
import torch.nn.functional as F
from _reference import CHANNELS_LAST, REORDERED_TOL
from torch import nn

from attnunet import AgResUNet, AttentionUNet, UNet, UNetPlusPlus
from attnunet.blocks import ResidualBlock
from attnunet.layers import InstanceNorm1d, InstanceNorm2d, InstanceNorm3d, get_norm, keep_layout
from attnunet.training.loop import set_layout, use_channels_last

pytestmark = pytest.mark.usefixtures("one_thread")

OURS = {1: InstanceNorm1d, 2: InstanceNorm2d, 3: InstanceNorm3d}
TORCH = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
TINY = (4, 8, 16)


# ----------------------------------------------------------------------- instance norm
def _norm_pair(dims: int, affine: bool, dtype: torch.dtype) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    ours = OURS[dims](6, affine=affine).to(dtype)
    if affine:
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
            ours.bias.uniform_(-0.5, 0.5)
    ref = TORCH[dims](6, affine=affine).to(dtype)
    ref.load_state_dict(ours.state_dict())
    return ours, ref


def _values_and_grads(norm: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.detach().clone().requires_grad_()
    y = norm(x)
    weights = torch.linspace(-1, 2, y.numel(), dtype=y.dtype).view_as(y)  # not symmetric
    (y * weights).sum().backward()
    grads = [x.grad] + [p.grad for p in norm.parameters()]
    for p in norm.parameters():
        p.grad = None
    return [y.detach(), *grads]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_instance_norm_equals_torchs(dims, affine, dtype):
    """Values and gradients (input and affine parameters) equal torch's InstanceNorm; the
    float64 case is exact to rounding, so a wrong axis or eps would show."""
    ours, ref = _norm_pair(dims, affine, dtype)
    x = 3 * torch.randn(4, 6, *([5] * dims), dtype=dtype) + 1
    tol = {"rtol": 1e-12, "atol": 1e-12} if dtype == torch.float64 else REORDERED_TOL
    for got, want in zip(_values_and_grads(ours, x), _values_and_grads(ref, x), strict=True):
        torch.testing.assert_close(got, want, **tol)


def test_instance_norm_by_hand():
    """The normalisation itself, against a hand computation (biased variance, eps 1e-5)."""
    ours, _ = _norm_pair(2, True, torch.float64)
    x = torch.randn(2, 6, 4, 3, dtype=torch.float64)
    mean = x.mean(dim=(2, 3), keepdim=True)
    var = x.var(dim=(2, 3), unbiased=False, keepdim=True)
    want = (x - mean) / torch.sqrt(var + 1e-5) * ours.weight.view(1, 6, 1, 1) + ours.bias.view(
        1, 6, 1, 1
    )
    torch.testing.assert_close(ours(x), want, rtol=1e-12, atol=1e-12)


def test_instance_norm_takes_the_group_kernel_only_where_it_should(monkeypatch):
    """The group kernel runs for contiguous batched CPU inputs without running statistics;
    channels-last inputs, running statistics and unbatched inputs take torch's path, with
    torch's values."""
    calls: list[int] = []
    original = F.group_norm
    monkeypatch.setattr(F, "group_norm", lambda *a, **k: calls.append(1) or original(*a, **k))
    ours, ref = _norm_pair(2, True, torch.float32)
    x = torch.randn(2, 6, 8, 8)
    ours(x)
    assert calls == [1]
    torch.testing.assert_close(ours(x[0]), ref(x[0]))  # unbatched (C, H, W): made a batch
    assert calls == [1, 1]
    calls.clear()
    cl = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(ours(cl), ref(cl))
    tracked = OURS[2](6, affine=True, track_running_stats=True)
    tracked_ref = TORCH[2](6, affine=True, track_running_stats=True)
    tracked_ref.load_state_dict(tracked.state_dict())
    torch.testing.assert_close(tracked(x), tracked_ref(x))
    torch.testing.assert_close(tracked.running_mean, tracked_ref.running_mean)
    torch.testing.assert_close(tracked.eval()(x), tracked_ref.eval()(x))
    assert calls == []


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_instance_norm_refuses_one_voxel_as_torch_does(dims):
    """One voxel per channel cannot be normalised over space: torch raises, and so does
    attnunet's (the group kernel alone would return the bias without a word)."""
    x = torch.randn(3, 4, *([1] * dims))
    for norm in (OURS[dims](4, affine=True), TORCH[dims](4, affine=True)):
        with pytest.raises(ValueError, match="Expected more than 1 spatial element"):
            norm(x)


def test_instance_norm_is_torchs_class_scripts_and_swaps_state_dicts():
    norm = get_norm("instance", 3, 6)
    assert isinstance(norm, nn.InstanceNorm3d) and type(norm).__name__ == "InstanceNorm3d"
    scripted = torch.jit.script(norm)
    x = torch.randn(2, 6, 3, 4, 5)
    torch.testing.assert_close(scripted(x), norm(x))
    back = nn.InstanceNorm3d(6, affine=True)
    back.load_state_dict(norm.state_dict())  # weights move both ways
    norm.load_state_dict(back.state_dict())


# ----------------------------------------------------------------------- channels-last
def _first_conv_input(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of the model's first convolution in ``model(x)``: channels-last exactly
    when the model converted its input (a one-channel input looks contiguous either way,
    but the convolution follows its strides)."""
    conv = next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Conv3d)))
    seen: list[torch.Tensor] = []
    handle = conv.register_forward_hook(lambda mod, args, out: seen.append(out))
    try:
        model(x)
    finally:
        handle.remove()
    return seen[0]


@pytest.mark.parametrize("dims", [2, 3])
def test_auto_runs_batch_norm_models_channels_last_on_the_cpu(dims):
    fmt = CHANNELS_LAST[dims]
    model = AgResUNet(dims, 1, 2, channels=TINY).eval()
    assert model.channels_last == "auto" and model.prefers_channels_last()
    x = torch.randn(2, 1, *([16] * dims))
    assert _first_conv_input(model, x).is_contiguous(memory_format=fmt)
    y = model(x)
    assert y.is_contiguous()  # handed back in the default layout
    off = copy.deepcopy(model).set_channels_last("off")
    assert not _first_conv_input(off, x).is_contiguous(memory_format=fmt)
    torch.testing.assert_close(y, off(x), **REORDERED_TOL)
    # what is not converted: float64 (no oneDNN kernels) and "off"
    assert not _first_conv_input(model.double(), x.double()).is_contiguous(memory_format=fmt)


def test_channels_last_survives_pytorchs_native_batch_1_kernels():
    """At batch 1 PyTorch runs some small convolutions with its native kernels (a 3x3x3
    convolution of (1, 16, 16^3) here), which return the default layout; every conv unit
    of a channels-last model hands on channels-last outputs all the same, and the values
    equal the default layout's."""
    torch.manual_seed(0)
    model = UNet(3, 1, 2, channels=TINY).train()
    fmt = torch.channels_last_3d
    outputs: list[tuple[str, torch.Tensor]] = []
    handles = [
        unit.register_forward_hook(lambda mod, args, out, n=name: outputs.append((n, out)))
        for name, unit in model.named_modules()
        if type(unit).__name__ == "ConvNormAct"
    ]
    x = torch.randn(1, 1, 16, 16, 16)
    y = model(x)
    for h in handles:
        h.remove()
    assert len(outputs) >= 10
    for name, out in outputs:
        assert out.is_contiguous(memory_format=fmt) and not out.is_contiguous(), name
    ref = copy.deepcopy(model).set_channels_last("off")
    torch.testing.assert_close(y, ref(x), **REORDERED_TOL)


def test_keep_layout_by_hand():
    cl = torch.randn(1, 4, 3, 5, 6).contiguous(memory_format=torch.channels_last_3d)
    plain = torch.randn(1, 8, 3, 5, 6)
    back = keep_layout(plain, cl)
    assert back.is_contiguous(memory_format=torch.channels_last_3d)
    assert torch.equal(back, plain)  # same values, another layout
    assert keep_layout(plain, cl.contiguous()) is plain  # the input was not channels-last
    one = torch.randn(1, 1, 3, 5, 6).clone(memory_format=torch.channels_last_3d)
    assert keep_layout(plain, one).is_contiguous(memory_format=torch.channels_last_3d)
    assert keep_layout(plain, torch.randn(1, 1, 3, 5, 6)) is plain  # ordinary strides
    single = torch.randn(1, 1, 3, 5, 6)
    assert keep_layout(single, cl) is single  # one output channel: nothing to reorder


@pytest.mark.parametrize("norm", ["instance", "group"])
def test_auto_leaves_instance_and_group_norm_models_alone(norm):
    model = UNet(2, 1, 2, channels=TINY, norm=norm).eval()
    assert not model.prefers_channels_last()
    x = torch.randn(2, 1, 16, 16)
    assert not _first_conv_input(model, x).is_contiguous(memory_format=torch.channels_last)
    model.set_channels_last("on")  # on asks for it anyway
    assert _first_conv_input(model, x).is_contiguous(memory_format=torch.channels_last)
    off = copy.deepcopy(model).set_channels_last(False)
    torch.testing.assert_close(model(x), off(x), **REORDERED_TOL)


def test_channels_last_every_output_comes_back_contiguous():
    """Deep supervision lists, attention maps and the pad policy's crop, against the
    default layout."""
    model = AttentionUNet(2, 1, 3, channels=TINY, deep_supervision=True).eval()
    off = copy.deepcopy(model).set_channels_last("off")
    x = torch.randn(2, 1, 13, 18)  # padded and cropped back
    outputs, maps = model.forward_with_attention(x)
    ref_outputs, ref_maps = off.forward_with_attention(x)
    assert len(outputs) == len(ref_outputs) > 1 and len(maps) == len(ref_maps) > 0
    for got, want in zip([*outputs, *maps], [*ref_outputs, *ref_maps], strict=True):
        assert got.shape == want.shape
        assert got.is_contiguous()  # cropped, then copied: only the crop is copied
        torch.testing.assert_close(got, want, **REORDERED_TOL)
    nested = UNetPlusPlus(2, 1, 2, channels=TINY).eval()
    ref = copy.deepcopy(nested).set_channels_last("off")
    x = torch.randn(1, 1, 16, 16)
    assert nested(x).is_contiguous()
    torch.testing.assert_close(nested(x), ref(x), **REORDERED_TOL)


def test_channels_last_is_a_runtime_setting():
    model = UNet(2, 1, 2, channels=TINY)
    config, state = model.config, {k: v.clone() for k, v in model.state_dict().items()}
    assert model.set_channels_last("on") is model and model.channels_last == "on"
    assert model.set_channels_last(True).channels_last == "on"
    assert model.set_channels_last(False).channels_last == "off"
    assert model.config == config and "channels_last" not in config
    for key, value in model.state_dict().items():
        assert value.is_contiguous() and torch.equal(value, state[key]), key
    with pytest.raises(ValueError, match=r"'auto', 'on', 'off', True or False, got 'yes'"):
        model.set_channels_last("yes")
    assert UNet(2, 1, 2, channels=TINY).channels_last == "auto"


def test_script_and_trace_run_the_input_as_given():
    """TorchScript and torch.jit.trace convert nothing (a traced graph must not bake a
    layout in); their outputs equal eager mode's."""
    model = UNet(2, 1, 2, channels=TINY).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        want = model(x)
        scripted = torch.jit.script(model)
        traced = torch.jit.trace(model, x)
        torch.testing.assert_close(scripted(x), want, **REORDERED_TOL)
        torch.testing.assert_close(traced(x), want, **REORDERED_TOL)
    ops = {node.kind() for node in traced.inlined_graph.nodes()}
    assert "aten::_convolution" in ops and "aten::clone" not in ops  # (ops, not file names)


# ----------------------------------------------------------------------- residual sum
class _SavesOutput(nn.Module):
    """A norm whose backward reads its own output (``exp``): the sum must not overwrite it."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.exp(0.1 * x)


@pytest.mark.parametrize("norm", ["batch", "instance", "group", "layer", None])
def test_residual_sum_in_place_equals_the_allocated_sum(norm):
    torch.manual_seed(0)
    block = ResidualBlock(2, 4, 8, norm=norm).train()
    assert block.sum_in_place
    twin = copy.deepcopy(block)
    twin.sum_in_place = False  # the plain act(body + shortcut)
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64)
    block.double()
    twin.double()
    got = _values_and_grads(block, x)
    want = _values_and_grads(twin, x)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)


def test_residual_sum_keeps_an_unknown_norms_output():
    block = ResidualBlock(2, 4, 4, norm=_SavesOutput, act=None)
    assert not block.sum_in_place
    x = torch.randn(1, 4, 5, 5, requires_grad=True)
    block(x).sum().backward()  # would raise "modified by an inplace operation" otherwise
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_residual_sum_leaves_hooked_outputs_alone():
    """A hook on ``conv2`` holds the body's output: the sum must not overwrite it. A
    forward hook sees ``conv2``'s own output, and MONAI's GradCAM (a full backward hook,
    which wraps the output in a view) runs on an inner ``conv2``."""
    torch.manual_seed(0)
    block = ResidualBlock(2, 4, 8).eval()
    seen: list[torch.Tensor] = []
    handle = block.conv2.register_forward_hook(lambda mod, args, out: seen.append(out))
    x = torch.randn(2, 4, 6, 6)
    y = block(x)
    handle.remove()
    body = block.conv2(block.conv1(x))
    torch.testing.assert_close(seen[0], body)  # not act(body + shortcut)
    torch.testing.assert_close(y, torch.relu(body + block.shortcut(x)))
    monai = pytest.importorskip("monai.visualize", reason="MONAI's GradCAM is the oracle")
    model = AgResUNet(2, 1, 2, channels=TINY).eval()
    cam = monai.GradCAM(nn_module=model, target_layers="encoder.stages.2.block.conv2")
    heat = cam(torch.rand(1, 1, 16, 16), class_idx=1)
    assert heat.shape == (1, 1, 16, 16) and torch.isfinite(heat).all()


def test_residual_sum_keeps_autocasts_promotion():
    """Under bf16 autocast an identity shortcut stays float32 while the body is bf16: the
    sum is the promoted out-of-place one, as without the in-place path."""
    torch.manual_seed(0)
    block = ResidualBlock(2, 4, 4, shortcut="identity").eval()
    twin = copy.deepcopy(block)
    twin.sum_in_place = False
    x = torch.randn(2, 4, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, want = block(x), twin(x)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_an_input_already_channels_last_keeps_its_layout():
    """auto copies only contiguous inputs; a channels-last one runs as given and its
    outputs keep the layout the convolutions give them, as with "off"."""
    model = UNet(2, 3, 2, channels=TINY).eval()
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    y = model(x)
    y_off = copy.deepcopy(model).set_channels_last("off")(x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    assert y.stride() == y_off.stride()
    torch.testing.assert_close(y, y_off, rtol=0, atol=0)  # the same computation


# ----------------------------------------------------------------------- the engine
def test_the_engine_follows_the_models_choice():
    bn = UNet(2, 1, 2, channels=TINY)
    inorm = UNet(2, 1, 2, channels=TINY, norm="instance")
    assert use_channels_last(bn, "auto", 2, "cpu")
    assert not use_channels_last(inorm, "auto", 2, "cpu")
    assert use_channels_last(inorm, "auto", 2, "cuda")  # cuDNN: every attnunet model
    assert use_channels_last(inorm, "on", 2, "cpu") and not use_channels_last(bn, "off", 2)
    set_layout(inorm, True, 2)
    assert inorm.channels_last == "on"
    assert inorm.head.conv.weight.is_contiguous(memory_format=torch.channels_last)
    set_layout(inorm, False, 2)  # "off": the default layout for weights too
    assert inorm.channels_last == "off" and inorm.head.conv.weight.is_contiguous()
    set_layout(bn, False, 2)
    assert bn.channels_last == "off"
    x = torch.randn(1, 1, 16, 16)
    assert not _first_conv_input(bn, x).is_contiguous(memory_format=torch.channels_last)
