"""Augmentations: hand-checked geometry, image/mask alignment, reproducibility, statistics."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from attnunet.data.transforms import (
    Compose,
    RandomFlip,
    RandomGaussianBlur,
    RandomIntensityNoise,
    RandomIntensityScaleShift,
    RandomRot90,
    default_augmentation,
    gaussian_blur,
)

ALL_P1 = [
    RandomFlip(p=1.0),
    RandomRot90(p=1.0),
    RandomIntensityNoise(std=0.1, p=1.0),
    RandomGaussianBlur(sigma=(0.5, 1.5), p=1.0),
    RandomIntensityScaleShift(scale=0.2, shift=0.2, p=1.0),
]
INTENSITY_P1 = ALL_P1[2:]


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def labelled(shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """A mask with a distinct label per voxel and the image equal to it, as float."""
    mask = torch.arange(int(np.prod(shape))).reshape(shape)
    return mask.float()[None], mask


# ------------------------------------------------------------------ flips


def test_flip_hand_checked_2d():
    image = torch.tensor([[[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]])  # (C=1, H=2, W=3)
    out, _ = RandomFlip(p=1.0, axes=[0])(image)
    assert out.tolist() == [[[3.0, 4.0, 5.0], [0.0, 1.0, 2.0]]]
    out, _ = RandomFlip(p=1.0, axes=-1)(image)
    assert out.tolist() == [[[2.0, 1.0, 0.0], [5.0, 4.0, 3.0]]]
    out, _ = RandomFlip(p=1.0)(image)  # both axes
    assert out.tolist() == [[[5.0, 4.0, 3.0], [2.0, 1.0, 0.0]]]


@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 4)])
def test_flip_keeps_mask_aligned(shape):
    image, mask = labelled(shape)
    for seed in range(8):
        out, out_mask = RandomFlip(p=0.5)(image, mask, seeded(seed))
        assert out_mask is not None and out_mask.dtype == mask.dtype
        assert torch.equal(out[0], out_mask.float())
    out, out_mask = RandomFlip(p=1.0)(image, mask)
    assert torch.equal(out_mask, mask.flip(list(range(len(shape)))))


def test_flip_each_axis_with_probability_p():
    image, mask = labelled((2, 2, 2))
    flips = torch.zeros(3)
    g = seeded(0)
    n = 400
    for _ in range(n):
        _, out = RandomFlip(p=0.3)(image, mask, g)
        assert out is not None
        # mask[1, 0, 0] = 4 sits at index 0 of axis 0 unless axis 0 was flipped, etc.
        flips += torch.tensor([out[0, 0, 0] >= 4, out[0, 0, 0] % 4 >= 2, out[0, 0, 0] % 2 == 1])
    # Binomial(400, 0.3): mean 120, sd 9.2; allow 4 sd.
    assert bool(((flips - 0.3 * n).abs() < 37).all()), flips


# ------------------------------------------------------------------ rot90


def test_rot90_hand_checked_2d():
    image = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    # torch.rot90(k, dims=(0, 1)) turns axis 0 towards axis 1 (counter-clockwise on screen):
    k1 = [[2.0, 4.0], [1.0, 3.0]]
    k2 = [[4.0, 3.0], [2.0, 1.0]]
    k3 = [[3.0, 1.0], [4.0, 2.0]]
    seen = set()
    for seed in range(30):
        out, out_mask = RandomRot90(p=1.0)(image, image[0].long(), seeded(seed))
        assert out[0].tolist() in (k1, k2, k3)  # never the identity with p=1
        assert torch.equal(out[0], out_mask.float())
        seen.add(str(out[0].tolist()))
    assert len(seen) == 3  # all three angles occur


def test_rot90_keep_shape_uses_square_planes_only():
    # (C, 4, 4, 3): only the plane of axes 0 and 1 is square; axis 2 never moves.
    image, mask = labelled((4, 4, 3))
    image = image.repeat(2, 1, 1, 1)
    depth = torch.arange(3).expand(4, 4, 3)
    for seed in range(10):
        out, out_mask = RandomRot90(p=1.0)(image, mask, seeded(seed))
        assert out.shape == image.shape and torch.equal(out[1], out_mask.float())
        assert torch.equal(out_mask % 3, depth)  # label % 3 is the index along axis 2
    # A non-square 2D image has no square plane: returned unchanged.
    image, mask = labelled((3, 5))
    out, out_mask = RandomRot90(p=1.0)(image, mask, seeded(0))
    assert torch.equal(out, image) and torch.equal(out_mask, mask)


def test_rot90_any_plane_without_keep_shape():
    image, mask = labelled((3, 5))
    shapes = set()
    for seed in range(20):
        out, out_mask = RandomRot90(p=1.0, keep_shape=False)(image, mask, seeded(seed))
        assert torch.equal(out[0], out_mask.float())
        shapes.add(tuple(out_mask.shape))
    assert shapes == {(3, 5), (5, 3)}  # 180 degrees keeps the shape, 90/270 swap it


def test_rot90_uses_every_plane_of_a_cube():
    image, mask = labelled((3, 3, 3))
    fixed_axes = set()
    for seed in range(40):
        out, out_mask = RandomRot90(p=1.0)(image, mask, seeded(seed))
        assert torch.equal(out[0], out_mask.float())
        # The axis outside the rotation plane still indexes the same slabs of labels.
        for axis, stride in enumerate((9, 3, 1)):
            if torch.equal(out_mask // stride % 3, mask // stride % 3):
                fixed_axes.add(axis)
    assert fixed_axes == {0, 1, 2}


# ------------------------------------------------------------------ reproducibility, p


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_generator_reproducibility(spatial_dims):
    shape = (6,) * spatial_dims
    image, mask = torch.rand(2, *shape), torch.randint(0, 3, shape)
    pipeline = Compose(ALL_P1)
    a = pipeline(image, mask, seeded(7))
    b = pipeline(image, mask, seeded(7))
    c = pipeline(image, mask, seeded(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    for strength in ("light", "standard"):
        augment = default_augmentation(spatial_dims, strength)
        runs = [augment(image, mask, seeded(s)) for s in (1, 1, 2)]
        assert torch.equal(runs[0][0], runs[1][0]) and torch.equal(runs[0][1], runs[1][1])


@pytest.mark.parametrize("cls", [type(t) for t in ALL_P1], ids=lambda c: c.__name__)
def test_fixed_random_consumption(cls):
    # Applied or not, a transform takes the same random numbers from the generator.
    image, mask = torch.rand(1, 4, 4), torch.zeros(4, 4, dtype=torch.long)
    states = []
    for p in (0.0, 1.0):
        g = seeded(3)
        cls(p=p)(image, mask, g)
        states.append(g.get_state())
    assert torch.equal(states[0], states[1])


@pytest.mark.parametrize("transform", ALL_P1, ids=lambda t: type(t).__name__)
def test_p0_is_identity_and_p1_always_applies(transform):
    image, mask = torch.rand(1, 5, 5), torch.randint(0, 4, (5, 5))
    never = type(transform)(p=0.0)
    for seed in range(5):
        out, out_mask = never(image, mask, seeded(seed))
        assert out is image and out_mask is mask
        out, _ = transform(image, mask, seeded(seed))
        assert not torch.equal(out, image)


# ------------------------------------------------------------------ intensity transforms


@pytest.mark.parametrize("transform", INTENSITY_P1, ids=lambda t: type(t).__name__)
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_intensity_transforms_leave_mask_and_keep_dtype(transform, dtype):
    image = torch.rand(2, 6, 7, dtype=dtype)
    mask = torch.randint(0, 2, (6, 7), dtype=torch.uint8)
    out, out_mask = transform(image, mask, seeded(0))
    assert out_mask is mask
    assert out.dtype == dtype and out.shape == image.shape and out.device == image.device


def test_noise_statistics():
    image = torch.zeros(1, 200, 200)
    out, _ = RandomIntensityNoise(std=0.2, p=1.0)(image, None, seeded(0))
    # 40000 samples: the mean's sd is 0.2 / 200 = 0.001; the sd's relative sd is ~0.35 %.
    assert abs(out.mean().item()) < 0.004
    assert out.std().item() == pytest.approx(0.2, rel=0.02)
    # Noise is added, not substituted.
    out, _ = RandomIntensityNoise(std=0.0, p=1.0)(image + 3, None, seeded(0))
    assert torch.equal(out, image + 3)


def test_scale_shift_is_affine_within_bounds():
    image = torch.rand(3, 8, 8)
    for seed in range(10):
        out, _ = RandomIntensityScaleShift(scale=0.1, shift=0.2, p=1.0)(image, None, seeded(seed))
        # out = a * image + b: recover a, b from two voxels, then check every voxel.
        a = (out[0, 0, 0] - out[0, 0, 1]) / (image[0, 0, 0] - image[0, 0, 1])
        b = out[0, 0, 0] - a * image[0, 0, 0]
        assert 0.9 - 1e-5 <= a.item() <= 1.1 + 1e-5 and abs(b.item()) <= 0.2 + 1e-5
        torch.testing.assert_close(out, a * image + b)
    out, _ = RandomIntensityScaleShift(shift=1.0, scale=0.0, per_channel=True, p=1.0)(
        torch.zeros(3, 2, 2), None, seeded(0)
    )
    offsets = out[:, 0, 0]
    assert len(set(offsets.tolist())) == 3 and torch.equal(
        out, offsets[:, None, None].expand(3, 2, 2)
    )


# ------------------------------------------------------------------ blur


@pytest.mark.parametrize("shape", [(9,), (7, 8), (5, 6, 7)])
def test_blur_constant_image_stays_constant(shape):
    image = torch.full((2, *shape), 3.5)
    out, _ = RandomGaussianBlur(sigma=(0.5, 2.0), p=1.0)(image, None, seeded(0))
    torch.testing.assert_close(out, image, rtol=0, atol=1e-5)


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.7])
@pytest.mark.parametrize("shape", [(15,), (11, 13), (9, 10, 11)])
def test_blur_impulse_matches_scipy(shape, sigma):
    impulse = torch.zeros(1, *shape, dtype=torch.float64)
    impulse[(0, *(s // 2 for s in shape))] = 1.0
    out = gaussian_blur(impulse, sigma)
    expected = ndimage.gaussian_filter(impulse[0].numpy(), sigma, mode="reflect")
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=0, atol=1e-5)
    # Far from the borders, the blurred impulse is the normalised Gaussian itself.
    assert out.sum().item() == pytest.approx(1.0, abs=1e-6)
    # Through the random transform, with a fixed sigma, in float32.
    out32, _ = RandomGaussianBlur(sigma=sigma, p=1.0)(impulse.float())
    np.testing.assert_allclose(out32[0].numpy(), expected, rtol=0, atol=1e-5)


def test_blur_borders_and_anisotropic_sigma_match_scipy():
    torch.manual_seed(0)
    # Axis 1 has length 2, far shorter than the kernel radius (int(4 * 1.5 + 0.5) = 6):
    # the mirrored extension repeats, as in SciPy.
    image = torch.rand(3, 6, 2, 9, dtype=torch.float64)
    sigma = (0.8, 1.5, 0.0)
    out = gaussian_blur(image, sigma)
    for c in range(3):
        expected = ndimage.gaussian_filter(image[c].numpy(), sigma, mode="reflect")
        np.testing.assert_allclose(out[c].numpy(), expected, rtol=0, atol=1e-10)


# ------------------------------------------------------------------ compose, recipe


def test_compose_order_and_spatial_dims_check():
    image = torch.tensor([[1.0, 2.0, 3.0]])
    pipeline = Compose([RandomFlip(p=1.0), RandomIntensityScaleShift(scale=0, shift=0, p=1.0)])
    assert pipeline(image)[0].tolist() == [[3.0, 2.0, 1.0]] and len(pipeline) == 2
    augment = default_augmentation(2)
    with pytest.raises(ValueError, match="apply it to each sample of a batch separately"):
        augment(torch.rand(4, 1, 8, 8))  # a (B, C, H, W) batch


@pytest.mark.parametrize("spatial_dims", [1, 2, 3])
@pytest.mark.parametrize("strength", ["light", "standard"])
def test_default_augmentation(spatial_dims, strength):
    augment = default_augmentation(spatial_dims, strength)
    names = [type(t).__name__ for t in augment.transforms]
    assert names[0] == "RandomFlip" and ("RandomRot90" in names) == (spatial_dims > 1)
    assert "RandomIntensityNoise" in names and "RandomGaussianBlur" in names
    shape = (8,) * spatial_dims
    image, mask = torch.rand(1, *shape), torch.randint(0, 3, shape)
    for seed in range(4):
        out, out_mask = augment(image, mask, seeded(seed))
        assert out.shape == image.shape and out.dtype == image.dtype
        assert out_mask is not None and out_mask.dtype == mask.dtype
        # Geometric transforms only move labels around.
        assert torch.equal(out_mask.flatten().sort().values, mask.flatten().sort().values)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_tensors_stay_on_device():
    image = torch.rand(1, 8, 8, 8, device="cuda")
    mask = torch.randint(0, 2, (8, 8, 8), device="cuda")
    out, out_mask = Compose(ALL_P1)(image, mask, seeded(0))
    assert out.device == image.device and out_mask is not None and out_mask.device == mask.device
    impulse = torch.zeros(1, 9, 9, 9, device="cuda")
    impulse[0, 4, 4, 4] = 1
    expected = ndimage.gaussian_filter(impulse[0].cpu().numpy(), 1.0)
    np.testing.assert_allclose(gaussian_blur(impulse, 1.0)[0].cpu().numpy(), expected, atol=1e-5)


# ------------------------------------------------------------------ bad arguments


def test_bad_arguments_raise():
    for bad_p in (-0.1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="probability"):
            RandomFlip(p=bad_p)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="repeat"):
        RandomFlip(axes=[0, 0])
    with pytest.raises(ValueError, match="out of range for an image with 2 spatial axes"):
        RandomFlip(axes=[2])(torch.rand(1, 4, 4))
    with pytest.raises(ValueError, match="two axes"):
        RandomRot90(axes=[0])
    with pytest.raises(ValueError, match="std"):
        RandomIntensityNoise(std=-1.0)
    with pytest.raises(ValueError, match="low <= high"):
        RandomGaussianBlur(sigma=(1.0, 0.5))
    with pytest.raises(ValueError, match="sigma"):
        RandomGaussianBlur(sigma=-1.0)
    with pytest.raises(ValueError, match="pair"):
        RandomGaussianBlur(sigma=(0.5, 1.0, 2.0))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="scale"):
        RandomIntensityScaleShift(scale=-0.1)
    with pytest.raises(ValueError, match="strength"):
        default_augmentation(2, "heavy")
    with pytest.raises(ValueError, match="spatial_dims"):
        default_augmentation(0)
    with pytest.raises(TypeError, match="callable"):
        Compose([RandomFlip(), "noise"])  # type: ignore[list-item]
    image = torch.rand(1, 4, 5)
    with pytest.raises(ValueError, match=r"drop the mask's channel axis"):
        RandomFlip()(image, torch.zeros(1, 4, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="spatial shape"):
        RandomFlip()(image, torch.zeros(5, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="channel axis"):
        RandomFlip()(torch.rand(5))
    with pytest.raises(TypeError, match="floating-point"):
        RandomIntensityNoise(p=1.0)(torch.zeros(1, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        RandomFlip()(np.zeros((1, 4, 4)))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sigmas"):
        gaussian_blur(image, (1.0, 1.0, 1.0))
