"""``model.config`` holds JSON types and the registry name: JSON, ``yaml.safe_load`` and
Lightning's ``hparams.yaml`` give it back, and ``create_model(**config)`` rebuilds the model.

The oracles are independent of attnunet: :mod:`json` (a tuple comes back as a list, which
is not equal to it), PyYAML's ``safe_load`` (which refuses ``!!python/tuple``), Lightning's
own hyper-parameter writer and checkpoints, and names written out here by hand.
"""

import copy
import inspect
import json
import pickle

import pytest
import torch
from _reference import TINY_CHANNELS, output_tensors, randomise_norms

from attnunet import (
    AgResUNet,
    AgUNet,
    AttentionUNet,
    AttentionUNetPlusPlus,
    UNet,
    UNetPlusPlus,
    UNetSkeleton,
    create_model,
    list_models,
)
from attnunet.models import accepted_kwargs, from_pretrained, model_info, save_pretrained

# the registry name of each preset's class, written out (a preset's config names its class)
PRESET_CLASS = {
    "unet_krd": "unet",
    "res_unet_krd": "res_unet",
    "ag_unet_krd": "ag_unet",
    "ag_res_unet_krd": "ag_res_unet",
    "attention_unet_oktay": "attention_unet",
    "attention_unet_oktay_single": "attention_unet",
    "attention_unet_oktay_1024": "attention_unet",
    "attention_unet_oktay_conv_mapped": "attention_unet",
    "raunet_ni": "raunet",
}
# the names of the registered classes, written out
CLASS_NAMES = {
    "UNet": "unet",
    "ResUNet": "res_unet",
    "AgUNet": "ag_unet",
    "AgResUNet": "ag_res_unet",
    "AttentionUNet": "attention_unet",
    "RAUNet": "raunet",
    "UNetPlusPlus": "unet_plus_plus",
    "AttentionUNetPlusPlus": "attention_unet_plus_plus",
}


def _json_copy(value):
    return json.loads(json.dumps(value))


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return output_tensors(model.eval()(x))


def assert_same_model(original: torch.nn.Module, rebuilt: torch.nn.Module, x: torch.Tensor):
    """Same state-dict keys (in order) and shapes; with the original's weights loaded into
    the rebuilt model, the same outputs bit for bit."""
    source, target = original.state_dict(), rebuilt.state_dict()
    assert list(source) == list(target)
    assert [t.shape for t in source.values()] == [t.shape for t in target.values()]
    rebuilt.load_state_dict(source)
    for a, b in zip(_outputs(original, x), _outputs(rebuilt, x), strict=True):
        assert torch.equal(a, b)


def _small(tiny_kwargs, name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    kwargs = tiny_kwargs(name, 2, in_channels=1, num_classes=2)
    return randomise_norms(create_model(name, **kwargs))


X = torch.randn(2, 1, 21, 18, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------- every registered model
@pytest.mark.parametrize("name", list_models())
def test_every_config_is_json_and_rebuilds_the_model(tiny_kwargs, name):
    model = _small(tiny_kwargs, name)
    config = model.config
    assert _json_copy(config) == config  # no tuple, nothing JSON changes
    expected = PRESET_CLASS.get(name, name)
    if model_info(name).is_preset:
        assert name in PRESET_CLASS, f"add the preset {name!r} to PRESET_CLASS"
    assert next(iter(config)) == "model" and config["model"] == expected
    assert CLASS_NAMES[type(model).__name__] == expected
    # every other keyword of the class is explicit, so a preset's config needs no preset
    accepted = accepted_kwargs(type(model))
    assert accepted is not None
    assert set(config) - {"model"} <= set(accepted)
    for rebuild in (lambda: create_model(**config), lambda: type(model)(**config)):
        torch.manual_seed(1)  # other initial weights: the outputs agree only after loading
        rebuilt = rebuild()
        assert type(rebuilt) is type(model)
        assert rebuilt.config == config
        assert_same_model(model, rebuilt, X)


def test_the_name_may_be_given_twice_when_it_agrees():
    model = UNet(2, 1, 2, channels=TINY_CHANNELS)
    for rebuilt in (
        create_model("unet", **model.config),
        create_model(
            model="unet", spatial_dims=2, in_channels=1, num_classes=2, channels=[4, 8, 16]
        ),
        create_model(name="unet", **model.config),
        UNet(model="unet", channels=TINY_CHANNELS, num_classes=2),
    ):
        assert rebuilt.config == model.config


def test_a_preset_config_names_its_class_with_every_keyword():
    config = create_model("unet_krd").config
    assert config["model"] == "unet"
    assert config["channels"] == [16, 32, 64, 128, 256] and config["up_kernel_size"] == 3
    assert config["in_channels"] == 3 and config["conv_bias"] is True
    assert create_model(**config).num_parameters() == 2161649  # the preset's documented count


# --------------------------------------------------------------------------- tuple specs
TUPLE_SPECS = {
    "channels": (4, 8, 16),
    "norm": ("group", {"num_groups": 2}),
    "act": ("leaky_relu", {"negative_slope": 0.1}),
    "gate": ("grid", {"inter_channels": 4}),
    "block": ("residual", {"shortcut": "auto"}),
}
# the same, as JSON writes them
LIST_SPECS = {
    "channels": [4, 8, 16],
    "norm": ["group", {"num_groups": 2}],
    "act": ["leaky_relu", {"negative_slope": 0.1}],
    "gate": ["grid", {"inter_channels": 4}],
    "block": ["residual", {"shortcut": "auto"}],
}


@pytest.mark.parametrize("cls", [AttentionUNetPlusPlus, UNetSkeleton])
def test_tuple_specs_come_back_as_lists_and_rebuild(cls):
    torch.manual_seed(0)
    model = randomise_norms(cls(2, 1, 2, **TUPLE_SPECS))
    config = model.config
    for key, value in LIST_SPECS.items():
        assert config[key] == value, key
    assert _json_copy(config) == config
    # an unregistered class's config has no name, and rebuilds through the class
    assert ("model" in config) is (cls is AttentionUNetPlusPlus)
    torch.manual_seed(1)
    rebuilt = type(model)(**_json_copy(config))
    assert rebuilt.config == config
    assert_same_model(model, rebuilt, X)
    # the rebuilt model scripts as the original does (no list where a tuple was expected)
    scripted = torch.jit.script(rebuilt)
    # TorchScript runs the input's layout: the same arithmetic as "off" (eager mode's
    # "auto" runs channels-last on the CPU, equal up to rounding, tested elsewhere)
    model.set_channels_last("off")
    for a, b in zip(_outputs(model, X), output_tensors(scripted(X)), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("cls", [UNet, AttentionUNet, UNetPlusPlus])
def test_per_stage_kernels_and_strides_become_lists(cls):
    torch.manual_seed(0)
    model = randomise_norms(
        cls(2, 1, 2, TINY_CHANNELS, kernel_size=((1, 3), (3, 3), (3, 3)), strides=(1, (1, 2), 2))
    )
    config = model.config
    assert config["kernel_size"] == [[1, 3], [3, 3], [3, 3]]
    assert config["strides"] == [1, [1, 2], 2]
    assert _json_copy(config) == config
    torch.manual_seed(1)
    rebuilt = create_model(**_json_copy(config))
    assert_same_model(model, rebuilt, X)
    scripted = torch.jit.script(rebuilt)
    # TorchScript runs the input's layout: the same arithmetic as "off" (eager mode's
    # "auto" runs channels-last on the CPU, equal up to rounding, tested elsewhere)
    model.set_channels_last("off")
    for a, b in zip(_outputs(model, X), output_tensors(scripted(X)), strict=True):
        assert torch.equal(a, b)


def test_nested_gate_specs_become_lists():
    model = AttentionUNet(2, 1, 2, channels=TINY_CHANNELS, gate=("grid_oktay", {"act": "softplus"}))
    assert model.config["gate"] == ["grid_oktay", {"act": "softplus"}]
    skeleton = UNetSkeleton(
        2,
        1,
        2,
        TINY_CHANNELS,
        gate=("multi", {"gate": ("grid", {"inter_channels": 4}), "num_gates": 2}),
    )
    assert skeleton.config["gate"] == [
        "multi",
        {"gate": ["grid", {"inter_channels": 4}], "num_gates": 2},
    ]
    for source in (model, skeleton):
        torch.manual_seed(1)
        assert_same_model(source, type(source)(**_json_copy(source.config)), X)


def test_a_callable_spec_stays_as_it_is():
    def norm(channels: int) -> torch.nn.Module:
        return torch.nn.GroupNorm(2, channels)

    model = UNet(2, 1, 1, channels=TINY_CHANNELS, norm=norm)
    assert model.config["norm"] is norm
    assert UNet(**model.config).config["norm"] is norm


# ------------------------------------------------------------------ the model= keyword
def test_a_config_of_another_model_is_refused_by_the_class():
    config = AgUNet(2, 1, 2, channels=TINY_CHANNELS).config
    with pytest.raises(ValueError, match=r"UNet.*'unet'.*'ag_unet'.*create_model\(\*\*config\)"):
        UNet(**config)
    with pytest.raises(ValueError, match=r"AgResUNet.*'ag_unet'"):
        AgResUNet(**config)
    with pytest.raises(ValueError, match=r"UNetSkeleton \(not in the model registry\).*'unet'"):
        UNetSkeleton(model="unet")
    with pytest.raises(ValueError, match=r"'unet_krd'"):  # a preset's name is not its class's
        UNet(model="unet_krd")


def test_create_model_refuses_two_names():
    config = AgUNet(2, 1, 2, channels=TINY_CHANNELS).config
    with pytest.raises(ValueError, match=r"'unet'.*'ag_unet'.*must agree"):
        create_model("unet", **config)
    with pytest.raises(ValueError, match=r"needs a model name"):
        create_model(spatial_dims=2)
    with pytest.raises(ValueError, match=r"Unknown model 'ag_unett'.*Did you mean 'ag_unet'"):
        create_model(**{**config, "model": "ag_unett"})
    with pytest.raises(TypeError, match=r"unexpected argument 'chanels'.*'channels'"):
        create_model(**{**config, "chanels": [4, 8]})


def test_an_unregistered_subclass_has_no_name():
    class MyUNet(UNet):
        pass

    model = MyUNet(2, 1, 1, channels=TINY_CHANNELS)
    assert "model" not in model.config
    assert MyUNet(**model.config).config == model.config
    with pytest.raises(ValueError, match=r"MyUNet \(not in the model registry\).*'unet'"):
        MyUNet(**UNet(2, 1, 1, channels=TINY_CHANNELS).config)


def test_a_model_parameter_of_your_own_is_left_alone():
    class Wrapped(UNet):
        def __init__(self, model: str = "mine", **kwargs):
            super().__init__(**kwargs)
            self.label = model

    assert Wrapped(model="anything", channels=TINY_CHANNELS).label == "anything"


def test_signatures_keywords_pickling_are_unchanged():
    parameters = list(inspect.signature(AgResUNet).parameters)
    assert parameters == [
        "spatial_dims",
        "in_channels",
        "num_classes",
        "channels",
        "gate",
        "kwargs",
    ]
    assert "model" not in inspect.signature(UNetSkeleton).parameters
    assert "model" not in accepted_kwargs(AttentionUNet)
    assert AgResUNet.__init__.__name__ == "__init__"
    model = AgResUNet(2, 1, 1, channels=TINY_CHANNELS)
    for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert copied.config == model.config
        assert_same_model(model, copied, X)


# ----------------------------------------------------------------------- save_pretrained
def test_save_pretrained_round_trips_the_name(tmp_path):
    model = randomise_norms(
        AgUNet(2, 1, 2, channels=TINY_CHANNELS, norm=("group", {"num_groups": 2}))
    )
    save_pretrained(model, tmp_path)
    document = json.loads((tmp_path / "config.json").read_text(encoding="utf-8"))
    assert document["model"] == document["config"]["model"] == "ag_unet"
    assert document["config"]["norm"] == ["group", {"num_groups": 2}]
    loaded = from_pretrained(tmp_path)
    assert loaded.config == model.config
    for a, b in zip(_outputs(model, X), _outputs(loaded, X), strict=True):
        assert torch.equal(a, b)


def _write_old_folder(folder, model: torch.nn.Module, config: dict) -> None:
    """A folder as save_pretrained wrote it before configs held the name."""
    from safetensors.torch import save_file

    folder.mkdir()
    document = {
        "format": "attnunet",
        "format_version": 1,
        "model": "unet",
        "class": "attnunet.models.unet.UNet",
        "config": config,
        "attnunet_version": "0.1.0",
        "torch_version": torch.__version__,
        "metadata": {},
    }
    (folder / "config.json").write_text(json.dumps(document), encoding="utf-8")
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()},
        str(folder / "model.safetensors"),
    )


def test_an_old_config_without_the_name_still_loads(tmp_path):
    torch.manual_seed(0)
    model = randomise_norms(UNet(2, 1, 2, channels=(4, 8)))
    old_config = {  # written out as an older attnunet wrote it: no "model" inside
        "spatial_dims": 2,
        "in_channels": 1,
        "num_classes": 2,
        "channels": [4, 8],
        "gate_levels": None,
        "norm": "batch",
        "act": "relu",
        "dropout": 0.0,
        "kernel_size": 3,
        "conv_bias": None,
        "down": "maxpool",
        "up": "transpose",
        "up_kernel_size": None,
        "gating_signal": False,
        "deep_supervision": False,
        "ds_fusion": False,
        "size_policy": "pad",
    }
    _write_old_folder(tmp_path / "old", model, old_config)
    loaded = from_pretrained(tmp_path / "old")
    # keywords added since take their defaults, which the model was built with
    assert loaded.config == model.config
    assert {"model": "unet", **old_config}.items() <= loaded.config.items()
    for a, b in zip(_outputs(model, X), _outputs(loaded, X), strict=True):
        assert torch.equal(a, b)
    _write_old_folder(tmp_path / "edited", model, {**old_config, "model": "ag_unet"})
    with pytest.raises(ValueError, match=r"names the model 'unet'.*config.*'ag_unet'"):
        from_pretrained(tmp_path / "edited")


# ------------------------------------------------------------------------------ Lightning
def _lightning():
    return pytest.importorskip("lightning", reason="the Lightning round trip needs lightning")


def test_lightning_yaml_writer_round_trip(tmp_path):
    yaml = pytest.importorskip("yaml", reason="needs PyYAML")
    _lightning()
    from lightning.pytorch.core.saving import save_hparams_to_yaml

    torch.manual_seed(0)
    model = randomise_norms(
        AgResUNet(2, 1, 2, **{k: TUPLE_SPECS[k] for k in ("channels", "norm", "gate")})
    )
    # the problem this solves: Lightning writes a tuple as !!python/tuple, which safe_load refuses
    save_hparams_to_yaml(
        tmp_path / "tuples.yaml", {"norm": ("group", {"num_groups": 2})}, use_omegaconf=False
    )
    with pytest.raises(yaml.constructor.ConstructorError, match="python/tuple"):
        yaml.safe_load((tmp_path / "tuples.yaml").read_text(encoding="utf-8"))

    save_hparams_to_yaml(tmp_path / "hparams.yaml", model.config, use_omegaconf=False)
    loaded = yaml.safe_load((tmp_path / "hparams.yaml").read_text(encoding="utf-8"))
    assert loaded == model.config and loaded["model"] == "ag_res_unet"
    torch.manual_seed(1)
    assert_same_model(model, create_model(**loaded), X)


def test_lightning_trainer_hparams_and_checkpoint(tmp_path):
    yaml = pytest.importorskip("yaml", reason="needs PyYAML")
    lightning = _lightning()
    from lightning.pytorch.loggers import CSVLogger

    class Segmenter(lightning.LightningModule):
        def __init__(self, **config):
            super().__init__()
            self.save_hyperparameters()
            self.net = create_model(**self.hparams)

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.cross_entropy(self.net(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    config = AgUNet(2, 1, 2, channels=TINY_CHANNELS, norm=("group", {"num_groups": 2})).config
    torch.manual_seed(0)
    module = Segmenter(**config)
    images = torch.randn(4, 1, 16, 16)
    labels = torch.randint(0, 2, (4, 16, 16))
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(images, labels), batch_size=2)
    trainer = lightning.Trainer(
        max_steps=1,
        accelerator="cpu",
        devices=1,
        logger=CSVLogger(tmp_path),
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    before = {k: v.clone() for k, v in module.net.state_dict().items()}
    trainer.fit(module, data)
    assert any(not torch.equal(before[k], v) for k, v in module.net.state_dict().items())

    hparams = yaml.safe_load(
        (tmp_path / "lightning_logs" / "version_0" / "hparams.yaml").read_text()
    )
    assert hparams == config
    torch.manual_seed(1)
    assert_same_model(module.net, create_model(**hparams), X)

    [checkpoint] = (tmp_path / "lightning_logs" / "version_0" / "checkpoints").glob("*.ckpt")
    restored = Segmenter.load_from_checkpoint(checkpoint, map_location="cpu")
    assert restored.net.config == config
    assert_same_model(module.net, restored.net, X)
