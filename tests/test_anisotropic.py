"""Anisotropic stages (issue 16, item 1) and the deep-supervision switch (item 2).

Oracles:

* a 3D model whose every stride and kernel is ``1`` along the first axis is the 2D model
  applied slice by slice, once the 2D weights are copied in with a unit first kernel
  axis: this checks the per-axis down-sampling, up-sampling (transposed and linear), the
  grid gates' subsampling, the kernels and the heads against a model that has no
  anisotropy at all;
* the size policy against padding and cropping by hand; parameter counts against
  formulas written here; a strided first convolution against ``F.conv3d``;
* the deep-supervision loss against ``F.interpolate(mode="nearest-exact")``.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from attnunet import (
    AgResUNet,
    AgUNet,
    AttentionUNet,
    AttentionUNetPlusPlus,
    ResUNet,
    UNet,
    UNetPlusPlus,
    create_model,
)
from attnunet.losses import deep_supervision_loss
from attnunet.models import from_pretrained, save_pretrained

CHANNELS = (4, 8, 16)
SLICE_STRIDES = [1, (1, 2, 2), (1, 2, 2)]
SLICE_KERNEL = (1, 3, 3)


def _copy_2d_into_3d(model_2d: torch.nn.Module, model_3d: torch.nn.Module) -> None:
    """Load 2D weights into the 3D model, giving every kernel a unit first axis."""
    state = {}
    target = model_3d.state_dict()
    for key, value in model_2d.state_dict().items():
        want = target[key]
        state[key] = value.unsqueeze(2) if value.dim() + 1 == want.dim() else value
    model_3d.load_state_dict(state)


def _slice_wise(model_2d: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Run the 2D model on every slice ``x[:, :, d]`` and stack the results on axis 2."""
    b, c, d, h, w = x.shape
    flat = x.permute(0, 2, 1, 3, 4).reshape(b * d, c, h, w)
    y = model_2d(flat)
    return y.reshape(b, d, *y.shape[1:]).permute(0, 2, 1, 3, 4)


FAMILIES = [
    (UNet, {}),
    (AgUNet, {}),
    (ResUNet, {}),
    (AgResUNet, {"gate": "grid"}),
    (AttentionUNet, {}),  # parameter-free trilinear up-sampling, two gates per skip
    (UNetPlusPlus, {}),
    (AttentionUNetPlusPlus, {}),
    (AgUNet, {"up": "interp", "up_kernel_size": 3}),
    (UNet, {"down": "conv"}),
    (UNet, {"down": "strided", "convs_per_stage": [1, 2, 3]}),
]


@pytest.mark.parametrize("cls,extra", FAMILIES, ids=lambda v: getattr(v, "__name__", str(v)))
def test_in_plane_only_3d_model_is_the_2d_model_slice_by_slice(cls, extra) -> None:
    torch.manual_seed(0)
    kwargs = {"channels": CHANNELS, "norm": "batch", **extra}
    model_2d = cls(2, 1, 3, **kwargs).eval()
    model_3d = cls(3, 1, 3, strides=SLICE_STRIDES, kernel_size=[SLICE_KERNEL] * 3, **kwargs).eval()
    if "up_kernel_size" in extra:
        model_3d = cls(
            3,
            1,
            3,
            strides=SLICE_STRIDES,
            kernel_size=[SLICE_KERNEL] * 3,
            **{**kwargs, "up_kernel_size": (1, 3, 3)},
        ).eval()
    for module in model_2d.modules():  # non-trivial running statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    _copy_2d_into_3d(model_2d, model_3d)
    x = torch.randn(2, 1, 3, 20, 12)
    with torch.no_grad():
        expected = _slice_wise(model_2d, x)
        got = model_3d(x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    assert model_3d.divisors == [1, 4, 4]


def test_deep_supervision_list_follows_the_strides_and_its_loss_resizes_per_axis() -> None:
    torch.manual_seed(0)
    strides = [1, (1, 2, 2), (2, 2, 2), (2, 2, 1)]
    model = AgResUNet(3, 1, 2, channels=(4, 8, 8, 16), strides=strides, deep_supervision=True)
    x = torch.randn(1, 1, 9, 17, 10)
    outputs = model(x)
    # level k: the input divided by the product of the strides of stages 1..k, per axis
    # (ceil under size_policy="pad")
    scales = [(1, 1, 1), (1, 2, 2), (2, 4, 4)]  # products of strides[1..k], by hand
    expected = [[math.ceil(s / f) for s, f in zip(x.shape[2:], sc, strict=True)] for sc in scales]
    assert [list(y.shape[2:]) for y in outputs] == expected
    target = torch.randint(0, 2, (1, *x.shape[2:]))

    def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    loss = deep_supervision_loss(ce, outputs, target, weights=[1.0, 1.0, 1.0])
    by_hand = sum(
        F.cross_entropy(
            y,
            F.interpolate(target[:, None].float(), size=y.shape[2:], mode="nearest-exact")[:, 0]
            .round()
            .long(),
        )
        for y in outputs
    )
    torch.testing.assert_close(loss, by_hand)


def test_grid_gate_subsampling_and_samplers_follow_the_stage_stride() -> None:
    model = AgUNet(3, 1, 1, channels=CHANNELS, strides=[1, (1, 2, 2), (2, 2, 1)])
    finest, coarse = model.decoder.levels[-1], model.decoder.levels[0]
    assert finest.gate.theta.kernel_size == (1, 2, 2) == finest.gate.theta.stride
    assert coarse.gate.theta.kernel_size == (2, 2, 1)
    assert finest.up.op.stride == (1, 2, 2) and finest.up.op.kernel_size == (1, 2, 2)
    assert model.encoder.stages[2].down.op.kernel_size == (2, 2, 1)
    oktay = AttentionUNet(3, 1, 2, channels=(4, 8, 16, 32), strides=[1, 2, (1, 2, 2), 2])
    gate = oktay.decoder.levels[1].gate.gates[0]  # the skip of stage 1, below stage 2
    assert gate.theta.stride == (1, 2, 2)


def test_size_policy_pads_each_axis_to_its_own_multiple() -> None:
    torch.manual_seed(0)
    model = UNet(3, 1, 2, channels=CHANNELS, strides=[1, (1, 2, 2), (2, 2, 2)]).eval()
    assert model.divisors == [2, 4, 4] and model.divisor == 4
    x = torch.randn(1, 1, 5, 9, 6)
    padded = F.pad(x, (0, 2, 0, 3, 0, 1))  # to 6, 12, 8: multiples of 2, 4, 4
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[:, :, :5, :9, :6])
    strict = UNet(3, 1, 2, channels=CHANNELS, strides=[1, (1, 2, 2), 2], size_policy="error")
    with pytest.raises(ValueError, match=r"strides per axis, \[2, 4, 4\].*\[6, 12, 8\]"):
        strict(x)
    strict(padded)  # exact multiples pass


def test_parameter_counts_of_kernels_and_convs_per_stage_by_hand() -> None:
    model = UNet(
        3,
        1,
        2,
        channels=(4, 8),
        strides=[1, (1, 2, 2)],
        kernel_size=[(1, 3, 3), 3],
        convs_per_stage=[1, 3],
        decoder_convs_per_stage=[2],
        norm=None,
        conv_bias=True,
    )

    def conv(cin: int, cout: int, k: int) -> int:
        return cin * cout * k + cout

    expected = (
        conv(1, 4, 9)  # stage 0: one (1, 3, 3) convolution
        + conv(4, 8, 27)
        + 2 * conv(8, 8, 27)  # stage 1: three 3x3x3 convolutions
        + 8 * 4 * 4
        + 4  # transposed convolution, kernel = stride (1, 2, 2)
        + conv(8, 4, 9)
        + conv(4, 4, 9)  # decoder level 0: two (1, 3, 3) convolutions
        + conv(4, 2, 1)  # head
    )
    assert model.num_parameters() == expected


def test_strided_first_convolution_equals_conv3d_with_the_stride() -> None:
    torch.manual_seed(0)
    model = UNet(3, 1, 1, channels=(2, 3), strides=[1, (1, 2, 2)], down="strided", norm=None)
    stage = model.encoder.stages[1]
    x = torch.randn(1, 2, 3, 8, 6)
    first = stage.block.conv1.conv
    expected = F.relu(F.conv3d(x, first.weight, first.bias, stride=(1, 2, 2), padding=1))
    torch.testing.assert_close(stage.block.conv1(x), expected)
    assert isinstance(stage.down, torch.nn.Identity)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"strides": [2, 2, 2]}, "strides\\[0\\]"),
        ({"strides": [1, 2]}, "one entry per stage .*3 in all"),
        ({"strides": [1, (1, 2), 2]}, "one per spatial axis"),
        ({"strides": 2}, "one stride per stage"),
        ({"kernel_size": [3, (1, 2, 3), 3]}, "even entry"),
        ({"kernel_size": [1, 3, 3]}, "ambiguous"),
        ({"convs_per_stage": [2, 0, 2]}, "positive ints"),
        ({"decoder_convs_per_stage": [2, 2, 2]}, "one entry per decoder level .*2 in all"),
        ({"down": "pool"}, "down mode must be"),
        ({"strides": [1, (1, 2, 2), 2], "up_kernel_size": 2}, "stride 1 the kernel must be odd"),
    ],
)
def test_invalid_stage_arguments_say_what_works(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        UNet(3, 1, 1, channels=CHANNELS, **kwargs)


def test_defaults_are_the_explicit_isotropic_stages() -> None:
    torch.manual_seed(0)
    default = AgResUNet(2, 1, 2, channels=CHANNELS).eval()
    explicit = AgResUNet(
        2,
        1,
        2,
        channels=CHANNELS,
        strides=[1, 2, (2, 2)],
        kernel_size=[3, (3, 3), 3],
        convs_per_stage=2,
        decoder_convs_per_stage=[2, 2],
    ).eval()
    assert [(k, v.shape) for k, v in default.state_dict().items()] == [
        (k, v.shape) for k, v in explicit.state_dict().items()
    ]
    explicit.load_state_dict(default.state_dict())
    x = torch.randn(1, 1, 19, 23)
    with torch.no_grad():
        torch.testing.assert_close(explicit(x), default(x))


# ------------------------------------------------------------------ deep-supervision switch
SWITCHABLE = [
    (UNet, {}),
    (AgResUNet, {}),
    (AttentionUNet, {"ds_fusion": True}),
    (UNetPlusPlus, {}),
    (UNetPlusPlus, {"ds_mode": "fast", "fast_column": 1}),
    (AttentionUNetPlusPlus, {"ds_mode": "accurate"}),
]


@pytest.mark.parametrize("cls,extra", SWITCHABLE, ids=lambda v: getattr(v, "__name__", str(v)))
def test_switch_changes_only_the_return_type(cls, extra) -> None:
    torch.manual_seed(0)
    model = cls(2, 1, 2, channels=CHANNELS, deep_supervision=True, **extra).eval()
    keys = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 1, 16, 20)
    with torch.no_grad():
        on = model(x)
        model.deep_supervision = False
        off = model(x)
    assert isinstance(off, torch.Tensor) and not model.deep_supervision
    assert model.config["deep_supervision"] is False and model.ds_heads
    state = model.state_dict()
    assert list(state) == list(keys) and all(torch.equal(state[k], keys[k]) for k in keys)
    # the switched-off output is the deep-supervision model's own final output: the list's
    # first item, or what UNet++ returns for its mode with the full network
    plain = {k: v for k, v in extra.items() if k not in ("ds_mode", "fast_column")}
    reference = cls(2, 1, 2, channels=CHANNELS, **plain).eval()
    reference.load_state_dict(state, strict=False)
    with torch.no_grad():
        torch.testing.assert_close(off, reference(x))
    if isinstance(on, list):
        torch.testing.assert_close(off, on[0])
    assert model.set_deep_supervision(True) is model
    with torch.no_grad():
        again = model(x)
    assert type(again) is type(on)


def test_ds_heads_without_deep_supervision_has_the_same_state_dict() -> None:
    trained = AgUNet(3, 1, 2, channels=CHANNELS, deep_supervision=True)
    inference = AgUNet(3, 1, 2, channels=CHANNELS, ds_heads=True)
    assert not inference.deep_supervision
    inference.load_state_dict(trained.state_dict())  # strict: no unexpected aux_heads.*
    assert inference.num_parameters() == trained.num_parameters()


def test_switching_on_without_heads_raises() -> None:
    model = UNet(2, 1, 1, channels=CHANNELS)
    with pytest.raises(ValueError, match="built without deep-supervision heads"):
        model.deep_supervision = True
    assert not model.deep_supervision
    with pytest.raises(ValueError, match="needs its heads"):
        UNet(2, 1, 1, channels=CHANNELS, deep_supervision=True, ds_heads=False)


def test_saved_switch_state_comes_back(tmp_path) -> None:
    model = AgResUNet(2, 1, 2, channels=CHANNELS, deep_supervision=True).eval()
    model.deep_supervision = False
    save_pretrained(model, tmp_path / "m")
    loaded = from_pretrained(tmp_path / "m")
    assert loaded.ds_heads and not loaded.deep_supervision
    rebuilt = create_model("ag_res_unet", **model.config)
    assert rebuilt.ds_heads and not rebuilt.deep_supervision
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))


def test_scripted_model_keeps_the_switch_it_had() -> None:
    torch.manual_seed(0)
    model = UNet(2, 1, 2, channels=CHANNELS, deep_supervision=True).eval()
    model.deep_supervision = False
    scripted = torch.jit.script(model)
    x = torch.randn(1, 1, 16, 16)
    out = scripted(x)
    assert isinstance(out, torch.Tensor)
    torch.testing.assert_close(out, model(x))


def test_gradcam_runs_on_a_deep_supervision_model_switched_off() -> None:
    monai_visualize = pytest.importorskip("monai.visualize", reason="MONAI is optional")
    model = AgUNet(2, 1, 2, channels=CHANNELS, deep_supervision=True).eval()
    with pytest.raises(Exception):  # noqa: B017 (MONAI fails on the list output)
        monai_visualize.GradCAM(nn_module=model, target_layers="decoder.levels.0.block")(
            torch.rand(1, 1, 16, 16)
        )
    model.set_deep_supervision(False)
    cam = monai_visualize.GradCAM(nn_module=model, target_layers="decoder.levels.0.block")
    assert cam(torch.rand(1, 1, 16, 16), class_idx=1).shape == (1, 1, 16, 16)


def test_deep_supervision_loss_refuses_a_target_that_is_not_full_resolution() -> None:
    outputs = [torch.randn(1, 2, 4, 16, 16), torch.randn(1, 2, 4, 8, 8)]
    target = torch.randint(0, 2, (1, 4, 16, 16))

    def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels)

    deep_supervision_loss(ce, outputs, target)  # the full-resolution target passes
    for wrong in (target[:, :, :10], target[:, ::2, ::2, ::2]):
        with pytest.raises(ValueError, match=r"not the size of the full-resolution output"):
            deep_supervision_loss(ce, outputs, wrong)
    with pytest.raises(ValueError, match=r"\[4, 10, 16\]"):
        deep_supervision_loss(ce, outputs[0], target[:, :, :10])


@pytest.mark.parametrize(
    "kwargs", [{"deep_supervision": "false"}, {"ds_fusion": 1}, {"gating_signal": "no"}]
)
def test_flags_must_be_bools(kwargs) -> None:
    with pytest.raises(TypeError, match="must be True or False"):
        AgUNet(2, 1, 1, channels=CHANNELS, **kwargs)
    model = UNet(2, 1, 1, channels=CHANNELS, ds_heads=True)
    with pytest.raises(TypeError, match="must be True or False"):
        model.deep_supervision = "no"
    assert not model.deep_supervision


def test_numpy_values_are_plain_ints_and_floats_are_refused_by_name() -> None:
    np = pytest.importorskip("numpy")
    strides = np.array([[1, 1, 1], [1, 2, 2], [2, 2, 2]])
    model = UNet(3, 1, 1, channels=np.array([4, 8, 16]), strides=strides)
    assert model.divisors == [2, 4, 4] and model.channels == [4, 8, 16]
    assert model.config["strides"] == [[1, 1, 1], [1, 2, 2], [2, 2, 2]]  # JSON types
    for bad, name in (([1, 2.0, 2], r"strides\[1\]"), ([1, None, 2], r"strides\[1\]")):
        with pytest.raises(ValueError, match=name):
            UNet(3, 1, 1, channels=CHANNELS, strides=bad)
    with pytest.raises(ValueError, match="kernel_size must be an int or a list"):
        UNet(3, 1, 1, channels=CHANNELS, kernel_size=3.0)
    # (3, 3, 3) for three stages in 3D reads the same either way: not ambiguous
    assert UNet(3, 1, 1, channels=CHANNELS, kernel_size=(3, 3, 3)).num_parameters() == (
        UNet(3, 1, 1, channels=CHANNELS).num_parameters()
    )


def test_up_kernel_error_names_the_argument_and_the_level() -> None:
    with pytest.raises(ValueError, match=r"up_kernel_size=\(1, 4, 4\).*level 1"):
        UNet(3, 1, 1, channels=CHANNELS, strides=[1, (1, 2, 2), 2], up_kernel_size=(1, 4, 4))


def test_fusion_without_heads_is_refused() -> None:
    with pytest.raises(ValueError, match="ds_fusion=True needs its heads"):
        UNet(2, 1, 2, channels=CHANNELS, ds_fusion=True, ds_heads=False)


def test_from_pretrained_without_deep_supervision_keeps_the_heads(tmp_path) -> None:
    torch.manual_seed(0)
    trained = AttentionUNet(2, 1, 2, channels=CHANNELS, deep_supervision=True).eval()
    save_pretrained(trained, tmp_path / "m")
    model = from_pretrained(tmp_path / "m", deep_supervision=False)  # strict loading
    assert model.ds_heads and not model.deep_supervision
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(model(x), trained(x)[0])


def test_a_preset_name_rebuilds_from_its_class_config() -> None:
    preset = create_model("unet_krd", channels=[4, 8, 16])
    assert preset.config["model"] == "unet"
    rebuilt = create_model("unet_krd", **preset.config)
    assert [v.shape for v in rebuilt.state_dict().values()] == [
        v.shape for v in preset.state_dict().values()
    ]
    with pytest.raises(ValueError, match="must agree"):
        create_model("ag_unet", **preset.config)


def test_block_spec_cannot_set_what_the_model_sets_per_stage() -> None:
    from attnunet import UNetSkeleton

    with pytest.raises(ValueError, match="convs_per_stage="):
        UNetSkeleton(2, 1, 1, channels=CHANNELS, block=("residual", {"num_convs": 3}))
    with pytest.raises(ValueError, match="strides="):
        UNetSkeleton(2, 1, 1, channels=CHANNELS, block=("double", {"stride": 2}))
    three = UNetSkeleton(2, 1, 1, channels=CHANNELS, block="residual", convs_per_stage=3)
    assert len(three.encoder.stages[1].block.inner) == 1  # conv1, one inner unit, conv2
