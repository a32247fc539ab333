"""Cases and the task: reading a case with its geometry, the checks between image, channels
and mask, data fingerprints, and Task's preprocessing and predictions on each case's own
grid (checked with an oracle model whose answer is known, through resampling)."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from attnunet.data import (
    Case,
    DataError,
    Geometry,
    GeometryWarning,
    LabelSet,
    Pair,
    Preprocessing,
    data_fingerprint,
    fingerprint_changes,
    load_case,
    load_cases,
)
from attnunet.training import Task, TrainSettings, legacy_task

nib = pytest.importorskip("nibabel", reason="NIfTI cases need nibabel")


class Threshold(nn.Module):
    """An oracle: class 1 where the (unnormalised) input is above 0.5, else class 0."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # a parameter, for the device

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 20.0 * torch.cat([0.5 - x, x - 0.5], dim=1) + 0.0 * self.anchor


def _ball(shape, centre, radius, spacing):
    grid = np.meshgrid(
        *[np.arange(n) * s for n, s in zip(shape, spacing, strict=True)], indexing="ij"
    )
    distance = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return distance <= radius**2


def _case(tmp_path, name, image, mask, spacing=(1.0, 1.0, 1.0), mask_affine=None):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (5.0, -3.0, 10.0)
    nib.save(nib.Nifti1Image(image.astype(np.float32), affine), tmp_path / f"{name}.nii.gz")
    mask_affine = affine if mask_affine is None else mask_affine
    nib.save(nib.Nifti1Image(mask.astype(np.uint8), mask_affine), tmp_path / f"{name}_mask.nii.gz")
    return Pair(tmp_path / f"{name}.nii.gz", tmp_path / f"{name}_mask.nii.gz")


def test_load_case_reads_values_and_geometry(tmp_path):
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[1:3, 2:5, 1:4] = 21
    pair = _case(tmp_path, "a", mask * 2.0, mask, spacing=(0.7, 0.8, 3.0))
    case = load_case(pair)
    assert case.spatial_dims == 3 and case.image.shape == (1, 6, 7, 5)
    assert sorted(np.unique(case.mask).tolist()) == [0, 21]
    assert case.spacing == pytest.approx((0.7, 0.8, 3.0))
    np.testing.assert_allclose(case.geometry.affine, nib.load(pair.image).affine, atol=1e-6)
    assert case.name == "a"


def test_image_and_mask_on_other_grids_are_refused_naming_both(tmp_path):
    mask = np.zeros((6, 7, 5), np.uint8)
    shifted = np.diag([1.0, 1.0, 1.0, 1.0])
    shifted[:3, 3] = (5.0, -3.0, 12.0)  # 2 mm off along the third axis
    pair = _case(tmp_path, "b", mask, mask, mask_affine=shifted)
    with pytest.raises(DataError, match=r"b_mask.nii.gz.*b.nii.gz|b.nii.gz.*b_mask.nii.gz"):
        load_case(pair)
    with pytest.warns(GeometryWarning, match="b_mask.nii.gz"):
        case = load_case(pair, allow_mismatch=True)
    assert case.mask is not None
    nib.save(nib.Nifti1Image(np.zeros((6, 7, 4), np.uint8), np.eye(4)), pair.mask)
    with pytest.raises(DataError, match=r"mask size \(6, 7, 4\) differs"):
        load_case(pair)


def test_cases_that_disagree_are_listed(tmp_path):
    a = _case(tmp_path, "a", np.zeros((6, 7, 5)), np.zeros((6, 7, 5)))
    np.save(tmp_path / "flat.npy", np.zeros((6, 7), np.float32))
    np.save(tmp_path / "flat_mask.npy", np.zeros((6, 7), np.uint8))
    with pytest.raises(DataError, match=r"spatial dimensions \(2: .*flat.npy; 3: .*a.nii.gz"):
        load_cases([a, Pair(tmp_path / "flat.npy", tmp_path / "flat_mask.npy")])


def test_fingerprint_changes_name_what_changed(tmp_path):
    mask = np.zeros((6, 7, 5), np.uint8)
    mask[2:4, 2:4, 2:4] = 1
    pair = _case(tmp_path, "c", mask * 3.0, mask)
    before = data_fingerprint([load_case(pair)])
    assert fingerprint_changes(before, data_fingerprint([load_case(pair)])) == []
    image = mask * 3.0
    mask[0, 0, 0] = 1  # one voxel of the mask edited, the image kept
    _case(tmp_path, "c", image, mask)
    changes = fingerprint_changes(before, data_fingerprint([load_case(pair)]))
    assert len(changes) == 1 and changes[0].startswith("c: mask_crc32 was")
    _case(tmp_path, "c", image, mask, spacing=(1.0, 1.0, 2.0))
    changes = fingerprint_changes(before, data_fingerprint([load_case(pair)]))
    assert any(c.startswith("c: spacing was [1.0, 1.0, 1.0], now [1.0, 1.0, 2.0]") for c in changes)


def _task(target_spacing, values=(0, 7)):
    return Task(3, 1, LabelSet(values), Preprocessing(("none",), (None,), target_spacing))


def _ball_case(spacing, shape=(40, 36, 16), radius=9.0):
    centre = [n * s / 2 - 0.3 for n, s in zip(shape, spacing, strict=True)]
    ball = _ball(shape, centre, radius, spacing)
    geometry = Geometry(shape, spacing, np.diag([*spacing, 1.0]), "NIfTI")
    pair = Pair(__import__("pathlib").Path("ball.nii.gz"))
    return Case(pair, ball[None].astype(np.float32), (ball * 7).astype(np.int64), geometry), ball


@pytest.mark.parametrize("target", [None, (1.0, 1.0, 1.0), (1.5, 1.5, 2.0)])
def test_predictions_come_back_to_the_case_grid_aligned(target):
    """Through resampling to another voxel size and back, an oracle that thresholds the
    input finds the ball again, in place: Dice near 1, the same centre (no half-voxel
    shift), about as many voxels too many as too few where the grid is only coarsened."""
    case, ball = _ball_case(spacing=(0.8, 0.8, 2.5))
    task = _task(target)
    settings = TrainSettings(spatial_dims=3, num_classes=2, patch_size=(32, 32, 16))
    labels = task.predict(Threshold(), case, settings)
    assert labels.shape == ball.shape and set(np.unique(labels).tolist()) == {0, 7}
    found = labels == 7
    dice = 2 * (found & ball).sum() / (found.sum() + ball.sum())
    assert dice > (0.999 if target is None else 0.95)
    np.testing.assert_allclose(np.argwhere(found).mean(0), np.argwhere(ball).mean(0), atol=0.25)
    if target != (1.5, 1.5, 2.0):  # there, slices are added and xy coarsened: no symmetry
        extra, missed = (found & ~ball).sum(), (ball & ~found).sum()
        assert abs(int(extra) - int(missed)) <= 0.2 * max(extra + missed, 1) + 4


def test_volume_maps_labels_and_carries_the_grid_spacing():
    case, ball = _ball_case(spacing=(0.8, 0.8, 2.5))
    task = _task((1.6, 1.6, 2.5))
    volume = task.volume(case)
    assert volume.spacing == (1.6, 1.6, 2.5)
    assert volume.image.shape == (1, 20, 18, 16) and volume.mask.shape == (20, 18, 16)
    assert set(np.unique(volume.mask).tolist()) == {0, 1}
    # the class volume is kept: voxel counts scale with the voxel size
    assert volume.mask.sum() * 1.6 * 1.6 == pytest.approx(ball.sum() * 0.8 * 0.8, rel=0.05)


def test_a_case_that_does_not_fit_the_model_is_refused_in_one_line():
    case, _ = _ball_case(spacing=(1.0, 1.0, 1.0))
    task = Task(2, 3, LabelSet((0, 1)), Preprocessing(("none",) * 3, (None,) * 3, None))
    with pytest.raises(DataError) as error:
        task.predict_classes(Threshold(), case, TrainSettings())
    message = str(error.value)
    assert message.startswith("ball.nii.gz: a 3D image with 1 channel (40, 36, 16)")
    assert "the model takes 2D images with 3 channels; use a model trained on 3D" in message
    assert "\n" not in message


def test_a_resampling_model_needs_the_voxel_size_and_names_the_file():
    case, _ = _ball_case(spacing=(1.0, 1.0, 1.0))
    case.geometry = Geometry(case.geometry.shape, None, None, "NumPy")
    with pytest.raises(DataError, match=r"^ball.nii.gz: .*needs its voxel spacing"):
        _task((2.0, 2.0, 2.0)).prepare(case)


def test_task_round_trips_and_legacy_models_keep_their_normalisation():
    task = Task(
        3,
        2,
        LabelSet((0, 21, 22), ("background", "L1", "L2"), ignore=255),
        Preprocessing(("zscore", "none"), (None, None), (1.0, 1.0, 3.0)),
        ("T2", "ADC"),
    )
    assert Task.from_dict(task.to_dict()) == task
    legacy = legacy_task(TrainSettings(spatial_dims=2, num_classes=3), in_channels=1)
    assert legacy.labels.values == (0, 1, 2)
    assert legacy.preprocessing.schemes == ("percentile",)
    assert legacy.preprocessing.target_spacing is None


def test_from_cases_finds_labels_and_ct_statistics(tmp_path):
    rng = np.random.default_rng(0)
    pairs = []
    for i in range(2):
        mask = np.zeros((8, 8, 4), np.uint8)
        mask[2:6, 2:6, 1:3] = 21 + i
        image = np.where(mask > 0, 300.0, -900.0) + rng.normal(0, 20, mask.shape)
        pairs.append(_case(tmp_path, f"ct{i}", image, mask))
    cases = load_cases(pairs)
    task = Task.from_cases(cases[:1], cases[1:], channel_names=["CT"])
    assert task.labels.values == (0, 21, 22)
    assert task.preprocessing.schemes == ("ct",)
    foreground = cases[0].image[0][cases[0].mask > 0]
    stats = task.preprocessing.ct_stats[0]
    assert stats.low == pytest.approx(np.percentile(foreground, 0.5))
    assert stats.high == pytest.approx(np.percentile(foreground, 99.5))
    assert stats.mean == pytest.approx(foreground.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        volumes = task.volumes(cases)
    assert [sorted(np.unique(v.mask).tolist()) for v in volumes] == [[0, 1], [0, 2]]
