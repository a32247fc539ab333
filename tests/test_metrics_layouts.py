"""The metrics' input contract: every layout a MedPy, MONAI or torchmetrics user passes is
either scored as that library scores it or refused with a ValueError that names the
argument resolving it; classes absent from both sides are left out of the means."""

import functools
import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

from attnunet.metrics import (
    MetricAccumulator,
    assd,
    confusion_counts,
    dice_score,
    hausdorff_distance,
    hd95,
    iou_score,
    mean_iou,
    num_components,
    one_piece_fraction,
    pixel_accuracy,
    precision_score,
    recall_score,
    surface_metrics,
    surface_to_surface,
    v_info,
    v_rand,
)

medpy_binary = pytest.importorskip("medpy.metric.binary")
monai_metrics = pytest.importorskip("monai.metrics")
tm_segmentation = pytest.importorskip("torchmetrics.functional.segmentation")

EVERY_METRIC = [
    dice_score,
    iou_score,
    mean_iou,
    precision_score,
    recall_score,
    pixel_accuracy,
    confusion_counts,
    hausdorff_distance,
    hd95,
    assd,
    surface_to_surface,
    surface_metrics,
    v_rand,
    v_info,
]


def ellipse(shape, centre, radii):
    grids = np.ogrid[tuple(slice(0, n) for n in shape)]
    return sum(((g - c) / r) ** 2 for g, c, r in zip(grids, centre, radii, strict=True)) < 1


def ellipse_pair(dims):
    """The issue's cases: a (96, 96) ellipse pair, a (24, 40, 40) ellipsoid pair."""
    if dims == 2:
        return ellipse((96, 96), (48, 45), (30, 20)), ellipse((96, 96), (51, 47), (26, 23))
    return (
        ellipse((24, 40, 40), (12, 20, 19), (8, 14, 10)),
        ellipse((24, 40, 40), (11, 21, 21), (7, 12, 12)),
    )


def blobs(shape, seed, fraction=0.3):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), sigma=max(shape) / 6)
    return field > np.quantile(field, 1 - fraction)


def one_hot(labels, classes):
    """(B, *S) integer labels -> (B, C, *S) float one-hot, as MONAI's AsDiscrete makes it."""
    t = torch.as_tensor(labels).long()
    return torch.nn.functional.one_hot(t, classes).movedim(-1, 1).float()


def torchmetrics_dice(pred, target, classes, average="none"):
    """torchmetrics' Dice of (B, *S) label maps, background left out, as float64 NumPy."""
    return (
        tm_segmentation.dice_score(
            torch.as_tensor(pred),
            torch.as_tensor(target),
            num_classes=classes,
            include_background=False,
            average=average,
            input_format="index",
        )
        .double()
        .numpy()
    )


def monai_surface(pred, target, spacing=None):
    """MONAI's HD95 and ASSD of (B, C, *S) one-hot inputs, background channel included."""
    p, t = torch.as_tensor(pred).float(), torch.as_tensor(target).float()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hd = monai_metrics.compute_hausdorff_distance(
            p, t, include_background=True, percentile=95, spacing=spacing
        )
        sd = monai_metrics.compute_average_surface_distance(
            p, t, include_background=True, symmetric=True, spacing=spacing
        )
    return hd.double().numpy(), sd.double().numpy()


# --------------------------------------------------------------- MedPy: unbatched images


@pytest.mark.parametrize("dims", [2, 3])
def test_medpy_unbatched_image_scores_as_medpy(dims):
    p, t = ellipse_pair(dims)
    spacing = (0.7, 1.3) if dims == 2 else (2.5, 0.8, 0.8)
    assert float(dice_score(p, t, spatial_dims=dims)) == pytest.approx(medpy_binary.dc(p, t))
    assert float(iou_score(p, t, spatial_dims=dims)) == pytest.approx(medpy_binary.jc(p, t))
    assert float(precision_score(p, t, spatial_dims=dims)) == pytest.approx(
        medpy_binary.precision(p, t)
    )
    assert float(recall_score(p, t, spatial_dims=dims)) == pytest.approx(medpy_binary.recall(p, t))
    for fn, ref in (
        (lambda: hd95(p, t, spatial_dims=dims, spacing=spacing, convention="pooled"), "hd95"),
        (lambda: hausdorff_distance(p, t, spatial_dims=dims, spacing=spacing), "hd"),
        (lambda: assd(p, t, spatial_dims=dims, spacing=spacing), "assd"),
    ):
        expected = getattr(medpy_binary, ref)(p, t, voxelspacing=spacing)
        assert float(fn()) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("dims", [2, 3])
def test_unbatched_image_without_spatial_dims_is_refused_with_the_readings(dims):
    p, t = ellipse_pair(dims)
    for fn in EVERY_METRIC:
        with pytest.raises(ValueError, match="spatial_dims") as err:
            fn(p, t)
        message = str(err.value)
        assert str(list(p.shape)) in message
        assert f"spatial_dims={dims}: one unbatched image" in message
        assert f"spatial_dims={dims - 1}: a batch of {p.shape[0]}" in message
    for fn in (num_components, one_piece_fraction):
        with pytest.raises(ValueError, match="spatial_dims"):
            fn(p)


def test_the_issue_figures_are_now_medpys():
    # The issue measured Dice 0.836 and HD95 inf on this pair read as 96 1-D signals, and a
    # (D, H, W) volume scored slice by slice; with spatial_dims both equal MedPy.
    p, t = ellipse_pair(2)
    assert float(dice_score(p, t, spatial_dims=2)) == pytest.approx(medpy_binary.dc(p, t))
    assert math.isfinite(float(hd95(p, t, spatial_dims=2)))
    v, w = ellipse_pair(3)
    volume = float(dice_score(v, w, spatial_dims=3))
    slices = float(dice_score(v, w, spatial_dims=2))  # the old reading, still available
    assert volume == pytest.approx(medpy_binary.dc(v, w))
    assert abs(volume - slices) > 0.01


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dims=st.integers(1, 3),
    size=st.integers(5, 11),
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 3),
)
def test_every_binary_layout_equals_medpy_per_image(dims, size, seed, batch):
    shape = tuple(size + d for d in range(dims))
    preds = np.stack([blobs(shape, seed + 2 * i) for i in range(batch)])
    targets = np.stack([blobs(shape, seed + 2 * i + 1) for i in range(batch)])
    expected_dice = [medpy_binary.dc(p, t) for p, t in zip(preds, targets, strict=True)]
    expected_hd95 = [medpy_binary.hd95(p, t) for p, t in zip(preds, targets, strict=True)]
    layouts = {
        "(B, *S)": (preds, targets),
        "(B, 1, *S) bool": (preds[:, None], targets[:, None]),
        "(B, 1, *S) torch float 0/1": (
            torch.from_numpy(preds[:, None]).float(),
            torch.from_numpy(targets[:, None]).float(),
        ),
    }
    if batch == 1:
        layouts["(*S) unbatched"] = (preds[0], targets[0])
    for name, (p, t) in layouts.items():
        dice = np.asarray(dice_score(p, t, spatial_dims=dims, reduction="none"))
        hd = np.asarray(hd95(p, t, spatial_dims=dims, convention="pooled", reduction="none"))
        assert dice.shape == (batch,), name
        np.testing.assert_allclose(dice, expected_dice, rtol=1e-6, err_msg=name)
        np.testing.assert_allclose(hd, expected_hd95, rtol=1e-6, err_msg=name)


# -------------------------------------------------- thresholded model output (B, 1, *S)


@pytest.mark.parametrize("dims", [2, 3])
def test_thresholded_single_channel_output_equals_monai(dims):
    torch.manual_seed(dims)
    p, t = ellipse_pair(dims)
    logits = torch.where(torch.from_numpy(p), 2.0, -2.0)[None, None].repeat(2, 1, *[1] * dims)
    logits[1] = logits[1].flip(-1)
    target = torch.from_numpy(t)[None, None].repeat(2, 1, *[1] * dims)
    pred = logits > 0  # (B, 1, *S), what the float-input error message suggests
    expected_hd, expected_sd = monai_surface(pred, target)
    got = surface_metrics(
        pred, target, metrics=("hd95", "assd"), spatial_dims=dims, reduction="none"
    )
    np.testing.assert_allclose(got["hd95"].double().numpy(), expected_hd[:, 0], rtol=1e-6)
    np.testing.assert_allclose(got["assd"].double().numpy(), expected_sd[:, 0], rtol=1e-6)
    expected_dice = monai_metrics.compute_dice(
        pred.float(), target.float(), include_background=True
    )
    np.testing.assert_allclose(
        dice_score(pred, target, spatial_dims=dims, reduction="none").double().numpy(),
        expected_dice[:, 0].double().numpy(),
        rtol=1e-6,
    )
    # read as a deeper volume (the old behaviour) HD95 would be far smaller
    deeper = float(hd95(pred, target, spatial_dims=dims + 1))
    assert deeper < float(hd95(pred, target, spatial_dims=dims)) - 0.5


# ------------------------------------------------------ one-hot (B, C, *S), MONAI style


def multi_class_batch(dims, classes, batch, seed):
    shape = (14, 17, 11)[:dims]
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(2 * batch):
        field = ndimage.gaussian_filter(rng.random((classes, *shape)), sigma=2.0)
        labels.append(field.argmax(0))
    labels = np.stack(labels)
    return labels[:batch], labels[batch:]


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("include_background", [False, True])
def test_one_hot_equals_monai_and_torchmetrics(dims, include_background):
    pred, target = multi_class_batch(dims, 4, 2, seed=dims)
    p, t = one_hot(pred, 4), one_hot(target, 4)
    got = dice_score(
        p,
        t,
        spatial_dims=dims,
        one_hot=True,
        include_background=include_background,
        reduction="none",
    )
    # MONAI's ignore_empty=True also gives NaN for an empty target with a non-empty
    # prediction (a miss: 0 here, in torchmetrics and in nnU-Net), so take its
    # ignore_empty=False values and leave out the classes absent from both sides
    monai = monai_metrics.compute_dice(
        p, t, include_background=include_background, ignore_empty=False
    )
    first = 0 if include_background else 1
    absent = (p[:, first:].flatten(2).sum(-1) == 0) & (t[:, first:].flatten(2).sum(-1) == 0)
    monai[absent] = torch.nan
    torchmetrics = tm_segmentation.dice_score(
        p.long(),
        t.long(),
        num_classes=4,
        include_background=include_background,
        average="none",
        input_format="one-hot",
    )
    np.testing.assert_allclose(got.numpy(), monai.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.numpy(), torchmetrics.numpy(), rtol=1e-6)
    # the same data as label maps, with and without a channel axis
    for lp, lt in ((pred, target), (pred[:, None], target[:, None])):
        labels = dice_score(
            lp,
            lt,
            num_classes=4,
            spatial_dims=dims,
            include_background=include_background,
            reduction="none",
        )
        np.testing.assert_allclose(labels, got.double().numpy(), rtol=1e-6)
    # surface distances per class equal MONAI's where both sides are present (MONAI gives
    # NaN for HD95 but inf for ASSD when one side is empty; here both follow empty_pred and
    # empty_target)
    hd, sd = monai_surface(p, t)
    present = ((p.flatten(2).sum(-1) > 0) & (t.flatten(2).sum(-1) > 0)).numpy()
    hd[~present], sd[~present] = math.nan, math.nan
    out = surface_metrics(
        p,
        t,
        metrics=("hd95", "assd"),
        spatial_dims=dims,
        one_hot=True,
        include_background=include_background,
        empty_pred=math.nan,
        empty_target=math.nan,
        reduction="none",
    )
    first = 0 if include_background else 1
    np.testing.assert_allclose(out["hd95"].double().numpy(), hd[:, first:], rtol=1e-6)
    np.testing.assert_allclose(out["assd"].double().numpy(), sd[:, first:], rtol=1e-6)


@pytest.mark.parametrize("dims", [2, 3])
def test_one_hot_without_one_hot_is_refused(dims):
    pred, target = multi_class_batch(dims, 3, 2, seed=5)
    p, t = one_hot(pred, 3), one_hot(target, 3)
    for fn in EVERY_METRIC:
        with pytest.raises(ValueError, match="one_hot=True") as err:
            fn(p, t, spatial_dims=dims)
        assert "3 channel(s)" in str(err.value)
    # without spatial_dims the message offers the one-hot reading too
    with pytest.raises(ValueError, match=f"spatial_dims={dims} with one_hot=True"):
        dice_score(p, t)


def test_one_hot_needs_its_batch_axis_and_0_1_masks():
    pred, target = multi_class_batch(2, 3, 2, seed=2)
    p, t = one_hot(pred, 3), one_hot(target, 3)
    # a batch of binary masks (B, H, W) with one_hot=True would read as one image's
    # channels: a one-hot input must have its batch axis
    with pytest.raises(ValueError, match=r"x\[None\]"):
        dice_score(p[0], t[0], spatial_dims=2, one_hot=True)
    binary = torch.from_numpy(pred > 0)
    with pytest.raises(ValueError, match="batch and a class axis"):
        dice_score(binary, binary, spatial_dims=2, one_hot=True)
    # a label map passed as one-hot is refused
    labels = torch.from_numpy(pred)[:, None].repeat(1, 2, 1, 1)
    with pytest.raises(ValueError, match="0/1 mask"):
        dice_score(labels, labels, spatial_dims=2, one_hot=True)
    with pytest.raises(ValueError, match="0/1 mask"):
        pixel_accuracy(labels, labels, spatial_dims=2, one_hot=True)
    # torchmetrics' "mixed" input (one-hot prediction, label-map target) gets both fixes
    with pytest.raises(ValueError, match=r"pred\.argmax\(1\)"):
        dice_score(p, torch.from_numpy(target), spatial_dims=2, one_hot=True)
    one = dice_score(p[:1], t[:1], spatial_dims=2, one_hot=True, reduction="none")
    both = dice_score(p, t, spatial_dims=2, one_hot=True, reduction="none")
    torch.testing.assert_close(one, both[:1], equal_nan=True)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    dims=st.integers(1, 3),
    classes=st.integers(2, 5),
    batch=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_label_map_layouts_equal_torchmetrics(dims, classes, batch, seed):
    pred, target = multi_class_batch(dims, classes, batch, seed)
    expected = torchmetrics_dice(pred, target, classes)
    layouts = [
        (pred, target),
        (pred[:, None], target[:, None]),
        (torch.from_numpy(pred).float(), torch.from_numpy(target).float()),
    ]
    if batch == 1:
        layouts.append((pred[0], target[0]))
    for p, t in layouts:
        got = np.asarray(
            dice_score(p, t, num_classes=np.int64(classes), spatial_dims=dims, reduction="none")
        )
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    one = one_hot(pred, classes)
    got = dice_score(
        one, one_hot(target, classes), spatial_dims=dims, one_hot=True, reduction="none"
    )
    np.testing.assert_allclose(got.double().numpy(), expected, rtol=1e-6)


# ------------------------------------------------------------------------ absent classes


def test_absent_class_is_left_out_as_monai_torchmetrics_and_nnunet():
    # Class 3 appears in neither image; class 2 only in image 1's target.
    pred = np.zeros((2, 8, 8), dtype=np.int64)
    target = np.zeros((2, 8, 8), dtype=np.int64)
    pred[:, 1:5, 1:5] = 1
    target[:, 2:6, 1:5] = 1
    target[0, 6:8, 6:8] = 2
    per = dice_score(pred, target, num_classes=4, spatial_dims=2, reduction="none")
    # hand computation: class 1 has 2 * 12 / (16 + 16); class 2 misses (0); class 3 absent
    np.testing.assert_allclose(per, [[0.75, 0.0, np.nan], [0.75, np.nan, np.nan]])
    # the mean: each image's present classes, then the images: (0.375 + 0.75) / 2
    mean = float(dice_score(pred, target, num_classes=4, spatial_dims=2))
    assert mean == pytest.approx(0.5625)
    monai_mean = monai_metrics.DiceMetric(include_background=False, reduction="mean")
    monai_mean(one_hot(pred, 4), one_hot(target, 4))
    assert mean == pytest.approx(monai_mean.aggregate().item())
    monai = monai_metrics.compute_dice(
        one_hot(pred, 4), one_hot(target, 4), include_background=False, ignore_empty=True
    )
    np.testing.assert_allclose(per, monai.double().numpy())
    tm = torchmetrics_dice(pred, target, 4)
    np.testing.assert_allclose(per, tm)
    # nnU-Net: a class with tp + fp + fn == 0 is NaN and the mean is a nanmean
    counts = confusion_counts(pred, target, num_classes=4, spatial_dims=2)
    den = (2 * counts.tp + counts.fp + counts.fn).double()
    nnunet = torch.where(den > 0, 2 * counts.tp / den.clamp_min(1), torch.nan)
    np.testing.assert_allclose(per, nnunet.numpy())
    macro = torchmetrics_dice(pred, target, 4, average="macro")
    assert mean == pytest.approx(macro.mean())
    # the old convention is one argument away
    assert float(
        dice_score(pred, target, num_classes=4, spatial_dims=2, empty_value=1.0)
    ) == pytest.approx((0.75 + 0 + 1 + 0.75 + 1 + 1) / 6)


def test_absent_class_surface_distances_are_left_out():
    pred = np.zeros((1, 12, 12), dtype=np.int64)
    target = np.zeros((1, 12, 12), dtype=np.int64)
    pred[0, 2:6, 2:6] = 1
    target[0, 3:7, 2:6] = 1
    out = surface_metrics(
        pred, target, metrics=("hd95", "assd"), num_classes=3, spatial_dims=2, reduction="none"
    )
    assert math.isnan(float(out["hd95"][0, 1]))
    hd_one = float(hd95(pred == 1, target == 1, spatial_dims=2))
    assert float(hd95(pred, target, num_classes=3, spatial_dims=2)) == pytest.approx(hd_one)
    assert float(
        hd95(pred, target, num_classes=3, spatial_dims=2, both_empty=0.0)
    ) == pytest.approx(hd_one / 2)
    binary_empty = hd95(np.zeros((2, 5, 5), bool), np.zeros((2, 5, 5), bool), spatial_dims=2)
    assert math.isnan(float(binary_empty))


def test_accumulator_reports_per_class_and_overall():
    pred, target = multi_class_batch(2, 4, 3, seed=11)
    target[1][target[1] == 3] = 0  # class 3 absent from image 2's target ...
    pred[1][pred[1] == 3] = 0  # ... and prediction
    acc = MetricAccumulator({"dice": dice_score}, num_classes=4, spatial_dims=2)
    acc.update(pred[:2], target[:2])
    acc.update(pred[2], target[2])  # one unbatched image is one image
    assert len(acc) == 3
    per = torchmetrics_dice(pred, target, 4)
    assert np.isnan(per[1, 2])
    summary = acc["dice"]
    np.testing.assert_allclose(summary.mean, np.nanmean(per, axis=0))
    np.testing.assert_array_equal(summary.missing, [0, 0, 1])
    macro = torchmetrics_dice(pred, target, 4, average="macro")
    overall = acc.overall("dice")
    assert overall.mean == pytest.approx(macro.mean())
    assert overall.std == pytest.approx(macro.std(ddof=1))
    text = acc.summary()
    assert "dice[3]" in text and "dice[mean]" in text
    assert acc.to_dict()["dice"]["overall"]["count"] == 3


def test_accumulator_counts_an_unbatched_image_once():
    p, t = ellipse_pair(2)
    acc = MetricAccumulator({"dice": dice_score, "hd95": hd95}, spatial_dims=2)
    acc.update(p[:16, :16] | True, t[:16, :16])
    assert len(acc) == 1
    with pytest.raises(ValueError, match=r"MetricAccumulator\(\{\.\.\.\}, spatial_dims=2\)"):
        MetricAccumulator({"dice": dice_score}).update(p, t)
    # a metric with spatial_dims bound (or defaulted) needs nothing more
    bound = MetricAccumulator({"dice": functools.partial(dice_score, spatial_dims=2)})
    assert bound.update(p, t)["dice"].shape == (1,)


# ------------------------------------------------------------------------ small traps


def test_float_probabilities_are_refused_with_advice_that_fits_the_shape():
    probs = torch.rand(2, 1, 6, 6) * 0.98 + 0.01
    target = torch.zeros(2, 1, 6, 6, dtype=torch.long)
    with pytest.raises(TypeError, match=r"\(logits > 0\)"):
        dice_score(probs, target, spatial_dims=2)
    multi = torch.rand(2, 3, 6, 6) * 0.98 + 0.01
    with pytest.raises(TypeError, match=r"argmax\(1\)"):
        dice_score(multi, multi, spatial_dims=2, one_hot=True)


def test_num_classes_takes_numpy_and_torch_integer_scalars():
    pred, target = multi_class_batch(2, 3, 2, seed=1)
    ref = dice_score(pred, target, num_classes=3, spatial_dims=2)
    for k in (np.int64(3), np.int32(3), torch.tensor(3), np.array(3)):
        assert dice_score(pred, target, num_classes=k, spatial_dims=2) == ref
    for bad in (3.0, True, torch.tensor(3.0), 1):
        with pytest.raises(ValueError, match="num_classes"):
            dice_score(pred, target, num_classes=bad, spatial_dims=2)


def test_spacing_passed_positionally_gets_a_hint():
    p, t = ellipse_pair(3)
    # MedPy's hd95(result, reference, voxelspacing): an int spacing would fit num_classes
    for fn in (hd95, assd, hausdorff_distance, surface_to_surface):
        for spacing in ((2.5, 0.8, 0.8), 2, np.int64(2)):
            with pytest.raises(TypeError, match="spacing="):
                fn(p, t, spacing, spatial_dims=3)
    # every metric takes only pred and target positionally; torchmetrics' num_classes
    # passed third is refused with the keyword to use
    for fn in EVERY_METRIC:
        if fn in (v_rand, v_info):  # no num_classes: Python's own message
            with pytest.raises(TypeError, match="positional"):
                fn(p, t, 3, spatial_dims=3)
        else:
            with pytest.raises(TypeError, match=r"num_classes="):
                fn(p, t, 3, spatial_dims=3)
    # a spacing given as num_classes is refused with the right keyword
    with pytest.raises(ValueError, match=r"spacing=\(2\.5, 0\.8, 0\.8\)"):
        dice_score(p, t, num_classes=(2.5, 0.8, 0.8), spatial_dims=3)
    with pytest.raises(ValueError, match="leave num_classes out"):
        dice_score(p, t, num_classes=1, spatial_dims=3)


def test_every_public_metric_takes_its_options_by_name():
    # Only the arrays are positional (a third positional argument is refused, by Python or
    # with a hint through ``*misplaced``); every option with a default is keyword-only.
    import inspect

    from attnunet import metrics

    checked = 0
    for name in metrics.__all__:
        fn = getattr(metrics, name)
        if not inspect.isfunction(fn):
            continue  # classes: MetricAccumulator keeps its metrics dict positional
        checked += 1
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.POSITIONAL_OR_KEYWORD:
                assert p.name in ("pred", "target", "mask"), (name, p.name)
                assert p.default is p.empty, (name, p.name)
            elif p.kind is p.VAR_POSITIONAL:
                assert p.name == "misplaced", (name, p.name)
            else:
                assert p.kind is p.KEYWORD_ONLY, (name, p.name, p.kind)
    assert checked == 19


def test_fractional_percentile_warns():
    p, t = ellipse_pair(2)
    for call in (
        lambda: hausdorff_distance(p, t, spatial_dims=2, percentile=0.95),
        lambda: surface_metrics(p, t, metrics=("hd95",), spatial_dims=2, percentile=0.5),
    ):
        with pytest.warns(UserWarning, match="0-100 scale") as record:
            call()
        assert record[0].filename == __file__  # the warning points at the user's line
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        hausdorff_distance(p, t, spatial_dims=2, percentile=95)
        hausdorff_distance(p, t, spatial_dims=2, percentile=1.0)


def test_bad_spatial_dims_and_axis_counts_are_refused():
    p, t = ellipse_pair(2)
    for bad in (0, -1, 2.0, True, "2"):
        with pytest.raises(ValueError, match="spatial_dims must be a positive int"):
            dice_score(p, t, spatial_dims=bad)
    with pytest.raises(ValueError, match="spatial_dims=3 needs"):
        dice_score(p, t, spatial_dims=3)
    with pytest.raises(ValueError, match="spatial_dims=1 needs"):
        dice_score(p[None, None, None], t[None, None, None], spatial_dims=1)
    with pytest.raises(ValueError, match="same images"):
        dice_score(p, t[None, :-1], spatial_dims=2)


def test_mean_batch_is_the_per_class_mean_over_images():
    pred, target = multi_class_batch(2, 4, 3, seed=4)
    per = dice_score(pred, target, num_classes=4, spatial_dims=2, reduction="none")
    np.testing.assert_allclose(
        dice_score(pred, target, num_classes=4, spatial_dims=2, reduction="mean_batch"),
        np.nanmean(per, axis=0),
    )
    monai = monai_metrics.DiceMetric(include_background=False, reduction="mean_batch")
    monai(one_hot(pred, 4), one_hot(target, 4))
    np.testing.assert_allclose(
        dice_score(pred, target, num_classes=4, spatial_dims=2, reduction="mean_batch"),
        monai.aggregate().double().numpy(),
        rtol=1e-6,
    )
