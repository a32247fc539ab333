"""The U-Net family: shape matrix from the registry, references, attention, size policy.

What every registered model must do (forward and backward, reloading, TorchScript,
torch.export, torch.compile, checkpointing, deep supervision) is checked by the model zoo
tester, tests/test_zoo.py; this file checks what is particular to the family.
"""

import json
import math

import pytest
import torch
from _reference import ODD_SIZES, TINY_CHANNELS

import attnunet
from attnunet import (
    AgResUNet,
    AgUNet,
    RAUNet,
    ResUNet,
    UNet,
    UNetPlusPlus,
    UNetSkeleton,
    create_model,
    list_models,
    model_info,
)
from attnunet.blocks import SkipGate
from attnunet.models import accepted_kwargs
from attnunet.models.convert import convert_agv_unet_state_dict

# the U-Net family: every registered model built from widths (`channels`); encoder-based
# models (RAUNet) have their own test file
FAMILY = [
    name
    for name in list_models(presets=False)
    if "channels" in (accepted_kwargs(model_info(name).model_class) or [])
]
# gated skips per model at depth d: every skip, every skip but the finest, or none
GATED_SKIPS = {"ag_unet": 0, "ag_res_unet": 0, "attention_unet": 1}
NESTED = {"unet_plus_plus", "attention_unet_plus_plus"}  # heads all at full resolution


def test_the_registry_holds_the_family():
    assert FAMILY == [
        "ag_res_unet",
        "ag_unet",
        "attention_unet",
        "attention_unet_plus_plus",
        "res_unet",
        "unet",
        "unet_plus_plus",
    ]


# ----------------------------------------------------------------------------- shape matrix
@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 1), (3, 4)])
@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_shape_matrix(name, dims, in_channels, num_classes, policy):
    model = create_model(
        name,
        spatial_dims=dims,
        in_channels=in_channels,
        num_classes=num_classes,
        channels=TINY_CHANNELS,
        size_policy=policy,
    ).eval()
    x = torch.randn(2, in_channels, *ODD_SIZES[dims])
    with torch.no_grad():
        y, maps = model.forward_with_attention(x)
    assert y.shape == (2, num_classes, *ODD_SIZES[dims])
    assert torch.isfinite(y).all()
    d = len(TINY_CHANNELS) - 1
    if name == "attention_unet_plus_plus":  # node X[i, j] gates its j same-level skips
        assert len(maps) == sum(j * (d - j + 1) for j in range(1, d + 1))
    else:
        assert len(maps) == (d - GATED_SKIPS[name] if name in GATED_SKIPS else 0)


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("dims", [2, 3])
def test_deep_supervision_contract(name, dims):
    size = ODD_SIZES[dims]
    model = create_model(
        name, spatial_dims=dims, num_classes=1, channels=(4, 8, 16, 32), deep_supervision=True
    )
    x = torch.randn(2, 1, *size)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        outputs = model(x)
        assert isinstance(outputs, list) and len(outputs) == 3  # one per decoder level
        for k, y in enumerate(outputs):
            scale = 1 if name in NESTED else 2**k
            assert y.shape == (2, 1, *[math.ceil(s / scale) for s in size]), (mode, k)


# ----------------------------------------------------------------------------- references
KRD_REFERENCE_PARAMS = {
    # counted on the reference agv-unet models (models/*.py of its final commit) built with
    # {"root channel": 16, "batch normalization": True, "dropout": 0}, RGB input, 1 output
    "unet_krd": 2_161_649,
    "ag_unet_krd": 2_292_933,
    "res_unet_krd": 2_249_473,
    "ag_res_unet_krd": 2_380_757,
}


@pytest.mark.parametrize(("name", "count"), KRD_REFERENCE_PARAMS.items())
def test_preset_parameter_count_equals_reference(name, count):
    model = create_model(name)
    assert model.num_parameters() == count
    assert model_info(name).is_preset and model_info(name).defaults["in_channels"] == 3


def test_hand_counted_parameters_2d_and_3d():
    # UNet(channels=(2, 4)), batch norm, no conv bias, k3, transposed conv k2:
    #   stage 0  DoubleConv(1->2): 1*2*9 + 2+2 + 2*2*9 + 2+2            =  62
    #   stage 1  DoubleConv(2->4): 2*4*9 + 4+4 + 4*4*9 + 4+4            = 232
    #   up       ConvT(4->2, k2):  4*2*4 + 2                              =  34
    #   level    DoubleConv(4->2): 4*2*9 + 2+2 + 2*2*9 + 2+2            = 116
    #   head     Conv1(2->1):      2 + 1                                  =   3
    assert UNet(2, 1, 1, channels=(2, 4)).num_parameters() == 62 + 232 + 34 + 116 + 3
    # the same in 3D (k3 -> 27 weights per pair, ConvT k2 -> 8):
    #   170 + 664 + 66 + 332 + 3
    assert UNet(3, 1, 1, channels=(2, 4)).num_parameters() == 170 + 664 + 66 + 332 + 3
    # ResUNet adds a biased 1x1 projection per block: (1*2+2) + (2*4+4) + (4*2+2)
    assert ResUNet(2, 1, 1, channels=(2, 4)).num_parameters() == 447 + 4 + 12 + 10
    # AgUNet adds a grid_krd gate on the one skip: phi 4*2+2, theta 2*2*4+2, psi 2+1
    assert AgUNet(2, 1, 1, channels=(2, 4)).num_parameters() == 447 + 10 + 18 + 3


@pytest.mark.parametrize(
    ("variant", "preset"),
    [
        ("UNet", "unet_krd"),
        ("AgUNet", "ag_unet_krd"),
        ("ResUNet", "res_unet_krd"),
        ("AgResUNet", "ag_res_unet_krd"),
    ],
)
def test_reference_weights_reproduce_reference_outputs(variant, preset, data_dir):
    """Golden outputs of the reference agv-unet models.

    tests/data/agv_unet_golden_root2.pt was made by building each reference model
    (root channel 2, batch norm, dropout 0) under torch.manual_seed(1234), running three
    training-mode passes on random inputs to move the BN statistics, then saving its
    state_dict and its sigmoid outputs on a fixed (2, 3, 32, 48) input in train and eval
    mode. Only those tensors are stored; none of the reference code is.
    """
    golden = torch.load(data_dir / "agv_unet_golden_root2.pt", weights_only=True)
    model = create_model(preset, channels=[2, 4, 8, 16, 32])
    model.load_state_dict(convert_agv_unet_state_dict(golden[variant]["state_dict"]))
    x = golden["input"]
    with torch.no_grad():
        model.eval()
        torch.testing.assert_close(torch.sigmoid(model(x)), golden[variant]["eval_sigmoid"])
        model.train()
        torch.testing.assert_close(torch.sigmoid(model(x)), golden[variant]["train_sigmoid"])


def test_converter_rejects_unknown_keys():
    with pytest.raises(KeyError, match=r"does not recognise 'decoder\.foo'"):
        convert_agv_unet_state_dict({"decoder.foo": torch.zeros(1)})


# Gradients reaching every parameter (with and without deep supervision), reloading,
# TorchScript, torch.export, torch.compile and checkpointing of every registered model are
# cases of the model zoo tester, tests/test_zoo.py.


# ----------------------------------------------------------------------------- attention
@pytest.mark.parametrize("cls", [AgUNet, AgResUNet])
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_attention_maps_lie_in_unit_interval_at_skip_size(cls, dims, policy):
    size = ODD_SIZES[dims]
    model = cls(dims, 1, 2, channels=(4, 8, 16, 32), size_policy=policy).eval()
    x = torch.randn(1, 1, *size)
    with torch.no_grad():
        y, maps = model.forward_with_attention(x)
        features = model.encoder(model._prepare(x)[0]) if policy == "resize" else None
    torch.testing.assert_close(y, model(x))  # same output as forward
    assert len(maps) == 3
    for i, alpha in enumerate(maps):  # coarsest gate first
        level = 2 - i
        if policy == "pad":
            expected = [math.ceil(s / 2**level) for s in size]
        else:
            expected = list(features[level].shape[2:])
        assert list(alpha.shape) == [1, 1, *expected]
        assert alpha.min() >= 0 and alpha.max() <= 1


def test_attention_hooks_see_the_same_maps():
    model = AgResUNet(2, 1, 1, channels=TINY_CHANNELS).eval()
    seen = {}
    for i, level in enumerate(model.decoder.levels):
        level.gate.coefficients.register_forward_hook(
            lambda m, inp, out, i=i: seen.__setitem__(i, out)
        )
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        _, maps = model.forward_with_attention(x)
    assert sorted(seen) == [0, 1]
    for i, alpha in enumerate(maps):
        torch.testing.assert_close(seen[i], alpha)


def test_gate_levels_choose_which_skips_are_gated():
    model = AgUNet(2, 1, 1, channels=(4, 8, 16, 32), gate_levels=[1, 2])
    gated = [level.gate is not None for level in model.decoder.levels]
    assert gated == [True, True, False]  # levels run coarse to fine: skips 2, 1, 0
    _, maps = model.eval().forward_with_attention(torch.randn(1, 1, 33, 20))
    assert [list(a.shape[2:]) for a in maps] == [[9, 5], [17, 10]]
    assert model.config["gate_levels"] == [1, 2]


def test_attention_changes_the_output():
    """A gate that passes everything (alpha = 1) must differ from the trained gate path."""
    torch.manual_seed(0)
    model = AgUNet(2, 1, 1, channels=TINY_CHANNELS).eval()
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        y = model(x)
        for level in model.decoder.levels:  # psi bias +inf: sigmoid saturates at 1
            level.gate.psi.weight.zero_()
            level.gate.psi.bias.fill_(50.0)
        y_open = model(x)
        plain = UNet(2, 1, 1, channels=TINY_CHANNELS).eval()
        plain.load_state_dict(model.state_dict(), strict=False)
        torch.testing.assert_close(y_open, plain(x))  # open gates = plain U-Net
    assert not torch.allclose(y, y_open)


# ----------------------------------------------------------------------------- input sizes
@pytest.mark.parametrize("dims", [2, 3])
def test_pad_equals_manual_pad_and_crop(dims):
    torch.manual_seed(0)
    model = AgResUNet(dims, 1, 1, channels=TINY_CHANNELS).eval()
    size = ODD_SIZES[dims]
    x = torch.randn(1, 1, *size)
    padded = torch.zeros(1, 1, *[math.ceil(s / 4) * 4 for s in size])
    padded[(slice(None), slice(None), *[slice(0, s) for s in size])] = x
    with torch.no_grad():
        y = model(x)
        ref = model(padded)[(slice(None), slice(None), *[slice(0, s) for s in size])]
    torch.testing.assert_close(y, ref)


def test_policies_agree_on_divisible_sizes():
    torch.manual_seed(0)
    pad = AgResUNet(3, 1, 2, channels=TINY_CHANNELS).eval()
    resize = AgResUNet(3, 1, 2, channels=TINY_CHANNELS, size_policy="resize").eval()
    error = AgResUNet(3, 1, 2, channels=TINY_CHANNELS, size_policy="error").eval()
    resize.load_state_dict(pad.state_dict())
    error.load_state_dict(pad.state_dict())
    x = torch.randn(1, 1, 8, 12, 16)
    with torch.no_grad():
        torch.testing.assert_close(pad(x), resize(x))
        torch.testing.assert_close(pad(x), error(x))


def test_error_policy_names_sizes_that_work():
    model = UNet(2, 1, 1, channels=(4, 8, 16, 32, 64), size_policy="error")
    with pytest.raises(ValueError, match=r"\[48, 64\] or \[32, 48\]"):
        model(torch.randn(1, 1, 41, 57))


def test_resize_policy_rejects_too_small_inputs():
    model = UNet(2, 1, 1, channels=(4, 8, 16, 32, 64), size_policy="resize")
    with pytest.raises(ValueError, match="needs at least 16 voxels"):
        model(torch.randn(1, 1, 15, 40))
    # the default pads instead, down to a single voxel
    assert UNet(2, 1, 1, channels=(4, 8, 16)).eval()(torch.randn(1, 1, 1, 3)).shape[2:] == (1, 3)


# ----------------------------------------------------------------------------- config, keys
def test_state_dict_keys_are_stable(state_dict_keys):
    """State-dict keys are public API: change them only with a CHANGELOG entry."""
    for name in FAMILY:
        model = create_model(name, spatial_dims=2, channels=[4, 8, 16], deep_supervision=True)
        assert list(model.state_dict()) == state_dict_keys[name], name


# ----------------------------------------------------------------------------- options
@pytest.mark.parametrize(
    "options",
    [
        {"norm": "instance", "act": "leaky_relu"},
        {"norm": ("group", {"num_groups": 2}), "act": "gelu", "dropout": 0.2},
        {"norm": "layer", "down": "conv", "up": "interp"},
        {"norm": None, "down": "avgpool", "up": "interp", "up_kernel_size": 3, "kernel_size": 5},
        {"block": ("residual", {"shortcut": "auto"}), "channels": [4, 4, 4]},
        {"gate": ("grid", {"output_transform": True}), "conv_bias": True},
        {"channels": 4, "depth": 3},
    ],
)
def test_skeleton_options(options):
    kwargs = {"channels": TINY_CHANNELS, **options}
    model = UNetSkeleton(3, 2, 3, **kwargs)
    y = model(torch.randn(2, 2, 9, 10, 11))
    assert y.shape == (2, 3, 9, 10, 11)
    y.mean().backward()
    rebuilt = UNetSkeleton(**json.loads(json.dumps(model.config)))
    rebuilt.load_state_dict(model.state_dict())


def test_int_channels_expand_by_doubling():
    assert UNet(2, channels=16, depth=4).channels == [16, 32, 64, 128, 256]
    assert UNet(2, channels=8).config["channels"] == [8, 16, 32, 64, 128]


def test_norm_and_bias_choices_are_honoured():
    model = UNet(2, channels=TINY_CHANNELS, norm="instance", kernel_size=5)
    conv = model.encoder.stages[0].block.conv1
    assert type(conv.norm).__name__ == "InstanceNorm2d" and conv.conv.kernel_size == (5, 5)
    assert conv.conv.bias is None
    assert (
        UNet(2, channels=TINY_CHANNELS, norm=None).encoder.stages[0].block.conv1.conv.bias
        is not None
    )
    assert (
        UNet(2, channels=TINY_CHANNELS, conv_bias=True).encoder.stages[0].block.conv1.conv.bias
        is not None
    )


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"spatial_dims": 4}, ValueError, "spatial_dims=4 is not supported"),
        ({"spatial_dims": 2.0}, TypeError, "spatial_dims must be an int"),
        ({"channels": 16, "depth": -1}, ValueError, "depth must be a positive int"),
        ({"channels": 16, "depth": 0}, ValueError, "depth must be a positive int"),
        ({"channels": [16]}, ValueError, "at least two widths"),
        ({"channels": [16, 0]}, ValueError, "positive int"),
        ({"channels": [8, 16], "depth": 3}, ValueError, "contradicts"),
        ({"in_channels": 0}, ValueError, "in_channels must be a positive int"),
        ({"num_classes": 0}, ValueError, "num_classes must be a positive int"),
        ({"dropout": 1.0}, ValueError, "dropout must be a probability"),
        ({"norm": "batchnorm"}, ValueError, "Did you mean 'batch'"),
        ({"gate": "grd"}, ValueError, "Did you mean 'grid'"),
        ({"block": "resnet"}, ValueError, "Unknown block"),
        ({"size_policy": "crop"}, ValueError, "size_policy must be one of"),
        ({"gate": "grid", "gate_levels": [4]}, ValueError, "gate_levels must hold skip indices"),
        ({"down": "pool"}, ValueError, "down mode must be"),
        ({"up": "pixelshuffle"}, ValueError, "up mode must be"),
    ],
)
def test_invalid_configuration_errors(kwargs, error, message):
    with pytest.raises(error, match=message):
        UNetSkeleton(**{"channels": [4, 8, 16], **kwargs})


def test_family_members_fix_their_choices():
    with pytest.raises(TypeError, match="UNet fixes block='double'"):
        UNet(block="residual")
    with pytest.raises(TypeError, match="ResUNet fixes gate=None"):
        ResUNet(gate="grid")


@pytest.mark.parametrize("cls", [UNet, AgResUNet])
def test_input_errors(cls):
    model = cls(3, 2, 1, channels=TINY_CHANNELS)
    with pytest.raises(ValueError, match=r"expected 2 input channel\(s\).*in_channels=1"):
        model(torch.randn(1, 1, 8, 8, 8))
    with pytest.raises(ValueError, match=r"expected a 5D input \(B, C, D, H, W\)"):
        model(torch.randn(2, 8, 8, 8))
    with pytest.raises(ValueError, match=r"expected a 5D input"):
        model(torch.randn(1, 2, 8, 8))


def test_registry_errors():
    with pytest.raises(ValueError, match="Did you mean 'ag_res_unet'"):
        create_model("agres_unet")
    with pytest.raises(TypeError, match="Did you mean 'channels'"):
        create_model("ag_res_unet", chanels=[4, 8])
    with pytest.raises(ValueError, match="already registered"):
        attnunet.register_model("unet")(UNet)
    with pytest.raises(ValueError, match="snake_case"):
        attnunet.register_model("MyNet")(UNet)


def test_list_models_filters():
    assert list_models("ag_*", presets=False) == ["ag_res_unet", "ag_unet"]
    assert "ag_res_unet_krd" in list_models("*krd")
    # every entry builds in 1D, 2D and 3D (raunet_ni too: a 2D preset whose ResNet34 is
    # attnunet's native one in 1D and 3D)
    assert list_models(spatial_dims=1) == list_models(spatial_dims=2) == list_models()
    assert list_models(spatial_dims=3) == list_models()
    assert list_models(spatial_dims=4) == []
    info = model_info("ag_res_unet")
    assert info.model_class is AgResUNet and info.paper


@pytest.mark.parametrize("name", list_models())
def test_registry_lists_exactly_the_dims_each_entry_builds(name):
    """``model_info(name).spatial_dims`` (what ``attnunet models`` prints) holds every
    dimensionality the entry builds in, and no other. U-Net-family entries are built
    narrow; RAUNet entries as registered (raunet_ni: its ResNet34, RGB input)."""
    info = model_info(name)
    small = {"channels": (4, 8)} if "channels" in (accepted_kwargs(info.model_class) or []) else {}
    for dims in (1, 2, 3, 4):
        if dims == 2 and "channels" not in small:
            pytest.importorskip("timm", reason="2D RAUNet encoders come from timm")
        try:
            model = create_model(name, spatial_dims=dims, **small)
        except ValueError as error:
            assert dims not in info.spatial_dims, f"{name} does not build in {dims}D: {error}"
            continue
        assert dims in info.spatial_dims, f"{name} builds in {dims}D but does not list it"
        assert model.spatial_dims == dims
        del model


# ----------------------------------------------------------------------------- input dtype
DTYPE_MODELS = {
    "unet": lambda: UNet(1, 1, 2, channels=TINY_CHANNELS),
    "unet_plus_plus": lambda: UNetPlusPlus(1, 1, 2, channels=TINY_CHANNELS, deep_supervision=True),
    "raunet": lambda: RAUNet(1, 1, 2, encoder="resnet18"),  # 1D: native encoder, no timm
}


@pytest.mark.parametrize("name", list(DTYPE_MODELS))
def test_input_dtype_mismatch_says_what_works(name):
    """Instead of PyTorch's error deep in a convolution, the input check names both dtypes
    and the conversions that work (every model class: U-Net skeleton, UNet++, RAUNet)."""
    model = DTYPE_MODELS[name]().eval()
    x = torch.randn(1, 1, 64)
    with pytest.raises(
        TypeError,
        match=r"torch\.float64.*torch\.float32.*x\.float\(\).*"
        r"model\.double\(\).*torch\.autocast",
    ):
        model(x.double())
    with pytest.raises(
        TypeError, match=r"torch\.float16.*torch\.float32.*x\.float\(\).*model\.half\(\)"
    ):
        model(x.half())
    with pytest.raises(TypeError, match=r"dtype torch\.uint8 .*x\.float\(\)$"):
        model((x.abs() * 10).to(torch.uint8))  # no model dtype to suggest for integers
    model.double()
    with pytest.raises(
        TypeError,
        match=r"torch\.float32 but the model's weights are "
        r"torch\.float64: convert the input with x\.double\(\).*model\.float\(\)",
    ):
        model(x)
    with torch.no_grad():
        out = model(x.double())
    for y in out if isinstance(out, list) else [out]:
        assert y.dtype == torch.float64


def test_autocast_accepts_any_floating_input_dtype():
    """Under autocast the convolutions cast inputs and weights alike, so a float32 model
    takes float32 and bfloat16 inputs (CPU autocast runs in bfloat16)."""
    model = UNet(2, 1, 2, channels=TINY_CHANNELS).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(x).dtype == torch.bfloat16
        assert model(x.bfloat16()).dtype == torch.bfloat16
        with pytest.raises(TypeError, match=r"torch\.uint8"):
            model(x.to(torch.uint8))


def test_custom_same_resolution_gate_gets_the_upsampled_feature():
    """A gate declaring gating != 'coarse' is built for, and fed, the up-sampled feature."""

    class SameResolutionGate(SkipGate):
        def __init__(self, spatial_dims, in_channels, gating_channels):
            super().__init__(gating="upsampled")
            self.mix = torch.nn.Conv2d(in_channels + gating_channels, 1, 1)

        def attend(self, x, g):
            assert g.shape[2:] == x.shape[2:]  # same grid as the skip
            alpha = torch.sigmoid(self.mix(torch.cat([x, g], dim=1)))
            return alpha * x, alpha

    model = UNetSkeleton(2, 1, 1, channels=(4, 8, 16), gate=SameResolutionGate).eval()
    assert [lvl.gate.mix.in_channels for lvl in model.decoder.levels] == [8 + 8, 4 + 4]
    _, maps = model.forward_with_attention(torch.randn(1, 1, 20, 22))
    assert [tuple(a.shape[2:]) for a in maps] == [(10, 11), (20, 22)]


@pytest.mark.parametrize("up", ["transpose", "upsample"])
@pytest.mark.parametrize("gate", ["additive", ("multi", {"gate": "additive"})])
def test_same_resolution_gates_work_with_every_up_sampler(up, gate):
    """The gate is rebuilt for the up-sampled feature's width (channels[i + 1] with a
    parameter-free up-sampler, channels[i] otherwise)."""
    model = UNetSkeleton(3, 1, 2, channels=(4, 8, 16), gate=gate, up=up).eval()
    width = {"transpose": [8, 4], "upsample": [16, 8]}[up]
    gates = [level.gate for level in model.decoder.levels]
    inner = [g.gates[0] if hasattr(g, "gates") else g for g in gates]
    assert [g.gating_channels for g in inner] == width
    assert model(torch.randn(1, 1, 9, 10, 11)).shape == (1, 2, 9, 10, 11)


def test_the_model_norm_reaches_the_gates():
    model = attnunet.AttentionUNet(3, 1, 2, channels=(4, 8, 16, 32), norm="group")
    norms = {
        type(m).__name__ for m in model.modules() if type(m).__name__.endswith(("Norm", "Norm3d"))
    }
    assert norms == {"GroupNorm"}  # output transforms and merges included
    explicit = attnunet.AttentionUNet(
        3, 1, 2, channels=(4, 8, 16, 32), norm="group", gate=("grid_oktay", {"norm": "batch"})
    )
    inner = explicit.decoder.levels[0].gate.gates[0].output
    assert type(inner.norm).__name__ == "BatchNorm3d"  # a spec's own norm wins
    with pytest.raises(ValueError, match="conv_mapping=True replaces the gate"):
        attnunet.AttentionUNet(conv_mapping=True, gate="grid")
