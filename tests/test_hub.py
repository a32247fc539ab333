"""attnunet.models: save_pretrained / from_pretrained round trips and their errors, offline."""

import json
import os
import socket
from pathlib import Path

import pytest
import torch
from _reference import assert_same_state, trained_a_little
from torch import nn

from attnunet import (
    AgResUNet,
    AgUNet,
    RAUNet,
    SegmentationModel,
    UNet,
    register_model,
)
from attnunet.models import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    from_pretrained,
    save_pretrained,
    unregister_model,
)

CONFIG_KEYS = {
    "format",
    "format_version",
    "model",
    "class",
    "config",
    "attnunet_version",
    "torch_version",
    "metadata",
}


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test: loading is offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("attnunet.models tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


# ------------------------------------------------------------------------- round trips
# Every registered model's round trip (identical state dict and outputs, in every
# dimensionality) is a case of the model zoo tester, tests/test_zoo.py; these tests check
# what is particular: buffers, files, dtypes, overrides, errors.


def test_batch_norm_buffers_round_trip(tmp_path):
    torch.manual_seed(1)
    model = trained_a_little(UNet(2, 1, 1, channels=(4, 8)), torch.randn(3, 1, 16, 16))
    bn = next(m for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    model.save_pretrained(tmp_path)
    loaded = UNet.from_pretrained(tmp_path)
    loaded_bn = next(m for m in loaded.modules() if isinstance(m, nn.BatchNorm2d))
    assert torch.equal(loaded_bn.running_mean, bn.running_mean)
    assert torch.equal(loaded_bn.running_var, bn.running_var)
    assert int(loaded_bn.num_batches_tracked) == 2


def test_files_and_json_keys(tmp_path):
    model = AgUNet(2, 1, 2, channels=(4, 8))
    returned = model.save_pretrained(str(tmp_path / "a" / "b"), metadata={"epoch": 7})
    assert returned == tmp_path / "a" / "b"
    assert sorted(p.name for p in returned.iterdir()) == ["config.json", "model.safetensors"]
    document = json.loads((returned / "config.json").read_text(encoding="utf-8"))
    assert set(document) >= CONFIG_KEYS
    assert document["format"] == "attnunet" and document["format_version"] == 1
    assert document["model"] == "ag_unet"
    assert document["class"] == "attnunet.models.unet.AgUNet"
    assert document["config"] == json.loads(json.dumps(model.config))
    assert document["attnunet_version"] == __import__("attnunet").__version__
    assert document["torch_version"] == torch.__version__
    assert document["metadata"] == {"epoch": 7}


def test_accepts_pathlike_and_map_location(tmp_path):
    model = UNet(2, 1, 1, channels=(4, 8))
    save_pretrained(model, tmp_path)
    for location in ("cpu", torch.device("cpu")):
        loaded = from_pretrained(os.fspath(tmp_path), map_location=location)
        assert next(loaded.parameters()).device == torch.device("cpu")


def test_dtype_is_kept(tmp_path):
    model = UNet(2, 1, 1, channels=(4, 8)).double().eval()
    model.save_pretrained(tmp_path)
    loaded = UNet.from_pretrained(tmp_path)
    assert next(loaded.parameters()).dtype == torch.float64
    x = torch.randn(1, 1, 12, 12, dtype=torch.float64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_overrides_that_keep_shapes(tmp_path):
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path)
    loaded = UNet.from_pretrained(tmp_path, size_policy="resize")
    assert loaded.size_policy == "resize" and loaded.config["size_policy"] == "resize"


# ---------------------------------------------------------------- overwrite and atomicity
def test_overwrite_false_refuses_and_keeps_files(tmp_path):
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(FileExistsError, match=r"config\.json.*overwrite=True"):
        UNet(2, 1, 1, channels=(4, 16)).save_pretrained(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_overwrite_false_refuses_a_lone_weights_file(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"user data")
    with pytest.raises(FileExistsError, match=r"model\.safetensors.*overwrite=True"):
        UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").read_bytes() == b"user data"
    assert not (tmp_path / "config.json").exists()


def test_overwrite_true_replaces(tmp_path):
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path)
    (tmp_path / "notes.txt").write_text("mine")
    AgUNet(2, 1, 1, channels=(4, 16)).save_pretrained(tmp_path, overwrite=True)
    loaded = SegmentationModel.from_pretrained(tmp_path)
    assert isinstance(loaded, AgUNet) and loaded.config["channels"] == [4, 16]
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "config.json",
        "model.safetensors",
        "notes.txt",
    ]


def test_interrupted_save_leaves_no_partial_file(tmp_path, monkeypatch):
    import safetensors.torch

    def save_half_then_die(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 10)
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path / "new")
    assert list((tmp_path / "new").iterdir()) == []  # no final name, no temporary left

    monkeypatch.undo()
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path / "old")
    before = {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()}
    monkeypatch.setattr(safetensors.torch, "save_file", save_half_then_die)
    with pytest.raises(KeyboardInterrupt):
        UNet(2, 1, 1, channels=(4, 16)).save_pretrained(tmp_path / "old", overwrite=True)
    assert {p.name: p.read_bytes() for p in (tmp_path / "old").iterdir()} == before


def test_files_from_two_saves_are_refused(tmp_path):
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path / "a")
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path / "b")
    os.replace(tmp_path / "b" / "model.safetensors", tmp_path / "a" / "model.safetensors")
    with pytest.raises(ValueError, match="two different saves"):
        from_pretrained(tmp_path / "a")


# ------------------------------------------------------------------------- clear errors
@pytest.fixture
def saved(tmp_path) -> Path:
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path)
    return tmp_path


def edit_config(folder: Path, **changes) -> None:
    path = folder / "config.json"
    document = json.loads(path.read_text(encoding="utf-8"))
    document.update(changes)
    path.write_text(json.dumps(document), encoding="utf-8")


def test_missing_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="no folder"):
        from_pretrained(tmp_path / "nowhere")


def test_file_instead_of_directory(saved):
    with pytest.raises(NotADirectoryError, match="pass the folder"):
        from_pretrained(saved / "config.json")


def test_missing_config(saved):
    (saved / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        from_pretrained(saved)


def test_corrupt_json(saved):
    (saved / "config.json").write_text('{"format": "attnunet", ')
    with pytest.raises(ValueError, match="not valid JSON"):
        from_pretrained(saved)


def test_foreign_and_newer_formats(saved):
    edit_config(saved, format="diffusers")
    with pytest.raises(ValueError, match="not an attnunet config"):
        from_pretrained(saved)
    edit_config(saved, format="attnunet", format_version=99)
    with pytest.raises(ValueError, match=r"newer attnunet.*upgrade"):
        from_pretrained(saved)
    edit_config(saved, format_version="1")
    with pytest.raises(ValueError, match="format_version"):
        from_pretrained(saved)


def test_unknown_model_name_lists_close_matches(saved):
    edit_config(saved, model="ag_res_unett")
    with pytest.raises(
        ValueError, match=r"'ag_res_unett'.*not registered.*Did you mean 'ag_res_unet'"
    ):
        from_pretrained(saved)


def test_missing_empty_and_truncated_weights(saved):
    weights = saved / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        from_pretrained(saved)
    weights.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty"):
        from_pretrained(saved)
    weights.unlink()
    with pytest.raises(FileNotFoundError, match=r"model\.safetensors"):
        from_pretrained(saved)


def test_wrong_class_for_classmethod(saved):
    with pytest.raises(TypeError, match=r"holds a UNet.*not an instance of AgUNet"):
        AgUNet.from_pretrained(saved)
    assert isinstance(SegmentationModel.from_pretrained(saved), UNet)
    assert isinstance(UNet.from_pretrained(saved), UNet)


def test_state_dict_mismatch_is_summarised(tmp_path):
    UNet(2, 1, 1, channels=(4, 8, 16)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"shape mismatch\(es\): .*saved \(.*\), model \("):
        from_pretrained(tmp_path, channels=[4, 8, 32])
    with pytest.raises(ValueError, match=r"unexpected key\(s\)"):
        from_pretrained(tmp_path, channels=[4, 8])
    # deep supervision adds a head: missing keys, an error unless strict=False
    with pytest.raises(
        ValueError, match=r"overrides: \['deep_supervision'\]\): 2 missing key\(s\): aux_heads"
    ):
        from_pretrained(tmp_path, deep_supervision=True)
    with pytest.warns(UserWarning, match="missing from the file"):
        model = from_pretrained(tmp_path, strict=False, deep_supervision=True)
    assert model.config["deep_supervision"] is True


def test_unregistered_class_cannot_be_saved(tmp_path):
    class MyUNet(UNet):
        pass

    with pytest.raises(ValueError, match=r"MyUNet is not in the model registry.*register_model"):
        save_pretrained(MyUNet(2, 1, 1, channels=(4, 8)), tmp_path)
    assert not (tmp_path / "config.json").exists()
    with pytest.raises(TypeError, match="SegmentationModel"):
        save_pretrained(nn.Conv2d(1, 1, 1), tmp_path)


def test_unserialisable_config_and_metadata_name_the_key(tmp_path):
    model = UNet(2, 1, 1, channels=(4, 8), norm=nn.BatchNorm2d)
    with pytest.raises(TypeError, match=r"config\['norm'\].*BatchNorm2d"):
        model.save_pretrained(tmp_path)
    good = UNet(2, 1, 1, channels=(4, 8))
    with pytest.raises(TypeError, match=r"metadata\['run'\]\['when'\]"):
        good.save_pretrained(tmp_path, metadata={"run": {"when": object()}})
    assert list(tmp_path.iterdir()) == []


def test_raunet_round_trip_never_fetches_weights(tmp_path):
    torch.manual_seed(2)
    x = torch.randn(2, 1, 32, 32)
    model = trained_a_little(RAUNet(2, 1, 2, encoder="resnet18", pretrained=False), x)
    model.save_pretrained(tmp_path)
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["model"] == "raunet" and document["config"]["pretrained"] is False
    # even a hand-edited config asking for pretrained weights loads offline
    edit_config(tmp_path, config={**document["config"], "pretrained": True})
    loaded = RAUNet.from_pretrained(tmp_path)
    assert loaded.config["pretrained"] is False
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    with pytest.raises(ValueError, match="never fetches encoder weights"):
        RAUNet.from_pretrained(tmp_path, pretrained=True)


# --------------------------------------------------------- shared and non-contiguous tensors
class TiedNet(SegmentationModel):
    """A registered toy model with a tied weight, a partial view and a transposed buffer."""

    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, num_classes: int = 1):
        super().__init__()
        self.spatial_dims, self.in_channels, self.depth, self.divisor = 2, in_channels, 0, 1
        self.size_policy = "pad"
        self.a = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b = nn.Conv2d(in_channels, 4, 3, padding=1)
        self.b.weight = self.a.weight
        self.bn = nn.BatchNorm2d(4)
        self.head = nn.Conv2d(4, num_classes, 1)
        self.register_buffer("flat", torch.arange(8.0))
        self.register_buffer("part", self.flat[2:6])
        self.register_buffer("transposed", torch.randn(3, 4).t())
        self._config = {
            "spatial_dims": spatial_dims,
            "in_channels": in_channels,
            "num_classes": num_classes,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.a(x) + self.b(x))) + self.part.sum()


@pytest.fixture
def tied_registered():
    register_model("tied_net_for_tests", spatial_dims=(2,))(TiedNet)
    yield
    unregister_model("tied_net_for_tests")


def test_tied_shared_and_non_contiguous_tensors(tmp_path, tied_registered):
    torch.manual_seed(3)
    model = trained_a_little(TiedNet(), torch.randn(2, 1, 8, 8))
    assert not model.transposed.is_contiguous()
    model.save_pretrained(tmp_path)
    loaded = TiedNet.from_pretrained(tmp_path)
    assert loaded.a.weight is loaded.b.weight  # the tie survives
    assert_same_state(model, loaded)
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_3d_model_from_the_base_class(tmp_path):
    model = AgResUNet(3, 1, 2, channels=(4, 8)).eval()
    model.save_pretrained(tmp_path)
    loaded = SegmentationModel.from_pretrained(tmp_path)
    x = torch.randn(1, 1, 6, 7, 8)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_the_public_file_names_are_the_files_written(tmp_path):
    """``CONFIG_NAME`` and ``WEIGHTS_NAME`` name the two files a save writes, and loading
    needs both."""
    UNet(2, 1, 1, channels=(4, 8)).save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, WEIGHTS_NAME])
    assert json.loads((tmp_path / CONFIG_NAME).read_text(encoding="utf-8"))["model"] == "unet"
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(FileNotFoundError, match=WEIGHTS_NAME.replace(".", r"\.")):
        from_pretrained(tmp_path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_model_saves_and_loads_onto_the_gpu(tmp_path):
    model = UNet(2, 1, 2, channels=(4, 8)).cuda().eval()
    model.save_pretrained(tmp_path)
    on_cpu = UNet.from_pretrained(tmp_path)
    assert next(on_cpu.parameters()).device.type == "cpu"
    loaded = UNet.from_pretrained(tmp_path, map_location="cuda")
    assert all(t.is_cuda for t in loaded.state_dict().values())
    x = torch.randn(2, 1, 16, 12, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
