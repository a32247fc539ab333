"""Imports stay light: ``import attnunet`` and the model, loss and metric modules load no
optional heavy dependency (timm, torchvision, PIL, matplotlib, SciPy, MONAI) until a
feature that needs it is used.

Each check runs in a fresh interpreter, since this test session has imported everything
already. The positive control shows that the check can fail: building a RAUNet with a
timm encoder does load timm.
"""

import json
import subprocess
import sys
import textwrap

import pytest

HEAVY = ("timm", "torchvision", "PIL", "matplotlib", "scipy", "monai")


def _loaded_after(
    code: str, watch: tuple[str, ...] = (*HEAVY, "torch", "attnunet.models")
) -> set[str]:
    """Run ``code`` in a fresh interpreter; return which of ``watch`` it left loaded."""
    script = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json as _json, sys as _sys
        print(_json.dumps([name for name in {list(watch)!r} if name in _sys.modules]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def test_import_attnunet_loads_nothing_heavy():
    """The package's names are resolved on first use: importing it loads not even torch."""
    loaded = _loaded_after("import attnunet; attnunet.__version__")
    assert loaded == set(), f"`import attnunet` loaded {sorted(loaded)}"


def test_building_unet_family_models_loads_nothing_heavy():
    loaded = _loaded_after(
        """
        import torch
        from attnunet import AgResUNet, AttentionUNet, UNet
        model = UNet(2, 1, 2, channels=(4, 8, 16))
        model(torch.randn(1, 1, 16, 16))
        AgResUNet(3, 1, 2, channels=(4, 8, 16))
        AttentionUNet(3, 1, 2, channels=(4, 8, 16))
        """
    )
    assert loaded.isdisjoint(HEAVY), f"building U-Nets loaded {sorted(loaded & set(HEAVY))}"


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("attnunet.losses", ()),
        # the metrics package is documented as torch + NumPy + SciPy (connected components
        # and surface distances use scipy.ndimage and scipy.spatial)
        ("attnunet.metrics", ("scipy",)),
    ],
)
def test_losses_and_metrics_load_neither_models_nor_heavy_dependencies(module, allowed):
    loaded = _loaded_after(f"import {module}")
    assert "torch" in loaded  # sanity: the watch list works
    assert "attnunet.models" not in loaded, f"`import {module}` loaded the model zoo"
    unexpected = (loaded & set(HEAVY)) - set(allowed)
    assert not unexpected, f"`import {module}` loaded {sorted(unexpected)}"


def test_positive_control_a_timm_encoder_loads_timm():
    pytest.importorskip("timm")
    loaded = _loaded_after(
        """
        from attnunet import RAUNet
        RAUNet(2, 1, 1, encoder="resnet18", pretrained=False)
        """
    )
    assert "timm" in loaded
