"""Dice and IoU: hand-computed values, an independent set-based reference, properties."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnunet.metrics import dice_score, iou_score

# ------------------------------------------------------------------ hand-computed values

# One 3x3 binary image:
#   pred      target
#   1 1 0     1 0 0
#   0 1 0     0 1 1
#   0 0 0     0 0 0
# |P| = 3, |T| = 3, |P & T| = 2 (the two pixels on the diagonal), |P | T| = 3 + 3 - 2 = 4.
PRED_3X3 = torch.tensor([[[1, 1, 0], [0, 1, 0], [0, 0, 0]]], dtype=torch.bool)
TARGET_3X3 = torch.tensor([[[1, 0, 0], [0, 1, 1], [0, 0, 0]]], dtype=torch.bool)


def test_binary_hand_computed():
    # Dice = 2 * 2 / (3 + 3) = 4 / 6 = 2/3;  IoU = 2 / 4 = 1/2.
    assert dice_score(PRED_3X3, TARGET_3X3, spatial_dims=2).item() == pytest.approx(2 / 3)
    assert iou_score(PRED_3X3, TARGET_3X3, spatial_dims=2).item() == pytest.approx(1 / 2)


def test_binary_nonzero_labels_are_foreground():
    # Instance ids 7 and 3 count as foreground exactly like True: same result as above.
    pred = PRED_3X3.long() * 7
    target = TARGET_3X3.long() * 3
    assert dice_score(pred, target, spatial_dims=2).item() == pytest.approx(2 / 3)


def test_empty_images_and_empty_value():
    # Batch of two: image 0 as above (Dice 2/3, IoU 1/2), image 1 empty in both.
    pred = torch.cat([PRED_3X3, torch.zeros_like(PRED_3X3)])
    target = torch.cat([TARGET_3X3, torch.zeros_like(TARGET_3X3)])
    s2 = {"spatial_dims": 2}
    # Default empty_value NaN: the empty image leaves the mean, Dice 2/3 and IoU 1/2 remain.
    assert dice_score(pred, target, **s2).item() == pytest.approx(2 / 3)
    assert iou_score(pred, target, **s2).item() == pytest.approx(1 / 2)
    none = dice_score(pred, target, reduction="none", **s2)
    assert none[0].item() == pytest.approx(2 / 3) and math.isnan(none[1])
    assert math.isnan(iou_score(pred, target, reduction="none", **s2)[1])
    # empty_value 1.0: mean Dice = (2/3 + 1) / 2 = 5/6, mean IoU = (1/2 + 1) / 2 = 3/4.
    one = {"empty_value": 1.0, **s2}
    assert dice_score(pred, target, **one).item() == pytest.approx(5 / 6)
    assert iou_score(pred, target, **one).item() == pytest.approx(3 / 4)
    assert dice_score(pred, target, reduction="none", **one).tolist() == pytest.approx([2 / 3, 1.0])
    # empty_value 0.0: (2/3 + 0) / 2 = 1/3.
    assert dice_score(pred, target, empty_value=0.0, **s2).item() == pytest.approx(1 / 3)
    # empty_value nan, passed explicitly: the same as the default.
    assert dice_score(pred, target, empty_value=math.nan, **s2).item() == pytest.approx(2 / 3)
    assert math.isnan(dice_score(pred, target, empty_value=math.nan, reduction="none", **s2)[1])
    # All images empty with nan: nothing to average (by default too).
    assert math.isnan(dice_score(pred[1:], target[1:], empty_value=math.nan, **s2).item())
    assert math.isnan(dice_score(pred[1:], target[1:], **s2).item())


def test_only_one_side_empty_scores_zero_not_empty_value():
    # |P| = 0, |T| = 3: Dice = 0 / 3 = 0, whatever empty_value says.
    empty = torch.zeros_like(PRED_3X3)
    assert dice_score(empty, TARGET_3X3, spatial_dims=2, empty_value=0.5).item() == 0.0
    assert iou_score(TARGET_3X3, empty, spatial_dims=2, empty_value=0.5).item() == 0.0


# One 1x6 label map with classes 0, 1, 2 (index: 0 1 2 3 4 5):
#   pred   = 0 1 1 2 2 2
#   target = 0 1 2 2 0 0
# class 0: P = {0},       T = {0, 4, 5}  |P & T| = 1  Dice = 2*1/(1+3) = 1/2   IoU = 1/3
# class 1: P = {1, 2},    T = {1}        |P & T| = 1  Dice = 2*1/(2+1) = 2/3   IoU = 1/2
# class 2: P = {3, 4, 5}, T = {2, 3}     |P & T| = 1  Dice = 2*1/(3+2) = 2/5   IoU = 1/4
PRED_1X6 = torch.tensor([[0, 1, 1, 2, 2, 2]])
TARGET_1X6 = torch.tensor([[0, 1, 2, 2, 0, 0]])


def test_multiclass_hand_computed():
    dice = dice_score(PRED_1X6, TARGET_1X6, num_classes=3, spatial_dims=1, reduction="none")
    iou = iou_score(PRED_1X6, TARGET_1X6, num_classes=3, spatial_dims=1, reduction="none")
    assert dice[0].tolist() == pytest.approx([2 / 3, 2 / 5])  # background left out
    assert iou[0].tolist() == pytest.approx([1 / 2, 1 / 4])
    # mean without background: Dice (2/3 + 2/5) / 2 = 8/15, IoU (1/2 + 1/4) / 2 = 3/8.
    s1 = {"spatial_dims": 1}
    assert dice_score(PRED_1X6, TARGET_1X6, num_classes=3, **s1).item() == pytest.approx(8 / 15)
    assert iou_score(PRED_1X6, TARGET_1X6, num_classes=3, **s1).item() == pytest.approx(3 / 8)
    # with background: Dice (1/2 + 2/3 + 2/5) / 3 = 47/90, IoU (1/3 + 1/2 + 1/4) / 3 = 13/36.
    kw = {"num_classes": 3, "include_background": True, **s1}
    assert dice_score(PRED_1X6, TARGET_1X6, **kw).item() == pytest.approx(47 / 90)
    assert iou_score(PRED_1X6, TARGET_1X6, **kw).item() == pytest.approx(13 / 36)


def test_multiclass_absent_class_takes_empty_value():
    # With num_classes=4, class 3 appears in neither: its score is empty_value.
    dice = dice_score(
        PRED_1X6, TARGET_1X6, num_classes=4, spatial_dims=1, reduction="none", empty_value=0.25
    )
    assert dice[0].tolist() == pytest.approx([2 / 3, 2 / 5, 0.25])


def test_iou_equals_dice_over_two_minus_dice_per_image():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(6, 5, 7, generator=g) > 0.5
    target = torch.rand(6, 5, 7, generator=g) > 0.5
    d = dice_score(pred, target, spatial_dims=2, reduction="none")
    assert torch.allclose(iou_score(pred, target, spatial_dims=2, reduction="none"), d / (2 - d))


def test_output_dtype_device_and_3d():
    pred = torch.zeros(2, 3, 4, 5, dtype=torch.long)
    pred[0, 1:, 1:, 1:] = 1  # 2*3*4 = 24 voxels
    target = torch.zeros_like(pred)
    target[0, 1:, 2:, 1:] = 1  # 2*2*4 = 16 voxels, all inside pred
    # image 0: Dice = 2*16 / (24 + 16) = 0.8; image 1 empty in both -> NaN, left out: 0.8.
    out = dice_score(pred, target, spatial_dims=3)
    assert out.dtype == torch.float32
    assert out.device == pred.device
    assert out.shape == ()
    assert out.item() == pytest.approx(0.8)
    # with empty_value=1.0 the empty image scores 1: mean (0.8 + 1) / 2 = 0.9.
    assert dice_score(pred, target, spatial_dims=3, empty_value=1.0).item() == pytest.approx(0.9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_inputs_device():
    pred = PRED_3X3.cuda()
    out = dice_score(pred, TARGET_3X3.cuda(), num_classes=2, spatial_dims=2)
    assert out.device == pred.device
    assert out.item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("metric", [dice_score, iou_score])
def test_invalid_arguments(metric):
    with pytest.raises(ValueError, match=r"same images, got shapes \[1, 3, 3\] and \[1, 2, 3\]"):
        metric(PRED_3X3, TARGET_3X3[:, :2], spatial_dims=2)
    # No spatial axis: a (3,) input has too few axes for 2 spatial ones, and 0 spatial axes
    # are refused; without spatial_dims the error lists the readings.
    ones = torch.ones(3, dtype=torch.bool)
    with pytest.raises(ValueError, match="spatial"):
        metric(ones, ones, spatial_dims=2)
    with pytest.raises(ValueError, match="spatial_dims must be a positive int"):
        metric(ones, ones, spatial_dims=0)
    with pytest.raises(ValueError, match="pass spatial_dims"):
        metric(ones, ones)
    # Probabilities are refused; floats holding whole numbers are masks like any other.
    with pytest.raises(TypeError, match="threshold"):
        metric(PRED_3X3.float() * 0.6, TARGET_3X3, spatial_dims=2)
    assert metric(PRED_3X3.float(), TARGET_3X3, spatial_dims=2) == metric(
        PRED_3X3, TARGET_3X3, spatial_dims=2
    )
    with pytest.raises(ValueError, match="num_classes"):
        metric(PRED_1X6, TARGET_1X6, num_classes=1, spatial_dims=1)
    with pytest.raises(ValueError, match=r"outside 0\.\.1"):
        metric(PRED_1X6, TARGET_1X6, num_classes=2, spatial_dims=1)
    with pytest.raises(ValueError, match="outside"):
        metric(PRED_1X6 - 1, TARGET_1X6, num_classes=3, spatial_dims=1)
    with pytest.raises(ValueError, match="reduction"):
        metric(PRED_3X3, TARGET_3X3, spatial_dims=2, reduction="sum")  # type: ignore[arg-type]


# ------------------------------------------------------------------ independent reference


def _reference(pred, target, num_classes, include_background, empty_value):
    """Per-image, per-class Dice and IoU from Python sets of flat voxel indices."""
    pred, target = np.asarray(pred), np.asarray(target)
    if num_classes is None:
        classes = [None]
    else:
        classes = list(range(0 if include_background else 1, num_classes))
    dice = np.empty((pred.shape[0], len(classes)))
    iou = np.empty_like(dice)
    for b in range(pred.shape[0]):
        p_flat, t_flat = pred[b].ravel().tolist(), target[b].ravel().tolist()
        for k, c in enumerate(classes):
            if c is None:
                p = {i for i, v in enumerate(p_flat) if v != 0}
                t = {i for i, v in enumerate(t_flat) if v != 0}
            else:
                p = {i for i, v in enumerate(p_flat) if v == c}
                t = {i for i, v in enumerate(t_flat) if v == c}
            if not p and not t:
                dice[b, k] = iou[b, k] = empty_value
            else:
                dice[b, k] = 2 * len(p & t) / (len(p) + len(t))
                iou[b, k] = len(p & t) / len(p | t)
    return dice, iou


@pytest.mark.parametrize("shape", [(3, 8, 9), (2, 4, 5, 6), (4, 1, 17)])
@pytest.mark.parametrize(
    ("num_classes", "include_background"), [(None, False), (3, False), (3, True), (5, False)]
)
# NaN is the default (not passed); 1.0 was the default before and counts both-empty as 1.
@pytest.mark.parametrize("empty_value", [math.nan, 1.0], ids=["default-nan", "one"])
def test_matches_set_based_reference(shape, num_classes, include_background, empty_value):
    rng = np.random.default_rng(sum(shape) + (num_classes or 0))
    high = num_classes or 2
    # Skewed labels so that some classes are missing from some images.
    pred = rng.choice(high, size=shape, p=np.linspace(2, 1, high) / np.linspace(2, 1, high).sum())
    target = rng.choice(high, size=shape)
    pred[0] = 0
    target[0] = 0  # one image with no foreground at all
    kw = {"num_classes": num_classes, "include_background": include_background}
    ref_dice, ref_iou = _reference(pred, target, empty_value=empty_value, **kw)
    assert np.isnan(ref_dice).any() == math.isnan(empty_value)  # image 0 is both-empty
    kw["spatial_dims"] = len(shape) - 1
    if not math.isnan(empty_value):
        kw["empty_value"] = empty_value
    p, t = torch.from_numpy(pred), torch.from_numpy(target)
    dice = dice_score(p, t, reduction="none", **kw)
    iou = iou_score(p, t, reduction="none", **kw)
    if num_classes is None:
        dice, iou = dice[:, None], iou[:, None]
    # (NaN must match NaN: assert_allclose's equal_nan is on)
    np.testing.assert_allclose(dice.numpy(), ref_dice, rtol=1e-6)
    np.testing.assert_allclose(iou.numpy(), ref_iou, rtol=1e-6)
    # the mean averages each image's classes, then the images, leaving NaN entries out
    # (MONAI's and torchmetrics' order)
    for fn, ref in ((dice_score, ref_dice), (iou_score, ref_iou)):
        per_image = [np.nanmean(row) for row in ref if not np.isnan(row).all()]
        assert fn(p, t, **kw).item() == pytest.approx(np.mean(per_image), rel=1e-6)


# ------------------------------------------------------------------ properties

_shapes = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5)
_masks = hnp.arrays(np.bool_, _shapes)


@st.composite
def _pairs(draw, max_label=1):
    shape = draw(_shapes)
    labels = st.integers(0, max_label)
    return (
        torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=labels))),
        torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=labels))),
    )


_fast = settings(max_examples=40, deadline=None)


@_fast
@given(pair=_pairs(max_label=2), num_classes=st.sampled_from([None, 3]))
def test_scores_lie_in_unit_interval_and_are_symmetric(pair, num_classes):
    a, b = pair
    kw = {"num_classes": num_classes, "spatial_dims": a.dim() - 1, "reduction": "none"}
    for metric in (dice_score, iou_score):
        ab = metric(a, b, **kw)
        # NaN exactly where a class is absent from both (the default empty_value)
        labels = [None] if num_classes is None else [1, 2]
        absent = torch.stack(
            [
                ~((a != 0) | (b != 0) if c is None else (a == c) | (b == c)).flatten(1).any(1)
                for c in labels
            ],
            dim=-1,
        )
        assert torch.equal(ab.isnan(), absent.reshape(ab.shape))
        scored = ab[~ab.isnan()]
        assert ((scored >= 0) & (scored <= 1)).all()
        torch.testing.assert_close(ab, metric(b, a, **kw), rtol=0, atol=0, equal_nan=True)
        # with empty_value=1.0 (the old default) every entry is a score in [0, 1]
        ones = metric(a, b, empty_value=1.0, **kw)
        assert ((ones >= 0) & (ones <= 1)).all()
        assert torch.equal(ones, metric(b, a, empty_value=1.0, **kw))


@_fast
@given(mask=_masks)
def test_identity_scores_one(mask):
    x = torch.from_numpy(mask)
    s = {"spatial_dims": x.dim() - 1}
    nonempty = x.flatten(1).any(1)
    # identical non-empty images score 1; empty ones are NaN by default, left out of the mean
    for metric in (dice_score, iou_score):
        none = metric(x, x, reduction="none", **s)
        assert (none[nonempty] == 1.0).all() and none[~nonempty].isnan().all()
        mean = metric(x, x, **s).item()
        if nonempty.any():
            assert mean == 1.0
        else:
            assert math.isnan(mean)
    assert dice_score(x, x, empty_value=1.0, **s).item() == 1.0
    assert iou_score(x, x, empty_value=1.0, **s).item() == 1.0
    # also when the empty case counts as 0: identical non-empty images still score 1
    zeros = dice_score(x, x, empty_value=0.0, reduction="none", **s)
    assert (zeros == nonempty.float()).all()


@_fast
@given(pair=_pairs(), seed=st.integers(0, 2**16))
def test_mean_is_invariant_to_batch_order(pair, seed):
    a, b = pair
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))
    s = {"spatial_dims": a.dim() - 1}
    for metric in (dice_score, iou_score):
        for kw in ({}, {"empty_value": 1.0}):
            # (NaN, when every image is empty in both, must stay NaN)
            assert metric(a[perm], b[perm], **s, **kw).item() == pytest.approx(
                metric(a, b, **s, **kw).item(), abs=1e-6, nan_ok=True
            )
