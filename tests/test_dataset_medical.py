"""SegmentationFolder on medical volumes (NIfTI written by nibabel): label values mapped by
a LabelSet, CT normalisation and resampling by a Preprocessing, geometry checks, nnU-Net
channel files, and batching with DataLoader. Expected values are computed by hand here."""

import json

import numpy as np
import pytest
import torch

from attnunet.data import (
    CTStats,
    DataError,
    GeometryWarning,
    LabelSet,
    Pair,
    Preprocessing,
    SegmentationFolder,
    resample_labels,
)

nib = pytest.importorskip("nibabel", reason="NIfTI files need nibabel")

LABELS = LabelSet((0, 21, 22), ignore=255)


def save_nifti(path, array, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)):
    """``array`` as a NIfTI file with a diagonal affine of ``spacing`` and ``origin``."""
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))
    return path


def vertebrae_mask():
    """A (4, 5, 6) mask holding 0, 21, 22 and 255, with its classes written by hand."""
    mask = np.zeros((4, 5, 6), np.uint8)
    classes = np.zeros((4, 5, 6), np.int64)
    mask[1, 1:3, 2:4], classes[1, 1:3, 2:4] = 21, 1
    mask[2, 3, :], classes[2, 3, :] = 22, 2
    mask[3, 0, 0], classes[3, 0, 0] = 255, -1
    mask[0, 4, 5], classes[0, 4, 5] = 255, -1
    return mask, classes


# ----------------------------------------------------------------------------- labels


def test_label_values_become_classes_and_the_ignore_value_minus_one(tmp_path):
    mask, classes = vertebrae_mask()
    image = np.arange(120, dtype=np.float32).reshape(4, 5, 6)
    save_nifti(tmp_path / "a.nii.gz", image)
    save_nifti(tmp_path / "a_mask.nii.gz", mask)
    only_ignore = np.zeros((4, 5, 6), np.uint8)  # only 0 and 255: 255 is still ignored
    only_ignore[2, 2, 2] = 255
    save_nifti(tmp_path / "b.nii.gz", image)
    save_nifti(tmp_path / "b_mask.nii.gz", only_ignore)

    data = SegmentationFolder.from_folder(tmp_path, labels=LABELS, normalise=False)
    assert data.num_classes == 3
    np.testing.assert_array_equal(data[0]["mask"].numpy(), classes)
    assert data[0]["mask"].dtype == torch.int64
    expected_b = np.zeros((4, 5, 6), np.int64)
    expected_b[2, 2, 2] = -1
    np.testing.assert_array_equal(data[1]["mask"].numpy(), expected_b)
    np.testing.assert_array_equal(data[0]["image"][0].numpy(), image)

    summary = data.validate()
    assert summary.labels == (0, 21, 22, 255)  # as written
    assert summary.foreground_fraction == pytest.approx((4 + 6) / 240)  # 255 is not foreground
    # Without a label set the 0/255 mask stays a binary mask, read as 0 and 1.
    plain = SegmentationFolder.from_folder(tmp_path, normalise=False)
    assert plain[1]["mask"].unique().tolist() == [0, 1]


def test_unknown_label_values_are_refused_naming_every_file(tmp_path):
    for name, value in (("a", 21), ("b", 23), ("c", 30)):
        mask = np.zeros((3, 4, 5), np.uint8)
        mask[1, 1, 1] = value
        save_nifti(tmp_path / f"{name}.nii.gz", np.zeros((3, 4, 5), np.float32))
        save_nifti(tmp_path / f"{name}_mask.nii.gz", mask)
    data = SegmentationFolder.from_folder(tmp_path, labels=LABELS)
    assert data[0]["mask"].sum() == 1
    with pytest.raises(DataError, match=r"b_mask\.nii\.gz: the mask holds label value 23"):
        data[1]
    with pytest.raises(DataError) as info:
        data.validate()
    first, _, report = str(info.value).partition("\n\n")
    assert "b_mask.nii.gz" in first and "2 problem(s) in 3 image/mask pairs" in report
    assert "b_mask.nii.gz: the mask holds label value 23" in report
    assert "c_mask.nii.gz: the mask holds label value 30" in report


def test_num_classes_must_agree_with_the_label_set(tmp_path):
    save_nifti(tmp_path / "a.nii.gz", np.zeros((3, 4, 5), np.float32))
    save_nifti(tmp_path / "a_mask.nii.gz", np.zeros((3, 4, 5), np.uint8))
    with pytest.raises(ValueError, match=r"num_classes=4 but the label set has 3 classes"):
        SegmentationFolder.from_folder(tmp_path, labels=LABELS, num_classes=4)
    assert SegmentationFolder.from_folder(tmp_path, labels=LABELS, num_classes=3).num_classes == 3


def test_patches_on_foreground_never_take_ignored_voxels_for_foreground(tmp_path):
    mask = np.full((12, 12, 12), 255, np.uint8)  # all ignored but one voxel of label 21
    mask[9, 2, 7] = 21
    save_nifti(tmp_path / "a.nii.gz", np.zeros((12, 12, 12), np.float32))
    save_nifti(tmp_path / "a_mask.nii.gz", mask)
    data = SegmentationFolder.from_folder(
        tmp_path,
        labels=LabelSet((0, 21), ignore=255),
        patch_size=4,
        foreground_fraction=1.0,
        generator=torch.Generator().manual_seed(0),
    )
    for _ in range(20):  # -1 taken as foreground would miss the voxel most of the time
        patch = data[0]["mask"]
        assert int((patch == 1).sum()) == 1 and int((patch == -1).sum()) == 63


# ----------------------------------------------------------------------------- preprocessing


def test_ct_preprocessing_gives_the_hand_computed_values(tmp_path):
    image = np.full((6, 8, 10), -1000.0, np.float32)  # air, clipped
    image[0, 0, :3] = 3000.0  # metal, clipped
    image[1:5, 2:7, 3:8] = np.arange(-40.0, 60.0).reshape(4, 5, 5)  # the organ
    mask = np.zeros((6, 8, 10), np.uint8)
    mask[1:5, 2:7, 3:8] = 1
    save_nifti(tmp_path / "ct.nii.gz", image, spacing=(1.5, 0.75, 2.0))
    save_nifti(tmp_path / "ct_mask.nii.gz", mask, spacing=(1.5, 0.75, 2.0))

    # CT statistics by hand: the 100 foreground voxels are -40, ..., 59.
    low = -40.0 + 0.005 * 99  # numpy's linear percentile at 0.5: index 0.005 * (n - 1)
    high = 59.0 - 0.005 * 99
    mean = 9.5
    std = ((100**2 - 1) / 12) ** 0.5  # the variance of 100 consecutive integers
    stats = CTStats(low, high, mean, std)
    fitted = Preprocessing.fingerprint([image[None]], [mask], [None], schemes=("ct",))
    assert fitted.ct_stats[0].to_dict() == pytest.approx(stats.to_dict(), rel=1e-12)

    data = SegmentationFolder.from_folder(
        tmp_path, preprocessing=Preprocessing(("ct",), (stats,)), normalise=False
    )
    item = data[0]
    f32 = np.float32
    expected = (np.clip(image, f32(low), f32(high)) - f32(mean)) / f32(std)
    np.testing.assert_array_equal(item["image"][0].numpy(), expected)
    assert item["image"][0, 0, 0, 0] == pytest.approx((high - mean) / std, rel=1e-6)  # metal
    assert item["image"][0, 0, 0, 5] == pytest.approx((low - mean) / std, rel=1e-6)  # air
    assert item["image"][0, 1, 2, 3] == pytest.approx((low - mean) / std, rel=1e-6)  # -40
    assert item["image"][0, 1, 2, 4] == pytest.approx((-39 - mean) / std, rel=1e-6)
    np.testing.assert_array_equal(item["mask"].numpy(), mask)
    assert item["spacing"] == (1.5, 0.75, 2.0)  # the header's; no resampling


def test_resampling_to_the_target_spacing(tmp_path):
    image = np.full((4, 6, 8), 7.0, np.float32)
    mask = np.zeros((4, 6, 8), np.uint8)
    mask[1:3, 2:5, 2:6] = 21  # rows 1-2 of 2 mm, columns 2-5 of 0.5 mm
    mask[3, 0:2, 0:2] = 255
    save_nifti(tmp_path / "a.nii.gz", image, spacing=(2.0, 1.0, 0.5))
    save_nifti(tmp_path / "a_mask.nii.gz", mask, spacing=(2.0, 1.0, 0.5))
    prep = Preprocessing(("none",), target_spacing=(1.0, 1.0, 1.0))
    data = SegmentationFolder.from_folder(tmp_path, labels=LABELS, preprocessing=prep)
    item = data[0]
    # (4 * 2 / 1, 6 * 1 / 1, 8 * 0.5 / 1) voxels
    assert item["image"].shape == (1, 8, 6, 4) and item["mask"].shape == (8, 6, 4)
    assert (item["image"] == 7.0).all()
    assert item["spacing"] == (1.0, 1.0, 1.0)
    # By hand: old row r covers new rows 2r, 2r + 1; old columns 2c, 2c + 1 make new c.
    expected = np.zeros((8, 6, 4), np.int64)
    expected[2:6, 2:5, 1:3] = 1
    expected[6:8, 0:2, 0:1] = -1
    np.testing.assert_array_equal(item["mask"].numpy(), expected)
    classes = LABELS.encode(mask)
    np.testing.assert_array_equal(item["mask"].numpy(), resample_labels(classes, (8, 6, 4)))


def test_a_file_without_a_voxel_size_is_refused_naming_it_when_resampling(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 5), np.float32))
    save_nifti(tmp_path / "a_mask.nii.gz", np.zeros((3, 4, 5), np.uint8))
    prep = Preprocessing(("zscore",), target_spacing=(1.0, 1.0, 1.0))
    data = SegmentationFolder.from_folder(tmp_path, preprocessing=prep, spatial_dims=3)
    with pytest.raises(DataError, match=r"a\.npy: this preprocessing resamples"):
        data[0]
    with pytest.raises(DataError, match=r"a\.npy: the preprocessing resamples"):
        data.validate()
    two = Preprocessing(("zscore", "zscore"))
    with pytest.raises(DataError, match=r"a\.npy: an image with 1 channel\(s\)"):
        SegmentationFolder.from_folder(tmp_path, preprocessing=two).validate()
    # Without a target spacing the voxel size is not needed, and items have no "spacing".
    item = SegmentationFolder.from_folder(tmp_path, preprocessing=Preprocessing(("zscore",)))[0]
    assert "spacing" not in item


# ----------------------------------------------------------------------------- geometry


def test_an_affine_mismatch_is_refused_naming_both_files_unless_allowed(tmp_path):
    image_path = save_nifti(tmp_path / "a.nii.gz", np.zeros((4, 5, 6), np.float32))
    mask = np.zeros((4, 5, 6), np.uint8)
    mask[1, 1, 1] = 1
    mask_path = save_nifti(tmp_path / "a_mask.nii.gz", mask, origin=(2.0, 0.0, 0.0))
    data = SegmentationFolder.from_folder(tmp_path)
    with pytest.raises(DataError, match=r"origin \(voxel 0\) moves by 2 mm") as info:
        data[0]
    assert str(image_path) in str(info.value) and str(mask_path) in str(info.value)
    with pytest.raises(DataError, match=r"a_mask\.nii\.gz"):
        data.validate()
    allowed = SegmentationFolder.from_folder(tmp_path, allow_mismatch=True)
    with pytest.warns(GeometryWarning, match=r"a_mask\.nii\.gz.*used anyway"):
        item = allowed[0]
    np.testing.assert_array_equal(item["mask"].numpy(), mask)


def test_an_nnunet_case_stacks_its_channel_files(tmp_path):
    root = tmp_path / "Dataset001_Prostate"
    root.mkdir()
    (root / "dataset.json").write_text(
        json.dumps(
            {
                "channel_names": {"0": "T2", "1": "ADC"},
                "labels": {"background": 0, "peripheral": 1, "transition": 2},
                "numTraining": 1,
                "file_ending": ".nii.gz",
            }
        )
    )
    rng = np.random.default_rng(5)
    t2 = rng.normal(300, 20, (3, 4, 5)).astype(np.float32)
    adc = rng.normal(1200, 50, (3, 4, 5)).astype(np.float32)
    mask = rng.integers(0, 3, (3, 4, 5)).astype(np.uint8)
    spacing = (3.0, 0.5, 0.5)
    save_nifti(root / "imagesTr" / "prostate_00_0000.nii.gz", t2, spacing)
    save_nifti(root / "imagesTr" / "prostate_00_0001.nii.gz", adc, spacing)
    save_nifti(root / "labelsTr" / "prostate_00.nii.gz", mask, spacing)
    labels = LabelSet.from_dataset_json(root / "dataset.json")
    data = SegmentationFolder.from_folder(root, labels=labels, normalise=False)
    item = data[0]
    assert item["name"] == "prostate_00" and item["image"].shape == (2, 3, 4, 5)
    read_back = [
        nib.load(str(root / "imagesTr" / f"prostate_00_000{c}.nii.gz")).get_fdata()
        for c in range(2)
    ]
    np.testing.assert_array_equal(item["image"][0].numpy(), read_back[0])
    np.testing.assert_array_equal(item["image"][1].numpy(), read_back[1])
    np.testing.assert_array_equal(item["mask"].numpy(), mask)
    assert item["spacing"] == spacing
    assert data.validate().channels == 2

    save_nifti(root / "imagesTr" / "prostate_00_0001.nii.gz", adc, (3.0, 0.5, 0.6))
    with pytest.raises(DataError, match=r"prostate_00_0001\.nii\.gz: spacing .*first channel"):
        SegmentationFolder.from_folder(root)[0]


# ----------------------------------------------------------------------------- batching


def test_a_dataloader_batches_items_with_their_spacing(tmp_path):
    mask, classes = vertebrae_mask()
    for name, offset in (("a", 0.0), ("b", 100.0)):
        image = np.arange(120, dtype=np.float32).reshape(4, 5, 6) + offset
        save_nifti(tmp_path / f"{name}.nii.gz", image, spacing=(2.5, 1.25, 1.25))
        save_nifti(tmp_path / f"{name}_mask.nii.gz", mask, spacing=(2.5, 1.25, 1.25))
    data = SegmentationFolder.from_folder(tmp_path, labels=LABELS, normalise=False)
    batch = next(iter(torch.utils.data.DataLoader(data, batch_size=2)))
    assert batch["name"] == ["a", "b"]
    assert batch["image"].shape == (2, 1, 4, 5, 6) and batch["image"][1, 0, 0, 0, 0] == 100.0
    np.testing.assert_array_equal(batch["mask"].numpy(), np.stack([classes, classes]))
    # default_collate turns the tuples into one tensor per axis
    assert [s.tolist() for s in batch["spacing"]] == [[2.5, 2.5], [1.25, 1.25], [1.25, 1.25]]

    patches = SegmentationFolder.from_folder(
        tmp_path, labels=LABELS, patch_size=(2, 3, 3), samples_per_image=2
    )
    batches = list(torch.utils.data.DataLoader(patches, batch_size=2))
    assert len(batches) == 2 and batches[0]["image"].shape == (2, 1, 2, 3, 3)
    assert batches[1]["mask"].shape == (2, 2, 3, 3) and len(batches[1]["spacing"]) == 3


def test_pairs_given_by_hand_and_cache(tmp_path):
    mask, classes = vertebrae_mask()
    image = np.linspace(0, 1, 120, dtype=np.float32).reshape(4, 5, 6)
    pair = Pair(save_nifti(tmp_path / "x.nii.gz", image), save_nifti(tmp_path / "y.nii.gz", mask))
    data = SegmentationFolder([pair], labels=LABELS, cache=True)
    assert data.validate().labels == (0, 21, 22, 255)
    (tmp_path / "y.nii.gz").unlink()  # served from the cache filled by validate()
    np.testing.assert_array_equal(data[0]["mask"].numpy(), classes)
    assert data[0]["spacing"] == (1.0, 1.0, 1.0)
