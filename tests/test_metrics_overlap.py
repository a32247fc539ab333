"""Overlap metrics beyond the Dice/IoU basics of test_metrics.py: MONAI and MedPy as
references, exact confusion counts, mean IoU, pixel accuracy, precision/recall edge cases,
NumPy/torch input kinds, device behaviour (no host synchronisation), properties."""

import math
from typing import NamedTuple

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

from attnunet.metrics import (
    confusion_counts,
    dice_score,
    iou_score,
    mean_iou,
    pixel_accuracy,
    precision_score,
    recall_score,
)

NAN = float("nan")
SCORES = (dice_score, iou_score, mean_iou, precision_score, recall_score, pixel_accuracy)
ALL = (*SCORES, confusion_counts)


@pytest.fixture(scope="module")
def monai_metrics():
    return pytest.importorskip("monai.metrics")


@pytest.fixture(scope="module")
def medpy_binary():
    return pytest.importorskip("medpy.metric.binary")


# ------------------------------------------------------------------ test data

SPATIAL = {2: (20, 24), 3: (8, 10, 12)}
BATCH = 5
N_CLASSES = 4


def _blobs(rng, shape, num_classes):
    """A label map of a few balls with random centres, radii and foreground classes."""
    grid = np.indices(shape, dtype=np.float64)
    label = np.zeros(shape, dtype=np.int64)
    for _ in range(int(rng.integers(2, 6))):
        centre = rng.uniform(0, shape)
        radius = rng.uniform(1.0, max(shape) / 3)
        inside = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2
        label[inside] = rng.integers(1, num_classes)
    return label


def _relabel(rng, label, num_classes, rate):
    """``label`` with a fraction ``rate`` of its voxels set to random classes."""
    out = label.copy()
    flip = rng.random(label.shape) < rate
    out[flip] = rng.integers(0, num_classes, int(flip.sum()))
    return out


def _label_batch(kind, dims, num_classes, seed):
    """pred and target label maps ``(B, *spatial)``, int64.

    ``"random"``: skewed i.i.d. labels, pred = target with 30 % relabelled.
    ``"blobs"``: balls, pred = target shifted by up to 2 voxels per axis, 5 % relabelled.
    Images 0-2 hold the edge cases: 0 has an empty prediction (all background), 1 an
    empty target, 2 is empty in both.
    """
    rng = np.random.default_rng(seed)
    shape = SPATIAL[dims]
    probs = np.array([0.55, 0.3, 0.14, 0.01][:num_classes])
    targets, preds = [], []
    for _ in range(BATCH):
        if kind == "random":
            t = rng.choice(num_classes, size=shape, p=probs / probs.sum())
            p = _relabel(rng, t, num_classes, 0.3)
        else:
            t = _blobs(rng, shape, num_classes)
            shift = tuple(int(s) for s in rng.integers(-2, 3, dims))
            p = _relabel(rng, np.roll(t, shift, axis=tuple(range(dims))), num_classes, 0.05)
        targets.append(t)
        preds.append(p)
    pred, target = np.stack(preds), np.stack(targets)
    pred[0] = 0
    target[1] = 0
    pred[2] = target[2] = 0
    return pred, target


class _Case(NamedTuple):
    pred: np.ndarray  # our input
    target: np.ndarray
    kw: dict  # our input form: {}, {"num_classes": C} or {"one_hot": True}, + spatial_dims
    y_pred: torch.Tensor  # MONAI's input: (B, C, *spatial) float64 masks
    y: torch.Tensor
    binary: bool


FORMS = ("binary", "multiclass", "onehot", "multilabel")


def _case(form, kind, dims, seed=0):
    """One batch in one of our input forms, and the same data as MONAI wants it."""
    if form == "multilabel":  # three independent, overlapping channels
        pairs = [_label_batch(kind, dims, 2, seed + c) for c in range(3)]
        pred = np.stack([p for p, _ in pairs], axis=1) != 0
        target = np.stack([t for _, t in pairs], axis=1) != 0
        y_pred, y = torch.from_numpy(pred).double(), torch.from_numpy(target).double()
        return _Case(pred, target, {"one_hot": True, "spatial_dims": dims}, y_pred, y, False)
    pred, target = _label_batch(kind, dims, N_CLASSES, seed)
    if form == "binary":  # label maps used as instance maps: every non-zero is foreground
        y_pred = torch.from_numpy(pred != 0)[:, None].double()
        y = torch.from_numpy(target != 0)[:, None].double()
        return _Case(pred, target, {"spatial_dims": dims}, y_pred, y, True)
    # MONAI takes one-hot masks; convert the label maps with F.one_hot.
    oh_pred = F.one_hot(torch.from_numpy(pred), N_CLASSES).movedim(-1, 1)
    oh_target = F.one_hot(torch.from_numpy(target), N_CLASSES).movedim(-1, 1)
    y_pred, y = oh_pred.double(), oh_target.double()
    if form == "multiclass":
        return _Case(
            pred, target, {"num_classes": N_CLASSES, "spatial_dims": dims}, y_pred, y, False
        )
    oh_pred, oh_target = oh_pred.numpy().astype(np.uint8), oh_target.numpy().astype(np.uint8)
    return _Case(oh_pred, oh_target, {"one_hot": True, "spatial_dims": dims}, y_pred, y, False)


def _ours(metric, case, **kw):
    """``metric`` on the case's NumPy input (so in float64), as ``(B, K)`` for "none"."""
    out = np.asarray(metric(case.pred, case.target, **case.kw, **kw))
    return out[:, None] if case.binary and kw.get("reduction") == "none" else out


# (form, kind, dims, include_background); include_background means nothing to binary input.
CASES = [
    (form, kind, dims, ib)
    for form in FORMS
    for kind in ("random", "blobs")
    for dims in (2, 3)
    for ib in (False, True)
    if not (form == "binary" and ib)
]
CASE_IDS = [f"{f}-{k}-{d}d-{'bg' if ib else 'nobg'}" for f, k, d, ib in CASES]
# mean_iou scores background and foreground of binary input by default: keep those cases.
MIOU_CASES = [*CASES, *((f, k, d, True) for f, k, d, ib in CASES if f == "binary")]
MIOU_IDS = [f"{f}-{k}-{d}d-{'bg' if ib else 'nobg'}" for f, k, d, ib in MIOU_CASES]


def _monai_bg(case, include_background):
    # MONAI's include_background=False drops channel 0, which is the only channel of
    # binary input; we score that channel as foreground. Keep it for MONAI.
    return include_background or case.binary


# ------------------------------------------------------------------ against MONAI


@pytest.mark.parametrize(("form", "kind", "dims", "include_background"), CASES, ids=CASE_IDS)
def test_dice_iou_match_monai(monai_metrics, form, kind, dims, include_background):
    case = _case(form, kind, dims)
    bg = _monai_bg(case, include_background)
    none = {"reduction": "none", "include_background": include_background}
    # ignore_empty=False: both empty -> 1, empty target with a prediction -> 0. That is
    # empty_value=1.0 for us (one side empty is 0), so every entry must agree.
    one = {"empty_value": 1.0, **none}
    dice, iou = _ours(dice_score, case, **one), _ours(iou_score, case, **one)
    assert ((dice > 0) & (dice < 1)).any()  # something other than the edge cases

    ref_dice = monai_metrics.compute_dice(
        case.y_pred, case.y, include_background=bg, ignore_empty=False
    )
    ref_iou = monai_metrics.compute_iou(
        case.y_pred, case.y, include_background=bg, ignore_empty=False
    )
    # MONAI's Dice of single-channel input is computed in float32 (it compares the channel
    # with a class index, and 2.0 * an int64 sum is float32); all else here is float64.
    dice_tol = 1e-6 if case.binary else 1e-12
    np.testing.assert_allclose(dice, ref_dice.numpy(), rtol=dice_tol, atol=0)
    np.testing.assert_allclose(iou, ref_iou.numpy(), rtol=1e-12, atol=0)

    # ignore_empty=True (MONAI's default): NaN wherever the target is empty, whatever the
    # prediction; where the target is non-empty the scores must agree.
    ref_dice = monai_metrics.compute_dice(case.y_pred, case.y, include_background=bg).numpy()
    ref_iou = monai_metrics.compute_iou(case.y_pred, case.y, include_background=bg).numpy()
    first = 0 if bg or case.y.shape[1] == 1 else 1
    has_target = case.y[:, first:].flatten(2).sum(-1).numpy() > 0
    has_pred = case.y_pred[:, first:].flatten(2).sum(-1).numpy() > 0
    assert np.array_equal(~np.isnan(ref_dice), has_target)
    np.testing.assert_allclose(dice[has_target], ref_dice[has_target], rtol=dice_tol, atol=0)
    np.testing.assert_allclose(iou[has_target], ref_iou[has_target], rtol=1e-12, atol=0)
    # Our default (empty_value NaN) is NaN only where both sides are empty (a subset of
    # MONAI's NaN), and agrees with empty_value=1.0 everywhere else.
    default_dice, default_iou = _ours(dice_score, case, **none), _ours(iou_score, case, **none)
    both_empty = ~has_target & ~has_pred
    assert both_empty.any()
    for ours, explicit in ((default_dice, dice), (default_iou, iou)):
        assert np.array_equal(np.isnan(ours), both_empty)
        np.testing.assert_array_equal(ours[~both_empty], explicit[~both_empty])

    # The class API with reduction="mean" (no NaN with ignore_empty=False, so MONAI's
    # two-step mean over classes then images equals our mean over everything).
    mean = {"include_background": include_background, "empty_value": 1.0}
    for metric, ref in (
        (dice_score, monai_metrics.DiceMetric(include_background=bg, ignore_empty=False)),
        (iou_score, monai_metrics.MeanIoU(include_background=bg, ignore_empty=False)),
    ):
        ref(case.y_pred, case.y)
        assert _ours(metric, case, **mean) == pytest.approx(ref.aggregate().item(), rel=1e-6)


@pytest.mark.parametrize(("form", "kind", "dims", "include_background"), CASES, ids=CASE_IDS)
def test_confusion_metrics_match_monai(monai_metrics, form, kind, dims, include_background):
    case = _case(form, kind, dims)
    bg = _monai_bg(case, include_background)
    cm = monai_metrics.get_confusion_matrix(case.y_pred, case.y, include_background=bg)
    # MONAI stacks (tp, fp, tn, fn) in float32; counts this small are exact in float32.
    counts = confusion_counts(
        case.pred, case.target, include_background=include_background, **case.kw
    )
    ours = torch.stack([counts.tp, counts.fp, counts.tn, counts.fn], dim=-1)
    assert torch.equal(ours, cm.long())
    # Ratios from the exact counts in float64, so both sides work at the same precision.
    cm = cm.double()

    # MONAI returns NaN whenever a denominator is 0: precision with an empty prediction,
    # sensitivity with an empty target. That is empty_value = zero_division = NaN for us.
    nans = {"empty_value": NAN, "zero_division": NAN, "include_background": include_background}
    for name, metric in (("precision", precision_score), ("sensitivity", recall_score)):
        ref = monai_metrics.compute_confusion_matrix_metric(name, cm).numpy()
        ours = _ours(metric, case, reduction="none", **nans)
        assert np.isnan(ref).any() and not np.isnan(ref).all()
        np.testing.assert_allclose(ours, ref, rtol=1e-12, atol=0, equal_nan=True)
    # ... and with MONAI's NaN entries mapped to our defaults: both empty stays NaN
    # (empty_value), an empty prediction alone becomes 0.0 (zero_division).
    pred_empty = (cm[..., 0] + cm[..., 1] == 0).numpy()
    target_empty = (cm[..., 0] + cm[..., 3] == 0).numpy()
    ref = monai_metrics.compute_confusion_matrix_metric("precision", cm).numpy()
    ref[pred_empty & ~target_empty] = 0.0
    none = {"reduction": "none", "include_background": include_background}
    assert np.array_equal(np.isnan(ref), pred_empty & target_empty)
    np.testing.assert_allclose(
        _ours(precision_score, case, **none), ref, rtol=1e-12, atol=0, equal_nan=True
    )
    # ... and with empty_value=1.0: both empty becomes 1.0.
    ref[pred_empty & target_empty] = 1.0
    np.testing.assert_allclose(
        _ours(precision_score, case, empty_value=1.0, **none), ref, rtol=1e-12, atol=0
    )

    # Means. MONAI's "mean" averages each image's non-NaN classes, then the images, as
    # ours does (a flat mean over all non-NaN entries differs when NaN counts differ).
    ref_metric = monai_metrics.ConfusionMatrixMetric(
        include_background=bg,
        metric_name=("precision", "sensitivity"),
        compute_sample=True,
        reduction="mean",
    )
    ref_metric(case.y_pred, case.y)
    for ref_mean, metric in zip(
        ref_metric.aggregate(), (precision_score, recall_score), strict=True
    ):
        assert _ours(metric, case, **nans) == pytest.approx(ref_mean.item(), rel=1e-6)
    # Counts pooled over the batch before dividing ("micro" per class), from our counts.
    pooled = monai_metrics.ConfusionMatrixMetric(
        include_background=bg, metric_name="precision", reduction="sum_batch"
    )
    pooled(case.y_pred, case.y)
    tp, fp = counts.tp.sum(0).double(), counts.fp.sum(0).double()
    ours = torch.where(tp + fp > 0, tp / (tp + fp), NAN)
    torch.testing.assert_close(ours, pooled.aggregate()[0].double(), equal_nan=True)

    # Accuracy. MONAI's is per class, (tp + tn) / N. Per channel it is our pixel accuracy
    # of that channel alone.
    acc = monai_metrics.compute_confusion_matrix_metric("accuracy", cm).numpy()
    for k in range(acc.shape[1]):
        c = k + (0 if bg or case.y.shape[1] == 1 else 1)
        if case.binary:
            p, t, kw = case.pred, case.target, {}
        elif case.kw.get("one_hot"):
            p, t, kw = case.pred[:, c : c + 1], case.target[:, c : c + 1], {"one_hot": True}
        else:
            p, t, kw = case.pred == c, case.target == c, {}
        kw["spatial_dims"] = dims
        np.testing.assert_allclose(
            pixel_accuracy(p, t, reduction="none", **kw), acc[:, k], rtol=1e-12
        )
    # For a label map with every class scored, each wrong voxel is one fp (its predicted
    # class) and one fn (its true class): sum_c (1 - acc_c) = 2 * wrong / N, so
    # pixel accuracy = 1 - wrong / N = 1 - C / 2 * (1 - mean_c acc_c).
    if form in ("multiclass", "onehot") and include_background:
        expected = 1 - N_CLASSES / 2 * (1 - acc.mean(axis=1))
        ours = _ours(pixel_accuracy, case, reduction="none")
        np.testing.assert_allclose(ours, expected, rtol=1e-12)


@pytest.mark.parametrize(("form", "kind", "dims", "include_background"), MIOU_CASES, ids=MIOU_IDS)
def test_mean_iou_matches_monai(monai_metrics, form, kind, dims, include_background):
    case = _case(form, kind, dims)
    if case.binary:
        # Binary input is scored as background and foreground: give MONAI both channels.
        y_pred = torch.cat([1 - case.y_pred, case.y_pred], dim=1)
        y = torch.cat([1 - case.y, case.y], dim=1)
    else:
        y_pred, y = case.y_pred, case.y
    ref = monai_metrics.compute_iou(
        y_pred, y, include_background=include_background, ignore_empty=False
    )
    # MONAI scores a class absent from both sides 1; mean IoU leaves it out: make it NaN,
    # then MONAI's own "mean" (over classes per image, then over images, NaN left out at
    # both steps) is the mean IoU convention.
    first = 0 if include_background else 1
    absent = (y_pred[:, first:] + y[:, first:]).flatten(2).sum(-1) == 0
    ref = ref.masked_fill(absent, NAN)
    ours = mean_iou(
        case.pred, case.target, reduction="none", include_background=include_background, **case.kw
    )
    per_image = np.array([np.nan if np.isnan(r).all() else np.nanmean(r) for r in ref.numpy()])
    np.testing.assert_allclose(ours, per_image, rtol=1e-12, equal_nan=True)
    # (do_metric_reduction works in float32, hence the looser tolerance for the mean.)
    ref_mean, _ = monai_metrics.do_metric_reduction(ref.clone(), "mean")
    ours = _ours(mean_iou, case, include_background=include_background)
    assert ours == pytest.approx(ref_mean.item(), rel=1e-6)


# ------------------------------------------------------------------ against MedPy


@pytest.mark.parametrize("kind", ["random", "blobs"])
@pytest.mark.parametrize("dims", [2, 3])
def test_binary_matches_medpy_per_image(medpy_binary, kind, dims):
    # Instance-like label maps: MedPy, like us, counts every non-zero voxel as foreground.
    pred, target = _label_batch(kind, dims, N_CLASSES, seed=7)
    # MedPy's conventions for 0 / 0: dc and jc fall back to 1.0 (empty_value=1.0 for us;
    # our default is NaN), precision (recall) to 0.0 whenever the prediction (target) is
    # empty, both-empty included, which is empty_value = zero_division = 0.0 for us. MedPy catches
    # ZeroDivisionError to fall back, but with recent NumPy (2.x here) count_nonzero returns
    # np.int64, and dc, precision and recall divide it by 0.0 into NaN instead (jc divides
    # Python floats and still gives 1.0). So on the undefined entries MedPy may give NaN or
    # its fallback, and ours must give the fallback; everywhere else the values must agree.
    zeros = {"empty_value": 0.0, "zero_division": 0.0, "reduction": "none", "spatial_dims": dims}
    ones = {"empty_value": 1.0, "reduction": "none", "spatial_dims": dims}
    p_empty = ~pred.reshape(BATCH, -1).any(1)
    t_empty = ~target.reshape(BATCH, -1).any(1)
    assert p_empty.any() and t_empty.any() and (p_empty & t_empty).any()
    # our default leaves both-empty images out (NaN) and otherwise agrees with empty_value=1.0
    for metric in (dice_score, iou_score):
        default = metric(pred, target, reduction="none", spatial_dims=dims)
        assert np.array_equal(np.isnan(default), p_empty & t_empty)
        np.testing.assert_array_equal(
            default[~(p_empty & t_empty)], metric(pred, target, **ones)[~(p_empty & t_empty)]
        )
    checks = [
        ("dc", dice_score(pred, target, **ones), p_empty & t_empty, 1.0),
        ("jc", iou_score(pred, target, **ones), p_empty & t_empty, 1.0),
        ("precision", precision_score(pred, target, **zeros), p_empty, 0.0),
        ("recall", recall_score(pred, target, **zeros), t_empty, 0.0),
    ]
    for name, ours, undefined, fallback in checks:
        with np.errstate(divide="ignore", invalid="ignore"):
            ref = np.array(
                [getattr(medpy_binary, name)(p, t) for p, t in zip(pred, target, strict=True)]
            )
        assert not np.isnan(ref[~undefined]).any()
        np.testing.assert_allclose(
            ours[~undefined], ref[~undefined], rtol=1e-12, atol=0, err_msg=name
        )
        assert ((ref[undefined] == fallback) | np.isnan(ref[undefined])).all(), name
        assert (ours[undefined] == fallback).all(), name


# ------------------------------------------------------------------ confusion counts


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("include_background", [False, True])
def test_confusion_counts_match_numpy_recount(form, include_background):
    case = _case(form, "blobs", 2, seed=3)
    if form == "binary":
        p, t = (case.pred != 0)[:, None], (case.target != 0)[:, None]
    elif form == "multiclass":
        classes = np.arange(N_CLASSES).reshape(1, -1, 1, 1)
        p, t = case.pred[:, None] == classes, case.target[:, None] == classes
    else:
        p, t = case.pred != 0, case.target != 0
    if not include_background and not case.binary:
        p, t = p[:, 1:], t[:, 1:]
    axes = (2, 3)
    expected = {
        "tp": np.logical_and(p, t).sum(axes),
        "fp": np.logical_and(p, ~t).sum(axes),
        "fn": np.logical_and(~p, t).sum(axes),
        "tn": np.logical_and(~p, ~t).sum(axes),
    }
    for inputs in (
        (case.pred, case.target),
        (torch.from_numpy(case.pred), torch.from_numpy(case.target)),
    ):
        counts = confusion_counts(*inputs, include_background=include_background, **case.kw)
        for name, value in expected.items():
            got = getattr(counts, name)
            assert isinstance(got, torch.Tensor) and got.dtype == torch.int64
            np.testing.assert_array_equal(got.numpy(), value, err_msg=name)
        total = counts.tp + counts.fp + counts.fn + counts.tn
        assert (total == math.prod(SPATIAL[2])).all()


def test_confusion_counts_hand_computed_3d_label_map():
    # (1, 2, 1, 3) label map, classes 0..2, voxels in order:
    #   pred   = 0 1 1 | 2 2 0
    #   target = 0 1 2 | 2 0 0
    # class 1: P = {1, 2}, T = {1}    -> tp 1, fp 1, fn 0, tn 6 - 2 = 4
    # class 2: P = {3, 4}, T = {2, 3} -> tp 1, fp 1, fn 1, tn 6 - 3 = 3
    pred = torch.tensor([0, 1, 1, 2, 2, 0]).view(1, 2, 1, 3)
    target = torch.tensor([0, 1, 2, 2, 0, 0]).view(1, 2, 1, 3)
    counts = confusion_counts(pred, target, num_classes=3, spatial_dims=3)
    assert counts.tp.tolist() == [[1, 1]]
    assert counts.fp.tolist() == [[1, 1]]
    assert counts.fn.tolist() == [[0, 1]]
    assert counts.tn.tolist() == [[4, 3]]
    # with background: class 0: P = {0, 5}, T = {0, 4, 5} -> tp 2, fp 0, fn 1, tn 3
    counts = confusion_counts(pred, target, num_classes=3, spatial_dims=3, include_background=True)
    assert counts.tp[:, 0].tolist() == [2] and counts.fn[:, 0].tolist() == [1]
    assert counts.tn[:, 0].tolist() == [3] and counts.fp[:, 0].tolist() == [0]


# ------------------------------------------------------------------ mean IoU

# Two 2x4 label maps, classes 0..3.
#   image A  pred      target        image B  pred      target
#            0 0 1 1   0 1 1 1                3 0 0 0   0 0 0 0
#            0 2 2 2   0 0 2 2                0 0 0 0   0 0 0 3
# Image A (row-major positions 0..7):
#   class 0: P = {0, 1, 4}, T = {0, 4, 5}:  inter {0, 4} = 2, union 4   -> IoU 1/2
#   class 1: P = {2, 3},    T = {1, 2, 3}:  inter 2, union 3            -> IoU 2/3
#   class 2: P = {5, 6, 7}, T = {6, 7}:     inter 2, union 3            -> IoU 2/3
#   class 3: absent from both                                           -> left out
#   mean IoU A = (1/2 + 2/3 + 2/3) / 3 = (11/6) / 3 = 11/18
# Image B:
#   class 0: P = all but 0, T = all but 7:  inter 6, union 8            -> IoU 3/4
#   class 3: P = {0}, T = {7}:              inter 0, union 2            -> IoU 0
#   classes 1, 2 absent                                                 -> left out
#   mean IoU B = (3/4 + 0) / 2 = 3/8
MIOU_PRED = torch.tensor([[[0, 0, 1, 1], [0, 2, 2, 2]], [[3, 0, 0, 0], [0, 0, 0, 0]]])
MIOU_TARGET = torch.tensor([[[0, 1, 1, 1], [0, 0, 2, 2]], [[0, 0, 0, 0], [0, 0, 0, 3]]])


def test_mean_iou_hand_computed_label_map():
    s2 = {"spatial_dims": 2}
    out = mean_iou(MIOU_PRED, MIOU_TARGET, num_classes=4, reduction="none", **s2)
    assert out.tolist() == pytest.approx([11 / 18, 3 / 8])
    # mean over images: (11/18 + 3/8) / 2 = (44/72 + 27/72) / 2 = 71/144
    assert mean_iou(MIOU_PRED, MIOU_TARGET, num_classes=4, **s2).item() == pytest.approx(71 / 144)
    # iou_score with empty_value=1.0 instead scores absent classes 1.0:
    # A = (1/2 + 2/3 + 2/3 + 1) / 4 = 17/24, not 11/18.
    kw = {"num_classes": 4, "include_background": True, "reduction": "none", **s2}
    iou = iou_score(MIOU_PRED, MIOU_TARGET, empty_value=1.0, **kw)
    assert iou[0].mean().item() == pytest.approx(17 / 24)
    # With its default (NaN for absent classes) the per-image mean over the scored classes
    # is mean IoU.
    iou = iou_score(MIOU_PRED, MIOU_TARGET, **kw)
    assert iou[0, 3].isnan() and iou[1, 1:3].isnan().all()
    assert iou.nanmean(dim=1).tolist() == pytest.approx([11 / 18, 3 / 8])
    # The same as one-hot masks.
    oh_pred = F.one_hot(MIOU_PRED, 4).movedim(-1, 1)
    oh_target = F.one_hot(MIOU_TARGET, 4).movedim(-1, 1)
    out = mean_iou(oh_pred, oh_target, one_hot=True, reduction="none", **s2)
    assert out.tolist() == pytest.approx([11 / 18, 3 / 8])


def test_mean_iou_without_background_and_all_absent_image():
    # Without background: A = (2/3 + 2/3) / 2 = 2/3, B = 0 / 1 = 0.
    # Image C is all background in both: no scored class is present, so its mean is NaN
    # and it is left out of the batch mean: (2/3 + 0) / 2 = 1/3.
    pred = torch.cat([MIOU_PRED, torch.zeros_like(MIOU_PRED[:1])])
    target = torch.cat([MIOU_TARGET, torch.zeros_like(MIOU_TARGET[:1])])
    kw = {"num_classes": 4, "include_background": False, "spatial_dims": 2}
    out = mean_iou(pred, target, reduction="none", **kw)
    assert out[:2].tolist() == pytest.approx([2 / 3, 0.0])
    assert math.isnan(out[2].item())
    assert mean_iou(pred, target, **kw).item() == pytest.approx(1 / 3)
    # with background, image C has class 0 only, IoU 1: (11/18 + 3/8 + 1) / 3
    full = mean_iou(pred, target, num_classes=4, spatial_dims=2).item()
    assert full == pytest.approx((11 / 18 + 3 / 8 + 1) / 3)


def test_mean_iou_binary_scores_background_and_foreground():
    # One 2x3 mask (positions 0..5):
    #   pred   1 1 0    target  0 1 1
    #          0 0 0            0 0 0
    # foreground: P = {0, 1}, T = {1, 2}: inter 1, union 3 -> 1/3
    # background: P = {2, 3, 4, 5}, T = {0, 3, 4, 5}: inter 3, union 5 -> 3/5
    # mean IoU = (1/3 + 3/5) / 2 = (5/15 + 9/15) / 2 = 7/15
    pred = np.array([[[1, 1, 0], [0, 0, 0]]])
    target = np.array([[[0, 1, 1], [0, 0, 0]]])
    s2 = {"spatial_dims": 2}
    assert mean_iou(pred, target, **s2) == pytest.approx(7 / 15)
    # instance ids and bool masks are the same masks
    assert mean_iou(pred * 5, target.astype(bool) * 9, **s2) == pytest.approx(7 / 15)
    assert mean_iou(pred.astype(bool), target.astype(bool), **s2) == pytest.approx(7 / 15)
    # iou_score on the same input scores only the foreground: 1/3
    assert iou_score(pred, target, **s2) == pytest.approx(1 / 3)
    # include_background=False keeps the foreground only
    assert mean_iou(pred, target, include_background=False, **s2) == pytest.approx(1 / 3)
    # empty masks: background IoU 1, foreground absent -> 1; all foreground: likewise 1.
    empty = np.zeros_like(pred)
    assert mean_iou(empty, empty, **s2) == 1.0
    assert mean_iou(empty + 1, empty + 1, **s2) == 1.0
    # a mask against its complement: both classes present, IoU 0 each
    assert mean_iou(pred, 1 - pred, **s2) == 0.0


# ------------------------------------------------------------------ pixel accuracy


def test_pixel_accuracy_hand_computed():
    # 2x3 label map, classes 0..2: pred 0 1 2 / 2 2 0, target 0 1 1 / 2 0 0:
    # 4 of 6 equal (positions 0, 1, 3, 5) -> 2/3. Binary (non-zero): pred 0 1 1 / 1 1 0,
    # target 0 1 1 / 1 0 0: 5 of 6 agree -> 5/6.
    pred = torch.tensor([[[0, 1, 2], [2, 2, 0]]])
    target = torch.tensor([[[0, 1, 1], [2, 0, 0]]])
    s2 = {"spatial_dims": 2}
    assert pixel_accuracy(pred, target, num_classes=3, **s2).item() == pytest.approx(2 / 3)
    assert pixel_accuracy(pred, target, **s2).item() == pytest.approx(5 / 6)
    oh = F.one_hot(pred, 3).movedim(-1, 1), F.one_hot(target, 3).movedim(-1, 1)
    assert pixel_accuracy(*oh, one_hot=True, **s2).item() == pytest.approx(2 / 3)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dims", [2, 3])
def test_pixel_accuracy_matches_equality_mean(form, dims):
    case = _case(form, "blobs", dims, seed=11)
    if form == "binary":
        right = (case.pred != 0) == (case.target != 0)
    elif form == "multiclass":
        right = case.pred == case.target
    else:  # every channel must agree
        right = (case.pred == case.target).all(axis=1)
    expected = right.reshape(BATCH, -1).mean(axis=1)
    assert 0 < expected.min() < 1  # not trivially all right or all wrong
    ours = pixel_accuracy(case.pred, case.target, reduction="none", **case.kw)
    np.testing.assert_allclose(ours, expected, rtol=1e-12)
    assert pixel_accuracy(case.pred, case.target, **case.kw) == pytest.approx(
        expected.mean(), rel=1e-12
    )


# ------------------------------------------------------------------ precision / recall edge cases

# Four binary 1x3 images:
#   image  pred    target   |P|  |T|  tp   precision         recall
#   0      1 1 0   0 1 1    2    2    1    1/2               1/2
#   1      0 0 0   1 0 0    0    1    0    zero_division     0
#   2      1 0 0   0 0 0    1    0    0    0                 zero_division
#   3      0 0 0   0 0 0    0    0    0    empty_value       empty_value
PR_PRED = torch.tensor([[1, 1, 0], [0, 0, 0], [1, 0, 0], [0, 0, 0]])
PR_TARGET = torch.tensor([[0, 1, 1], [1, 0, 0], [0, 0, 0], [0, 0, 0]])


def test_precision_recall_edge_cases():
    s1 = {"spatial_dims": 1}
    kw = {"reduction": "none", "empty_value": 0.75, "zero_division": 0.25, **s1}
    assert precision_score(PR_PRED, PR_TARGET, **kw).tolist() == [0.5, 0.25, 0.0, 0.75]
    assert recall_score(PR_PRED, PR_TARGET, **kw).tolist() == [0.5, 0.0, 0.25, 0.75]
    # empty_value 1.0, zero_division 0.0 (default); mean = (1/2 + 0 + 0 + 1) / 4 = 3/8
    one = {"empty_value": 1.0, **s1}
    none = precision_score(PR_PRED, PR_TARGET, reduction="none", **one).tolist()
    assert none == [0.5, 0.0, 0.0, 1.0]
    assert precision_score(PR_PRED, PR_TARGET, **one).item() == pytest.approx(3 / 8)
    assert recall_score(PR_PRED, PR_TARGET, **one).item() == pytest.approx(3 / 8)
    # defaults: empty_value NaN (image 3 left out), zero_division 0.0;
    # mean = (1/2 + 0 + 0) / 3 = 1/6
    for metric in (precision_score, recall_score):
        none = metric(PR_PRED, PR_TARGET, reduction="none", **s1)
        assert none[:3].tolist() == [0.5, 0.0, 0.0] and none[3].isnan()
        assert metric(PR_PRED, PR_TARGET, **s1).item() == pytest.approx(1 / 6)


def test_precision_recall_nan_options_leave_entries_out():
    nans = {"empty_value": NAN, "zero_division": NAN, "spatial_dims": 1}
    prec = precision_score(PR_PRED, PR_TARGET, reduction="none", **nans)
    rec = recall_score(PR_PRED, PR_TARGET, reduction="none", **nans)
    assert prec[[0, 2]].tolist() == [0.5, 0.0] and prec[[1, 3]].isnan().all()
    assert rec[[0, 1]].tolist() == [0.5, 0.0] and rec[[2, 3]].isnan().all()
    # means over the non-NaN entries: (1/2 + 0) / 2 = 1/4 for both
    assert precision_score(PR_PRED, PR_TARGET, **nans).item() == pytest.approx(1 / 4)
    assert recall_score(PR_PRED, PR_TARGET, **nans).item() == pytest.approx(1 / 4)
    # only zero_division NaN (empty_value 1.0): precision (1/2 + 0 + 1) / 3 = 1/2
    only = {"zero_division": NAN, "empty_value": 1.0, "spatial_dims": 1}
    assert precision_score(PR_PRED, PR_TARGET, **only).item() == pytest.approx(1 / 2)
    # everything NaN: the mean is NaN
    assert precision_score(PR_PRED[3:], PR_TARGET[3:], **nans).isnan().item()
    # per class of a label map: pred 1 1 2, target 1 0 0 with classes 0..2:
    # class 1: P = {0, 1}, T = {0} -> precision 1/2, recall 1
    # class 2: P = {2}, T = {}     -> precision 0, recall zero_division (NaN: left out)
    pred, target = torch.tensor([[1, 1, 2]]), torch.tensor([[1, 0, 0]])
    assert precision_score(pred, target, num_classes=3, **nans).item() == pytest.approx(1 / 4)
    assert recall_score(pred, target, num_classes=3, **nans).item() == 1.0


# ------------------------------------------------------------------ input kinds and errors


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("form", ["binary", "multiclass", "onehot"])
def test_numpy_and_torch_give_the_same_numbers(metric, form):
    case = _case(form, "random", 2, seed=5)
    kw = case.kw
    tp, tt = torch.from_numpy(case.pred), torch.from_numpy(case.target)
    if metric is confusion_counts:
        # counts are int64 tensors for either input kind
        for a, b in zip(metric(case.pred, case.target, **kw), metric(tp, tt, **kw), strict=True):
            assert a.dtype == b.dtype == torch.int64 and torch.equal(a, b)
        return
    for reduction in ("mean", "none"):
        from_numpy = metric(case.pred, case.target, reduction=reduction, **kw)
        from_torch = metric(tp, tt, reduction=reduction, **kw)
        assert isinstance(from_torch, torch.Tensor) and from_torch.dtype == torch.float32
        if reduction == "mean":
            assert type(from_numpy) is np.float64
        else:
            assert isinstance(from_numpy, np.ndarray) and from_numpy.dtype == np.float64
        assert np.shape(from_numpy) == tuple(from_torch.shape)
        # float32 holds the float64 value to within half an ulp
        np.testing.assert_allclose(from_torch.numpy(), from_numpy, rtol=2**-24, atol=0)


def _int_dtypes(numpy):
    if numpy:
        return [np.uint8, np.int8, np.int16, np.int32, np.uint16, np.uint32, np.int64]
    return [torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64]


@pytest.mark.parametrize("metric", ALL)
@pytest.mark.parametrize("numpy", [True, False], ids=["numpy", "torch"])
def test_integer_and_bool_dtypes_agree(metric, numpy):
    pred, target = _label_batch("random", 2, 3, seed=9)
    classes = np.arange(3).reshape(1, 3, 1, 1)
    forms = [
        ({}, pred != 0, target != 0),  # bool masks
        ({"num_classes": 3}, pred, target),  # label maps
        ({"num_classes": 2}, pred == 1, target == 1),  # bool label maps
        ({"one_hot": True}, pred[:, None] == classes, target[:, None] == classes),
    ]

    def run(p, t, kw):
        if not numpy:
            p, t = (
                torch.from_numpy(np.ascontiguousarray(p)),
                torch.from_numpy(np.ascontiguousarray(t)),
            )
        out = metric(p, t, **kw)
        return [np.asarray(x) for x in out] if metric is confusion_counts else np.asarray(out)

    for kw, p, t in forms:
        kw = {**kw, "spatial_dims": 2}
        expected = run(p.astype(np.int64), t.astype(np.int64), kw)
        # as given: bool masks, int64 labels (NaN for image 2, empty in both, must match NaN)
        assert np.array_equal(run(p, t, kw), expected, equal_nan=True)
        for dtype in _int_dtypes(numpy):
            if numpy:
                p_, t_ = p.astype(dtype), t.astype(dtype)
            else:
                p_, t_ = (
                    torch.from_numpy(p.astype(np.int64)).to(dtype),
                    torch.from_numpy(t.astype(np.int64)).to(dtype),
                )
            got = metric(p_, t_, **kw)
            got = [np.asarray(x) for x in got] if metric is confusion_counts else np.asarray(got)
            np.testing.assert_array_equal(got, expected, err_msg=str(dtype))


@pytest.mark.parametrize("metric", ALL)
def test_invalid_inputs_raise(metric):
    mask = torch.tensor([[[1, 0], [1, 1]]])  # one 2 x 2 image
    s2 = {"spatial_dims": 2}
    # Probabilities (floats that are not whole numbers) are refused ...
    probs = mask * 0.6
    floats = (probs.float(), probs.half(), probs.double().numpy(), probs.numpy().astype(np.float32))
    # mean_iou's binary form is test_mean_iou_rejects_float_binary_input
    forms = [{"num_classes": 2}] if metric is mean_iou else [{}, {"num_classes": 2}]
    for x, kw in ((x, kw) for x in floats for kw in forms):
        with pytest.raises(TypeError, match="threshold"):
            metric(x, mask, **kw, **s2)
        with pytest.raises(TypeError, match="threshold"):
            metric(mask, x, **kw, **s2)
        with pytest.raises(TypeError, match="threshold"):
            metric(x[:, None], mask[:, None], one_hot=True, **s2)
    # ... while floats holding whole numbers are masks and label maps like any other.
    whole = (mask.float(), mask.half(), mask.double().numpy(), mask.numpy().astype(np.float32))
    for x, kw in ((x, kw) for x in whole for kw in forms):
        expected = metric(mask.numpy(), mask.numpy(), **kw, **s2)
        got = metric(x, mask.numpy() if isinstance(x, np.ndarray) else mask, **kw, **s2)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(expected))
    with pytest.raises(ValueError, match="same images"):
        metric(mask, mask[:, :1], **s2)
    with pytest.raises(ValueError, match="same images"):  # a batch of 1 against one of 2
        metric(mask.numpy(), np.concatenate([mask.numpy()] * 2), **s2)
    with pytest.raises(ValueError, match="needs 2, 3 or 4 axes"):
        metric(mask.numpy(), mask.numpy()[None, None], **s2)
    with pytest.raises(ValueError, match="not both"):
        metric(mask[:, None], mask[:, None], one_hot=True, num_classes=2, **s2)
    with pytest.raises(ValueError, match="outside"):
        metric(mask * 3, mask, num_classes=3, **s2)
    # no spatial axis left for 2 spatial dims; and no spatial_dims at all
    with pytest.raises(ValueError, match="spatial"):
        metric(mask[0, 0], mask[0, 0], **s2)
    with pytest.raises(ValueError, match="pass spatial_dims"):
        metric(mask, mask)
    if metric is not confusion_counts:
        with pytest.raises(ValueError, match="reduction"):
            metric(mask, mask, reduction="sum", **s2)
    with pytest.raises(TypeError, match="numpy"):
        metric(mask.tolist(), mask, **s2)


@pytest.mark.parametrize("numpy", [False, True])
def test_mean_iou_rejects_float_binary_input(numpy):
    logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])
    target = torch.tensor([[[1, 0], [0, 0]]])
    if numpy:
        logits, target = logits.numpy(), target.numpy()
    with pytest.raises(TypeError, match="threshold"):
        mean_iou(logits, target, spatial_dims=2)


@pytest.mark.parametrize("metric", [dice_score, confusion_counts])
def test_big_endian_numpy_input(metric):
    pred = np.array([[1, 1, 0, 2]])
    target = np.array([[1, 0, 0, 2]])
    expected = metric(pred, target, num_classes=3, spatial_dims=1)
    got = metric(pred.astype(">i2"), target.astype(">i4"), num_classes=3, spatial_dims=1)
    assert np.array_equal(np.asarray(got), np.asarray(expected))


@pytest.mark.parametrize("check_labels", [True, False])
def test_torch_uint16_label_map(check_labels):
    pred = torch.tensor([[1, 1, 0, 2]])
    target = torch.tensor([[1, 0, 0, 2]])
    expected = dice_score(pred, target, num_classes=3, spatial_dims=1).item()
    got = dice_score(
        pred.to(torch.uint16),
        target.to(torch.uint16),
        num_classes=3,
        spatial_dims=1,
        check_labels=check_labels,
    )
    assert got.item() == expected


# ------------------------------------------------------------------ device, no synchronisation

# Ops that read a value back to the host (or must, to size their output).
SYNC_OPS = {
    torch.ops.aten._local_scalar_dense,  # .item(), int(), float(), bool()
    torch.ops.aten.is_nonzero,
    torch.ops.aten.equal,
    torch.ops.aten.nonzero,
    torch.ops.aten.masked_select,
    torch.ops.aten._unique2,
    torch.ops.aten.unique_consecutive,
}


class _OpRecorder(TorchDispatchMode):
    """Records every aten op with the devices of all tensors it reads or writes, and the
    ``device=`` it was asked for (``_to_copy``, factories)."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        devices = {
            x.device for x in tree_leaves((args, kwargs, out)) if isinstance(x, torch.Tensor)
        }
        if kwargs.get("device") is not None:
            devices.add(torch.device(kwargs["device"]))
        self.ops.append((func.overloadpacket, devices))
        return out


def _run_recorded(fn):
    with _OpRecorder() as rec:
        fn()
    return rec.ops


def _assert_stays_on(device, ops):
    assert ops, "nothing was recorded"
    synced = [str(op) for op, _ in ops if op in SYNC_OPS]
    assert not synced, f"host synchronisation: {synced}"
    # A copy to another device (aten._to_copy with device=..., aten.copy_ between devices)
    # or a tensor made elsewhere shows up as a second device.
    moved = [(str(op), devices) for op, devices in ops if devices != {device}]
    assert not moved, f"left {device}: {moved}"


DEVICE_FORMS = ("binary", "bool", "labels", "labels-bg", "onehot")


def _device_inputs(device, form):
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (2, 2, 6, 5), generator=g)  # two 2 x 6 x 5 volumes
    other = torch.randint(0, 3, (2, 2, 6, 5), generator=g)
    kw = {"spatial_dims": 3}
    if form == "bool":  # binary masks; check_labels has nothing to check
        labels, other = labels != 0, other != 0
    elif form == "onehot":  # nothing to check either
        labels, other = F.one_hot(labels, 3).movedim(-1, 1), F.one_hot(other, 3).movedim(-1, 1)
        kw = {"one_hot": True, "spatial_dims": 3, "check_labels": False}
    elif form in ("labels", "labels-bg"):
        kw = {
            "num_classes": 3,
            "check_labels": False,
            "include_background": form == "labels-bg",
            "spatial_dims": 3,
        }
    # "binary": the label maps as instance maps, every non-zero label is foreground
    return (labels.to(device), other.to(device)), kw


DEVICES = [
    "cpu",
    # Meta tensors hold no data: reading a value back or copying one out raises, so even
    # without an accelerator a host synchronisation or a trip through the CPU fails here.
    "meta",
    pytest.param(
        "cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    ),
]
DEVICE_CASES = [(metric, form) for metric in ALL for form in DEVICE_FORMS]


def _call(metric, inputs, kw, **extra):
    if metric is pixel_accuracy:
        kw = {k: v for k, v in kw.items() if k != "include_background"}
    return metric(*inputs, **kw, **extra)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("metric", "form"), DEVICE_CASES)
def test_metrics_never_synchronise_or_leave_the_device(device, metric, form):
    inputs, kw = _device_inputs(device, form)
    reductions = (
        [{}] if metric is confusion_counts else [{"reduction": r} for r in ("mean", "none")]
    )
    for red in reductions:
        if device == "cuda":
            previous = torch.cuda.get_sync_debug_mode()
            torch.cuda.set_sync_debug_mode("error")  # CUDA's own check, in addition
        try:
            ops = _run_recorded(lambda red=red: _call(metric, inputs, kw, **red))
        finally:
            if device == "cuda":
                torch.cuda.set_sync_debug_mode(previous)
        _assert_stays_on(inputs[0].device, ops)


@pytest.mark.parametrize("metric", ALL)
def test_check_labels_reads_back_and_the_recorder_sees_it(metric):
    (labels, other), kw = _device_inputs("cpu", "labels")
    # check_labels=True (the default) on a label map reads min and max back to the host,
    # in one .tolist(): the dispatch recorder does not see that on the CPU, but a meta
    # tensor holds no data, so the read fails there (the device test runs on meta too).
    meta = (labels.to("meta"), other.to("meta"))
    with pytest.raises(NotImplementedError, match="meta"):
        metric(*meta, num_classes=3, spatial_dims=3)
    metric(*meta, num_classes=3, spatial_dims=3, check_labels=False)
    # ... and the recorder sees a scalar read
    ops = _run_recorded(
        lambda: float(tree_leaves(_call(metric, (labels, other), kw))[0].flatten()[0])
    )
    assert torch.ops.aten._local_scalar_dense in {op for op, _ in ops}
    with pytest.raises(AssertionError, match="synchronisation"):
        _assert_stays_on(labels.device, ops)
    # ... and a copy to another device is caught as well.
    ops = _run_recorded(
        lambda: [x.to("meta") for x in tree_leaves(_call(metric, (labels, other), kw))]
    )
    with pytest.raises(AssertionError, match="left"):
        _assert_stays_on(labels.device, ops)


# ------------------------------------------------------------------ properties

_shapes = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5)


@st.composite
def _pairs(draw, max_label=2):
    shape = draw(_shapes)
    labels = st.integers(0, max_label)
    return (
        torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=labels))),
        torch.from_numpy(draw(hnp.arrays(np.int64, shape, elements=labels))),
    )


_fast = settings(max_examples=30, deadline=None)
_forms = st.sampled_from([{}, {"num_classes": 3}, {"num_classes": 3, "include_background": True}])


@_fast
@given(pair=_pairs(), kw=_forms)
def test_new_scores_lie_in_unit_interval(pair, kw):
    a, b = pair
    kw = {**kw, "spatial_dims": a.dim() - 1}
    counts = confusion_counts(a, b, **kw)
    absent = counts.tp + counts.fp + counts.fn == 0  # (B, K): a class in neither image
    for metric in (precision_score, recall_score, mean_iou, pixel_accuracy):
        args = {
            k: v
            for k, v in kw.items()
            if metric is not pixel_accuracy or k in ("num_classes", "spatial_dims")
        }
        # (mean_iou scores background here, so no image lacks a scored class: no NaN)
        out = metric(a, b, reduction="none", **args)
        if metric in (precision_score, recall_score):
            # NaN (the default empty_value) exactly where the class is absent from both
            assert torch.equal(out.isnan(), absent.reshape(out.shape)), metric.__name__
            scored = out[~out.isnan()]
            assert ((scored >= 0) & (scored <= 1)).all(), metric.__name__
            out = metric(a, b, reduction="none", empty_value=1.0, **args)
        assert ((out >= 0) & (out <= 1)).all(), metric.__name__


@_fast
@given(
    pair=_pairs(),
    kw=_forms,
    empty_value=st.sampled_from([1.0, 0.25, NAN]),
    zero_division=st.sampled_from([0.0, 0.5, NAN]),
)
def test_precision_is_recall_with_roles_swapped(pair, kw, empty_value, zero_division):
    a, b = pair
    kw = {**kw, "spatial_dims": a.dim() - 1}
    opts = {"empty_value": empty_value, "zero_division": zero_division, **kw}
    prec = precision_score(a, b, reduction="none", **opts)
    rec = recall_score(b, a, reduction="none", **opts)
    assert torch.equal(prec.isnan(), rec.isnan())
    assert torch.equal(prec.nan_to_num(-1), rec.nan_to_num(-1))
    # and the counts swap fp and fn
    ab, ba = confusion_counts(a, b, **kw), confusion_counts(b, a, **kw)
    assert torch.equal(ab.tp, ba.tp) and torch.equal(ab.tn, ba.tn)
    assert torch.equal(ab.fp, ba.fn) and torch.equal(ab.fn, ba.fp)


@_fast
@given(pair=_pairs(), kw=_forms)
def test_dice_is_harmonic_mean_of_precision_and_recall(pair, kw):
    a, b = pair
    kw = {**kw, "spatial_dims": a.dim() - 1}
    p = precision_score(a, b, reduction="none", **kw)
    r = recall_score(a, b, reduction="none", **kw)
    d = dice_score(a, b, reduction="none", **kw)
    hit = (p > 0) & (r > 0)
    torch.testing.assert_close(d[hit], (2 * p * r / (p + r))[hit])


@_fast
@given(x=_pairs().map(lambda pair: pair[0]), kw=_forms)
def test_identity_scores_one(x, kw):
    kw = {**kw, "spatial_dims": x.dim() - 1}
    counts = confusion_counts(x, x, **kw)
    absent = counts.tp == 0  # (B, K): a class absent from the image (from both sides)
    for metric in (precision_score, recall_score, mean_iou, pixel_accuracy):
        args = {
            k: v
            for k, v in kw.items()
            if metric is not pixel_accuracy or k in ("num_classes", "spatial_dims")
        }
        out = metric(x, x, reduction="none", **args)
        if metric in (precision_score, recall_score):
            # by default a class absent from both is NaN; every present one scores 1
            absent_ = absent.reshape(out.shape)
            assert torch.equal(out.isnan(), absent_), metric.__name__
            assert (out[~absent_] == 1).all(), metric.__name__
            out = metric(x, x, reduction="none", empty_value=1.0, **args)
        assert (out == 1).all(), metric.__name__
    assert (counts.fp == 0).all() and (counts.fn == 0).all()
    # identical non-empty images score 1 even when "both empty" counts as 0
    nonempty = counts.tp > 0
    prec = precision_score(x, x, reduction="none", empty_value=0.0, **kw)
    assert torch.equal(prec.reshape(nonempty.shape) == 1, nonempty)


@_fast
@given(pair=_pairs(), kw=_forms, seed=st.integers(0, 2**16))
def test_mean_is_invariant_to_batch_order(pair, kw, seed):
    a, b = pair
    kw = {**kw, "spatial_dims": a.dim() - 1}
    perm = torch.randperm(a.shape[0], generator=torch.Generator().manual_seed(seed))
    for metric in (precision_score, recall_score, mean_iou, pixel_accuracy):
        args = {
            k: v
            for k, v in kw.items()
            if metric is not pixel_accuracy or k in ("num_classes", "spatial_dims")
        }
        expected = metric(a, b, **args)
        got = metric(a[perm], b[perm], **args)
        torch.testing.assert_close(got, expected, equal_nan=True, atol=1e-6, rtol=0)
    counts, permuted = confusion_counts(a, b, **kw), confusion_counts(a[perm], b[perm], **kw)
    for x, y in zip(counts, permuted, strict=True):
        assert torch.equal(x[perm], y)


def test_pixel_accuracy_compares_labels_even_when_unchecked():
    # Labels 5 and 7 lie outside 0..2 and match no class mask; they still differ, so the
    # voxel is wrong. Voxels: (0, 0) right, (1, 1) right, (5, 7) wrong, (2, 2) right.
    pred = torch.tensor([[0, 1, 5, 2]])
    target = torch.tensor([[0, 1, 7, 2]])
    out = pixel_accuracy(pred, target, num_classes=3, spatial_dims=1, check_labels=False)
    assert out.item() == 0.75
