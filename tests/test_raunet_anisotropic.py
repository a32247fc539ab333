"""Anisotropic RAUNet: one stride (1 or 2, per axis) for each of the five down-sampling steps.

Oracles: sizes from PyTorch's convolution/pooling output formula written out here, models
built without the argument (default strides), parameter counts by hand from the transposed
kernels, a hand-padded input, the 2D encoder for a depth of one voxel, torchvision's
ResNet18 weights file, and TorchScript against eager.
"""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from attnunet import create_model
from attnunet.blocks.aam import LinkNetDecoderBlock
from attnunet.encoders import ResNetEncoder
from attnunet.models.raunet import RAUNet

# depth (axis 0) kept by the stem and halved only by layer4; axis 2 not halved by layer4
STRIDES = [(1, 2, 2), (1, 2, 2), 2, 2, (2, 2, 1)]
ODD = (7, 30, 29)


def _axes(stride, n=3):
    return (stride,) * n if isinstance(stride, int) else tuple(stride)


def _out(n, kernel, stride, padding):
    """PyTorch's output size of a convolution or max-pool (dilation 1, floor mode)."""
    return (n + 2 * padding - kernel) // stride + 1


def _feature_sizes(size, strides):
    """e1..e4 of a ResNet by hand: conv 7/p3, max-pool 3/p1, then a conv 3/p1 per stage."""
    steps = [_axes(s, len(size)) for s in strides]
    stem = [_out(n, 7, s, 3) for n, s in zip(size, steps[0], strict=True)]
    e1 = [_out(n, 3, s, 1) for n, s in zip(stem, steps[1], strict=True)]
    sizes = [e1]
    for step in steps[2:]:
        sizes.append([_out(n, 3, s, 1) for n, s in zip(sizes[-1], step, strict=True)])
    return sizes


def _model(strides=STRIDES, seed=0, **kwargs):
    torch.manual_seed(seed)
    return RAUNet(3, 1, 2, encoder="resnet18", strides=strides, **kwargs).eval()


def test_default_strides_build_todays_model():
    torch.manual_seed(0)
    plain = RAUNet(3, 1, 2, encoder="resnet18").eval()
    x = torch.randn(1, 1, 9, 20, 17)
    with torch.no_grad():
        expected = plain(x)
    for strides in (None, [2] * 5, [[2, 2, 2]] * 5):
        model = _model(strides)
        assert repr(model) == repr(plain)
        # the same seed gives the same weights: same modules, created in the same order
        for (key, a), (other, b) in zip(
            model.state_dict().items(), plain.state_dict().items(), strict=True
        ):
            assert key == other
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(model(x), expected, rtol=0, atol=0)
        assert model.divisors == [32, 32, 32] and model.divisor == 32
    assert _model(None).config["strides"] is None
    assert _model([2] * 5).config["strides"] == [2, 2, 2, 2, 2]
    # today's count (docs/models.md, 3D RAUNet): unchanged
    assert plain.num_parameters() == 35_118_754


def test_default_strides_in_2d_keep_the_timm_model():
    pytest.importorskip("timm", reason="the 2D RAUNet's encoder is a timm model")
    torch.manual_seed(0)
    plain = RAUNet(2, 1, 1, encoder="resnet18").eval()
    torch.manual_seed(0)
    same = RAUNet(2, 1, 1, encoder="resnet18", strides=[[2, 2]] * 5).eval()
    x = torch.randn(1, 1, 45, 37)
    with torch.no_grad():
        torch.testing.assert_close(same(x), plain(x), rtol=0, atol=0)
    assert same.num_parameters() == plain.num_parameters()


def test_encoder_feature_sizes_follow_the_formula_per_axis():
    model = _model()
    hand = [1 * 1 * 2 * 2 * 2, 2 * 2 * 2 * 2 * 2, 2 * 2 * 2 * 2 * 1]
    assert model.divisors == hand == [8, 32, 16] and model.divisor == 32
    encoder = model.encoder.model
    assert encoder.axis_reductions == [[1, 4, 4], [2, 8, 8], [4, 16, 16], [8, 32, 16]]
    assert encoder.reductions == [4, 8, 16, 32]
    for size in (ODD, (8, 32, 32), (3, 5, 6)):
        with torch.no_grad():
            features = encoder(torch.randn(1, 1, *size))
        got = [list(f.shape[2:]) for f in features]
        assert got == _feature_sizes(size, STRIDES), size


def test_decoder_undoes_each_step_and_the_head_needs_no_crop():
    """On a padded input every block's output already has its skip's size (no padding or
    cropping before an AAM) and the head returns exactly the padded size."""
    model = _model()
    seen = {}
    hooks = [
        module.register_forward_hook(lambda m, i, o, name=name: seen.__setitem__(name, o.shape))
        for name, module in [
            *((f"block{i}", b) for i, b in enumerate(model.decoder.blocks)),
            ("head", model.head),
        ]
    ]
    padded = (8, 32, 48)  # multiples of [8, 32, 16]
    with torch.no_grad():
        model(torch.randn(1, 1, *padded))
    for h in hooks:
        h.remove()
    e1, e2, e3, _ = _feature_sizes(padded, STRIDES)
    half = [n // s for n, s in zip(padded, _axes(STRIDES[0]), strict=True)]  # after the stem conv
    assert [list(seen[f"block{i}"][2:]) for i in range(4)] == [e3, e2, e1, half]
    assert list(seen["head"][2:]) == list(padded)


def test_pad_policy_equals_padding_by_hand_and_cropping():
    model = _model(seed=1)
    exact = _model(seed=2, size_policy="error")
    exact.load_state_dict(model.state_dict())
    x = torch.randn(2, 1, *ODD)
    divisors = [8, 32, 16]  # the product of the strides per axis, by hand
    target = [math.ceil(n / d) * d for n, d in zip(ODD, divisors, strict=True)]
    assert target == [8, 32, 32]
    padded = F.pad(x, [0, target[2] - ODD[2], 0, target[1] - ODD[1], 0, target[0] - ODD[0]])
    with torch.no_grad():
        y = model(x)
        reference = exact(padded)[:, :, : ODD[0], : ODD[1], : ODD[2]]
    assert y.shape == (2, 2, *ODD)
    torch.testing.assert_close(y, reference, rtol=0, atol=0)


def test_error_policy_names_the_per_axis_sizes():
    model = _model(size_policy="error")
    with pytest.raises(ValueError, match=r"strides per axis, \[8, 32, 16\]") as info:
        model(torch.randn(1, 1, *ODD))
    # nearby sizes by hand: ceil and floor multiples of [8, 32, 16] of (7, 30, 29)
    assert "[8, 32, 32] or [8, 32, 16]" in str(info.value)
    with torch.no_grad():
        assert model(torch.randn(1, 1, 16, 32, 16)).shape == (1, 2, 16, 32, 16)


def _transposed_weights(strides, c4=512, c1=64, head=32):
    """Weights of the transposed convolutions by hand: LinkNet kernel 4 on a stride-2 axis
    and 3 on a stride-1 axis (mid = in / 4 channels); the head 3 or 2."""
    steps = [_axes(s) for s in strides]
    blocks = [(c4 // 4, steps[4]), (c4 // 8, steps[3]), (c4 // 16, steps[2]), (c1 // 4, steps[1])]
    total = sum(m * m * math.prod(4 if s == 2 else 3 for s in st) for m, st in blocks)
    return total + c1 * head * math.prod(3 if s == 2 else 2 for s in steps[0])


def test_parameter_count_by_hand():
    default = _model(None).num_parameters()
    model = _model()
    assert (
        _transposed_weights([2] * 5)
        == (128 * 128 + 64 * 64 + 32 * 32 + 16 * 16) * 4**3 + 64 * 32 * 3**3
    )
    expected = default - _transposed_weights([2] * 5) + _transposed_weights(STRIDES)
    assert model.num_parameters() == expected == 35_118_754 - 284_672
    # every other tensor keeps its shape
    changed = {"decoder.blocks.0.up.conv.weight", "decoder.blocks.3.up.conv.weight"}
    changed.add("head.deconv.weight")
    for (key, a), b in zip(
        model.state_dict().items(), _model(None).state_dict().values(), strict=True
    ):
        assert (a.shape == b.shape) == (key not in changed), key


def _slice_2d(state3d):
    """The 2D weights a 3D module with a depth of one voxel effectively uses: the centre
    depth slice of each kernel (zero padding hides the rest)."""
    return {k: v[:, :, v.shape[2] // 2] if v.dim() == 5 else v for k, v in state3d.items()}


def test_stride_one_along_a_one_voxel_axis_is_the_2d_computation():
    torch.manual_seed(3)
    flat = [(1, 2, 2)] * 5
    enc3 = ResNetEncoder(3, 2, (1, 1, 1, 1), strides=flat).double().eval()
    for m in enc3.modules():  # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    enc2 = ResNetEncoder(2, 2, (1, 1, 1, 1)).double().eval()
    enc2.load_state_dict(_slice_2d(enc3.state_dict()))
    x = torch.randn(2, 2, 37, 45, dtype=torch.float64)
    with torch.no_grad():
        for f3, f2 in zip(enc3(x.unsqueeze(2)), enc2(x), strict=True):
            torch.testing.assert_close(f3.squeeze(2), f2)
    block3 = LinkNetDecoderBlock(3, 64, 32, stride=(1, 2, 2)).double().eval()
    block2 = LinkNetDecoderBlock(2, 64, 32).double().eval()
    block2.load_state_dict(_slice_2d(block3.state_dict()))
    h = torch.randn(2, 64, 5, 7, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(block3(h.unsqueeze(2)).squeeze(2), block2(h))


def test_one_voxel_thick_and_one_d_inputs_run():
    model = _model([(1, 2, 2)] * 5)
    assert model.divisors == [1, 32, 32]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 1, 40, 33)).shape == (1, 2, 1, 40, 33)
    one_d = RAUNet(1, 1, 2, encoder="resnet18", strides=[1, 2, 2, 2, 2]).eval()
    assert one_d.divisors == [16] and one_d.divisor == 16
    with torch.no_grad():
        assert one_d(torch.randn(1, 1, 37)).shape == (1, 2, 37)


def test_training_step_reaches_every_parameter():
    model = _model().train()
    x = torch.randn(2, 1, *ODD)
    target = torch.randint(0, 2, (2, *ODD))
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_torchscript_matches_eager():
    model = _model()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 1, *ODD)
    with torch.no_grad():
        torch.testing.assert_close(scripted(x), model(x))
        logits, weights = scripted.forward_with_attention(x)
        eager_logits, eager_weights = model.forward_with_attention(x)
    torch.testing.assert_close(logits, eager_logits)
    for a, b in zip(weights, eager_weights, strict=True):
        torch.testing.assert_close(a, b)


def test_config_rebuilds_the_anisotropic_model():
    model = _model()
    config = json.loads(json.dumps(model.config))
    assert config["strides"] == [[1, 2, 2], [1, 2, 2], 2, 2, [2, 2, 1]]
    for rebuilt in (create_model("raunet", **config), type(model)(**model.config)):
        assert rebuilt.config == model.config
        assert rebuilt.divisors == [8, 32, 16]
        rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes


def test_2d_weights_file_inflates_into_an_anisotropic_encoder(tmp_path):
    torchvision = pytest.importorskip("torchvision", reason="the ResNet18 weights layout")
    torch.manual_seed(4)
    state = torchvision.models.resnet18().state_dict()
    path = tmp_path / "resnet18.pth"
    torch.save(state, path)
    model = RAUNet(3, 3, 2, encoder="resnet18", pretrained=str(path), strides=STRIDES)
    loaded = model.encoder.model.state_dict()
    # I3D inflation: the 2D kernel repeated along depth and divided by the depth kernel size
    expected = state["conv1.weight"].unsqueeze(2).repeat(1, 1, 7, 1, 1) / 7
    torch.testing.assert_close(loaded["conv1.weight"], expected)
    torch.testing.assert_close(
        loaded["layer4.0.downsample.0.weight"][:, :, 0], state["layer4.0.downsample.0.weight"]
    )
    assert model.config["pretrained"] is False


@pytest.mark.parametrize(
    ("strides", "message"),
    [
        ([2, 2, 3, 2, 2], r"strides\[2\] \(layer2\) must be 1 or 2 .*LinkNet decoder"),
        ([2, (1, 2, 4), 2, 2, 2], r"strides\[1\] \(the max-pool\) must be 1 or 2"),
        ([2, 2, 2, 2], r"5 entries, one per down-sampling step"),
        (2, r"5 entries"),
        ([2, (1, 2), 2, 2, 2], r"strides\[1\] \(the max-pool\) must be a positive int or 3"),
        ([2, 2, 0, 2, 2], r"strides\[2\] \(layer2\) must be a positive int"),
        ([2, 2, True, 2, 2], r"strides\[2\] \(layer2\) must be an int"),
    ],
)
def test_bad_strides_are_refused(strides, message):
    with pytest.raises(ValueError, match=message):
        RAUNet(3, 1, 2, encoder="resnet18", strides=strides)


def test_a_2d_raunet_refuses_other_strides():
    with pytest.raises(ValueError, match=r"timm encoder has fixed strides.*3D"):
        RAUNet(2, 1, 2, strides=[1, 2, 2, 2, 2])
    with pytest.raises(ValueError, match=r"must be 1 or 2"):
        LinkNetDecoderBlock(3, 8, 8, stride=(1, 3, 2))
