"""Per-class evaluation rows: Dice, IoU, HD95, ASSD and the one-piece fraction per class,
their means over the classes present, the unit, the spacing and ignored voxels.

Oracles: hand counts written here, MedPy's ``hd95``/``assd`` with ``voxelspacing``, and
surface distances computed here with SciPy's exact Euclidean distance transform (checked
against MedPy first).
"""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from torch import nn

from attnunet.data import IGNORE_INDEX
from attnunet.metrics import dice_score, iou_score, surface_metrics
from attnunet.training import TrainSettings, Volume, evaluate, object_one_piece_fraction
from attnunet.training.evaluation import METRICS, score_case

SPACING = (0.7, 0.8, 3.0)


def _settings(spatial_dims=3, num_classes=3, spacing=None, **more):
    return TrainSettings(
        spatial_dims=spatial_dims,
        patch_size=(8,) * spatial_dims,
        num_classes=num_classes,
        spacing=spacing,
        **more,
    )


def _box(shape, *slices, value=1, into=None):
    out = np.zeros(shape, dtype=np.int64) if into is None else into
    out[tuple(slices)] = value
    return out


# ------------------------------------------------------------------ Dice and IoU


def test_per_class_dice_and_iou_match_hand_counts_and_absent_classes_are_left_out():
    shape = (4, 5, 6)
    # Class 1: target 2 x 2 x 3 = 12 voxels, prediction its first 2 x 2 x 2 = 8 (all inside).
    # Class 2: target 2 x 3 x 3 = 18 voxels, prediction 2 x 3 x 4 = 24 holding all 18.
    # Class 3: in neither.
    target = _box(shape, slice(0, 2), slice(0, 2), slice(0, 3))
    _box(shape, slice(2, 4), slice(2, 5), slice(3, 6), value=2, into=target)
    pred = _box(shape, slice(0, 2), slice(0, 2), slice(0, 2))
    _box(shape, slice(2, 4), slice(2, 5), slice(2, 6), value=2, into=pred)
    row = score_case(pred, target, _settings(num_classes=4))

    dice = {1: 2 * 8 / (8 + 12), 2: 2 * 18 / (24 + 18)}
    iou = {1: 8 / 12, 2: 18 / 24}
    for c in (1, 2):
        assert row[f"dice_{c}"] == pytest.approx(dice[c], rel=1e-6)
        assert row[f"iou_{c}"] == pytest.approx(iou[c], rel=1e-6)
    for metric in METRICS:  # class 3 is in neither: no value, and out of every mean
        assert math.isnan(row[f"{metric}_3"])
    assert row["dice"] == pytest.approx((dice[1] + dice[2]) / 2, rel=1e-6)
    assert row["iou"] == pytest.approx((iou[1] + iou[2]) / 2, rel=1e-6)


def test_a_class_predicted_but_absent_from_the_target_scores_zero_and_counts():
    shape = (6, 6, 6)
    target = _box(shape, slice(1, 3), slice(1, 3), slice(1, 3))
    pred = target.copy()
    _box(shape, slice(4, 6), slice(4, 6), slice(4, 6), value=2, into=pred)
    row = score_case(pred, target, _settings())
    assert (row["dice_1"], row["dice_2"]) == (1.0, 0.0)
    assert (row["iou_1"], row["iou_2"]) == (1.0, 0.0)
    assert row["dice"] == 0.5 and row["iou"] == 0.5
    # No distance to a class the target lacks, and no object to keep whole: left out.
    assert math.isnan(row["hd95_2"]) and math.isnan(row["one_piece_2"])
    assert row["hd95"] == row["hd95_1"] == 0.0
    assert row["one_piece"] == 1.0


def test_an_image_without_any_class_gives_nan_means():
    row = score_case(np.zeros((5, 5, 5)), np.zeros((5, 5, 5), dtype=np.int64), _settings())
    assert all(math.isnan(row[m]) for m in METRICS)


# ------------------------------------------------------------------ surface distances


def _border(mask):
    return mask & ~ndimage.binary_erosion(mask, ndimage.generate_binary_structure(mask.ndim, 1))


def _directed(a, b, spacing):
    """Distances from each border voxel of ``a`` to the nearest border voxel of ``b``."""
    return ndimage.distance_transform_edt(~_border(b), sampling=spacing)[_border(a)]


def _anisotropic_case():
    shape = (18, 16, 8)
    target = np.zeros(shape, dtype=np.int64)
    target[3:10, 2:9, 2:6] = 1
    target[11:16, 9:15, 1:5] = 2
    pred = target.copy()
    pred[2:11, 3:8, 3:7] = 1  # class 1 grows along axes 0 and 2, shrinks along 1
    pred[12:17, 8:13, 2:5] = 2  # class 2 shifts
    pred[0:2, 12:15, 5:7] = 2  # and has a stray piece far from its object
    return pred, target


def test_per_class_hd95_and_assd_with_anisotropic_spacing_match_medpy():
    binary = pytest.importorskip("medpy.metric.binary", reason="MedPy is the oracle")
    pred, target = _anisotropic_case()
    row = score_case(pred, target, _settings(), spacing=SPACING)
    assert row["unit"] == "mm"
    hd95s, assds = [], []
    for c in (1, 2):
        p, t = pred == c, target == c
        a, b = _directed(p, t, SPACING), _directed(t, p, SPACING)
        # The distances measured here are MedPy's: pooled they give MedPy's HD95 and ASSD.
        pooled_hd95 = binary.hd95(p, t, voxelspacing=SPACING)
        assert np.percentile(np.concatenate([a, b]), 95) == pytest.approx(pooled_hd95)
        # The rows' HD95 is the larger directed percentile (MONAI), not MedPy's pooled one.
        hd95 = max(np.percentile(a, 95), np.percentile(b, 95))
        assert row[f"hd95_{c}"] == pytest.approx(hd95, rel=1e-9)
        assert row[f"hd95_{c}"] != pytest.approx(pooled_hd95, rel=1e-3)
        # ASSD pools both directions, as MedPy >= 0.5 does.
        assert row[f"assd_{c}"] == pytest.approx(binary.assd(p, t, voxelspacing=SPACING))
        hd95s.append(hd95)
        assds.append(row[f"assd_{c}"])
    assert row["hd95"] == pytest.approx(np.mean(hd95s), rel=1e-9)
    assert row["assd"] == pytest.approx(np.mean(assds), rel=1e-12)


def test_settings_spacing_overrides_the_images_and_sets_the_unit():
    pred, target = _anisotropic_case()
    voxels = score_case(pred, target, _settings())
    image = score_case(pred, target, _settings(), spacing=(2.0, 2.0, 2.0))
    override = score_case(pred, target, _settings(spacing=(0.5, 0.5, 0.5)), spacing=(2, 2, 2))
    assert voxels["unit"] == "px" and image["unit"] == "mm" and override["unit"] == "mm"
    # the settings' spacing is in the settings' unit (the bundled 3D sample's: micrometres);
    # a volume's own spacing comes from a file header, in mm
    micro = _settings(spacing=(0.5, 0.5, 0.5), spacing_unit="µm")
    assert score_case(pred, target, micro)["unit"] == "µm"
    assert score_case(pred, target, _settings(spacing_unit="µm"), spacing=(2, 2, 2))["unit"] == "mm"
    for metric in ("hd95", "assd", "hd95_1", "assd_2"):
        assert voxels[metric] > 0
        # An isotropic spacing s scales every distance by s.
        assert image[metric] == pytest.approx(2.0 * voxels[metric], rel=1e-12)
        assert override[metric] == pytest.approx(0.5 * voxels[metric], rel=1e-12)
    # The spacing changes distances only.
    for metric in ("dice", "iou", "one_piece", "dice_2"):
        assert image[metric] == voxels[metric] == override[metric]
    with pytest.raises(ValueError, match="spacing"):
        score_case(pred, target, _settings(), spacing=(1.0, 1.0))


# ------------------------------------------------------------------ ignored voxels


def test_ignored_voxels_count_neither_way():
    shape = (8, 8, 8)
    target = _box(shape, slice(1, 4), slice(1, 4), slice(1, 4))
    _box(shape, slice(5, 7), slice(5, 7), slice(5, 7), value=2, into=target)
    target[:, :, 7] = IGNORE_INDEX
    target[0, 0, :] = IGNORE_INDEX
    pred = np.where(target == IGNORE_INDEX, 0, target)
    ignored = target == IGNORE_INDEX
    pred[ignored] = np.arange(ignored.sum()) % 3  # anything at all where the mask says ignore
    row = score_case(pred, target, _settings())
    for c in (1, 2):
        assert row[f"dice_{c}"] == row[f"iou_{c}"] == 1.0
        assert row[f"hd95_{c}"] == row[f"assd_{c}"] == 0.0
        assert row[f"one_piece_{c}"] == 1.0
    # Control: the same prediction scored as if those voxels were background is worse.
    plain = score_case(pred, np.where(ignored, 0, target), _settings())
    assert plain["dice"] < 1.0 and plain["hd95"] > 0.0
    # An error outside the ignored voxels still counts.
    pred[1, 1, 1] = 0
    assert score_case(pred, target, _settings())["dice_1"] == pytest.approx(2 * 26 / 53)


# ------------------------------------------------------------------ one piece per class


def test_one_piece_fraction_per_class():
    shape = (10, 12)
    target = _box(shape, slice(1, 4), slice(1, 11))
    _box(shape, slice(6, 9), slice(2, 8), value=2, into=target)
    pred = target.copy()
    pred[:, 6] = np.where(pred[:, 6] == 1, 0, pred[:, 6])  # class 1 cut in two
    row = score_case(pred, target, _settings(spatial_dims=2))
    assert row["one_piece_1"] == 0.0 and row["one_piece_2"] == 1.0
    assert row["one_piece"] == 0.5
    # The per-class values are object_one_piece_fraction on each class's masks.
    assert row["one_piece_1"] == object_one_piece_fraction(pred == 1, target == 1)


# ------------------------------------------------------------------ binary rows


def _old_row(pred, target, settings):
    """The row before per-class scoring (commit 699eeb2), written out again."""
    p, t = torch.from_numpy(pred)[None], torch.from_numpy(target)[None]
    kw = {"spatial_dims": settings.spatial_dims}
    surface = surface_metrics(
        p.numpy(),
        t.numpy(),
        metrics=("hd95", "assd"),
        spacing=settings.spacing,
        empty_pred=math.nan,
        empty_target=math.nan,
        **kw,
    )
    return {
        "dice": float(dice_score(p, t, **kw)),
        "iou": float(iou_score(p, t, **kw)),
        "hd95": float(surface["hd95"]),
        "assd": float(surface["assd"]),
        "one_piece": object_one_piece_fraction(pred, target),
    }


@pytest.mark.parametrize("spacing", [None, (0.7, 3.0)])
def test_binary_rows_keep_the_old_values(spacing):
    rng = np.random.default_rng(3)
    shape = (20, 24)
    blob = ndimage.binary_opening(rng.random(shape) > 0.45).astype(np.int64)
    box = _box(shape, slice(4, 12), slice(5, 15))
    empty = np.zeros(shape, dtype=np.int64)
    settings = _settings(spatial_dims=2, num_classes=2, spacing=spacing)
    cases = [(blob, box), (box, blob), (box, box), (empty, box), (box, empty), (empty, empty)]
    for pred, target in cases:
        row = score_case(pred, target, settings)
        assert list(row) == [*METRICS, "unit"]
        assert row["unit"] == ("px" if spacing is None else "mm")
        old = _old_row(pred, target, settings)
        for metric in METRICS:
            assert row[metric] == old[metric] or (
                math.isnan(row[metric]) and math.isnan(old[metric])
            ), metric


# ------------------------------------------------------------------ evaluate


class _LabelModel(nn.Module):
    """Predicts the label map held in the image's channel 0 (an oracle model)."""

    def __init__(self, num_classes):
        super().__init__()
        self.num_classes = num_classes
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        labels = x[:, 0].round().long().clamp(0, self.num_classes - 1)
        return 10.0 * nn.functional.one_hot(labels, self.num_classes).movedim(-1, 1).float()


def _volume(pred, target, name, spacing=None):
    return Volume(pred.astype(np.float32)[None], target, name, spacing)


def test_evaluate_rows_columns_and_accumulator():
    pred, target = _anisotropic_case()
    settings = _settings()
    volumes = [
        _volume(pred, target, "a", SPACING),
        _volume(target, target, "b", (1.0, 1.0, 2.0)),
    ]
    names = ["background", "liver", "spleen"]
    rows, acc = evaluate(_LabelModel(3), volumes, settings, class_names=names)
    per_class = [f"{m}_{n}" for m in METRICS for n in ("liver", "spleen")]
    assert list(rows[0]) == ["image", *METRICS, "unit", *per_class]
    assert [r["image"] for r in rows] == ["a", "b"]
    assert rows[0] == {
        "image": "a",
        **score_case(pred, target, settings, spacing=SPACING, class_names=names),
    }
    assert rows[1]["dice"] == 1.0 and rows[1]["hd95_spleen"] == 0.0
    # Every numeric column is accumulated; "image" and "unit" are not.
    summary = acc.compute()
    assert list(summary) == [*METRICS, *per_class]
    for column in summary:
        values = [r[column] for r in rows]
        assert summary[column].mean == pytest.approx(np.nanmean(values), rel=1e-12)


def test_evaluate_binary_rows_and_mixed_units():
    pred, target = _anisotropic_case()
    pred, target = (pred == 1).astype(np.int64), (target == 1).astype(np.int64)
    settings = _settings(num_classes=2)
    volumes = [_volume(pred, target, "mm", SPACING), _volume(pred, target, "voxels")]
    with pytest.warns(UserWarning, match="mix mm and voxels"):
        rows, acc = evaluate(_LabelModel(2), volumes, settings)
    assert [r["unit"] for r in rows] == ["mm", "px"]
    assert list(acc.compute()) == list(METRICS)
    assert rows[1]["hd95"] == pytest.approx(_old_row(pred, target, settings)["hd95"])
    # With --spacing every image is in mm and nothing warns.
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rows, _ = evaluate(_LabelModel(2), volumes, _settings(num_classes=2, spacing=SPACING))
    assert [r["unit"] for r in rows] == ["mm", "mm"]
    assert rows[0]["hd95"] == rows[1]["hd95"]


def test_bad_inputs_are_refused():
    pred, target = _anisotropic_case()
    settings = _settings()
    with pytest.raises(ValueError, match="one name per class"):
        evaluate(_LabelModel(3), [_volume(pred, target, "a")], settings, class_names=["a"])
    with pytest.raises(ValueError, match="distinct"):
        score_case(pred, target, settings, class_names=["bg", "x", "x"])
    with pytest.raises(ValueError, match="one shape"):
        score_case(pred[:-1], target, settings)
    with pytest.raises(TypeError, match="not whole numbers"):
        score_case(pred + 0.5, target, settings)
    with pytest.raises(ValueError, match="outside"):
        score_case(pred, target, _settings(num_classes=2))
