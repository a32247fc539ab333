"""Attention figures: ``attention_figure``'s colour bar and layout, and ``save_attention``
(the window, the 3D slice axis, the panels, models without spatial maps, the model's mode).

Oracles: the PNGs are read back with Pillow and compared with layouts, gray levels and
blends computed by hand here, with the maps taken from the model's own
``forward_with_attention`` and resized with ``torch.nn.functional.interpolate``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from attnunet.models import create_model
from attnunet.study import attention as attention_module
from attnunet.study.attention import coarsest_axis, save_attention
from attnunet.study.plots import _heat, attention_figure

TITLE, GAP, BAR_COLUMN, BAR_WIDTH = 18, 6, 60, 12  # attention_figure's layout, in pixels
CHANNELS = (4, 8, 16)


def _model(name: str, dims: int, **kwargs: Any) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, spatial_dims=dims, channels=CHANNELS, **kwargs)


def _png(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        assert img.mode == "RGB"
        return np.asarray(img).astype(np.int16)


def _gray(values: np.ndarray) -> np.ndarray:
    """Gray levels 0..255 from the minimum to the maximum (float64, truncated)."""
    v = values.astype(np.float64)
    return np.floor((v - v.min()) / (v.max() - v.min()) * 255)


def _panel(png: np.ndarray, index: int, shape: tuple[int, int], scale: int = 2) -> np.ndarray:
    """Panel ``index`` of a figure without heading, one pixel per image pixel."""
    h, w = shape
    x = index * (w * scale + GAP)
    return png[TITLE : TITLE + h * scale : scale, x : x + w * scale : scale]


def _capture(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Record what save_attention hands to attention_figure."""
    seen: dict[str, Any] = {}

    def spy(image: np.ndarray, maps: list[np.ndarray], titles: list[str], path: Path, **kw: Any):
        seen.update(image=image, maps=maps, titles=titles, **kw)
        return attention_figure(image, maps, titles, path, **kw)

    monkeypatch.setattr(attention_module, "attention_figure", spy)
    return seen


# ------------------------------------------------------------------ attention_figure
@pytest.mark.parametrize(("h", "w", "n", "scale"), [(8, 8, 1, 2), (10, 6, 3, 1), (5, 12, 2, 3)])
def test_figure_size_with_and_without_bar(tmp_path, h, w, n, scale):
    image = np.arange(h * w, dtype=np.float32).reshape(h, w)
    maps = [np.full((3, 3), 0.5)] * n
    titles = ["input"] + [f"g{i}" for i in range(n)]
    with_bar = attention_figure(image, maps, titles, tmp_path / "a.png", scale=scale)
    without = attention_figure(
        image, maps, titles, tmp_path / "b.png", scale=scale, colour_bar=False
    )
    headed = attention_figure(image, maps, titles, tmp_path / "c.png", scale=scale, heading="x")
    panels = (n + 1) * (w * scale + GAP)
    assert Image.open(with_bar).size == (panels + BAR_COLUMN, h * scale + TITLE)
    assert Image.open(without).size == (panels, h * scale + TITLE)  # the old layout
    assert Image.open(headed).size == (panels + BAR_COLUMN, h * scale + 2 * TITLE)


@pytest.mark.parametrize("heading", ["", "case 7"])
def test_colour_bar_runs_from_blue_at_the_bottom_to_red_at_the_top(tmp_path, heading):
    h, w, scale = 40, 6, 2
    image = np.random.default_rng(0).random((h, w))
    path = attention_figure(
        image, [np.zeros((h, w))], ["input", "g"], tmp_path / "a.png", heading=heading
    )
    png = _png(path)
    top = TITLE * (2 if heading else 1)
    left = 2 * (w * scale + GAP) + GAP
    bar = png[top : top + h * scale, left : left + BAR_WIDTH]
    rows = h * scale
    # hand-written blue-to-red map: 1 in the top row, 0 in the bottom row
    values = 1 - np.arange(rows) / (rows - 1)
    expected = np.stack([np.clip(1.5 - np.abs(4 * values - k), 0, 1) for k in (3, 2, 1)], axis=-1)
    expected = np.floor(expected * 255)
    np.testing.assert_array_equal(bar, np.repeat(expected[:, None], BAR_WIDTH, axis=1))
    np.testing.assert_array_equal(bar[:, 0], _heat(values))  # the same map as the panels
    assert bar[0, 0, 0] > 100 and bar[0, 0, 2] == 0  # red at the top
    assert bar[-1, 0, 2] > 100 and bar[-1, 0, 0] == 0  # blue at the bottom
    # labels and ticks are drawn right of the bar, inside the column
    right = png[top : top + rows, left + BAR_WIDTH + 1 : left + BAR_COLUMN - GAP]
    assert (right < 128).all(axis=-1).any()
    assert png.shape[1] == left - GAP + BAR_COLUMN


def test_map_panels_blend_the_heat_map_over_the_gray_image(tmp_path):
    image = np.linspace(0, 1, 36).reshape(6, 6)
    m = np.linspace(0, 1, 36).reshape(6, 6)[::-1]
    png = _png(attention_figure(image, [m], ["a", "b"], tmp_path / "a.png", alpha=0.5))
    gray = _gray(image)[..., None]
    blend = np.floor(0.5 * gray + 0.5 * _heat(m))
    assert np.abs(_panel(png, 0, (6, 6)) - gray).max() <= 1
    assert np.abs(_panel(png, 1, (6, 6)) - blend).max() <= 1


# ------------------------------------------------------------------ save_attention
def test_2d_panels_layout_titles_and_maps(tmp_path, monkeypatch):
    model = _model("ag_unet", 2)
    image = np.random.default_rng(1).random((1, 20, 24), dtype=np.float32)
    seen = _capture(monkeypatch)
    path = save_attention(model, image, tmp_path / "sub" / "att.png", patch_size=(16, 16))
    assert path == tmp_path / "sub" / "att.png" and path.is_file()
    # AgUNet, channels (4, 8, 16): gates on the 8x8 and 16x16 skips, coarsest first
    assert seen["titles"] == ["input", "gate 1 (1/2)", "gate 2 (1/1)"]
    png = _png(path)
    assert png.shape[:2] == (16 * 2 + TITLE, 3 * (16 * 2 + GAP) + BAR_COLUMN)
    window = image[0, 2:18, 4:20]  # centred: (20 - 16) // 2 and (24 - 16) // 2
    assert np.abs(_panel(png, 0, (16, 16)) - _gray(window)[..., None]).max() <= 1
    model.eval()
    with torch.no_grad():
        _, maps = model.forward_with_attention(torch.from_numpy(window.copy())[None, None])
    for k, m in enumerate(maps):
        up = F.interpolate(m, size=(16, 16), mode="bilinear", align_corners=False)[0, 0]
        blend = np.floor(0.5 * _gray(window)[..., None] + 0.5 * _heat(up.numpy()))
        assert np.abs(_panel(png, k + 1, (16, 16)) - blend).max() <= 2


def test_small_image_is_zero_padded_in_the_centre(tmp_path):
    image = 1 + np.random.default_rng(2).random((1, 10, 12), dtype=np.float32)  # all >= 1
    path = save_attention(_model("ag_unet", 2), image, tmp_path / "a.png", patch_size=16)
    panel = _panel(_png(path), 0, (16, 16))
    inside = np.zeros((16, 16), dtype=bool)
    inside[3:13, 2:14] = True  # offsets (16 - 10) // 2 and (16 - 12) // 2
    assert (panel[~inside] == 0).all()  # the zero padding is the darkest gray
    shown = panel[3:13, 2:14, 0].astype(np.float64)
    expected = np.floor(image[0].astype(np.float64) / image[0].max() * 255)  # lo is 0 (padding)
    assert np.abs(shown - expected).max() <= 1


@pytest.mark.parametrize(
    ("spacing", "axis"),
    [
        (None, 0),
        ((1.0, 1.0, 1.0), 0),
        ((0.7, 0.7, 3.0), 2),
        ((1.0, 4.0, 1.0), 1),
        ((2.5, 0.8, 0.8), 0),
        ((1.0, 1.0, 1.0000001), 0),  # header rounding is not anisotropy
    ],
)
def test_3d_shows_the_middle_slice_along_the_coarsest_axis(tmp_path, monkeypatch, spacing, axis):
    assert coarsest_axis(spacing) == axis
    shape = (8, 12, 16)
    rng = np.random.default_rng(3)
    image = rng.random((2, *shape), dtype=np.float32)
    seen = _capture(monkeypatch)
    model = _model("attention_unet", 3, in_channels=2)
    path = save_attention(model, image, tmp_path / "a.png", patch_size=shape, spacing=spacing)
    expected = np.take(image[0], shape[axis] // 2, axis=axis)  # first channel, middle slice
    h, w = expected.shape
    png = _png(path)
    assert png.shape[:2] == (h * 2 + TITLE, 2 * (w * 2 + GAP) + BAR_COLUMN)
    assert np.abs(_panel(png, 0, (h, w)) - _gray(expected)[..., None]).max() <= 1
    # the maps are sliced at the same place: trilinear to the window, then the slice
    model.eval()
    with torch.no_grad():
        _, maps = model.forward_with_attention(torch.from_numpy(image)[None])
    up = F.interpolate(
        maps[0].mean(1, keepdim=True), size=shape, mode="trilinear", align_corners=False
    )[0, 0]
    np.testing.assert_allclose(
        seen["maps"][0], np.take(up.numpy(), shape[axis] // 2, axis=axis), atol=1e-5
    )
    assert seen["titles"] == ["input", "gate 1 (1/2)"]


def test_3d_constant_slices_along_the_thick_axis(tmp_path):
    # every slice along axis 1 (5 mm) is one value: that slice is uniform; a slice along
    # any other axis would show a ramp of 12 levels
    levels = np.arange(12, dtype=np.float32)[None, None, :, None]
    image = np.broadcast_to(levels, (1, 16, 12, 16)).copy()
    path = save_attention(
        _model("ag_unet", 3),
        image,
        tmp_path / "a.png",
        patch_size=(16, 12, 16),
        spacing=(1.0, 5.0, 1.0),
    )
    panel = _panel(_png(path), 0, (16, 16))
    assert (panel == panel[0, 0]).all()  # uniform: one slice along axis 1


def test_scale_titles_when_an_axis_is_shorter_than_the_factor(tmp_path, monkeypatch):
    seen = _capture(monkeypatch)
    image = np.zeros((1, 2, 16, 16), dtype=np.float32)
    image[0, :, 4:12, 4:12] = 1
    model = create_model("attention_unet", spatial_dims=3, channels=(4, 8, 16, 32))
    save_attention(model, image, tmp_path / "a.png", patch_size=(2, 16, 16))
    # maps (1, 4, 4) and (1, 8, 8): ceil(2 / 4) = ceil(2 / 2) = 1 along the first axis
    assert seen["titles"] == ["input", "gate 1 (1/4)", "gate 2 (1/2)"]


class _Gated(nn.Module):
    """A stand-in with chosen maps: a two-gate map (0.2 and 0.6) at 1/1x1/4x1/4 and a
    one-gate map of -0.5 (a tanh gate) at full size."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(()))

    def forward_with_attention(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        b, _, d, h, w = x.shape
        two = torch.cat([torch.full((b, 1, d, h // 4, w // 4), v) for v in (0.2, 0.6)], 1)
        return x, [two, torch.full((b, 1, d, h, w), -0.5)]


def test_multi_gate_maps_are_averaged_and_scales_per_axis(tmp_path, monkeypatch):
    seen = _capture(monkeypatch)
    image = np.random.default_rng(7).random((1, 6, 16, 16), dtype=np.float32)
    path = save_attention(_Gated(), image, tmp_path / "a.png", patch_size=(6, 16, 16))
    assert seen["titles"] == ["input", "gate 1 (1/1x1/4x1/4)", "gate 2 (1/1)"]
    png = _png(path)
    gray = _gray(image[0, 3])[..., None]
    for k, value in ((1, 0.4), (2, 0.0)):  # the mean of 0.2 and 0.6; -0.5 clipped to 0
        blend = np.floor(0.5 * gray + 0.5 * _heat(np.full((16, 16), value)))
        assert np.abs(_panel(png, k, (16, 16)) - blend).max() <= 1


@pytest.mark.parametrize(
    "model",
    [
        lambda: _model("unet", 2),
        lambda: create_model(
            "raunet", spatial_dims=2, in_channels=1, encoder="resnet18"
        ),  # channel weights
        lambda: nn.Conv2d(1, 2, 3, padding=1),  # no forward_with_attention
    ],
    ids=["unet", "raunet", "conv"],
)
def test_models_without_spatial_maps_write_nothing(tmp_path, model):
    image = np.random.default_rng(4).random((1, 32, 32), dtype=np.float32)
    target = tmp_path / "sub" / "att.png"
    assert save_attention(model(), image, target, patch_size=32) is None
    assert not target.parent.exists()


@pytest.mark.parametrize("train", [True, False])
def test_mode_is_restored_and_the_model_runs_in_eval_without_gradients(tmp_path, train):
    model = _model("ag_unet", 2)
    model.train(train)
    first = next(model.children())
    first.train(not train)  # a mixed state comes back as it was too
    before = {name: m.training for name, m in model.named_modules()}
    during: list[tuple[bool, bool]] = []
    first.register_forward_hook(
        lambda mod, args, out: during.append((mod.training, torch.is_grad_enabled()))
    )
    image = np.random.default_rng(5).random((1, 16, 16), dtype=np.float32)
    assert save_attention(model, image, tmp_path / "a.png", patch_size=16) is not None
    assert during == [(False, False)]
    assert {name: m.training for name, m in model.named_modules()} == before
    assert all(p.grad is None for p in model.parameters())


def test_bad_arguments_raise(tmp_path):
    model = _model("ag_unet", 2)
    with pytest.raises(ValueError, match="patch_size"):
        save_attention(model, np.zeros((1, 8, 8), np.float32), tmp_path / "a.png", patch_size=(8,))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        save_attention(model, np.zeros((8, 8), np.float32), tmp_path / "a.png", patch_size=8)
    with pytest.raises(ValueError, match="spacing"):
        save_attention(
            model,
            np.zeros((1, 8, 8), np.float32),
            tmp_path / "a.png",
            patch_size=8,
            spacing=(1.0, 1.0, 1.0),
        )
    assert not (tmp_path / "a.png").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_models_device(tmp_path):
    model = _model("ag_unet", 3).cuda()
    image = np.random.default_rng(6).random((1, 16, 16, 16), dtype=np.float32)
    path = save_attention(model, image, tmp_path / "a.png", patch_size=16, spacing=(3, 1, 1))
    expected = image[0, 8]
    assert np.abs(_panel(_png(path), 0, (16, 16)) - _gray(expected)[..., None]).max() <= 1
    assert next(model.parameters()).is_cuda
