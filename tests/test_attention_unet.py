"""Oktay's Attention U-Net: reference counts and outputs, structure, deep supervision."""

import math

import pytest
import torch
import torch.nn.functional as F
from _reference import REORDERED_TOL

from attnunet import (
    AttentionUNet,
    attention_unet_oktay,
    attention_unet_oktay_1024,
    attention_unet_oktay_conv_mapped,
    attention_unet_oktay_single,
    create_model,
)
from attnunet.blocks import ConvMappedAttentionGate, GridAttentionGate, MultiAttentionGate
from attnunet.models.convert import convert_oktay_state_dict

# Counted on the released Attention-Gated-Networks models (MIT) built as its training code
# builds them: feature_scale=4, in_channels=1, is_deconv=False, is_batchnorm=True,
# nonlocal_mode="concatenation", attention_dsample=(2, 2, 2).
REFERENCE = {
    ("multi", 4): 6_473_322,  # unet_CT_multi_att_dsv_3D, n_classes=4 (the released config)
    ("multi", 2): 6_472_784,
    ("single", 4): 6_214_151,  # unet_CT_single_att_dsv_3D
    ("single", 2): 6_213_613,
}


@pytest.mark.parametrize(("form", "classes"), REFERENCE)
def test_presets_have_the_reference_parameter_count(form, classes):
    preset = attention_unet_oktay if form == "multi" else attention_unet_oktay_single
    assert preset(num_classes=classes).num_parameters() == REFERENCE[(form, classes)]


def test_full_width_preset_has_the_reference_count():
    # unet_CT_multi_att_dsv_3D at feature_scale=1 (filters 64 .. 1024), n_classes=4
    model = attention_unet_oktay_1024()
    assert model.channels == [64, 128, 256, 512, 1024]
    assert model.num_parameters() == 103_457_946


def test_conv_mapped_preset_adds_exactly_the_mapping_convs():
    # two gates per gated skip, F_int = C_x in (32, 64, 128): each gains 2 F**2 + F
    extra = 2 * sum(2 * f * f + f for f in (32, 64, 128))
    assert attention_unet_oktay_conv_mapped().num_parameters() == 6_473_322 + extra
    gates = [level.gate for level in attention_unet_oktay_conv_mapped().decoder.levels[:3]]
    assert all(isinstance(sub, ConvMappedAttentionGate) for g in gates for sub in g.gates)


@pytest.mark.parametrize(
    ("form", "preset"), [("multi", attention_unet_oktay), ("single", attention_unet_oktay_single)]
)
def test_reference_weights_reproduce_reference_outputs(form, preset, data_dir):
    """Golden outputs of the released models (feature_scale=32, 3 classes).

    tests/data/oktay_golden_fs32.pt was made by building unet_CT_{multi,single}_att_dsv_3D
    under torch.manual_seed(4321), running three training-mode passes on random inputs to
    move the BN statistics, and saving the state_dict and the outputs on a fixed
    (2, 1, 16, 16, 16) input in training and evaluation mode. Only tensors are stored.
    """
    golden = torch.load(data_dir / "oktay_golden_fs32.pt", weights_only=True)
    model = preset(channels=[2, 4, 8, 16, 32], num_classes=3)
    model.load_state_dict(convert_oktay_state_dict(golden[form]["state_dict"]))
    x = golden["input"]
    with torch.no_grad():
        # in the reference code's layout: training-mode batch norm over the two deepest
        # values per channel (2 x 1^3) turns layout rounding into 1e-4 differences
        model.set_channels_last("off").eval()
        torch.testing.assert_close(model(x), golden[form]["eval_logits"])
        # the default (channels-last on the CPU) in evaluation mode
        want = golden[form]["eval_logits"]
        torch.testing.assert_close(model.set_channels_last("auto")(x), want, **REORDERED_TOL)
        model.set_channels_last("off").train()  # (this pass moves the running statistics)
        torch.testing.assert_close(model(x), golden[form]["train_logits"])


def test_converter_rejects_unknown_keys():
    with pytest.raises(KeyError, match=r"does not recognise 'encoder\.weight'"):
        convert_oktay_state_dict({"encoder.weight": torch.zeros(1)})


def test_gates_sit_on_the_three_deepest_skips_and_the_gating_signal_feeds_the_deepest():
    model = AttentionUNet(3, 1, 2, channels=(4, 8, 16, 32, 64)).eval()
    levels = model.decoder.levels  # coarsest first: skips 3, 2, 1, 0
    assert [level.gate is not None for level in levels] == [True, True, True, False]
    assert all(isinstance(level.gate, MultiAttentionGate) for level in levels[:3])
    assert all(isinstance(sub, GridAttentionGate) for sub in levels[0].gate.gates)
    seen = {}
    model.gating_signal.register_forward_hook(lambda m, i, o: seen.__setitem__("signal", o))
    levels[0].gate.gates[0].phi.register_forward_hook(
        lambda m, i, o: seen.__setitem__("deepest_g", i[0])
    )
    levels[1].gate.gates[0].phi.register_forward_hook(
        lambda m, i, o: seen.__setitem__("next_g", i[0])
    )
    outputs = []
    levels[0].register_forward_hook(lambda m, i, o: outputs.append(o[0]))
    with torch.no_grad():
        model(torch.randn(1, 1, 16, 16, 16))
    assert seen["deepest_g"] is seen["signal"]  # gating signal, not the raw bottleneck
    assert seen["next_g"] is outputs[0]  # then the coarser decoder output
    # the up-sampler has no parameters: blocks take C_i + C_{i+1} channels
    assert sum(p.numel() for p in levels[0].up.parameters()) == 0
    assert levels[0].block.conv1.conv.in_channels == 32 + 64


def _manual_fusion(model, x):
    """Re-state the fused output from the model's parts (Oktay's final conv on upsampled DSV)."""
    decoded = []
    for level in model.decoder.levels:
        level.register_forward_hook(lambda m, i, o: decoded.append(o[0]))
    model(x)
    full = list(x.shape[2:])
    heads = [model.head(decoded[-1])]
    for k, head in enumerate(model.aux_heads, start=1):
        y = head(decoded[-1 - k])
        heads.append(F.interpolate(y, size=full, mode="trilinear", align_corners=False))
    return model.fuse(torch.cat(heads, dim=1)), heads


def test_fused_output_is_the_final_conv_of_upsampled_side_outputs():
    torch.manual_seed(0)
    model = AttentionUNet(3, 1, 3, channels=(4, 8, 16, 32), ds_fusion=True).eval()
    x = torch.randn(1, 1, 16, 16, 8)
    with torch.no_grad():
        fused = model(x)
        reference, _ = _manual_fusion(model, x)
    torch.testing.assert_close(fused, reference)
    assert model.fuse.conv.in_channels == 3 * 3  # one map per decoder level


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("fusion", [False, True])
def test_deep_supervision_lists(dims, fusion):
    size = (23, 18, 13)[:dims]
    model = AttentionUNet(
        dims, 1, 2, channels=(4, 8, 16, 32), deep_supervision=True, ds_fusion=fusion
    )
    x = torch.randn(2, 1, *size)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        outputs = model(x)
        assert isinstance(outputs, list) and len(outputs) == 3 + fusion
        if fusion:
            assert outputs[0].shape == (2, 2, *size)
            outputs = outputs[1:]
        for k, y in enumerate(outputs):
            assert y.shape == (2, 2, *[math.ceil(s / 2**k) for s in size])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("num_gates", [0, 1, 2])
def test_odd_sizes_and_gate_forms(dims, num_gates):
    size = (21, 30, 11)[:dims]
    model = AttentionUNet(dims, 2, 3, channels=(4, 8, 16, 32), num_gates=num_gates).eval()
    with torch.no_grad():
        y, maps = model.forward_with_attention(torch.randn(1, 2, *size))
    assert y.shape == (1, 3, *size)
    assert [a.shape[1] for a in maps] == [max(num_gates, 1)] * 2
    assert [tuple(a.shape[2:]) for a in maps] == [
        tuple(math.ceil(s / 2**k) for s in size) for k in (2, 1)
    ]
    assert all(a.min() >= 0 and a.max() <= 1 for a in maps)


def test_config_round_trip_keeps_attention_options():
    model = attention_unet_oktay_single(channels=[2, 4, 8], conv_mapping=True)
    config = model.config
    assert config["num_gates"] == 1 and config["conv_mapping"] and config["gate"] == "grid_oktay"
    rebuilt = create_model("attention_unet", **config)
    rebuilt.load_state_dict(model.state_dict())


# Gradients with fused deep supervision, TorchScript, torch.export and reloading of the
# four presets and of AttentionUNet are cases of the model zoo tester (tests/test_zoo.py).


def test_errors():
    with pytest.raises(ValueError, match="num_gates must be"):
        AttentionUNet(num_gates=-1)
    with pytest.raises(TypeError, match="fixes block='double'"):
        AttentionUNet(block="residual")
