"""TorchScript and torch.export of every model of the family, in eval mode."""

import pytest
import torch
from _reference import assert_outputs_close

from attnunet import create_model, list_models, model_info
from attnunet.models import accepted_kwargs

# the U-Net family: every registered model built from widths (`channels`); encoder-based
# models (RAUNet) have their own test file
FAMILY = [
    name
    for name in list_models(presets=False)
    if "channels" in (accepted_kwargs(model_info(name).model_class) or [])
]
SIZES = {2: (21, 30), 3: (9, 10, 13)}


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("deep_supervision", [False, True])
def test_torchscript_matches_eager(name, dims, deep_supervision, tmp_path):
    torch.manual_seed(0)
    model = create_model(
        name, spatial_dims=dims, channels=(4, 8, 16), deep_supervision=deep_supervision
    ).eval()
    x = torch.randn(1, 1, *SIZES[dims])
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
    # scripted models raise the same clear input errors
    with pytest.raises(Exception, match="input channel"):
        loaded(torch.randn(1, 2, *SIZES[dims]))
    with pytest.raises(Exception, match=r"dtype torch\.float64 but the model's weights are"):
        loaded(x.double())


def test_torchscript_under_autocast_takes_any_floating_input():
    """The input dtype check lets autocast through in TorchScript too (CPU bfloat16)."""
    model = create_model("ag_res_unet", spatial_dims=2, channels=(4, 8, 16)).eval()
    scripted = torch.jit.script(model)
    x = torch.randn(1, 1, *SIZES[2])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert scripted(x).dtype == torch.bfloat16
        assert scripted(x.bfloat16()).dtype == torch.bfloat16
    with pytest.raises(Exception, match=r"torch\.bfloat16 but the model's weights are"):
        scripted(x.bfloat16())  # outside autocast


@pytest.mark.parametrize("name", FAMILY)
@pytest.mark.parametrize("dims", [2, 3])
def test_torch_export_matches_eager(name, dims):
    torch.manual_seed(0)
    model = create_model(name, spatial_dims=dims, channels=(4, 8, 16)).eval()
    x = torch.randn(2, 1, *SIZES[dims])
    exported = torch.export.export(model, (x,))
    with torch.no_grad():
        assert_outputs_close(exported.module()(x), model(x))
        assert_outputs_close(exported.module()(torch.randn(2, 1, *SIZES[dims]) * 0), model(x * 0))


def test_torch_export_of_attention_maps():
    class WithMaps(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner.forward_with_attention(x)

    model = create_model("ag_res_unet", spatial_dims=3, channels=(4, 8, 16)).eval()
    x = torch.randn(1, 1, *SIZES[3])
    exported = torch.export.export(WithMaps(model), (x,))
    with torch.no_grad():
        out, maps = exported.module()(x)
        ref_out, ref_maps = model.forward_with_attention(x)
    assert_outputs_close(out, ref_out)
    assert_outputs_close(maps, ref_maps)
