"""``forward_with_attention``'s options (``order``, ``upsample``, ``as_dict``) with MONAI:
``sliding_window_inference`` stitches the dictionary (and the flat tuple), ``blend_images``
takes an upsampled map and ``GradCAM`` runs on an AgUNet. Oracles: the plain model under
``sliding_window_inference``, ``F.interpolate`` of the raw maps, and a Grad-CAM computed by
hand with autograd."""

import pytest
import torch
import torch.nn.functional as F

from attnunet import AgUNet, AttentionUNetPlusPlus, RAUNet

monai = pytest.importorskip("monai", reason="MONAI is optional")
from monai.inferers import sliding_window_inference  # noqa: E402
from monai.visualize import GradCAM, blend_images  # noqa: E402


def _models() -> list[torch.nn.Module]:
    torch.manual_seed(0)
    return [
        AgUNet(2, 1, 2, channels=(4, 8, 16)).eval(),
        AttentionUNetPlusPlus(2, 1, 1, channels=(4, 8, 16)).eval(),
        RAUNet(2, 1, 1, encoder="resnet18").eval(),
    ]


@pytest.mark.parametrize("index", range(3))
def test_default_unchanged_and_fine_order(index: int) -> None:
    model = _models()[index]
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        out, maps = model.forward_with_attention(x)
        out_c, maps_c = model.forward_with_attention(x, order="coarse")
        out_f, maps_f = model.forward_with_attention(x, order="fine")
    assert torch.equal(out, out_c) and torch.equal(out, out_f)
    assert len(maps) == len(maps_f) > 0
    assert all(torch.equal(a, b) for a, b in zip(maps, maps_c, strict=True))
    sizes = [m.shape[2:].numel() for m in maps_f]
    assert sizes == sorted(sizes, reverse=True)  # finest first
    if not isinstance(model, AttentionUNetPlusPlus):  # coarsest-first models: the reverse
        assert all(torch.equal(a, b) for a, b in zip(maps_f, maps[::-1], strict=True))
    else:  # UNet++: level 0 (last computed first), then level 1, per the docs
        by_size = [m for m in maps[::-1] if m.shape[-1] == 32] + [
            m for m in maps[::-1] if m.shape[-1] == 16
        ]
        assert all(a is b or torch.equal(a, b) for a, b in zip(maps_f, by_size, strict=True))


@pytest.mark.parametrize("index", range(3))
def test_upsample_equals_interpolate(index: int) -> None:
    model = _models()[index]
    x = torch.randn(1, 1, 24, 40)
    with torch.no_grad():
        _, raw = model.forward_with_attention(x)
        _, up = model.forward_with_attention(x, upsample=True)
    for r, u in zip(raw, up, strict=True):
        assert u.shape == (*r.shape[:2], 24, 40)
        expected = F.interpolate(r, size=(24, 40), mode="bilinear", align_corners=False)
        torch.testing.assert_close(u, expected, rtol=0, atol=1e-6)
        assert u.min() >= 0 and u.max() <= 1
        assert u.min() >= r.min() - 1e-6 and u.max() <= r.max() + 1e-6


def test_as_dict_keys_and_bad_order() -> None:
    model = _models()[0]
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        out, maps = model.forward_with_attention(x, "fine")
        d = model.forward_with_attention(x, order="fine", as_dict=True)
    assert list(d) == ["logits", "attention_0", "attention_1"]
    assert torch.equal(d["logits"], out)
    assert torch.equal(d["attention_0"], maps[0]) and torch.equal(d["attention_1"], maps[1])
    with pytest.raises(ValueError, match="order must be"):
        model.forward_with_attention(x, order="finest")


def test_sliding_window_dict_and_tuple() -> None:
    model = _models()[0]
    torch.manual_seed(1)
    x = torch.rand(1, 1, 48, 40)
    roi, kw = (32, 32), {"sw_batch_size": 2, "overlap": 0.5, "mode": "constant"}
    with torch.no_grad():
        plain = sliding_window_inference(x, roi, predictor=model, **kw)
        d = sliding_window_inference(
            x,
            roi,
            predictor=lambda w: model.forward_with_attention(
                w, order="fine", upsample=True, as_dict=True
            ),
            **kw,
        )

        def flat(w: torch.Tensor) -> tuple[torch.Tensor, ...]:
            y, maps = model.forward_with_attention(w, order="fine", upsample=True)
            return (y, *maps)

        t = sliding_window_inference(x, roi, predictor=flat, **kw)
    assert isinstance(plain, torch.Tensor) and isinstance(d, dict)
    torch.testing.assert_close(d["logits"], plain, rtol=0, atol=1e-5)
    torch.testing.assert_close(t[0], plain, rtol=0, atol=1e-5)
    for i in range(2):
        assert d[f"attention_{i}"].shape == (1, 1, 48, 40)
        torch.testing.assert_close(t[1 + i], d[f"attention_{i}"], rtol=0, atol=1e-6)
        assert d[f"attention_{i}"].min() >= 0 and d[f"attention_{i}"].max() <= 1


def test_sliding_window_maps_equal_hand_stitching() -> None:
    """Two windows without overlap (a 32 x 64 image, ROI 32 x 32): the stitched map is the
    two windows' upsampled maps side by side."""
    model = _models()[0]
    x = torch.rand(1, 1, 32, 64)
    with torch.no_grad():
        d = sliding_window_inference(
            x,
            (32, 32),
            sw_batch_size=1,
            overlap=0.0,
            predictor=lambda w: model.forward_with_attention(w, "fine", True, as_dict=True),
        )
        left = model.forward_with_attention(x[..., :32], "fine")[1]
        right = model.forward_with_attention(x[..., 32:], "fine")[1]
    for i, (a, b) in enumerate(zip(left, right, strict=True)):
        up = [F.interpolate(m, size=(32, 32), mode="bilinear", align_corners=False) for m in (a, b)]
        torch.testing.assert_close(d[f"attention_{i}"], torch.cat(up, dim=-1), rtol=0, atol=1e-6)


def test_blend_images_accepts_upsampled_map() -> None:
    pytest.importorskip("matplotlib", reason="blend_images needs matplotlib")
    model = _models()[0]
    x = torch.rand(1, 1, 24, 20)
    with torch.no_grad():
        _, maps = model.forward_with_attention(x, "fine", upsample=True)
    blended = blend_images(x[0], maps[1][0], alpha=0.5, cmap="gray")
    assert blended.shape == (3, 24, 20)
    # gray colormap, alpha 0.5, both rescaled to [0, 1]; the transparent background keeps
    # the image where the label is 0
    img = (x[0] - x.min()) / (x.max() - x.min())
    lab = (maps[1][0] - maps[1].min()) / (maps[1].max() - maps[1].min())
    expected = torch.where(lab > 0, 0.5 * img + 0.5 * lab, img).expand(3, -1, -1)
    torch.testing.assert_close(torch.as_tensor(blended).float(), expected, rtol=0, atol=1e-2)


def test_gradcam_on_agunet_matches_hand_computation() -> None:
    torch.manual_seed(0)
    model = AgUNet(2, 1, 2, channels=(4, 8, 16), deep_supervision=False).eval()
    x = torch.rand(1, 1, 32, 24)
    layer = "decoder.levels.0.block"  # a tensor output (the level returns a tuple)
    cam = GradCAM(nn_module=model, target_layers=layer)
    result = cam(x, class_idx=1)
    assert result.shape == (1, 1, 32, 24)

    store: dict[str, torch.Tensor] = {}
    module = dict(model.named_modules())[layer]
    handle = module.register_forward_hook(lambda m, i, o: store.update(a=o))
    score = model(x)[:, 1].sum()
    handle.remove()
    (grad,) = torch.autograd.grad(score, store["a"])
    weights = grad.mean(dim=(2, 3), keepdim=True)
    raw = F.relu((weights * store["a"]).sum(1, keepdim=True)).detach()
    up = F.interpolate(raw, size=(32, 24), mode="bilinear", align_corners=False)
    expected = (up.max() - up) / (up.max() - up.min())  # MONAI maps (min, max) to (1, 0)
    torch.testing.assert_close(result, expected, rtol=0, atol=1e-5)
