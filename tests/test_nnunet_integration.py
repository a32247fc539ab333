"""attnunet.integrations.nnunet against nnU-Net v2 itself.

The oracle is nnU-Net: its ``get_network_from_plans`` builds both PlainConvUNet and the
attnunet classes from the same ``arch_kwargs``; its trainer's own
``set_deep_supervision_enabled`` flips the switch; its ``InitWeights_He`` initialises; and
the end-to-end test runs its planning, preprocessing, training and ``nnUNetv2_predict``
commands on a tiny dataset. Tests that need nnU-Net skip without the ``[nnunet]`` extra.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
import torch

from attnunet.cli import main
from attnunet.integrations import nnunet as integration
from attnunet.integrations.nnunet import (
    FAMILIES,
    PLAIN_CONV_UNET,
    PLAINCONVUNET_KEYS,
    PlansError,
    plans_to_kwargs,
    rewrite_plans,
    write_plans,
)
from attnunet.models.convert import convert_plainconvunet_state_dict

NEEDS_NNUNET = "needs nnU-Net v2 (pip install 'attnunet[nnunet]')"
IMPORTS = ["conv_op", "norm_op", "dropout_op", "nonlin"]
COMMON = {
    "conv_bias": True,
    "norm_op_kwargs": {"eps": 1e-05, "affine": True},
    "dropout_op": None,
    "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU",
    "nonlin_kwargs": {"inplace": True},
}
# nnU-Net's default 2D plan for 512 x 512 patches, and an anisotropic 3D plan (thick
# slices: in-plane down-sampling first, 1 x 3 x 3 kernels in the first two stages)
PLAN_2D = {
    "n_stages": 8,
    "features_per_stage": [32, 64, 128, 256, 512, 512, 512, 512],
    "conv_op": "torch.nn.modules.conv.Conv2d",
    "kernel_sizes": [[3, 3]] * 8,
    "strides": [[1, 1]] + [[2, 2]] * 7,
    "n_conv_per_stage": [2] * 8,
    "n_conv_per_stage_decoder": [2] * 7,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
    **COMMON,
}
PLAN_3D = {
    "n_stages": 7,
    "features_per_stage": [32, 64, 128, 256, 320, 320, 320],
    "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[1, 3, 3], [1, 3, 3]] + [[3, 3, 3]] * 5,
    "strides": [[1, 1, 1], [1, 2, 2], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2], [1, 2, 2]],
    "n_conv_per_stage": [2] * 7,
    "n_conv_per_stage_decoder": [2] * 6,
    "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    **COMMON,
}
# the parameter counts docs/integrations.md reports (1 input channel, 3 classes)
PARAMETERS = {"2d": 46_326_581, "3d": 44_578_482}
# narrow versions for forward passes, with per-stage convolution counts that differ (so a
# wrong order of n_conv_per_stage_decoder changes the parameter count)
SMALL = {
    "2d": {
        **PLAN_2D,
        "n_stages": 4,
        "features_per_stage": [4, 8, 16, 16],
        "kernel_sizes": [[3, 3]] * 4,
        "strides": [[1, 1], [2, 2], [2, 2], [2, 1]],
        "n_conv_per_stage": [2, 3, 2, 2],
        "n_conv_per_stage_decoder": [3, 2, 2],
    },
    "3d": {
        **PLAN_3D,
        "features_per_stage": [4, 8, 8, 16, 16, 16, 16],
        "n_conv_per_stage_decoder": [2, 2, 3, 2, 2, 2],
    },
}
INPUTS = {"2d": (2, 1, 24, 20), "3d": (1, 1, 8, 64, 64)}  # divisible by the strides


def build(class_name: str, arch: dict, deep_supervision: bool, classes: int = 3):
    """A network built by nnU-Net's own get_network_from_plans."""
    pytest.importorskip("nnunetv2", reason=NEEDS_NNUNET)
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    return get_network_from_plans(
        class_name, arch, IMPORTS, 1, classes, allow_init=True, deep_supervision=deep_supervision
    )


def attnunet_class(family: str) -> str:
    return f"attnunet.integrations.nnunet.{FAMILIES[family]}"


def count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def shapes(y) -> list[tuple[int, ...]]:
    return [tuple(t.shape) for t in (y if isinstance(y, list) else [y])]


# ------------------------------------------------------------------- parity anchor
@pytest.mark.parametrize("plan", ["2d", "3d"])
def test_unet_has_plainconvunets_parameter_count(plan):
    arch = PLAN_2D if plan == "2d" else PLAN_3D
    ours = build(attnunet_class("unet"), arch, True)
    reference = build(PLAIN_CONV_UNET, arch, True)
    assert type(ours) is integration.UNet
    assert count(ours) == count(reference) == PARAMETERS[plan]
    # tensor by tensor: the same sizes in the same roles, whatever the names
    assert sorted(p.numel() for p in ours.parameters()) == sorted(
        p.numel() for p in reference.parameters()
    )


@pytest.mark.parametrize("plan", ["2d", "3d"])
def test_unet_outputs_match_plainconvunet_in_shape_and_order(plan):
    arch = SMALL[plan]
    torch.manual_seed(0)
    x = torch.randn(INPUTS[plan])
    reference = build(PLAIN_CONV_UNET, arch, True)
    ours = build(attnunet_class("unet"), arch, True)
    assert count(ours) == count(reference)
    expected = shapes(reference(x))
    assert shapes(ours(x)) == expected
    # full resolution first, then each stride's grid: PlainConvUNet's order
    assert expected[0][2:] == x.shape[2:]
    assert [s[2:] for s in expected] == sorted((s[2:] for s in expected), reverse=True)
    reference.decoder.deep_supervision = False
    ours.decoder.deep_supervision = False
    assert isinstance(ours(x), torch.Tensor)
    assert shapes(ours(x)) == shapes(reference(x)) == expected[:1]


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("plan", ["2d", "3d"])
def test_every_family_builds_from_the_plans_with_plainconvunets_shapes(family, plan):
    arch = SMALL[plan]
    x = torch.randn(INPUTS[plan])
    expected = shapes(build(PLAIN_CONV_UNET, arch, True)(x))
    net = build(attnunet_class(family), arch, True)
    assert type(net).__name__ == FAMILIES[family]
    assert shapes(net(x)) == expected
    net.decoder.deep_supervision = False
    assert shapes(net(x)) == expected[:1]


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_deep_supervision_checkpoint_loads_strictly_without_it(family):
    # what nnUNetv2_predict does: build with deep_supervision=False, load the trained weights
    arch = SMALL["2d"]
    trained = build(attnunet_class(family), arch, True).eval()
    inference = build(attnunet_class(family), arch, False).eval()
    inference.load_state_dict(trained.state_dict(), strict=True)
    x = torch.randn(INPUTS["2d"])
    with torch.no_grad():
        torch.testing.assert_close(inference(x), trained(x)[0])


@pytest.mark.parametrize("family", ["ag_res_unet", "unet_plus_plus"])
def test_the_trainers_switch_changes_what_forward_returns(family):
    pytest.importorskip("nnunetv2", reason=NEEDS_NNUNET)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    net = build(attnunet_class(family), SMALL["2d"], True)
    trainer = SimpleNamespace(is_ddp=False, network=net)
    x = torch.randn(INPUTS["2d"])
    assert isinstance(net(x), list) and net.deep_supervision
    nnUNetTrainer.set_deep_supervision_enabled(trainer, False)  # nnU-Net's own code
    assert isinstance(net(x), torch.Tensor) and not net.deep_supervision
    net.deep_supervision = True  # attnunet's switch is the same one
    assert net.decoder.deep_supervision and len(net(x)) == SMALL["2d"]["n_stages"] - 1


def test_initialize_is_nnunets_he_initialisation():
    pytest.importorskip("nnunetv2", reason=NEEDS_NNUNET)
    from dynamic_network_architectures.initialization.weight_init import InitWeights_He

    net = build(attnunet_class("ag_res_unet"), SMALL["3d"], True)
    other = copy.deepcopy(net)
    torch.manual_seed(7)
    net.apply(net.initialize)
    torch.manual_seed(7)
    other.apply(InitWeights_He(1e-2))
    for (name, a), b in zip(net.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    # and the statistics of He's rule: std = gain / sqrt(fan_in), zero biases
    conv = torch.nn.Conv3d(64, 64, 3)
    integration.he_initialize(conv)
    gain = (2 / (1 + 0.01**2)) ** 0.5
    assert conv.weight.std().item() == pytest.approx(gain / (64 * 27) ** 0.5, rel=0.02)
    assert not conv.bias.any()


def test_the_module_imports_and_builds_without_nnunet():
    code = textwrap.dedent(
        """
        import sys
        sys.modules["nnunetv2"] = None  # any import of them now fails
        sys.modules["dynamic_network_architectures"] = None
        import torch
        from attnunet.integrations.nnunet import AgResUNet
        net = AgResUNet(1, 2, 3, [4, 8, 16], torch.nn.Conv2d, 3, [1, 2, 2], 2, 2, True,
                        torch.nn.InstanceNorm2d, {"affine": True}, None, None,
                        torch.nn.LeakyReLU, None, deep_supervision=True)
        print(len(net(torch.randn(1, 1, 16, 16))))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "2"


# ---------------------------------------------------------------- refused values
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"conv_bias": False}, r"conv_bias=False: .*transposed convolutions always carry a bias"),
        ({"strides": [[2, 2], [2, 2], [2, 2], [2, 1]]}, r"strides=.*first stage must keep"),
        ({"kernel_sizes": [[3, 3], [2, 2], [3, 3], [3, 3]]}, r"kernel_sizes=.*odd kernels"),
        (
            {"dropout_op": "torch.nn.Dropout2d", "dropout_op_kwargs": {"p": 0.2}},
            r"dropout_op=.*after every convolution \(p=0.2\).*set dropout_op to null",
        ),
        ({"norm_op": "torch.nn.GroupNorm"}, r"norm_op=.*InstanceNorm2d, torch.nn.BatchNorm2d"),
        ({"norm_op": "torch.nn.InstanceNorm3d"}, r"norm_op=.*of the convolutions' dimension"),
        ({"nonlin": "torch.nn.Hardswish"}, r"nonlin=.*torch.nn.LeakyReLU"),
        ({"nonlin_first": True}, r"nonlin_first=True: .*conv -> norm -> activation"),
        ({"conv_op": "torch.nn.ConvTranspose2d"}, r"conv_op=.*Conv1d, Conv2d or Conv3d"),
        ({"conv_op": "torch.nn.NoSuchConv"}, r"conv_op=.*not a class nor the dotted name"),
        (
            {"n_conv_per_stage_decoder": [2, 2]},
            r"n_conv_per_stage_decoder has 2 entries, but n_stages=4 makes 3 decoder stages",
        ),
        (
            {"features_per_stage": [4, 8, 16, 16, 32]},
            r"features_per_stage has 5 entries, but n_stages=4: .*n_stages=5, or 4 entries",
        ),
    ],
)
def test_a_plan_value_it_cannot_honour_is_refused_by_name(change, message):
    arch = {**SMALL["2d"], **change}
    with pytest.raises(PlansError, match=message):
        plans_to_kwargs(arch)
    with pytest.raises(PlansError, match=message):  # the classes check the same way
        integration.UNet(1, 2, **{**arch, "conv_op": _located(arch["conv_op"])})


def _located(name: str):
    import pydoc

    return pydoc.locate(name) or name


def test_residual_families_need_two_convolutions_per_stage():
    arch = {**SMALL["2d"], "n_conv_per_stage_decoder": 1}
    with pytest.raises(PlansError, match=r"n_conv_per_stage_decoder=1: a residual block"):
        integration.AgResUNet(1, 2, **{**arch, "conv_op": torch.nn.Conv2d})
    assert integration.AgUNet(1, 2, **{**arch, "conv_op": torch.nn.Conv2d}) is not None


def test_the_mapping_reverses_the_decoder_counts_and_keeps_the_norm_kwargs():
    kwargs = plans_to_kwargs({**SMALL["2d"], "norm_op_kwargs": {"eps": 1e-3}})
    assert kwargs["decoder_convs_per_stage"] == [2, 2, 3]  # nnU-Net: [3, 2, 2], coarsest first
    assert kwargs["convs_per_stage"] == [2, 3, 2, 2]
    # torch's InstanceNorm has no affine parameters unless asked: the mapping says so
    assert kwargs["norm"] == ("instance", {"eps": 1e-3, "affine": False})
    assert kwargs["act"] == ("leaky_relu", {})
    assert kwargs["strides"] == [[1, 1], [2, 2], [2, 2], [2, 1]]


def test_class_values_are_named_by_their_dotted_names_in_errors():
    # nnU-Net passes the classes it imported; the message names them as a plans file does
    arch = {
        **SMALL["2d"],
        "conv_op": torch.nn.Conv2d,
        "dropout_op": torch.nn.Dropout3d,
        "dropout_op_kwargs": {"p": 0.2},
    }
    with pytest.raises(PlansError) as error:
        integration.UNet(1, 2, **arch)
    assert "dropout_op='torch.nn.modules.dropout.Dropout3d': " in str(error.value)
    assert "<class" not in str(error.value)
    with pytest.raises(PlansError, match=r"norm_op='torch.nn.modules.normalization.GroupNorm'"):
        plans_to_kwargs({**arch, "dropout_op": None, "norm_op": torch.nn.GroupNorm})
    # the plan's own string stays as the plan wrote it
    with pytest.raises(PlansError, match=r"nonlin='torch.nn.Hardswish': "):
        plans_to_kwargs({**arch, "dropout_op": None, "nonlin": "torch.nn.Hardswish"})


# ------------------------------------------------ the switch, the config, TorchScript
def small_network(family: str, deep_supervision: bool = True, classes: int = 2):
    """A network of ``family`` built as nnU-Net builds it: the plan's classes imported."""
    arch = {k: _located(v) if k in IMPORTS and v else v for k, v in SMALL["2d"].items()}
    cls = getattr(integration, FAMILIES[family])
    return cls(input_channels=1, num_classes=classes, deep_supervision=deep_supervision, **arch)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_trainers_switch_goes_through_set_deep_supervision(family):
    pytest.importorskip("nnunetv2", reason=NEEDS_NNUNET)
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    net = small_network(family)
    trainer = SimpleNamespace(is_ddp=False, network=net)
    with mock.patch.object(net, "set_deep_supervision", wraps=net.set_deep_supervision) as spy:
        nnUNetTrainer.set_deep_supervision_enabled(trainer, False)  # nnU-Net's own code
    spy.assert_called_once_with(False)
    assert net.config["deep_supervision"] is False
    assert net.deep_supervision is False and net.decoder.deep_supervision is False
    assert isinstance(net(torch.randn(INPUTS["2d"])), torch.Tensor)
    net.set_deep_supervision(True)  # and back, the other way round
    assert net.decoder.deep_supervision is True and net.config["deep_supervision"] is True


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_config_holds_the_constructors_keywords_and_rebuilds_the_network(family):
    net = small_network(family).eval()
    config = net.config
    assert json.loads(json.dumps(config)) == config  # JSON as it is
    *arch_keys, last = PLAINCONVUNET_KEYS  # the constructor's order
    assert list(config) == ["input_channels", "num_classes", *arch_keys, "deep_supervision", last]
    # the oracle: the plan itself (its class names may be shorter aliases of the same class)
    for key in PLAINCONVUNET_KEYS:
        expected = SMALL["2d"].get(key, False)
        if key in IMPORTS and expected:
            assert _located(config[key]) is _located(expected), key
        else:
            assert config[key] == expected, key
    assert (config["input_channels"], config["num_classes"]) == (1, 2)
    rebuilt = type(net)(**config).eval()
    state = net.state_dict()
    assert {k: v.shape for k, v in rebuilt.state_dict().items()} == {
        k: v.shape for k, v in state.items()
    }
    rebuilt.load_state_dict(state, strict=True)
    x = torch.randn(INPUTS["2d"])
    with torch.no_grad():
        for a, b in zip(rebuilt(x), net(x), strict=True):
            assert torch.equal(a, b)
    net.decoder.deep_supervision = False  # the config follows the switch
    assert isinstance(type(net)(**net.config)(x), torch.Tensor)


def test_save_pretrained_points_to_nnunets_checkpoints(tmp_path):
    net = small_network("ag_unet")
    with pytest.raises(ValueError, match=r"checkpoint_final.pth.*type\(network\)\(\*\*network"):
        net.save_pretrained(tmp_path)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_scripts_and_the_script_returns_what_eager_does(family):
    net = small_network(family).eval()
    x = torch.randn(INPUTS["2d"])
    scripted = torch.jit.script(net)
    with torch.no_grad():
        eager, script = net(x), scripted(x)
    assert len(script) == len(eager) == SMALL["2d"]["n_stages"] - 1
    for a, b in zip(script, eager, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    if family in ("ag_res_unet", "unet_plus_plus"):  # the switch as it was when scripted
        net.decoder.deep_supervision = False
        with torch.no_grad():
            torch.testing.assert_close(torch.jit.script(net)(x), eager[0], rtol=1e-5, atol=1e-6)


# --------------------------------------------------- PlainConvUNet weights, converted
def _randomise(net: torch.nn.Module, seed: int) -> None:
    """Random weights, biases, affine norms and running statistics: a wrong mapping of any
    tensor shows in the outputs."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in net.state_dict().items():
            if not tensor.is_floating_point():
                continue
            noise = torch.randn(tensor.shape, generator=generator)
            if name.endswith("running_var"):
                tensor.copy_(0.5 + noise.abs())
            elif tensor.dim() > 1:  # conv weights: keep the activations of order 1
                tensor.copy_(noise / tensor[0].numel() ** 0.5)
            else:
                tensor.copy_(0.1 * noise + (1.0 if name.endswith("norm.weight") else 0.0))


CONVERTED = {
    "2d": SMALL["2d"],
    "3d": SMALL["3d"],  # anisotropic
    "2d_batch_norm": {**SMALL["2d"], "norm_op": "torch.nn.modules.batchnorm.BatchNorm2d"},
}


@pytest.mark.parametrize("plan", list(CONVERTED))
def test_plainconvunet_weights_convert_to_unet_with_equal_outputs(plan):
    arch = CONVERTED[plan]
    reference = build(PLAIN_CONV_UNET, arch, True)
    ours = build(attnunet_class("unet"), arch, True)
    _randomise(reference, 3)
    converted = convert_plainconvunet_state_dict(reference.state_dict())
    ours.load_state_dict(converted, strict=True)
    x = torch.randn(
        INPUTS["3d" if plan == "3d" else "2d"], generator=torch.Generator().manual_seed(4)
    )
    for train in (False, True):  # evaluation, then training mode (batch statistics)
        reference.train(train)
        ours.train(train)
        with torch.no_grad():
            expected, got = reference(x), ours(x)
        assert len(got) == len(expected) == arch["n_stages"] - 1
        for a, b in zip(got, expected, strict=True):
            assert a.abs().max() > 0.1  # not a degenerate comparison
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    # the running statistics updated in training mode still agree
    for key, value in convert_plainconvunet_state_dict(reference.state_dict()).items():
        torch.testing.assert_close(ours.state_dict()[key], value, rtol=0, atol=1e-6)


def test_the_converter_takes_an_nnunet_checkpoint_and_names_what_it_does_not_know():
    reference = build(PLAIN_CONV_UNET, SMALL["2d"], True)
    state = reference.state_dict()
    expected = convert_plainconvunet_state_dict(state)
    # only what the attnunet network holds: no all_modules or decoder.encoder duplicates
    assert set(expected) == set(build(attnunet_class("unet"), SMALL["2d"], False).state_dict())
    checkpoint = {
        "network_weights": state,
        "optimizer_state": {},
        "init_args": {"configuration": "2d"},
        "trainer_name": "nnUNetTrainer",
        "current_epoch": 1000,
    }
    from_checkpoint = convert_plainconvunet_state_dict(checkpoint)
    assert list(from_checkpoint) == list(expected)
    assert all(torch.equal(from_checkpoint[k], v) for k, v in expected.items())
    wrapped = {f"module.{k}": v for k, v in state.items()}  # saved from DDP
    assert list(convert_plainconvunet_state_dict(wrapped)) == list(expected)
    with pytest.raises(KeyError, match=r"'encoder.stem.weight'.*PlainConvUNet"):
        convert_plainconvunet_state_dict({**state, "encoder.stem.weight": torch.zeros(1)})
    # the decoder's first convolution has its input halves swapped ([skip, up])
    weight = state["decoder.stages.0.convs.0.conv.weight"]
    half = weight.shape[1] // 2
    swapped = expected["decoder.levels.0.block.conv1.conv.weight"]
    assert torch.equal(swapped[:, :half], weight[:, half:])
    assert torch.equal(swapped[:, half:], weight[:, :half])


# ------------------------------------------------------------ the plans helper, CLI
def plans_file(folder: Path) -> Path:
    configuration = {
        "data_identifier": "nnUNetPlans_2d",
        "patch_size": [24, 20],
        "architecture": {
            "network_class_name": PLAIN_CONV_UNET,
            "arch_kwargs": SMALL["2d"],
            "_kw_requires_import": IMPORTS,
        },
    }
    plans = {
        "dataset_name": "Dataset987_Tiny",
        "plans_name": "nnUNetPlans",
        "configurations": {
            "2d": configuration,
            "2d_b": {"inherits_from": "2d", "batch_size": 2},
        },
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "nnUNetPlans.json"
    path.write_text(json.dumps(plans, indent=2))
    return path


def test_rewrite_plans_changes_only_the_class_and_the_name(tmp_path):
    plans = json.loads(plans_file(tmp_path).read_text())
    before = copy.deepcopy(plans)
    new = rewrite_plans(plans, "attention_unet")
    assert plans == before
    assert new["plans_name"] == "nnUNetPlans_AttentionUNet"
    for name in ("2d", "2d_b"):
        arch = new["configurations"][name]["architecture"]
        assert arch["network_class_name"] == "attnunet.integrations.nnunet.AttentionUNet"
        assert arch["arch_kwargs"] == before["configurations"]["2d"]["architecture"]["arch_kwargs"]
    # the preprocessed data stay shared
    assert new["configurations"]["2d"]["data_identifier"] == "nnUNetPlans_2d"
    with pytest.raises(ValueError, match=r"'3d_fullres' not in the plans: choose from 2d, 2d_b"):
        rewrite_plans(plans, "unet", configurations=["3d_fullres"])
    with pytest.raises(ValueError, match=r"unknown family 'agresunet'"):
        rewrite_plans(plans, "agresunet")
    resenc = copy.deepcopy(plans)
    resenc["configurations"]["2d"]["architecture"]["network_class_name"] = (
        "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
    )
    with pytest.raises(PlansError, match=r"builds .*ResidualEncoderUNet.*default planner"):
        rewrite_plans(resenc, "unet")


def test_write_plans_writes_a_new_file_and_never_overwrites(tmp_path):
    source = plans_file(tmp_path)
    original = source.read_bytes()
    target = write_plans(tmp_path, "ag_res_unet", configurations=["2d"])
    assert target == tmp_path / "nnUNetPlans_AgResUNet.json"
    assert source.read_bytes() == original
    with pytest.raises(
        FileExistsError,
        match=r"nnUNetPlans_AgResUNet.json exists: choose another plans_name, or pass "
        r"overwrite=True",
    ):
        write_plans(source, "ag_res_unet")
    assert write_plans(source, "ag_res_unet", overwrite=True) == target
    with pytest.raises(FileExistsError, match=r"is the source plans: choose another plans_name"):
        write_plans(source, "unet", plans_name="nnUNetPlans", overwrite=True)
    assert source.read_bytes() == original


def test_the_cli_command(tmp_path, capsys):
    source = plans_file(tmp_path / "Dataset987_Tiny")
    original = source.read_bytes()
    args = ["nnunet-plans", str(source.parent), "--family", "unet_plus_plus"]
    assert main([*args, "--configurations", "2d"]) == 0
    out = capsys.readouterr().out
    target = source.parent / "nnUNetPlans_UNetPlusPlus.json"
    assert f"wrote {target}" in out
    assert "nnUNetv2_train Dataset987_Tiny 2d FOLD -p nnUNetPlans_UNetPlusPlus" in out
    assert "nnUNetv2_predict -i INPUT -o OUTPUT -d Dataset987_Tiny -c 2d" in out
    plans = json.loads(target.read_text())
    assert plans["configurations"]["2d"]["architecture"]["network_class_name"].endswith(
        ".nnunet.UNetPlusPlus"
    )
    assert "architecture" not in plans["configurations"]["2d_b"]  # not asked for
    assert source.read_bytes() == original
    assert main(args) == 2  # the target exists: the message names the flags
    err = capsys.readouterr().err
    assert "exists: choose another --plans-name, or pass --overwrite" in err
    assert "overwrite=True" not in err and "plans_name" not in err
    assert main([*args, "--overwrite", "--plans-name", "nnUNetPlans"]) == 2
    assert "is the source plans: choose another --plans-name" in capsys.readouterr().err
    assert main([*args, "--overwrite", "--plans-name", "mine"]) == 0
    assert (source.parent / "mine.json").is_file()
    assert main(["nnunet-plans", str(tmp_path), "--family", "unet"]) == 2  # no plans there
    assert "has no nnUNetPlans.json" in capsys.readouterr().err


def test_the_cli_offers_every_family():
    from attnunet.cli import nnunet_plans

    assert set(nnunet_plans._FAMILIES) == set(FAMILIES)


# -------------------------------------------------------------------- end to end
TRAINER = '''
"""nnU-Net's trainer with one epoch of two iterations, for the test: nnUNetv2_train and
nnUNetv2_predict find it by name in the folders of nnUNet_extTrainer."""
import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainerAttnunetTest(nnUNetTrainer):
    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    def perform_actual_validation(self, save_probabilities=False):
        pass  # nnUNetv2_predict runs the network below; this saves a pool of workers
'''


def _tiny_dataset(raw: Path, rng: np.random.Generator) -> Path:
    """Six 48 x 48 grey PNG images with a disc (label 1) and a square (label 2), and one
    40 x 56 test image, in nnU-Net's natural-image format."""
    from PIL import Image

    folder = raw / "Dataset987_Tiny"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True)

    def case(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
        yy, xx = np.mgrid[:h, :w]
        label = np.zeros((h, w), np.uint8)
        cy, cx, r = rng.integers(10, h - 10), rng.integers(10, w - 10), rng.integers(5, 9)
        label[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = 1
        y0, x0 = rng.integers(0, h - 10), rng.integers(0, w - 10)
        label[y0 : y0 + 8, x0 : x0 + 8] = 2
        image = (label * 80.0 + rng.normal(40, 10, (h, w))).clip(0, 255).astype(np.uint8)
        return image, label

    for i in range(6):
        image, label = case(48, 48)
        Image.fromarray(image).save(folder / "imagesTr" / f"case{i}_0000.png")
        Image.fromarray(label).save(folder / "labelsTr" / f"case{i}.png")
    Image.fromarray(case(40, 56)[0]).save(folder / "imagesTs" / "test0_0000.png")
    dataset = {
        "channel_names": {"0": "grey"},
        "labels": {"background": 0, "disc": 1, "square": 2},
        "numTraining": 6,
        "file_ending": ".png",
    }
    (folder / "dataset.json").write_text(json.dumps(dataset))
    return folder


def _run(command: list[str], env: dict[str, str]) -> None:
    # nnU-Net's commands are installed next to this Python, which need not be on PATH
    beside = Path(sys.executable).parent / command[0]
    program = str(beside) if beside.exists() else command[0]
    # nnU-Net's progress bars are UTF-8 whatever the locale (an ASCII one in some CI
    # shells): decode them as such
    env = {**env, "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run(
        [program, *command[1:]],
        env=env,
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=600,
    )
    assert done.returncode == 0, (
        f"{command[0]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )


@pytest.mark.slow
def test_nnunet_plans_trains_and_predicts_with_an_attnunet_family(tmp_path):
    pytest.importorskip("nnunetv2", reason=NEEDS_NNUNET)
    from PIL import Image

    folder = _tiny_dataset(tmp_path / "raw", np.random.default_rng(0))
    (tmp_path / "trainers").mkdir()
    (tmp_path / "trainers" / "attnunet_test_trainer.py").write_text(TRAINER)
    # nnU-Net reads its folders from the environment when it is imported, so each step runs
    # in its own process. The trainer is found through nnUNet_extTrainer (nnU-Net 2.8)
    # by nnUNetv2_train and nnUNetv2_predict alike; a trainer class defined in this test
    # would not be, since both look trainers up by name.
    env = {
        **os.environ,
        "nnUNet_raw": str(tmp_path / "raw"),
        "nnUNet_preprocessed": str(tmp_path / "preprocessed"),
        "nnUNet_results": str(tmp_path / "results"),
        "nnUNet_extTrainer": str(tmp_path / "trainers"),
        "nnUNet_compile": "false",
        "nnUNet_def_n_proc": "1",
    }
    _run(
        [
            *("nnUNetv2_plan_and_preprocess", "-d", "987", "-c", "2d"),
            *("--verify_dataset_integrity", "-np", "1", "-npfp", "1"),
        ],
        env,
    )
    preprocessed = tmp_path / "preprocessed" / "Dataset987_Tiny"
    plans = write_plans(preprocessed, "ag_res_unet")
    assert plans.name == "nnUNetPlans_AgResUNet.json"

    # data augmentation in the training process itself (no worker processes)
    train_env = {**env, "nnUNet_n_proc_DA": "0"}
    trainer = ("-p", "nnUNetPlans_AgResUNet", "-tr", "nnUNetTrainerAttnunetTest")
    _run(["nnUNetv2_train", "987", "2d", "all", *trainer, "-device", "cpu"], train_env)
    output = tmp_path / "predictions"
    _run(
        [
            *("nnUNetv2_predict", "-i", str(folder / "imagesTs"), "-o", str(output)),
            *("-d", "987", "-c", "2d", "-f", "all", *trainer, "-device", "cpu"),
            *("-npp", "0", "-nps", "0", "--disable_tta"),
        ],
        env,
    )
    prediction = np.asarray(Image.open(output / "test0.png"))
    assert prediction.shape == (40, 56)
    assert set(np.unique(prediction)) <= {0, 1, 2}

    # the trained model is attnunet's AgResUNet: nnU-Net rebuilds it from the plans it
    # stored with the results, and the checkpoint's weights load into it strictly
    model_folder = (
        tmp_path
        / "results"
        / "Dataset987_Tiny"
        / "nnUNetTrainerAttnunetTest__nnUNetPlans_AgResUNet__2d"
    )
    stored = json.loads((model_folder / "plans.json").read_text())["configurations"]["2d"]
    architecture = stored["architecture"]
    assert architecture["network_class_name"] == "attnunet.integrations.nnunet.AgResUNet"
    net = build(architecture["network_class_name"], architecture["arch_kwargs"], False)
    assert isinstance(net, integration.AgResUNet)
    checkpoint = torch.load(
        model_folder / "fold_all" / "checkpoint_final.pth", map_location="cpu", weights_only=False
    )
    net.load_state_dict(checkpoint["network_weights"], strict=True)
