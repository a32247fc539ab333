"""Sliding-window inference: window arithmetic, blending by hand, equality with a direct forward."""

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from attnunet.inference import gaussian_weights, sliding_window_inference, window_slices


def pointwise(x: torch.Tensor) -> torch.Tensor:
    """A per-voxel predictor with 2 output channels per input channel."""
    return torch.cat([2 * x + 1, x * x], dim=1)


def starts(size: int, roi: int, overlap: float) -> list[int]:
    return [w[0].start for w in window_slices([size], roi, overlap)]


# ------------------------------------------------------------------ window arithmetic


def test_window_starts_hand_computed():
    # size 10, roi 4, overlap 0.5: step 4 * 0.5 = 2; windows needed ceil((10 - 4) / 2) + 1 = 4,
    # starts 0, 2, 4, 6 and the last one ends at 6 + 4 = 10.
    assert starts(10, 4, 0.5) == [0, 2, 4, 6]
    # overlap 0: step 4, ceil(6 / 4) + 1 = 3 windows at 0, 4, 8 -> the last is moved back
    # to 10 - 4 = 6 so it ends flush with the axis.
    assert starts(10, 4, 0.0) == [0, 4, 6]
    # overlap 0.25: step floor(4 * 0.75) = 3, ceil(6 / 3) + 1 = 3 windows: 0, 3, 6.
    assert starts(10, 4, 0.25) == [0, 3, 6]
    # size 11: ceil(7 / 3) + 1 = 4 windows: 0, 3, 6, then 9 -> 11 - 4 = 7.
    assert starts(11, 4, 0.25) == [0, 3, 6, 7]
    # overlap 0.9 on roi 4: floor(0.4) = 0 -> the step is at least 1.
    assert starts(6, 4, 0.9) == [0, 1, 2]
    # 20 * (1 - 0.9) is 1.9999999999999996 in floating point; the step is still 2.
    assert starts(24, 20, 0.9) == [0, 2, 4]
    # Axis no longer than the window: one window over the whole axis.
    assert window_slices([4], 4) == [(slice(0, 4),)]
    assert window_slices([3], 8) == [(slice(0, 3),)]


def test_window_slices_nd_raster_order():
    # 2D: axis 0 (size 6, roi 4, overlap 0.5, step 2): starts 0, 2; axis 1 (size 5, roi 5): 0.
    wins = window_slices([6, 5], (4, 5), overlap=0.5)
    assert wins == [(slice(0, 4), slice(0, 5)), (slice(2, 6), slice(0, 5))]
    # 3D: 2 * 3 * 1 windows, last axis fastest.
    wins = window_slices([6, 7, 2], (4, 3, 2), overlap=0.0)
    assert len(wins) == 2 * 3 * 1
    assert [(w[0].start, w[1].start) for w in wins] == [
        (0, 0), (0, 3), (0, 4), (2, 0), (2, 3), (2, 4)
    ]  # fmt: skip


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.6, 0.75, 0.95])
def test_windows_cover_every_voxel(overlap):
    for size, roi in itertools.product([1, 2, 5, 7, 16, 33, 100], [1, 3, 4, 8, 16]):
        first = starts(size, roi, overlap)
        covered = torch.zeros(size, dtype=torch.long)
        for w in window_slices([size], roi, overlap):
            covered[w] += 1
        assert bool((covered > 0).all()), (size, roi, overlap)
        assert first[0] == 0
        assert all(b > a for a, b in itertools.pairwise(first))  # strictly increasing
        if size > roi:
            assert first[-1] == size - roi  # the last window is flush with the end
            step = max(1, int(roi * (1 - overlap) + 1e-9))
            assert all(b - a <= step for a, b in itertools.pairwise(first))


# ------------------------------------------------------------------ gaussian weights


def test_gaussian_weights_hand_computed():
    # roi 5, sigma_scale 0.2: sigma = 1, centre 2: exp(-d^2 / 2) for d = 2, 1, 0, 1, 2.
    expected = torch.exp(-0.5 * torch.tensor([2.0, 1.0, 0.0, 1.0, 2.0]) ** 2)
    torch.testing.assert_close(gaussian_weights(5, 0.2), expected)
    # Even size: the centre 1.5 falls between voxels 1 and 2, which both get the max, 1.
    w = gaussian_weights(4, 0.25)  # sigma = 1; raw exp(-1.125), exp(-0.125) over exp(-0.125)
    expected = torch.exp(torch.tensor([-1.0, 0.0, 0.0, -1.0]))
    torch.testing.assert_close(w, expected)


@pytest.mark.parametrize("roi", [(7,), (4, 6), (5, 8, 9), (1, 3)])
def test_gaussian_weights_properties(roi):
    w = gaussian_weights(roi)
    assert w.shape == roi and w.dtype == torch.float32
    assert w.max().item() == 1.0
    assert w.min().item() > 0
    for axis in range(len(roi)):
        torch.testing.assert_close(w, w.flip(axis), rtol=0, atol=0)
    # Separable: the map is the outer product of its 1D profiles.
    outer = torch.ones(())
    for axis, r in enumerate(roi):
        shape = [1] * len(roi)
        shape[axis] = r
        outer = outer * gaussian_weights(r).reshape(shape)
    torch.testing.assert_close(w, outer)


def test_gaussian_weights_never_zero_and_per_axis_sigma():
    # A tiny sigma underflows far from the centre; the clamp keeps a positive minimum.
    w = gaussian_weights((16, 16, 16), sigma_scale=0.01, dtype=torch.float64)
    assert w.min().item() == pytest.approx(1e-6)
    # One sigma per axis: a wide axis stays nearly flat, a narrow one falls off.
    w = gaussian_weights((9, 9), sigma_scale=(10.0, 0.1))
    assert w[0, 4].item() > 0.99 and w[4, 0].item() < 0.01


# ------------------------------------------------------------------ equality with a direct forward


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
def test_single_window_equals_direct_forward_exactly(blend):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 9, 14)
    # roi == size: one window, no padding.
    out = sliding_window_inference(x, pointwise, (9, 14), blend=blend)
    assert torch.equal(out, pointwise(x))
    # roi > size on every axis (padded, cropped back) and on one axis.
    for roi in [32, (9, 20), (16, 14)]:
        assert torch.equal(sliding_window_inference(x, pointwise, roi, blend=blend), pointwise(x))
    # A convolution sees the same image when roi == size.
    conv = nn.Conv2d(3, 4, kernel_size=3, padding=1)
    with torch.no_grad():
        assert torch.equal(sliding_window_inference(x, conv, (9, 14), blend=blend), conv(x))


@pytest.mark.parametrize("blend", ["constant", "gaussian"])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize(
    ("shape", "roi"),
    [((2, 1, 23, 31), (8, 10)), ((1, 2, 11, 9, 13), (6, 5, 8)), ((1, 1, 29), 7)],
)
def test_pointwise_predictor_matches_direct_forward(shape, roi, overlap, blend):
    torch.manual_seed(1)
    x = torch.randn(shape, dtype=torch.float64)
    out = sliding_window_inference(x, pointwise, roi, overlap=overlap, blend=blend)
    assert out.shape == (shape[0], 2 * shape[1], *shape[2:])
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, pointwise(x), rtol=0, atol=1e-12)
    # float32: at overlap 0.75 a 3D voxel lies in up to 6 * 5 * 4 = 120 windows, and summing
    # that many weighted float32 values costs a few float32 roundings (1.2e-7), relative.
    x = x.float()
    out = sliding_window_inference(x, pointwise, roi, overlap=overlap, blend=blend)
    torch.testing.assert_close(out, pointwise(x), rtol=1e-5, atol=1e-6)
    # A convolution with kernel size 1 is per-voxel too.
    if len(shape) == 5 and overlap == 0.5:
        conv = nn.Conv3d(2, 3, kernel_size=1)
        with torch.no_grad():
            out = sliding_window_inference(x, conv, roi, overlap=overlap, blend=blend)
            torch.testing.assert_close(out, conv(x), rtol=1e-5, atol=1e-6)


def test_unet_roi_equal_to_image_is_a_direct_forward():
    from attnunet import UNet

    torch.manual_seed(0)
    model = UNet(spatial_dims=2, in_channels=1, num_classes=2, channels=(4, 8)).eval()
    x = torch.randn(2, 1, 20, 27)
    with torch.inference_mode():
        # Both images in one predictor call, exactly like model(x).
        out = sliding_window_inference(x, model, (20, 27), sw_batch_size=2)
        assert torch.equal(out, model(x))
        # One image per call equals per-image forwards (a batch of 1 may round
        # differently from a batch of 2 inside the convolutions, so compare like for like).
        out = sliding_window_inference(x, model, (20, 27), sw_batch_size=1)
        assert torch.equal(out, torch.cat([model(x[:1]), model(x[1:])]))
        # ROI larger than the image: the image is padded evenly (the odd voxel at the end)
        # with zeros, and the output cropped back: (24 - 20) -> 2 + 2, (32 - 27) -> 2 + 3.
        out = sliding_window_inference(x, model, (24, 32), sw_batch_size=2)
        padded = F.pad(x, (2, 3, 2, 2))
        assert torch.equal(out, model(padded)[:, :, 2:22, 2:29])
        # Smaller windows: same shape, finite, close to the direct forward away from seams.
        out = sliding_window_inference(x, model, 16, overlap=0.5)
        assert out.shape == (2, 2, 20, 27) and bool(out.isfinite().all())


# ------------------------------------------------------------------ blending by hand


class WindowIndex:
    """Predicts, for every window, the constant 'index of this window' (counting calls)."""

    def __init__(self) -> None:
        self.count = 0
        self.batch_sizes: list[int] = []

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        self.batch_sizes.append(n)
        idx = torch.arange(self.count, self.count + n, dtype=torch.float32)
        self.count += n
        return idx.reshape(n, 1, *[1] * (x.dim() - 2)).expand(n, 1, *x.shape[2:]).clone()


def test_constant_blend_averages_windows_by_hand():
    # 1D size 10, roi 4, overlap 0.5: windows [0,4) [2,6) [4,8) [6,10) predict 0, 1, 2, 3.
    # Voxels 0-1 see window 0 -> 0; 2-3 see 0, 1 -> 0.5; 4-5 see 1, 2 -> 1.5;
    # 6-7 see 2, 3 -> 2.5; 8-9 see window 3 -> 3.
    x = torch.zeros(2, 1, 10)
    done: list[tuple[int, int]] = []
    pred = WindowIndex()
    out = sliding_window_inference(
        x, pred, 4, overlap=0.5, blend="constant", sw_batch_size=3,
        progress=lambda d, t: done.append((d, t)),
    )  # fmt: skip
    first = torch.tensor([0, 0, 0.5, 0.5, 1.5, 1.5, 2.5, 2.5, 3, 3])
    assert torch.equal(out[0, 0], first)
    # Image 1's windows come after image 0's: indices 4..7, so every value is 4 more.
    assert torch.equal(out[1, 0], first + 4)
    # 8 windows in batches of 3, 3, 2 (windows of both images share a batch).
    assert pred.batch_sizes == [3, 3, 2]
    assert done == [(3, 8), (6, 8), (8, 8)]


def test_gaussian_blend_weights_by_hand():
    # Same windows; voxel v in window starting at s has weight w[v - s].
    x = torch.zeros(1, 1, 10)
    out = sliding_window_inference(x, WindowIndex(), 4, overlap=0.5, sigma_scale=0.25)
    w = gaussian_weights(4, 0.25)  # exp(-1), 1, 1, exp(-1)
    # Voxel 2 is voxel 2 of window 0 and voxel 0 of window 1.
    v2 = (0 * w[2] + 1 * w[0]) / (w[2] + w[0])
    # Voxel 5 is voxel 3 of window 1 and voxel 1 of window 2.
    v5 = (1 * w[3] + 2 * w[1]) / (w[3] + w[1])
    assert out[0, 0, 2].item() == pytest.approx(v2.item(), abs=1e-6)
    assert out[0, 0, 5].item() == pytest.approx(v5.item(), abs=1e-6)
    assert out[0, 0, 0].item() == 0.0 and out[0, 0, 9].item() == pytest.approx(3.0)


# ------------------------------------------------------------------ outputs, options


def test_deep_supervision_uses_first_output():
    def deep(x):
        full = pointwise(x)
        return [full, F.avg_pool2d(full, 2)]

    torch.manual_seed(0)
    x = torch.randn(1, 1, 13, 18)
    expected = sliding_window_inference(x, pointwise, 8, overlap=0.5)
    assert torch.equal(sliding_window_inference(x, deep, 8, overlap=0.5), expected)
    torch.testing.assert_close(
        sliding_window_inference(x, lambda t: tuple(deep(t)), 8), pointwise(x), atol=1e-6, rtol=0
    )


def test_dtype_device_and_autograd():
    x = torch.randn(1, 1, 12, 12, dtype=torch.float64)
    out = sliding_window_inference(x, pointwise, 5)
    assert out.dtype == torch.float64 and out.device == x.device
    # A half-precision predictor: float32 accumulation, float16 output.
    out = sliding_window_inference(x.float(), lambda t: t.half() * 2, 5, output_device="cpu")
    assert out.dtype == torch.float16
    torch.testing.assert_close(out.float(), (x.float().half() * 2).float())
    # Gradients flow unless the caller disables them.
    conv = nn.Conv2d(1, 2, kernel_size=3, padding=1)
    sliding_window_inference(x.float(), conv, 5, overlap=0.5).sum().backward()
    assert conv.weight.grad is not None
    with torch.inference_mode():
        assert not sliding_window_inference(x.float(), conv, 5).requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_input_cpu_output():
    conv = nn.Conv3d(1, 2, kernel_size=3, padding=1).cuda()
    x = torch.randn(1, 1, 20, 24, 18, device="cuda")
    with torch.inference_mode():
        out = sliding_window_inference(x, conv, 8, overlap=0.5, output_device="cpu")
        ref = sliding_window_inference(x.cpu(), conv.cpu(), 8, overlap=0.5)
    assert out.device.type == "cpu"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)


# ------------------------------------------------------------------ bad inputs


def test_bad_inputs_raise_clear_errors():
    x = torch.zeros(1, 1, 8, 8)
    with pytest.raises(ValueError, match="3 entries but the image has 2 spatial axes"):
        sliding_window_inference(x, pointwise, (4, 4, 4))
    with pytest.raises(ValueError, match="at least 1"):
        sliding_window_inference(x, pointwise, (4, 0))
    with pytest.raises(ValueError, match="at least 1"):
        sliding_window_inference(x, pointwise, 0)
    with pytest.raises(ValueError, match="int or a sequence"):
        sliding_window_inference(x, pointwise, 4.5)  # type: ignore[arg-type]
    for bad in (-0.1, 1.0, 1.5):
        with pytest.raises(ValueError, match=r"overlap must lie in \[0, 1\)"):
            sliding_window_inference(x, pointwise, 4, overlap=bad)
    with pytest.raises(TypeError, match=r"must be a torch\.Tensor"):
        sliding_window_inference(x.numpy(), pointwise, 4)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="callable"):
        sliding_window_inference(x, "model", 4)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\(B, C, \*spatial\)"):
        sliding_window_inference(torch.zeros(1, 8), pointwise, 4)
    with pytest.raises(ValueError, match="empty"):
        sliding_window_inference(torch.zeros(1, 1, 0, 8), pointwise, 4)
    with pytest.raises(ValueError, match="blend must be one of"):
        sliding_window_inference(x, pointwise, 4, blend="mean")
    with pytest.raises(ValueError, match="sw_batch_size"):
        sliding_window_inference(x, pointwise, 4, sw_batch_size=0)
    with pytest.raises(ValueError, match="sigma_scale"):
        sliding_window_inference(x, pointwise, 4, sigma_scale=0.0)
    with pytest.raises(ValueError, match=r"predictor output has shape \[4, 1, 2, 2\]"):
        sliding_window_inference(x, lambda t: F.avg_pool2d(t, 2), 4)
    with pytest.raises(ValueError, match="cannot be blended"):
        sliding_window_inference(x, lambda t: t.long(), 4)
    with pytest.raises(ValueError, match="must be an int or a sequence"):
        window_slices([10], None, 0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="image_size"):
        window_slices([10, 0], 4)


# ------------------------------------------------------------------ agreement with MONAI


@pytest.mark.parametrize(
    ("shape", "roi", "overlap"),
    [
        ((2, 1, 37, 50), (16, 16), 0.25),
        ((1, 2, 13, 17, 11), (8, 6, 5), 0.5),
        ((1, 1, 9, 30), (16, 8), 0.6),  # axis 0 shorter than the window: padded
    ],
)
def test_constant_blend_matches_monai_exactly(shape, roi, overlap):
    monai_inferers = pytest.importorskip("monai.inferers")
    torch.manual_seed(0)
    x = torch.randn(shape)
    conv = nn.Conv2d if len(shape) == 4 else nn.Conv3d
    net = nn.Sequential(conv(shape[1], 4, 3, padding=1), nn.ReLU(), conv(4, 3, 3, padding=1)).eval()
    with torch.inference_mode():
        for predictor in (pointwise, net):
            ours = sliding_window_inference(
                x, predictor, roi, overlap=overlap, blend="constant", sw_batch_size=3
            )
            theirs = monai_inferers.sliding_window_inference(
                x, roi, 3, predictor, overlap=overlap, mode="constant"
            )
            assert torch.equal(ours, theirs)


def test_gaussian_blend_matches_monai_given_its_weight_map(monkeypatch):
    # MONAI's Gaussian map is ours without the rescaling to a maximum of 1 (at even sizes
    # its maximum is below 1) and floored at 1e-3 instead of 1e-6. Those floors decide the
    # blend where only window borders overlap, so the outputs differ there (up to ~0.2 on
    # logits of size ~1 with a small conv net); with MONAI's map swapped in, the blending
    # itself agrees to the bit.
    pytest.importorskip("monai")
    from monai.data.utils import compute_importance_map
    from monai.inferers import sliding_window_inference as monai_sliding_window_inference

    import attnunet.inference as inference

    for roi in [(16, 16), (8, 6, 5), (7, 9)]:
        theirs = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125)
        ours = gaussian_weights(roi)
        peak = theirs.max()
        torch.testing.assert_close(ours.clamp_min(1e-3 / peak), theirs / peak)

    torch.manual_seed(0)
    x = torch.randn(1, 2, 13, 17, 11)
    roi = (8, 6, 5)
    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, 3, 3, padding=1))
    monai_map = compute_importance_map(roi, mode="gaussian", sigma_scale=0.125)
    monkeypatch.setattr(
        inference,
        "gaussian_weights",
        lambda roi, scale, dtype, device: monai_map.to(dtype=dtype, device=device),
    )
    with torch.inference_mode():
        ours_out = sliding_window_inference(x, net.eval(), roi, overlap=0.5, sw_batch_size=3)
        theirs_out = monai_sliding_window_inference(x, roi, 3, net, overlap=0.5, mode="gaussian")
    assert torch.equal(ours_out, theirs_out)
