"""Every gate kind against a hand-written functional re-statement of its equation (float64)."""

import pytest
import torch
import torch.nn.functional as F
from _reference import CONV, LINEAR_MODE, batch_norm_train
from torch import nn

from attnunet import UNetSkeleton
from attnunet.blocks import (
    GATES,
    AdditiveAttentionGate,
    ConvMappedAttentionGate,
    GridAttentionGate,
    GridGatingSignal,
    MultiAttentionGate,
    SelfAttentionSkip,
    build_gate,
)

SKIP = {1: (13,), 2: (11, 14), 3: (7, 8, 9)}


def _randomise(module: nn.Module) -> nn.Module:
    torch.manual_seed(11)
    for p in module.parameters():
        nn.init.uniform_(p, -0.6, 0.6)
    return module.double()


def _skip_and_gating(dims, cx=4, cg=6, batch=2):
    x = torch.randn(batch, cx, *SKIP[dims], dtype=torch.float64)
    g = torch.randn(batch, cg, *[s // 2 for s in SKIP[dims]], dtype=torch.float64)
    return x, g


def _projections(gate, x, g, dims):
    theta = CONV[dims](x, gate.theta.weight, gate.theta.bias, stride=gate.theta.stride)
    phi = CONV[dims](g, gate.phi.weight, gate.phi.bias)
    phi = F.interpolate(phi, size=theta.shape[2:], mode=LINEAR_MODE[dims], align_corners=False)
    return theta, phi


def _finish(gate, x, logit, dims, softmax=False):
    if softmax:
        alpha = torch.softmax(logit.flatten(2), dim=2).view(logit.shape)
    else:
        alpha = torch.sigmoid(logit)
    alpha = F.interpolate(alpha, size=x.shape[2:], mode=LINEAR_MODE[dims], align_corners=False)
    return alpha * x, alpha


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_grid_gate_softplus_and_softmax_modes(dims):
    """The reference code's 'concatenation_debug' (softplus) and '_residual' (softmax) modes."""
    x, g = _skip_and_gating(dims)
    soft = _randomise(GridAttentionGate(dims, 4, 6, act="softplus"))
    theta, phi = _projections(soft, x, g, dims)
    logit = CONV[dims](F.softplus(theta + phi), soft.psi.weight, soft.psi.bias)
    ref_y, ref_a = _finish(soft, x, logit, dims)
    y, a = soft.attend(x, g)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close(a, ref_a)

    smax = _randomise(GridAttentionGate(dims, 4, 6, normalization="softmax"))
    theta, phi = _projections(smax, x, g, dims)
    logit = CONV[dims](F.relu(theta + phi), smax.psi.weight, smax.psi.bias)
    ref_y, ref_a = _finish(smax, x, logit, dims, softmax=True)
    y, a = smax.attend(x, g)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close(a, ref_a)
    # before resizing, the softmax coefficients of each image sum to one over space
    coarse = torch.softmax(logit.flatten(2), dim=2)
    torch.testing.assert_close(coarse.sum(dim=2), torch.ones(2, 1, dtype=torch.float64))


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("pre_act", [None, "relu"])
def test_conv_mapped_gate_matches_its_equation(dims, pre_act):
    x, g = _skip_and_gating(dims)
    gate = _randomise(ConvMappedAttentionGate(dims, 4, 6, inter_channels=3, pre_act=pre_act))
    theta, phi = _projections(gate, x, g, dims)
    if pre_act == "relu":
        theta, phi = F.relu(theta), F.relu(phi)
    mapped = CONV[dims](torch.cat([theta, phi], 1), gate.mapping.weight, gate.mapping.bias)
    logit = CONV[dims](F.relu(mapped), gate.psi.weight, gate.psi.bias)
    ref_y, ref_a = _finish(gate, x, logit, dims)
    y, a = gate.attend(x, g)
    torch.testing.assert_close(y, ref_y)
    torch.testing.assert_close(a, ref_a)


@pytest.mark.parametrize("dims", [2, 3])
def test_conv_mapped_gate_differs_from_additive_exactly_by_the_mapping(dims):
    """With M = [I | I] and no bias the conv-mapped gate IS the additive grid gate; any other
    M changes the output, and the only extra parameters are M's 2 F**2 + F."""
    x, g = _skip_and_gating(dims)
    additive = _randomise(GridAttentionGate(dims, 4, 6, inter_channels=3))
    mapped = ConvMappedAttentionGate(dims, 4, 6, inter_channels=3).double()
    mapped.load_state_dict(additive.state_dict(), strict=False)
    eye = torch.eye(3, dtype=torch.float64).view(3, 3, *[1] * dims)
    with torch.no_grad():
        mapped.mapping.weight.copy_(torch.cat([eye, eye], dim=1))
        mapped.mapping.bias.zero_()
    torch.testing.assert_close(mapped.attend(x, g)[1], additive.attend(x, g)[1])
    torch.testing.assert_close(mapped(x, g), additive(x, g))
    extra = sum(p.numel() for p in mapped.parameters()) - sum(
        p.numel() for p in additive.parameters()
    )
    assert extra == 2 * 3 * 3 + 3
    with torch.no_grad():
        mapped.mapping.weight[0, 0] += 0.5  # a different linear mixing
    assert not torch.allclose(mapped(x, g), additive(x, g))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_additive_gate_matches_its_equation(dims):
    gate = _randomise(AdditiveAttentionGate(dims, 4, 5, inter_channels=3)).train()
    x = torch.randn(2, 4, *SKIP[dims], dtype=torch.float64)
    g = torch.randn(2, 5, *SKIP[dims], dtype=torch.float64)  # same grid: no stride
    conv = CONV[dims]
    wg = batch_norm_train(conv(g, gate.w_g.conv.weight, gate.w_g.conv.bias), gate.w_g.norm)
    wx = batch_norm_train(conv(x, gate.w_x.conv.weight, gate.w_x.conv.bias), gate.w_x.norm)
    psi = batch_norm_train(
        conv(F.relu(wg + wx), gate.psi.conv.weight, gate.psi.conv.bias), gate.psi.norm
    )
    alpha = torch.sigmoid(psi)
    y, a = gate.attend(x, g)
    torch.testing.assert_close(a, alpha)
    torch.testing.assert_close(y, alpha * x)
    assert gate.gating == "upsampled"


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("act", ["sigmoid", "tanh"])
def test_self_attention_skip(dims, act):
    gate = _randomise(SelfAttentionSkip(dims, 4, act=act))
    x = torch.randn(2, 4, *SKIP[dims], dtype=torch.float64)
    logit = CONV[dims](x, gate.conv.weight, gate.conv.bias)
    alpha = torch.tanh(logit) if act == "tanh" else torch.sigmoid(logit)
    y, a = gate.attend(x, torch.randn(1))  # g is ignored
    torch.testing.assert_close(a, alpha)
    torch.testing.assert_close(y, alpha * x)
    assert sum(p.numel() for p in gate.parameters()) == 4 + 1
    with pytest.raises(ValueError, match="'sigmoid' or 'tanh'"):
        SelfAttentionSkip(dims, 4, act="relu")


@pytest.mark.parametrize("num_gates", [1, 2, 3])
def test_multi_gate_merges_independent_gates(num_gates):
    dims = 3
    x, g = _skip_and_gating(dims)
    gate = _randomise(MultiAttentionGate(dims, 4, 6, num_gates=num_gates)).train()
    outputs, alphas = zip(*(sub.attend(x, g) for sub in gate.gates), strict=True)
    conv, norm = gate.merge.conv, gate.merge.norm
    merged = F.relu(batch_norm_train(F.conv3d(torch.cat(outputs, 1), conv.weight, conv.bias), norm))
    y, a = gate.attend(x, g)
    torch.testing.assert_close(y, merged)
    torch.testing.assert_close(a, torch.cat(alphas, 1))
    assert a.shape == (2, num_gates, *x.shape[2:])
    # Oktay's gate: F_int = C_x, no theta bias, output transform Conv1 + BN
    sub = gate.gates[0]
    assert sub.inter_channels == 4 and sub.theta.bias is None and len(sub.output) == 2
    assert [n for n, _ in sub.output.named_children()] == ["conv", "norm"]


def test_gating_signal_is_conv_norm_act():
    block = _randomise(GridGatingSignal(3, 6, 5)).train()
    x = torch.randn(2, 6, 3, 4, 5, dtype=torch.float64)
    ref = F.relu(batch_norm_train(F.conv3d(x, block.conv.weight, block.conv.bias), block.norm))
    torch.testing.assert_close(block(x), ref)


@pytest.mark.parametrize("name", sorted(GATES))
@pytest.mark.parametrize("dims", [2, 3])
def test_every_gate_plugs_into_the_skeleton(name, dims):
    torch.manual_seed(0)
    model = UNetSkeleton(dims, 1, 2, channels=(4, 8, 16), gate=name)
    x = torch.randn(2, 1, *[9, 10, 11][:dims])
    y, maps = model.forward_with_attention(x)
    assert y.shape == (2, 2, *x.shape[2:])
    assert len(maps) == 2
    for alpha, skip in zip(maps, [(5, 5, 6), (9, 10, 11)], strict=True):
        assert tuple(alpha.shape[2:]) == skip[:dims]
        low = -1.0 if name == "self" else 0.0  # tanh is opt-in; sigmoid is the default
        assert alpha.min() >= low and alpha.max() <= 1.0
    y.square().mean().backward()
    # a bias right before a training-mode batch norm is subtracted again with the batch
    # mean: its true gradient is 0 (what float rounding leaves of it depends on the layout)
    cancelled = {
        f"{name}.conv.bias"
        for name, m in model.named_modules()
        if isinstance(getattr(m, "norm", None), nn.modules.batchnorm._BatchNorm)
        and isinstance(getattr(m, "conv", None), nn.Conv2d | nn.Conv3d)
    }
    for pname, p in model.named_parameters():
        assert p.grad is not None, pname
        if pname in cancelled:
            assert p.grad.abs().max() <= 1e-5, pname
        else:
            assert p.grad.abs().sum() > 0, pname


def test_gate_specs_and_errors():
    assert isinstance(build_gate("additive", 2, 8, 8), AdditiveAttentionGate)
    multi = build_gate(("multi", {"gate": "conv_mapped_oktay", "num_gates": 1}), 2, 8, 16)
    assert isinstance(multi.gates[0], ConvMappedAttentionGate)
    with pytest.raises(ValueError, match="num_gates must be a positive int"):
        MultiAttentionGate(2, 4, 8, num_gates=0)
    with pytest.raises(ValueError, match="needs a gate spec"):
        MultiAttentionGate(2, 4, 8, gate=None)
    with pytest.raises(ValueError, match="normalization must be"):
        GridAttentionGate(2, 4, 8, normalization="tanh")
    with pytest.raises(ValueError, match="gating must be"):
        GridAttentionGate(2, 4, 8, gating="fine")
