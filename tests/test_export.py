"""TorchScript and torch.export beyond the model zoo tester (``tests/test_zoo.py``, which
scripts and exports every registered model in every dimensionality): a scripted model
saved and loaded, autocast in TorchScript, and attention maps through torch.export."""

import pytest
import torch
from _reference import ODD_SIZES, TINY_CHANNELS, assert_outputs_close

from attnunet import create_model


def test_saved_and_loaded_script_keeps_outputs_maps_and_input_errors(tmp_path):
    """``torch.jit.save`` / ``torch.jit.load`` of a deep-supervision model: the list
    output, ``forward_with_attention`` and the clear input errors survive the file."""
    torch.manual_seed(0)
    model = create_model(
        "ag_res_unet", spatial_dims=3, channels=TINY_CHANNELS, deep_supervision=True
    ).eval()
    x = torch.randn(1, 1, *ODD_SIZES[3])
    path = tmp_path / "model.pt"
    torch.jit.save(torch.jit.script(model), str(path))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        expected, expected_maps = model.forward_with_attention(x)
        assert_outputs_close(loaded(x), expected)
        out, maps = loaded.forward_with_attention(x)
    assert isinstance(out, list) and len(out) == 2
    assert_outputs_close(out, expected)
    assert len(maps) == 2
    assert_outputs_close(maps, expected_maps)
    with pytest.raises(Exception, match="input channel"):
        loaded(torch.randn(1, 2, *ODD_SIZES[3]))
    with pytest.raises(Exception, match=r"dtype torch\.float64 but the model's weights are"):
        loaded(x.double())


def test_torchscript_under_autocast_takes_any_floating_input():
    """The input dtype check lets autocast through in TorchScript too (CPU bfloat16)."""
    model = create_model("ag_res_unet", spatial_dims=2, channels=TINY_CHANNELS).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 1, *ODD_SIZES[2])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert scripted(x).dtype == torch.bfloat16
        assert scripted(x.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(Exception, match=r"torch\.bfloat16 but the model's weights are"):
        scripted(x.bfloat16())  # outside autocast


def test_torch_export_of_attention_maps():
    class WithMaps(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_with_attention(x)

    model = create_model("ag_res_unet", spatial_dims=3, channels=TINY_CHANNELS).eval()
    x = torch.randn(1, 1, *ODD_SIZES[3])
    exported = torch.export.export(WithMaps(model), (x,))
    with torch.no_grad():
        out, maps = exported.module()(x)
        ref_out, ref_maps = model.forward_with_attention(x)
    assert_outputs_close(out, ref_out)
    assert_outputs_close(maps, ref_maps)
