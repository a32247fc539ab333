"""RAUNet: reference counts, AAM and decoder numerics, offline weights, 3D and inflation."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from _reference import batch_norm_train
from torch import nn

from attnunet import create_model
from attnunet.blocks.aam import AugmentedAttentionModule, LinkNetDecoderBlock
from attnunet.encoders import (
    ResNetEncoder,
    adapt_input_channels,
    inflate_state_dict,
    load_encoder_state,
    load_weights_file,
)
from attnunet.models.raunet import RAUNet, raunet_ni

timm = pytest.importorskip("timm")
torchvision = pytest.importorskip("torchvision")

# Counted on the reference RAUNet.py (RAUNet(num_classes=n, pretrained=False), torchvision
# resnet34 encoder without its fc layer): 21,284,672 encoder + decoder, AAMs and head.
REFERENCE = {1: 22_143_265, 2: 22_143_394, 11: 22_144_555}


@pytest.mark.parametrize(("classes", "count"), REFERENCE.items())
def test_reference_parameter_count(classes, count):
    model = raunet_ni(num_classes=classes)
    assert model.num_parameters() == count
    assert sum(p.numel() for p in model.encoder.parameters()) == 21_284_672


def _randomised(module):
    torch.manual_seed(5)
    for p in module.parameters():
        nn.init.uniform_(p, -0.5, 0.5)
    return module.double().train()


@pytest.mark.parametrize("dims", [2, 3])
def test_aam_matches_its_equation_with_reference_batch_norm(dims):
    aam = _randomised(AugmentedAttentionModule(dims, 6, pool_norm="batch"))
    size = (5, 7, 6)[:dims]
    high = torch.randn(3, 6, *size, dtype=torch.float64)
    low = torch.randn(3, 6, *size, dtype=torch.float64)
    conv = {2: F.conv2d, 3: F.conv3d}[dims]

    def branch(block, t):
        return F.relu(batch_norm_train(conv(t, block.conv.weight, block.conv.bias), block.norm))

    gap = [*range(2, 2 + dims)]
    w_high = branch(aam.conv1, high.mean(dim=gap, keepdim=True))
    w_low = branch(aam.conv2, low.mean(dim=gap, keepdim=True))
    weight = torch.softmax(conv(w_high + w_low, aam.conv3.weight, aam.conv3.bias), dim=1)
    expected = high + branch(aam.conv4, low) * weight
    fused, w = aam.attend(high, low)
    torch.testing.assert_close(fused, expected)
    torch.testing.assert_close(w, weight)
    torch.testing.assert_close(w.sum(dim=1), torch.ones_like(w.sum(dim=1)))  # over channels


def test_aam_default_pool_norm_is_layer_norm_over_channels():
    aam = _randomised(AugmentedAttentionModule(2, 6))
    pooled = torch.randn(1, 6, 1, 1, dtype=torch.float64)
    block = aam.conv1
    y = F.conv2d(pooled, block.conv.weight, block.conv.bias)
    ref = F.layer_norm(y.movedim(1, -1), (6,), block.norm.weight, block.norm.bias, 1e-5)
    torch.testing.assert_close(block(pooled), F.relu(ref.movedim(-1, 1)))


def test_linknet_block_matches_its_equation():
    block = _randomised(LinkNetDecoderBlock(2, 16, 8))
    x = torch.randn(2, 16, 5, 6, dtype=torch.float64)
    s, u, e = block.squeeze, block.up, block.expand
    h = F.relu(batch_norm_train(F.conv2d(x, s.conv.weight, s.conv.bias), s.norm))
    h = F.conv_transpose2d(h, u.conv.weight, u.conv.bias, stride=2, padding=1)
    h = F.relu(batch_norm_train(h, u.norm))
    ref = F.relu(batch_norm_train(F.conv2d(h, e.conv.weight, e.conv.bias), e.norm))
    torch.testing.assert_close(block(x), ref)
    assert ref.shape[2:] == (10, 12)


def test_batch_size_one_training_step_works_with_the_default():
    model = RAUNet(2, 1, 2, encoder="resnet18").train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x, target = torch.randn(1, 1, 64, 64), torch.randint(0, 2, (1, 64, 64))
    loss = F.cross_entropy(model(x), target)
    loss.backward()
    optimizer.step()
    assert torch.isfinite(loss)
    faithful = RAUNet(2, 1, 2, encoder="resnet18", pool_norm="batch").train()
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        faithful(x)  # the reference's behaviour, kept available on purpose


@pytest.mark.parametrize("size", [(64, 96), (70, 90), (33, 47)])
@pytest.mark.parametrize("policy", ["pad", "resize"])
def test_any_input_size(size, policy):
    model = RAUNet(2, 1, 3, encoder="resnet18", size_policy=policy).eval()
    with torch.no_grad():
        y, weights = model.forward_with_attention(torch.randn(2, 1, *size))
    assert y.shape == (2, 3, *size)
    assert [tuple(w.shape) for w in weights] == [(2, 256, 1, 1), (2, 128, 1, 1), (2, 64, 1, 1)]


def test_error_policy_names_a_size_that_works():
    model = RAUNet(2, 1, 1, encoder="resnet18", size_policy="error")
    with pytest.raises(ValueError, match=r"\[96, 64\] or \[64, 32\]"):
        model(torch.randn(1, 1, 70, 40))


# ----------------------------------------------------------------------------- weights
@pytest.fixture(scope="module")
def torchvision_resnet34():
    torch.manual_seed(0)
    model = torchvision.models.resnet34()
    with torch.no_grad():  # non-trivial BN statistics
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model.state_dict()


def _encoder_state(model):
    return model.encoder.model.state_dict()


@pytest.mark.parametrize("in_channels", [3, 1])
def test_torchvision_pth_file_loads(tmp_path, torchvision_resnet34, in_channels):
    path = tmp_path / "resnet34-torchvision.pth"
    torch.save(torchvision_resnet34, path)
    model = RAUNet(2, in_channels, 1, pretrained=str(path))
    loaded = _encoder_state(model)
    for key, value in loaded.items():
        expected = torchvision_resnet34[key]
        if key == "conv1.weight" and in_channels == 1:
            expected = expected.sum(dim=1, keepdim=True)  # grey = equal RGB
        torch.testing.assert_close(value, expected, msg=key)
    assert model.config["pretrained"] is False  # configs never point at files


@pytest.mark.parametrize("in_channels", [3, 1])
def test_timm_safetensors_file_loads(tmp_path, in_channels):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    state = timm.create_model("resnet34").state_dict()  # timm layout, with fc
    path = tmp_path / "resnet34-timm.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    model = RAUNet(2, in_channels, 1, pretrained=path)
    for key, value in _encoder_state(model).items():
        expected = state[key]
        if key == "conv1.weight" and in_channels == 1:
            expected = expected.sum(dim=1, keepdim=True)
        torch.testing.assert_close(value, expected, msg=key)


def test_wrapped_checkpoint_loads(tmp_path, torchvision_resnet34):
    path = tmp_path / "checkpoint.pt"
    torch.save(
        {"epoch": 3, "state_dict": {f"module.{k}": v for k, v in torchvision_resnet34.items()}},
        path,
    )
    state = load_weights_file(path)
    assert "conv1.weight" in state and not any(k.startswith("module.") for k in state)
    nested = tmp_path / "raunet-encoder.pt"  # keys as RAUNet itself names them
    torch.save({f"module.encoder.model.{k}": v for k, v in torchvision_resnet34.items()}, nested)
    assert set(load_weights_file(nested)) == set(torchvision_resnet34)
    model = RAUNet(2, 3, 1, pretrained=path)
    torch.testing.assert_close(
        _encoder_state(model)["layer4.2.bn2.weight"], torchvision_resnet34["layer4.2.bn2.weight"]
    )


def test_bad_weight_files_get_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        RAUNet(2, 3, 1, pretrained=tmp_path / "missing.pth")
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        RAUNet(2, 3, 1, pretrained=empty)
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(256))
    with pytest.raises(ValueError, match="cannot read weights file"):
        RAUNet(2, 3, 1, pretrained=corrupt)
    wrong = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), wrong)
    with pytest.raises(ValueError, match="does not fit this encoder"):
        RAUNet(2, 3, 1, pretrained=wrong)


def test_pretrained_true_offline_without_cache_says_what_to_do(tmp_path):
    code = (
        "from attnunet.models.raunet import RAUNet\n"
        "try:\n"
        "    RAUNet(2, 3, 1, pretrained=True)\n"
        "except RuntimeError as e:\n"
        "    print('ERROR:', e)\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path),
        "TORCH_HOME": str(tmp_path),
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert "ERROR:" in out.stdout, out.stdout + out.stderr
    assert "resnet34.tv_in1k" in out.stdout and "pretrained='/" in out.stdout
    assert "never the network" in out.stdout


def test_pretrained_true_never_touches_the_network(monkeypatch):
    """pretrained=True runs timm with the Hub forced offline (cache only) and restores the
    global flag afterwards; pretrained="download" leaves the flag alone."""
    from huggingface_hub import constants

    seen = []

    def fake_create_model(name, pretrained=False, **kwargs):
        seen.append((name, pretrained, constants.HF_HUB_OFFLINE))
        raise OSError("not in the cache")

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(RuntimeError, match="never the network"):
        RAUNet(2, 3, 1, pretrained=True)
    with pytest.raises(RuntimeError, match="never the network"):
        RAUNet(3, 1, 1, pretrained=True)
    with pytest.raises(RuntimeError, match="pretrained='download' could not fetch"):
        RAUNet(2, 3, 1, pretrained="download")
    assert seen == [
        ("resnet34.tv_in1k", True, True),
        ("resnet34.tv_in1k", True, True),
        ("resnet34.tv_in1k", True, False),
    ]
    assert constants.HF_HUB_OFFLINE is False


def test_adapt_input_channels():
    torch.manual_seed(2)
    w = torch.randn(4, 3, 3, 3)
    one = adapt_input_channels(w, 1)
    torch.testing.assert_close(one, w.sum(1, keepdim=True))
    five = adapt_input_channels(w, 5)  # channels R, G, B, R, G scaled by 3/5
    torch.testing.assert_close(five, torch.cat([w, w[:, :2]], dim=1) * 3 / 5)
    # the scaling keeps the response to a grey image (all channels equal) when the channel
    # count is a multiple of 3, and a single channel reproduces it exactly
    grey = torch.rand(1, 1, 8, 8)
    reference = F.conv2d(grey.repeat(1, 3, 1, 1), w)
    torch.testing.assert_close(
        F.conv2d(grey.repeat(1, 6, 1, 1), adapt_input_channels(w, 6)), reference
    )
    torch.testing.assert_close(F.conv2d(grey, one), reference)


# ----------------------------------------------------------------------------- other encoders
@pytest.mark.parametrize(
    ("name", "channels"),
    [("resnet50", [256, 512, 1024, 2048]), ("efficientnet_b0", [24, 40, 112, 320])],
)
def test_any_timm_encoder_sizes_the_decoder(name, channels):
    model = RAUNet(2, 3, 2, encoder=name).eval()
    assert model.encoder.feature_channels == channels
    assert model.decoder.blocks[0].squeeze.conv.in_channels == channels[3]
    assert model.decoder.fusions[2].conv4.conv.in_channels == channels[0]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 48, 40)).shape == (1, 2, 48, 40)


def test_four_stage_encoders_work():
    """ConvNeXt has four feature levels (strides 4-32): the strides pick the features."""
    model = RAUNet(2, 1, 1, encoder="convnext_atto").eval()
    assert model.encoder.indices == [0, 1, 2, 3]
    assert model.encoder.feature_channels == [40, 80, 160, 320]
    with torch.no_grad():
        assert model(torch.randn(1, 1, 40, 56)).shape == (1, 1, 40, 56)


def test_non_resnet_weight_files_load(tmp_path):
    """A full EfficientNet checkpoint (with conv_head/bn2/classifier, which the feature
    extractor drops) loads, and its stem is adapted to one input channel."""
    torch.manual_seed(3)
    full = timm.create_model("efficientnet_b0").state_dict()
    path = tmp_path / "effnet.pth"
    torch.save(full, path)
    model = RAUNet(2, 1, 1, encoder="efficientnet_b0", pretrained=path)
    loaded = model.encoder.model.state_dict()
    torch.testing.assert_close(
        loaded["conv_stem.weight"], full["conv_stem.weight"].sum(1, keepdim=True)
    )
    torch.testing.assert_close(
        loaded["blocks.6.0.conv_pw.weight"], full["blocks.6.0.conv_pw.weight"]
    )


def test_encoders_with_1d_convs_still_take_2d_weights(tmp_path):
    """ECA attention uses 1D convolutions inside a 2D network: not a 1D encoder."""
    torch.manual_seed(4)
    full = timm.create_model("ecaresnet26t").state_dict()
    path = tmp_path / "eca.pth"
    torch.save(full, path)
    model = RAUNet(2, 3, 1, encoder="ecaresnet26t", pretrained=path)
    key = next(k for k in full if k.endswith("se.conv.weight"))
    torch.testing.assert_close(model.encoder.model.state_dict()[key], full[key])


def test_one_d_refuses_2d_weights(tmp_path, torchvision_resnet34):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision_resnet34, path)
    with pytest.raises(ValueError, match="not reduced to 1D"):
        RAUNet(1, 1, 1, pretrained=path)
    with pytest.raises(ValueError, match="can never train"):
        RAUNet(2, 1, 1, pool_norm="instance")


def test_encoders_that_cannot_serve():
    with pytest.raises(ValueError, match=r"strides \[16, 16, 16\]"):
        RAUNet(2, 3, 1, encoder="vit_tiny_patch16_224")
    with pytest.raises(ValueError, match="timm has no model 'resnet35'"):
        RAUNet(2, 3, 1, encoder="resnet35")
    with pytest.raises(ValueError, match="native ResNet encoder"):
        RAUNet(3, 1, 1, encoder="efficientnet_b0")


# ----------------------------------------------------------------------------- 3D
def test_3d_raunet_counts():
    """Every conv kernel gains a depth axis of its own size: the 3D count follows from the
    2D model's (forward and backward in 3D are cases of the model zoo tester)."""
    model = RAUNet(3, 1, 2, encoder="resnet18")
    two_d = RAUNet(2, 1, 2, encoder="resnet18")
    expected = 0
    for (n2, p2), (n3, p3) in zip(two_d.named_parameters(), model.named_parameters(), strict=True):
        assert n2 == n3
        expected += p2.numel() * (p3.shape[-1] if p3.dim() == 5 else 1)
    assert model.num_parameters() == expected


def test_inflated_weights_reproduce_the_2d_response_on_depth_constant_input():
    torch.manual_seed(0)
    two_d = ResNetEncoder(2, 3).double().eval()
    with torch.no_grad():
        for m in two_d.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
    three_d = ResNetEncoder(3, 3).double().eval()
    load_encoder_state(three_d, two_d.state_dict(), 3)
    image = torch.randn(1, 3, 64, 64, dtype=torch.float64)
    volume = image.unsqueeze(2).repeat(1, 1, 64, 1, 1)  # constant along depth
    with torch.no_grad():
        e1_2d = two_d(image)[0]
        e1_3d = three_d(volume)[0]
    # layer1's receptive field is 59 voxels: the middle depth slice never sees the border
    middle = e1_3d.shape[2] // 2
    torch.testing.assert_close(e1_3d[:, :, middle], e1_2d)
    assert not torch.allclose(e1_3d[:, :, 0], e1_2d)  # the borders do differ (zero padding)


def test_inflate_divides_by_the_depth_kernel():
    state = {"w": torch.ones(2, 3, 3, 3), "b": torch.ones(2)}
    target = {"w": torch.zeros(2, 3, 5, 3, 3), "b": torch.zeros(2)}
    out = inflate_state_dict(state, target)
    assert out["w"].shape == (2, 3, 5, 3, 3)
    torch.testing.assert_close(out["w"].sum(dim=2), state["w"])
    assert out["b"] is state["b"]


def test_3d_raunet_from_a_2d_weights_file(tmp_path, torchvision_resnet34):
    path = tmp_path / "resnet34.pth"
    torch.save(torchvision_resnet34, path)
    model = RAUNet(3, 1, 1, pretrained=path)
    w3 = model.encoder.model.conv1.weight
    assert w3.shape == (64, 1, 7, 7, 7)
    torch.testing.assert_close(
        w3.sum(dim=2), torchvision_resnet34["conv1.weight"].sum(1, keepdim=True)
    )


# ----------------------------------------------------------------------------- config, shapes
# TorchScript, torch.export, torch.compile, reloading and checkpointing of RAUNet and
# raunet_ni in 1D, 2D and 3D are cases of the model zoo tester (tests/test_zoo.py).


def test_config_round_trip():
    model = RAUNet(3, 2, 3, encoder="resnet18", pool_norm="group")
    config = json.loads(json.dumps(model.config))
    rebuilt = create_model("raunet", **config)
    assert rebuilt.config == model.config and rebuilt.config["pool_norm"] == "group"
    rebuilt.load_state_dict(model.state_dict())  # strict: same keys and shapes


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize(("in_channels", "num_classes"), [(1, 1), (4, 3)])
def test_shape_matrix(dims, in_channels, num_classes):
    size = {2: (45, 62), 3: (20, 35, 27)}[dims]
    model = RAUNet(dims, in_channels, num_classes, encoder="resnet18").eval()
    with torch.no_grad():
        y, weights = model.forward_with_attention(torch.randn(2, in_channels, *size))
    assert y.shape == (2, num_classes, *size)
    assert torch.isfinite(y).all()
    for w in weights:  # softmax over channels: positive, sums to one
        assert w.min() > 0
        torch.testing.assert_close(w.sum(dim=1), torch.ones_like(w.sum(dim=1)))


def test_state_dict_keys_are_stable(state_dict_keys):
    """State-dict keys are public API: change them only with a CHANGELOG entry."""
    keys = list(RAUNet(2, 3, 1).state_dict())
    assert keys == state_dict_keys["raunet"]
    assert keys == list(RAUNet(3, 3, 1).state_dict())  # the same names in 3D
