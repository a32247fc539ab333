"""Doubling interpolations: the slice-and-sum form given to ``torch.compile`` equals
PyTorch's interpolation, and it is used only where it is exact."""

import pytest
import torch
import torch.nn.functional as F
from _reference import CHANNELS_LAST, LINEAR_MODE

from attnunet import AttentionUNet
from attnunet.blocks import GridAttentionGate, Upsample2x
from attnunet.layers.shape import resize, upsample_x2

SHAPES = {1: [(2, 3, 7), (1, 2, 1)], 2: [(2, 3, 5, 6), (1, 2, 1, 4)], 3: [(2, 3, 4, 5, 3)]}


def _cases():
    for dims, shapes in SHAPES.items():
        for shape in shapes:
            for linear in (True, False):
                for cl in (False, True) if dims > 1 else (False,):
                    yield dims, shape, linear, cl


@pytest.mark.parametrize(("dims", "shape", "linear", "cl"), list(_cases()))
def test_upsample_x2_equals_interpolate_values_gradients_and_layout(dims, shape, linear, cl):
    x = torch.randn(shape, dtype=torch.float64)
    if cl:
        x = x.contiguous(memory_format=CHANNELS_LAST[dims])
    mode = LINEAR_MODE[dims] if linear else "nearest"
    corners = False if linear else None
    a = x.clone().requires_grad_()
    b = x.clone().requires_grad_()
    ref = F.interpolate(a, scale_factor=2, mode=mode, align_corners=corners)
    out = upsample_x2(b, linear=linear)
    assert out.shape == ref.shape
    assert out.stride() == ref.stride()  # channels-last in, channels-last out
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    grad = torch.randn_like(ref)
    ref.backward(grad)
    out.backward(grad)
    torch.testing.assert_close(b.grad, a.grad, rtol=0, atol=1e-12)


def test_upsample_x2_hand_computed_1d():
    x = torch.tensor([[[1.0, 3.0, 7.0]]], dtype=torch.float64)
    # ends replicated; inside, weights 0.25 / 0.75 towards the nearer input voxel
    expected = [1.0, 1.5, 2.5, 4.0, 6.0, 7.0]
    assert upsample_x2(x).flatten().tolist() == expected
    assert upsample_x2(x, linear=False).flatten().tolist() == [1.0, 1.0, 3.0, 3.0, 7.0, 7.0]


class _Recorder:
    """A dynamo backend that records the functions each traced graph calls."""

    def __init__(self):
        self.targets: list[str] = []

    def __call__(self, gm, example_inputs):
        for node in gm.graph.nodes:
            if node.op in ("call_function", "call_method"):
                self.targets.append(getattr(node.target, "__name__", str(node.target)))
        return gm.forward

    def interpolates(self) -> bool:
        return any("interpolate" in t or "upsample" in t for t in self.targets)


def _compiled(fn):
    torch._dynamo.reset()
    recorder = _Recorder()
    return torch.compile(fn, backend=recorder, fullgraph=True), recorder


@pytest.mark.parametrize("mode", ["bilinear", "nearest"])
def test_compiled_doubling_traces_no_interpolation_and_matches_eager(mode):
    up = Upsample2x(mode)
    x = torch.randn(2, 3, 5, 7)
    fn, recorder = _compiled(up)
    torch.testing.assert_close(fn(x), up(x), rtol=1e-6, atol=1e-6)
    assert recorder.targets and not recorder.interpolates(), recorder.targets


def test_compiled_resize_keeps_interpolation_where_the_decomposition_is_not_exact():
    x = torch.randn(1, 2, 5, 6)
    cases = [
        ([11, 12], "bilinear", False),  # not a doubling
        ([10, 12], "bilinear", True),  # align_corners=True has other weights
        ([10, 12], "bicubic", False),  # other mode
    ]
    for size, mode, corners in cases:
        fn, recorder = _compiled(lambda t, s=size, m=mode, c=corners: resize(t, s, m, c))
        ref = F.interpolate(x, size=size, mode=mode, align_corners=corners)
        torch.testing.assert_close(fn(x), ref)
        assert recorder.interpolates(), (size, mode, corners)


def test_compiled_grid_gate_and_model_trace_no_interpolation():
    gate = GridAttentionGate(2, in_channels=4, gating_channels=8).eval()
    x, g = torch.randn(1, 4, 8, 10), torch.randn(1, 8, 4, 5)
    fn, recorder = _compiled(gate)
    torch.testing.assert_close(fn(x, g), gate(x, g), rtol=1e-5, atol=1e-6)
    assert not recorder.interpolates(), recorder.targets

    model = AttentionUNet(2, 1, 2, channels=(4, 8, 16)).eval()
    x = torch.randn(1, 1, 16, 16)
    fn, recorder = _compiled(model)
    torch.testing.assert_close(fn(x), model(x), rtol=1e-5, atol=1e-5)
    assert not recorder.interpolates(), recorder.targets


def test_export_and_torchscript_keep_the_interpolation():
    up = Upsample2x("bilinear")
    x = torch.randn(1, 2, 3, 4)
    exported = torch.export.export(up, (x,))
    ops = [str(n.target) for n in exported.graph.nodes if n.op == "call_function"]
    assert any("upsample" in op for op in ops), ops
    torch.testing.assert_close(exported.module()(x), up(x))
    scripted = torch.jit.script(up)
    torch.testing.assert_close(scripted(x), up(x))
    graph = str(scripted.inlined_graph)
    assert "aten::upsample_bilinear2d" in graph and "aten::stack" not in graph


def test_upsample2x_rejects_an_unknown_mode():
    with pytest.raises(ValueError, match="mode must be 'nearest', 'linear'"):
        Upsample2x("bicubic")
