"""Blocks and layer lookups, checked against functional re-statements in float64."""

import functools

import pytest
import torch
import torch.nn.functional as F
from _reference import CONV, LINEAR_MODE, batch_norm_train
from torch import nn

from attnunet import (
    ChannelLayerNorm,
    ConvNormAct,
    DoubleConv,
    Down,
    GridAttentionGate,
    ResidualBlock,
    SegmentationHead,
    Up,
    build_gate,
)
from attnunet.blocks import conv_parts
from attnunet.layers import get_act, get_norm, norm_has_affine

DIMS = (1, 2, 3)
SIZES = {1: (11,), 2: (9, 12), 3: (5, 6, 7)}


# ----------------------------------------------------------------------------- lookups
@pytest.mark.parametrize("dims", DIMS)
def test_norm_lookup_builds_the_right_layer(dims):
    assert isinstance(get_norm("batch", dims, 4), (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d))
    inorm = get_norm("instance", dims, 4)
    assert type(inorm).__name__ == f"InstanceNorm{dims}d" and inorm.affine
    group = get_norm("group", dims, 12)
    assert isinstance(group, nn.GroupNorm) and group.num_groups == 4  # largest of 32..1 dividing 12
    assert get_norm(("group", {"num_groups": 3}), dims, 12).num_groups == 3
    assert isinstance(get_norm("layer", dims, 4), ChannelLayerNorm)
    assert get_norm(None, dims, 4) is None and get_norm("none", dims, 4) is None
    assert isinstance(get_norm(functools.partial(nn.GroupNorm, 2), dims, 4), nn.GroupNorm)


@pytest.mark.parametrize("dims", DIMS)
def test_channel_layer_norm_equals_layer_norm_over_channels(dims):
    """Reference: torch's LayerNorm on the channels-last tensor (the axis SMP once got wrong)."""
    torch.manual_seed(0)
    x = torch.randn(2, 6, *SIZES[dims], dtype=torch.float64)
    norm = ChannelLayerNorm(6).double()
    with torch.no_grad():
        norm.weight.copy_(torch.linspace(0.5, 2.0, 6))
        norm.bias.copy_(torch.linspace(-1.0, 1.0, 6))
    channels_last = x.movedim(1, -1)
    ref = F.layer_norm(channels_last, (6,), norm.weight, norm.bias, norm.eps).movedim(-1, 1)
    torch.testing.assert_close(norm(x), ref)
    # normalised over channels: every voxel has zero mean over C without the affine part
    plain = ChannelLayerNorm(6, affine=False).double()(x)
    torch.testing.assert_close(plain.mean(dim=1), torch.zeros_like(plain.mean(dim=1)))


def test_lookup_errors_name_what_works():
    with pytest.raises(ValueError, match="Did you mean 'batch'"):
        get_norm("bach", 2, 4)
    with pytest.raises(ValueError, match="num_groups=5 cannot split 12"):
        get_norm(("group", {"num_groups": 5}), 2, 12)
    with pytest.raises(ValueError, match="Did you mean 'relu'"):
        get_act("rellu")
    with pytest.raises(TypeError, match="spec must be"):
        get_act(3)
    with pytest.raises(ValueError, match="spatial_dims=4 is not supported"):
        get_norm("batch", 4, 4)


def test_norm_has_affine():
    assert norm_has_affine("batch") and norm_has_affine("group") and norm_has_affine("layer")
    assert not norm_has_affine(None) and not norm_has_affine(("instance", {"affine": False}))


# ----------------------------------------------------------------------------- conv blocks
@pytest.mark.parametrize("dims", DIMS)
def test_conv_norm_act_bias_rule_and_names(dims):
    with_norm = ConvNormAct(dims, 2, 3)
    assert with_norm.conv.bias is None and isinstance(with_norm.act, nn.ReLU)
    without = ConvNormAct(dims, 2, 3, norm=None, act=None)
    assert without.conv.bias is not None
    assert [n for n, _ in without.named_children()] == ["conv"]
    assert ConvNormAct(dims, 2, 3, bias=True).conv.bias is not None
    assert ConvNormAct(dims, 2, 3, kernel_size=5).conv.padding == (2,) * dims


@pytest.mark.parametrize("dims", DIMS)
def test_double_conv_matches_functional_restatement(dims):
    torch.manual_seed(1)
    block = DoubleConv(dims, 3, 4).double().train()
    for p in block.parameters():
        nn.init.uniform_(p, -0.5, 0.5)
    x = torch.randn(2, 3, *SIZES[dims], dtype=torch.float64)
    conv = CONV[dims]
    h = F.relu(batch_norm_train(conv(x, block.conv1.conv.weight, padding=1), block.conv1.norm))
    ref = F.relu(batch_norm_train(conv(h, block.conv2.conv.weight, padding=1), block.conv2.norm))
    torch.testing.assert_close(block(x), ref)


@pytest.mark.parametrize("dims", DIMS)
def test_residual_block_matches_functional_restatement(dims):
    torch.manual_seed(2)
    block = ResidualBlock(dims, 3, 5, norm=None, act="relu").double()
    x = torch.randn(2, 3, *SIZES[dims], dtype=torch.float64)
    conv = CONV[dims]
    c1, c2, sc = block.conv1.conv, block.conv2.conv, block.shortcut
    body = conv(F.relu(conv(x, c1.weight, c1.bias, padding=1)), c2.weight, c2.bias, padding=1)
    ref = F.relu(conv(x, sc.weight, sc.bias) + body)
    torch.testing.assert_close(block(x), ref)
    # the projection shortcut is a biased 1x1 conv with no norm (agv-unet's res_conv)
    assert sc.kernel_size == (1,) * dims and sc.bias is not None


def test_residual_identity_shortcut():
    block = ResidualBlock(2, 4, 4, shortcut="identity").double().eval()
    x = torch.randn(1, 4, 6, 6, dtype=torch.float64)
    body = block.conv2(block.conv1(x))
    torch.testing.assert_close(block(x), F.relu(x + body))
    with pytest.raises(ValueError, match="identity shortcut needs in_channels == out_channels"):
        ResidualBlock(2, 4, 8, shortcut="identity")
    with pytest.raises(ValueError, match="shortcut must be"):
        ResidualBlock(2, 4, 8, shortcut="dense")
    assert isinstance(ResidualBlock(2, 4, 4, shortcut="auto").shortcut, nn.Identity)
    assert isinstance(ResidualBlock(2, 4, 8, shortcut="auto").shortcut, nn.Conv2d)


def test_even_kernel_is_rejected_with_a_fix():
    with pytest.raises(ValueError, match="use an odd kernel such as 5"):
        DoubleConv(2, 1, 2, kernel_size=4)


# ----------------------------------------------------------------------------- sampling
@pytest.mark.parametrize("dims", DIMS)
def test_down_modes(dims):
    x = torch.randn(1, 2, *SIZES[dims])
    expected = [s // 2 for s in SIZES[dims]]
    torch.testing.assert_close(Down(dims, 2)(x), getattr(F, f"max_pool{dims}d")(x, 2))
    torch.testing.assert_close(Down(dims, 2, "avgpool")(x), getattr(F, f"avg_pool{dims}d")(x, 2))
    assert list(Down(dims, 2, "conv")(x).shape[2:]) == expected
    with pytest.raises(ValueError, match="down mode must be"):
        Down(dims, 2, "stride")


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("kernel", [2, 3, 4, 5])
def test_transposed_up_doubles_exactly_for_any_kernel(dims, kernel):
    x = torch.randn(1, 4, *SIZES[dims])
    up = Up(dims, 4, 2, kernel_size=kernel)
    assert list(up(x).shape[2:]) == [2 * s for s in SIZES[dims]]
    target = [2 * s + 1 for s in SIZES[dims]]
    y = up(x, size=target)
    assert list(y.shape[2:]) == target
    # the extra voxel at the end replicates its neighbour: no shift of the grid
    torch.testing.assert_close(y.narrow(2, target[0] - 1, 1), y.narrow(2, target[0] - 2, 1))


def test_up_k3_matches_the_reference_layer():
    """agv-unet's up-sampler: ConvTranspose2d(k=3, s=2, p=1, output_padding=1)."""
    up = Up(2, 4, 2, kernel_size=3)
    ref = nn.ConvTranspose2d(4, 2, 3, stride=2, padding=1, output_padding=1)
    ref.load_state_dict(up.op.state_dict())
    x = torch.randn(1, 4, 5, 7)
    torch.testing.assert_close(up(x), ref(x))


@pytest.mark.parametrize("dims", DIMS)
def test_interp_up(dims):
    x = torch.randn(1, 4, *SIZES[dims], dtype=torch.float64)
    up = Up(dims, 4, 2, mode="interp", interp="linear").double()
    ref = F.interpolate(x, scale_factor=2.0, mode=LINEAR_MODE[dims], align_corners=False)
    conv = up.op[1]
    torch.testing.assert_close(up(x), CONV[dims](ref, conv.weight, conv.bias))
    with pytest.raises(ValueError, match="odd kernel_size"):
        Up(dims, 4, 2, mode="interp", kernel_size=2)


# ----------------------------------------------------------------------------- gates
def _grid_gate_reference(gate, x, g, dims):
    """Oktay's equations written out with functional calls."""
    s = gate.theta.stride[0]
    theta = CONV[dims](x, gate.theta.weight, gate.theta.bias, stride=s)
    phi = CONV[dims](g, gate.phi.weight, gate.phi.bias)
    phi = F.interpolate(
        phi, size=theta.shape[2:], mode=LINEAR_MODE[dims], align_corners=gate.align_corners
    )
    q = F.relu(theta + phi)
    alpha = torch.sigmoid(CONV[dims](q, gate.psi.weight, gate.psi.bias))
    alpha = F.interpolate(
        alpha, size=x.shape[2:], mode=LINEAR_MODE[dims], align_corners=gate.align_corners
    )
    return alpha * x, alpha


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("align_corners", [False, True])
def test_grid_gate_matches_equations(dims, align_corners):
    torch.manual_seed(3)
    gate = GridAttentionGate(dims, 4, 6, inter_channels=3, align_corners=align_corners).double()
    x = torch.randn(2, 4, *[2 * s + 1 for s in SIZES[dims]], dtype=torch.float64)  # odd
    g = torch.randn(2, 6, *[s - 1 for s in SIZES[dims]], dtype=torch.float64)  # other grid
    y, alpha = gate.attend(x, g)
    ref_y, ref_alpha = _grid_gate_reference(gate, x, g, dims)
    torch.testing.assert_close(alpha, ref_alpha)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close(gate(x, g), ref_y)
    assert alpha.shape == (2, 1, *x.shape[2:])
    assert alpha.min() >= 0.0 and alpha.max() <= 1.0


def test_grid_gate_output_transform_is_conv_then_norm():
    torch.manual_seed(4)
    gate = GridAttentionGate(3, 4, 8, output_transform=True).double().train()
    x = torch.randn(2, 4, 6, 8, 10, dtype=torch.float64)
    g = torch.randn(2, 8, 3, 4, 5, dtype=torch.float64)
    ref_y, _ = _grid_gate_reference(gate, x, g, 3)
    conv, norm = gate.output.conv, gate.output.norm
    ref = batch_norm_train(F.conv3d(ref_y, conv.weight, conv.bias), norm)
    torch.testing.assert_close(gate(x, g), ref)


def test_grid_gate_parametrisations():
    oktay = build_gate("grid", 2, 16, 32)
    krd = build_gate("grid_krd", 2, 16, 32)
    assert oktay.inter_channels == 8 and oktay.theta.bias is None and not oktay.align_corners
    assert krd.inter_channels == 16 and krd.theta.bias is not None and krd.align_corners
    # agv-unet's AG([32, 16], 16): wg 32*16+16, wx 16*16*2*2+16, psi 16+1 parameters
    assert sum(p.numel() for p in krd.parameters()) == (32 * 16 + 16) + (16 * 16 * 4 + 16) + 17
    custom = build_gate(("grid", {"inter_channels": 5, "subsample": 1}), 2, 16, 32)
    assert custom.inter_channels == 5 and custom.theta.stride == (1, 1)
    assert build_gate(None, 2, 16, 32) is None
    with pytest.raises(ValueError, match="Did you mean 'grid'"):
        build_gate("gird", 2, 16, 32)


def test_gate_coefficients_are_hookable():
    gate = GridAttentionGate(2, 4, 8)
    seen = []
    gate.coefficients.register_forward_hook(lambda m, i, o: seen.append(o.detach()))
    x, g = torch.randn(1, 4, 10, 12), torch.randn(1, 8, 5, 6)
    _, alpha = gate.attend(x, g)
    assert len(seen) == 1
    torch.testing.assert_close(seen[0], alpha)
    assert not any(isinstance(v, torch.Tensor) for v in vars(gate).values())  # nothing stored


def test_gate_rejects_bad_arguments():
    with pytest.raises(ValueError, match="subsample must be a positive int"):
        GridAttentionGate(2, 4, 8, subsample=0)
    with pytest.raises(ValueError, match="inter_channels must be a positive int"):
        GridAttentionGate(2, 4, 8, inter_channels=0)


# ----------------------------------------------------------------------------- head
@pytest.mark.parametrize("dims", DIMS)
def test_head_is_a_biased_1x1_conv(dims):
    head = SegmentationHead(dims, 4, 3).double()
    x = torch.randn(1, 4, *SIZES[dims], dtype=torch.float64)
    torch.testing.assert_close(head(x), CONV[dims](x, head.conv.weight, head.conv.bias))
    with pytest.raises(ValueError, match="must be odd"):
        SegmentationHead(dims, 4, 3, kernel_size=2)


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize(
    "block",
    [
        lambda d: ConvNormAct(d, 2, 3, norm="instance", act="leaky_relu"),
        lambda d: DoubleConv(d, 2, 3, norm="group", act="gelu"),
        lambda d: DoubleConv(d, 2, 4, norm="layer", act=("elu", {"alpha": 0.5})),
        lambda d: ResidualBlock(d, 2, 3, norm=None, act="silu"),
    ],
)
def test_every_block_runs_and_backpropagates(dims, block):
    module = block(dims)
    x = torch.randn(2, 2, *SIZES[dims], requires_grad=True)
    module(x).square().mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    for name, p in module.named_parameters():
        assert p.grad is not None, name


# ------------------------------------------------------- concatenation-free and in-place
@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("split", [(3,), (1, 2), (2, 1, 4)])
@pytest.mark.parametrize("norm", ["batch", None])
def test_forward_parts_equals_the_concatenated_input(dims, split, norm):
    """``forward_parts(parts)`` is the unit applied to ``cat(parts)``: outputs and every
    gradient (inputs and weights) agree in float64, bias included when there is no norm."""
    torch.manual_seed(0)
    unit = ConvNormAct(dims, sum(split), 5, norm=norm).double().train()
    parts = [torch.randn(2, c, *SIZES[dims], dtype=torch.float64) for c in split]
    a = [p.clone().requires_grad_() for p in parts]
    b = [p.clone().requires_grad_() for p in parts]
    ref = unit(torch.cat(a, dim=1))
    out = unit.forward_parts(b)
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(ref)
    ref_grads = torch.autograd.grad(ref, [*a, *unit.parameters()], g)
    out_grads = torch.autograd.grad(out, [*b, *unit.parameters()], g)
    for x, y in zip(out_grads, ref_grads, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_forward_parts_rejects_parts_that_do_not_fill_the_input():
    unit = ConvNormAct(2, 6, 4)
    with pytest.raises(ValueError, match=r"add up to in_channels=6.*\[2, 3\]"):
        unit.forward_parts([torch.randn(1, 2, 5, 5), torch.randn(1, 3, 5, 5)])
    with pytest.raises(ValueError, match="in_channels=6"):
        unit.forward_parts([])


@pytest.mark.parametrize(
    ("act", "in_place"),
    [
        ("relu", True),
        (("leaky_relu", {"negative_slope": 0.1}), True),
        (("leaky_relu", {"negative_slope": -0.5}), False),  # in-place backward unsupported
        ("elu", True),
        (("relu", {"inplace": False}), False),  # the user's choice is kept
        ("silu", False),  # backward needs the input: never in place
        ("prelu", None),
    ],
)
def test_activation_runs_in_place_only_where_it_is_safe(act, in_place):
    """The unit's activation overwrites the norm's fresh output where backward allows it;
    the output and the gradients equal conv -> norm -> act written out of place."""
    torch.manual_seed(0)
    unit = ConvNormAct(2, 3, 4, act=act).double().train()
    assert getattr(unit.act, "inplace", None) is in_place
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64, requires_grad=True)
    out_of_place = unit.act
    if in_place:  # a twin that does not run in place
        out_of_place = get_act(act if isinstance(act, str) else (act[0], {**act[1]}))
        assert not out_of_place.inplace
    expected = out_of_place(unit.norm(unit.conv(x)))
    out = unit(x)
    torch.testing.assert_close(out, expected)
    g = torch.randn_like(out)
    params = list(unit.parameters())
    torch.testing.assert_close(
        torch.autograd.grad(out, [x, *params], g),
        torch.autograd.grad(expected, [x, *params], g),
    )


@pytest.mark.parametrize("dims", DIMS)
@pytest.mark.parametrize("shortcut", ["projection", "identity"])
def test_residual_branches_parts_then_merge_equal_the_block(dims, shortcut):
    """``merge(*branches_parts(parts))`` is the block on ``cat(parts)`` (the checkpointed
    decoder's two segments), with every gradient, in float64."""
    torch.manual_seed(0)
    block = ResidualBlock(dims, 6, 6, shortcut=shortcut).double().train()
    parts = [torch.randn(2, c, *SIZES[dims], dtype=torch.float64) for c in (2, 4)]
    a = [p.clone().requires_grad_() for p in parts]
    b = [p.clone().requires_grad_() for p in parts]
    ref = block(torch.cat(a, dim=1))
    out = block.merge(*block.branches_parts(b))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    g = torch.randn_like(ref)
    params = list(block.parameters())
    for x, y in zip(
        torch.autograd.grad(out, [*b, *params], g),
        torch.autograd.grad(ref, [*a, *params], g),
        strict=True,
    ):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)


def test_conv_parts_refuses_what_it_cannot_split():
    with pytest.raises(TypeError, match="Conv1d/2d/3d"):
        conv_parts(nn.ConvTranspose2d(4, 2, 2), [torch.randn(1, 4, 3, 3)])
    with pytest.raises(ValueError, match="ungrouped"):
        conv_parts(nn.Conv2d(4, 4, 1, groups=2), [torch.randn(1, 4, 3, 3)])
