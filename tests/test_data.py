"""The bundled sample loader and the random-crop helper."""

import dataclasses
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnunet.data import Sample, available_samples, load_sample, random_crops


@pytest.fixture(scope="module")
def sample() -> Sample:
    return load_sample("nuclei2d")


def test_nuclei2d_shapes_dtypes_and_metadata(sample):
    assert sample.name == "nuclei2d"
    assert sample.image.shape == sample.labels.shape == sample.mask.shape == (512, 512)
    assert sample.image.dtype == np.float32
    assert np.issubdtype(sample.labels.dtype, np.integer)
    assert sample.mask.dtype == np.bool_
    assert sample.spacing == (1.0, 1.0)
    assert "CC0" in sample.attribution
    assert "BBBC038" in sample.attribution
    assert "\n" not in sample.attribution


def test_nuclei2d_normalisation_and_labels(sample):
    assert sample.image.min() == 0.0
    assert sample.image.max() == 1.0
    # 1st/99.8th percentiles map to 0/1: about 1 % of pixels sit at 0 after clipping
    # (more where ties at the percentile value), about 0.2 % at 1.
    assert 0.002 <= (sample.image == 1.0).mean() < 0.01
    assert 0.01 <= (sample.image == 0.0).mean() < 0.2
    assert sample.labels.min() == 0
    assert len(np.unique(sample.labels)) - 1 == 125  # annotated nuclei (LICENSE-DATA.md)
    np.testing.assert_array_equal(sample.mask, sample.labels > 0)
    assert sample.mask.mean() == pytest.approx(0.20, abs=0.02)


def test_sample_is_frozen_and_read_only(sample):
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.name = "other"  # type: ignore[misc]
    with pytest.raises(ValueError, match="read-only"):
        sample.image[0, 0] = 0.5
    assert load_sample("nuclei2d") is sample  # cached, so sharing must be safe


def test_split_is_left_three_quarters_and_right_quarter(sample):
    train, val = sample.split()
    assert train.image.shape == train.labels.shape == (512, 384)
    assert val.image.shape == val.labels.shape == (512, 128)
    np.testing.assert_array_equal(np.concatenate([train.image, val.image], axis=1), sample.image)
    np.testing.assert_array_equal(np.concatenate([train.labels, val.labels], axis=1), sample.labels)
    assert (train.name, val.name) == ("nuclei2d[train]", "nuclei2d[val]")
    assert train.spacing == val.spacing == sample.spacing
    assert train.attribution == val.attribution == sample.attribution
    assert 0.1 < val.mask.mean() < 0.3


def test_unknown_sample_lists_only_existing_names():
    with pytest.raises(ValueError, match="unknown sample 'nuclei3d'") as info:
        load_sample("nuclei3d")
    assert str(info.value).endswith("available: 'nuclei2d'")
    assert available_samples() == ["nuclei2d"]


def test_importing_reads_no_sample_data():
    # A fresh interpreter: importing the package and this module must not open the file.
    code = (
        "import attnunet, attnunet.data as data;"
        "assert data._load.cache_info().currsize == 0, 'sample file read on import'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_random_crops_shapes_dtypes_and_content(sample):
    train, _ = sample.split()
    g = torch.Generator().manual_seed(0)
    x, y = random_crops(train.image, train.labels, (48, 32), n=5, generator=g)
    assert x.shape == y.shape == (5, 1, 48, 32)
    assert x.dtype == y.dtype == torch.float32
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    # Every crop is a window of the image, and its mask the same window of the mask.
    image, mask = torch.from_numpy(train.image.copy()), torch.from_numpy(train.mask.copy())
    windows = image.unfold(0, 48, 1).unfold(1, 32, 1)  # (H-47, W-31, 48, 32)
    for crop, crop_mask in zip(x[:, 0], y[:, 0], strict=True):
        hits = (windows == crop).flatten(2).all(-1).nonzero()
        assert len(hits) >= 1
        i, j = hits[0].tolist()
        assert torch.equal(mask[i : i + 48, j : j + 32].float(), crop_mask)


def test_random_crops_is_reproducible_and_accepts_tensors(sample):
    image = torch.from_numpy(sample.image.copy())
    mask = torch.from_numpy(sample.mask.copy())
    a = random_crops(image, mask, 64, n=3, generator=torch.Generator().manual_seed(7))
    b = random_crops(sample.image, sample.mask, 64, n=3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = random_crops(image, mask, 64, n=3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(a[0], c[0])


def test_random_crops_full_size_and_3d():
    volume = torch.arange(2 * 3 * 4).reshape(2, 3, 4)
    x, y = random_crops(volume, volume > 5, (2, 3, 4), n=2)
    assert torch.equal(x[0, 0], volume.float())
    assert torch.equal(y[1, 0], (volume > 5).float())


@pytest.mark.parametrize(
    ("mask_shape", "size", "n", "match"),
    [
        ((10, 9), 4, 1, "same shape"),
        ((10, 10), (4, 4, 4), 1, "one entry per image axis"),
        ((10, 10), (11, 4), 1, "fit in the image"),
        ((10, 10), (0, 4), 1, "positive"),
        ((10, 10), 4, 0, "n must be"),
    ],
)
def test_random_crops_rejects_bad_arguments(mask_shape, size, n, match):
    with pytest.raises(ValueError, match=match):
        random_crops(np.zeros((10, 10)), np.zeros(mask_shape), size, n)
