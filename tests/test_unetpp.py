"""UNet++ and Attention UNet++: hand counts, a hand-written forward, pruning, export."""

import functools
import json
import math

import pytest
import torch
import torch.nn.functional as F
from _reference import ODD_SIZES, assert_outputs_close
from torch import nn

from attnunet import create_model
from attnunet.blocks import SkipGate
from attnunet.models.unetpp import AttentionUNetPlusPlus, UNetPlusPlus

NAMES = ["unet_plus_plus", "attention_unet_plus_plus"]
CLASSES = {"unet_plus_plus": UNetPlusPlus, "attention_unet_plus_plus": AttentionUNetPlusPlus}
TINY = (2, 4, 8)  # depth 2
# deep-supervision settings: (deep_supervision, ds_mode, fast_column)
DS = {
    "none": {},
    "list": {"deep_supervision": True, "ds_mode": "list"},
    "accurate": {"deep_supervision": True, "ds_mode": "accurate"},
    "fast": {"deep_supervision": True, "ds_mode": "fast", "fast_column": 1},
}
CONV_T = {2: F.conv_transpose2d, 3: F.conv_transpose3d}
MAX_POOL = {2: F.max_pool2d, 3: F.max_pool3d}


def _randomise(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial weights and batch-norm statistics, so every term of the forward counts."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return model


def _gate_order(depth: int, last: int) -> list[tuple[int, int, int]]:
    """(i, j, k) of every gate in forward_with_attention's order: column, row, source."""
    return [
        (i, j, k)
        for j in range(1, depth + 1)
        for i in range(depth - j + 1)
        if i + j <= last
        for k in range(j)
    ]


# ----------------------------------------------------------------------------- counts
def test_hand_counted_parameters_2d_and_3d():
    # channels (2, 4, 8), batch norm, no conv bias, k3, transposed conv k2, 1 -> 1 channel.
    # A DoubleConv(a -> b) has a*b*K + 2b + b*b*K + 2b parameters, K = 9 (2D) or 27 (3D);
    # a ConvT(a -> b, k2) has a*b*T + b, T = 4 (2D) or 8 (3D); a head 2*1 + 1 = 3.
    # 2D:
    #   X00  DoubleConv(1->2):  18 + 4 + 36 + 4                         =   62
    #   X10  DoubleConv(2->4):  72 + 8 + 144 + 8                        =  232
    #   X20  DoubleConv(4->8):  288 + 16 + 576 + 16                     =  896
    #   X01  ConvT(4->2) 32 + 2, DoubleConv(2*2 -> 2) 72 + 4 + 36 + 4   =   34 + 116
    #   X11  ConvT(8->4) 128 + 4, DoubleConv(2*4 -> 4) 288 + 8 + 144 + 8 =  132 + 448
    #   X02  ConvT(4->2) 34, DoubleConv(3*2 -> 2) 108 + 4 + 36 + 4      =   34 + 152
    #   head                                                            =    3
    assert UNetPlusPlus(2, 1, 1, channels=TINY).num_parameters() == (
        62 + 232 + 896 + (34 + 116) + (132 + 448) + (34 + 152) + 3
    )  # 2109
    # deep supervision adds the head of X01: + 3
    assert UNetPlusPlus(2, 1, 1, channels=TINY, deep_supervision=True).num_parameters() == 2112
    # SelfAttentionSkip is a biased Conv1(C -> 1): C + 1 per gate. Gates: X01 one on C=2
    # (3), X11 one on C=4 (5), X02 two on C=2 (2 * 3): + 14
    assert AttentionUNetPlusPlus(2, 1, 1, channels=TINY).num_parameters() == 2109 + 14
    # 3D:
    #   X00  54 + 4 + 108 + 4 = 170;  X10  216 + 8 + 432 + 8 = 664
    #   X20  864 + 16 + 1728 + 16 = 2624
    #   X01  ConvT 4*2*8 + 2 = 66, DoubleConv(4 -> 2) 216 + 4 + 108 + 4 = 332
    #   X11  ConvT 8*4*8 + 4 = 260, DoubleConv(8 -> 4) 864 + 8 + 432 + 8 = 1312
    #   X02  ConvT 66, DoubleConv(6 -> 2) 324 + 4 + 108 + 4 = 440;  head 3
    assert UNetPlusPlus(3, 1, 1, channels=TINY).num_parameters() == (
        170 + 664 + 2624 + (66 + 332) + (260 + 1312) + (66 + 440) + 3
    )  # 5937
    assert AttentionUNetPlusPlus(3, 1, 1, channels=TINY).num_parameters() == 5937 + 14


def test_upsample_mode_widens_the_node_blocks():
    # with up="upsample" X[i, j] takes j * channels[i] + channels[i + 1] channels
    model = UNetPlusPlus(2, 1, 1, channels=TINY, up="upsample")
    widths = {(i, j): model.nodes[j][i].block.conv1.conv.in_channels for i, j in _nodes(2)}
    assert widths == {(0, 1): 2 + 4, (1, 1): 4 + 8, (0, 2): 2 * 2 + 4}


def _nodes(depth: int) -> list[tuple[int, int]]:
    return [(i, j) for j in range(1, depth + 1) for i in range(depth - j + 1)]


# ----------------------------------------------------------------------------- reference
@pytest.mark.parametrize("dims", [2, 3])
def test_forward_equals_the_nested_forward_written_out(dims):
    """The textbook order X00, X10, X01, X20, X11, X02 with the model's own blocks."""
    model = UNetPlusPlus(dims, 1, 2, channels=TINY, deep_supervision=True, ds_mode="list")
    model = _randomise(model).double().eval()
    x = torch.randn(2, 1, *((12, 16) if dims == 2 else (4, 8, 12)), dtype=torch.float64)
    enc, nodes = model.encoder.stages, model.nodes

    def up(node, coarse):  # transposed conv k2 s2, written out
        return CONV_T[dims](coarse, node.up.op.weight, node.up.op.bias, stride=2)

    with torch.no_grad():
        x00 = enc[0].block(x)
        x10 = enc[1].block(MAX_POOL[dims](x00, 2))
        x01 = nodes[1][0].block(torch.cat([x00, up(nodes[1][0], x10)], dim=1))
        x20 = enc[2].block(MAX_POOL[dims](x10, 2))
        x11 = nodes[1][1].block(torch.cat([x10, up(nodes[1][1], x20)], dim=1))
        x02 = nodes[2][0].block(torch.cat([x00, x01, up(nodes[2][0], x11)], dim=1))
        expected = [model.heads[0](x02), model.heads[1](x01)]
        outputs = model(x)
    assert_outputs_close(outputs, expected, rtol=1e-12, atol=1e-12)
    assert not torch.allclose(expected[0], expected[1])


def test_open_self_attention_gates_equal_plain_unet_plus_plus():
    torch.manual_seed(0)
    attention = AttentionUNetPlusPlus(2, 1, 2, channels=TINY, deep_supervision=True, ds_mode="list")
    attention = _randomise(attention).double().eval()
    plain = UNetPlusPlus(2, 1, 2, channels=TINY, deep_supervision=True, ds_mode="list")
    plain = plain.double().eval()
    result = plain.load_state_dict(attention.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(".gates." in k for k in result.unexpected_keys)
    x = torch.randn(1, 1, 16, 20, dtype=torch.float64)
    with torch.no_grad():
        gated = attention(x)
        for i, j in _nodes(2):
            for gate in attention.nodes[j][i].gates:
                gate.conv.weight.zero_()
                gate.conv.bias.fill_(50.0)  # sigmoid(50) == 1 in float64
        opened = attention(x)
        assert_outputs_close(opened, plain(x), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(gated[0], opened[0])  # the trained gates do change the output


# ----------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 1), (3, 2)])
@pytest.mark.parametrize("policy", ["pad", "resize"])
@pytest.mark.parametrize("ds", list(DS))
def test_shape_matrix(name, dims, in_channels, num_classes, policy, ds):
    torch.manual_seed(0)
    model = create_model(
        name,
        spatial_dims=dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=TINY,
        size_policy=policy,
        **DS[ds],
    ).eval()
    size = ODD_SIZES[dims]
    x = torch.randn(2, in_channels, *size)
    with torch.no_grad():
        out, maps = model.forward_with_attention(x)
        assert_outputs_close(model(x), out)  # forward_with_attention does not change the output
    full = (2, num_classes, *size)
    if ds == "list":
        assert [tuple(y.shape) for y in out] == [full, full]
        assert not torch.allclose(out[0], out[1])
    else:
        assert isinstance(out, torch.Tensor) and tuple(out.shape) == full
        assert torch.isfinite(out).all()
    # level sizes: ceil(S / 2**i) under pad; S floor-halved i times under resize
    level = {
        i: [math.ceil(s / 2**i) if policy == "pad" else s // 2**i for s in size] for i in (0, 1)
    }
    expected = _gate_order(2, 1 if ds == "fast" else 2) if name != "unet_plus_plus" else []
    assert [list(a.shape) for a in maps] == [[2, 1, *level[i]] for i, _, _ in expected]
    for alpha in maps:
        assert alpha.min() >= 0 and alpha.max() <= 1


@pytest.mark.parametrize("dims", [2, 3])
def test_pad_equals_manual_pad_and_crop(dims):
    model = _randomise(AttentionUNetPlusPlus(dims, 1, 1, channels=TINY)).eval()
    size = ODD_SIZES[dims]
    x = torch.randn(1, 1, *size)
    padded = torch.zeros(1, 1, *[math.ceil(s / 4) * 4 for s in size])
    crop = (slice(None), slice(None), *[slice(0, s) for s in size])
    padded[crop] = x
    with torch.no_grad():
        y, maps = model.forward_with_attention(x)
        ref, ref_maps = model.forward_with_attention(padded)
    torch.testing.assert_close(y, ref[crop])
    for (i, _, _), alpha, ref_alpha in zip(_gate_order(2, 2), maps, ref_maps, strict=True):
        keep = (slice(None), slice(None), *[slice(0, math.ceil(s / 2**i)) for s in size])
        torch.testing.assert_close(alpha, ref_alpha[keep])


# ----------------------------------------------------------------------------- gates
class _RecordingGate(SkipGate):
    """A gate that logs what it is fed (eager only)."""

    def __init__(self, spatial_dims, in_channels, gating_channels, gating, log):
        super().__init__(gating)
        self.gating_channels = gating_channels
        self.log = log
        self.conv = nn.Conv2d(in_channels, 1, 1)

    def attend(self, x, g):
        self.log.append((self, x, g))
        alpha = torch.sigmoid(self.conv(x))
        return alpha * x, alpha


@pytest.mark.parametrize("gating", ["coarse", "upsampled"])
def test_gates_get_their_skip_and_the_documented_gating_feature(gating):
    log: list = []
    spec = functools.partial(_RecordingGate, gating=gating, log=log)
    chans = (2, 4, 8, 16)
    model = AttentionUNetPlusPlus(2, 1, 1, channels=chans, gate=spec).eval()
    features: dict = {}
    for i, stage in enumerate(model.encoder.stages):
        stage.register_forward_hook(lambda m, a, out, i=i: features.__setitem__((i, 0), out))
    for i, j in _nodes(3):
        node = model.nodes[j][i]
        node.register_forward_hook(lambda m, a, out, i=i, j=j: features.__setitem__((i, j), out[0]))
        node.up.register_forward_hook(
            lambda m, a, out, i=i, j=j: features.__setitem__(("up", i, j), out)
        )
    with torch.no_grad():
        _, maps = model.forward_with_attention(torch.randn(1, 1, 24, 16))
    order = _gate_order(3, 3)
    assert len(log) == len(maps) == len(order) == 1 * 3 + 2 * 2 + 3 * 1
    for (i, j, k), (gate, x, g), alpha in zip(order, log, maps, strict=True):
        assert gate is model.nodes[j][i].gates[k]
        assert x is features[(i, k)]
        if gating == "coarse":
            assert g is features[(i + 1, j - 1)] and gate.gating_channels == chans[i + 1]
        else:
            assert g is features[("up", i, j)] and gate.gating_channels == chans[i]
        torch.testing.assert_close(alpha, torch.sigmoid(gate.conv(x)))


@pytest.mark.parametrize("gate", ["grid", "additive", ("multi", {"gate": "grid", "num_gates": 2})])
def test_other_gate_specs(gate):
    model = AttentionUNetPlusPlus(3, 1, 2, channels=TINY, gate=gate, up="upsample")
    x = torch.randn(2, 1, 7, 10, 5)
    out, maps = model.forward_with_attention(x)
    out.mean().backward()
    assert len(maps) == 4
    gates = [model.nodes[j][i].gates[k] for i, j, k in _gate_order(2, 2)]
    assert len({id(g) for g in gates}) == 4  # one module per (node, skip) pair
    for (i, _, _), g in zip(_gate_order(2, 2), gates, strict=True):
        if gate == "grid":  # coarse gating: g = X[i + 1, j - 1] with channels[i + 1]
            assert g.phi.in_channels == TINY[i + 1]
        elif gate == "additive":  # the up-sampled feature (up="upsample": channels[i + 1])
            assert g.w_g[0].in_channels == TINY[i + 1]
    assert all(p.grad is not None for p in model.parameters())


# Gradients reaching every parameter with deep supervision (ds_mode="list"), and
# TorchScript, torch.export, reloading and checkpointing without it, are cases of the
# model zoo tester (tests/test_zoo.py) for both models in 1D, 2D and 3D.


# ----------------------------------------------------------------------------- DS modes
@pytest.mark.parametrize("name", NAMES)
def test_accurate_is_the_mean_and_fast_is_the_pruned_list_entry(name):
    chans = (2, 4, 8, 16)  # depth 3
    config = {"channels": chans, "deep_supervision": True}
    listed = _randomise(create_model(name, ds_mode="list", **config)).eval()
    x = torch.randn(2, 1, 17, 12)
    with torch.no_grad():
        outputs = listed(x)
    assert len(outputs) == 3
    accurate = create_model(name, ds_mode="accurate", **config).eval()
    accurate.load_state_dict(listed.state_dict())  # strict: ds_mode keeps the state dict
    with torch.no_grad():
        torch.testing.assert_close(accurate(x), (outputs[0] + outputs[1] + outputs[2]) / 3)
    ran: set = set()
    for column in (1, 2, 3):
        fast = create_model(name, ds_mode="fast", fast_column=column, **config).eval()
        fast.load_state_dict(listed.state_dict())
        ran.clear()
        for i, stage in enumerate(fast.encoder.stages):
            stage.register_forward_hook(lambda *_, i=i: ran.add(("X", i, 0)))
        for i, j in _nodes(3):
            fast.nodes[j][i].register_forward_hook(lambda *_, i=i, j=j: ran.add(("X", i, j)))
        for k, head in enumerate(fast.heads):
            head.register_forward_hook(lambda *_, k=k: ran.add(("head", k)))
        with torch.no_grad():
            y = fast(x)
        torch.testing.assert_close(y, outputs[3 - column])  # list[k] is column d - k
        needed = {("X", i, j) for i in range(4) for j in range(4) if i + j <= column}
        assert ran == needed | {("head", 3 - column)}, column
    # default column is d
    assert create_model(name, ds_mode="fast", **config).fast_column == 3


def test_deep_supervision_checkpoint_loads_into_a_plain_model():
    listed = _randomise(UNetPlusPlus(2, channels=TINY, deep_supervision=True, ds_mode="list"))
    plain = UNetPlusPlus(2, channels=TINY).eval()
    result = plain.load_state_dict(listed.state_dict(), strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == [
        "heads.1.conv.weight",
        "heads.1.conv.bias",
    ]
    x = torch.randn(1, 1, 12, 9)
    with torch.no_grad():
        torch.testing.assert_close(plain(x), listed.eval()(x)[0])


# ----------------------------------------------------------------------------- config, keys
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"deep_supervision": True, "ds_mode": "fast", "fast_column": 1, "spatial_dims": 3},
        {"norm": ("group", {"num_groups": 2}), "act": "gelu", "up": "upsample", "dropout": 0.1},
        {"block": "residual", "down": "conv", "up": "interp", "size_policy": "resize"},
        {"channels": 2, "depth": 3, "deep_supervision": True, "ds_mode": "list"},
    ],
)
def test_config_round_trip_through_json(name, options):
    model = create_model(name, **{"channels": TINY, **options}).eval()
    config = json.loads(json.dumps(model.config))
    assert "depth" not in config and config["channels"] == list(model.channels)
    for rebuilt in (create_model(name, **config), CLASSES[name](**config)):
        assert type(rebuilt) is type(model)
        assert json.loads(json.dumps(rebuilt.config)) == config
        rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes
        x = torch.randn(1, 1, *[9] * model.spatial_dims)
        with torch.no_grad():
            assert_outputs_close(rebuilt.eval()(x), model(x))


def test_state_dict_keys_are_stable(state_dict_keys):
    for name in NAMES:
        model = create_model(name, spatial_dims=2, channels=[4, 8, 16], deep_supervision=True)
        assert list(model.state_dict()) == state_dict_keys[name], name


# ----------------------------------------------------------------------------- export
@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ds", ["accurate", "fast"])
def test_torchscript_and_export_match_eager(name, ds, tmp_path):
    """The mean of the heads (3D) and the pruned network (2D) through TorchScript, a saved
    and loaded script, and torch.export (the other forms are in the model zoo tester)."""
    dims = 3 if ds == "accurate" else 2
    model = _randomise(create_model(name, spatial_dims=dims, channels=TINY, **DS[ds])).eval()
    x = torch.randn(1, 1, *ODD_SIZES[dims])
    scripted = torch.jit.script(model)
    path = tmp_path / "model.pt"
    torch.jit.save(scripted, str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        expected, expected_maps = model.forward_with_attention(x)
        assert_outputs_close(scripted(x), expected)
        assert_outputs_close(loaded(x), expected)
        out, maps = loaded.forward_with_attention(x)
        assert_outputs_close(out, expected)
        assert_outputs_close(maps, expected_maps)
        assert len(maps) == (0 if name == "unet_plus_plus" else (1 if ds == "fast" else 4))
        exported = torch.export.export(model, (x,))
        assert_outputs_close(exported.module()(x), expected)
        other = torch.randn(1, 1, *ODD_SIZES[dims])
        assert_outputs_close(exported.module()(other), model(other))
    with pytest.raises(Exception, match="input channel"):
        loaded(torch.randn(1, 2, *ODD_SIZES[dims]))


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deep_supervision": True, "ds_mode": "mean"}, "ds_mode must be one of 'accurate'"),
        ({"ds_mode": "fastest"}, "ds_mode must be one of"),
        (
            {"deep_supervision": True, "ds_mode": "fast", "fast_column": 3},
            r"fast_column must be a column in 1\.\.2",
        ),
        (
            {"deep_supervision": True, "ds_mode": "fast", "fast_column": 0},
            r"fast_column must be a column in 1\.\.2",
        ),
        ({"deep_supervision": True, "ds_mode": "fast", "fast_column": True}, "fast_column must"),
        ({"deep_supervision": True, "ds_mode": "list", "fast_column": 1}, "only with"),
        ({"fast_column": 2}, "applies only with deep_supervision=True and ds_mode='fast'"),
        ({"channels": [4]}, "at least two widths"),
        ({"size_policy": "crop"}, "size_policy must be one of"),
        ({"gate": "grd"}, "Did you mean 'grid'"),
    ],
)
def test_invalid_configuration_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetPlusPlus(**{"channels": TINY, **kwargs})


def test_attention_model_needs_a_gate():
    with pytest.raises(ValueError, match="use UNetPlusPlus for plain skips"):
        AttentionUNetPlusPlus(gate=None)


@pytest.mark.parametrize("cls", [UNetPlusPlus, AttentionUNetPlusPlus])
def test_input_errors(cls):
    model = cls(3, 2, 1, channels=TINY)
    with pytest.raises(ValueError, match=r"expected 2 input channel\(s\).*in_channels=1"):
        model(torch.randn(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"expected a 5D input \(B, C, D, H, W\)"):
        model(torch.randn(2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"expected a 5D input"):
        model.forward_with_attention(torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="needs at least 4 voxels"):
        cls(2, 1, 1, channels=TINY, size_policy="resize")(torch.randn(1, 1, 3, 9))


def test_registry_entries():
    from attnunet import list_models, model_info

    assert set(NAMES) <= set(list_models("*plus_plus", spatial_dims=1))
    for name in NAMES:
        info = model_info(name)
        assert info.model_class is CLASSES[name] and "arXiv:1807.10165" in info.paper
    assert create_model("attention_unet_plus_plus").config["gate"] == "self"
    assert create_model("unet_plus_plus").config["gate"] is None
    assert create_model("unet_plus_plus", spatial_dims=1, channels=TINY)(
        torch.randn(1, 1, 21)
    ).shape == (1, 1, 21)
