"""Loss targets: the range check of label maps and dense targets, and ``ignore_index``.

Oracles: ``F.cross_entropy(ignore_index=...)`` and ``F.binary_cross_entropy_with_logits``
for the cross-entropies; segmentation_models_pytorch's ``DiceLoss(ignore_index=...)``
for Dice under the settings where its definition equals ours; and, for every option, the
same loss on the voxels that are left (the ignored ones cut out of the tensors).
"""

import functools
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import attnunet.losses as losses_module
import attnunet.losses._targets as targets_module
from attnunet.losses import (
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    IoULoss,
    RAUNetLoss,
    bce_loss,
    ce_loss,
    deep_supervision_loss,
    dice_ce_loss,
    dice_loss,
    iou_loss,
    raunet_loss,
)

EXACT = {"rtol": 0.0, "atol": 1e-12}  # float64 against an independent computation
_fast = settings(max_examples=30, deadline=None)


def _case(batch, channels, spatial, seed, ignore=255, fraction=0.3, all_classes=False):
    """float64 logits ``(B, C, *S)``, a label map with about ``fraction`` of the voxels
    set to ``ignore``, and the bool mask of the voxels kept."""
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, channels, *spatial, generator=g, dtype=torch.float64)
    classes = max(channels, 2)
    labels = torch.randint(0, classes, (batch, *spatial), generator=g)
    keep = torch.rand(batch, *spatial, generator=g) >= fraction
    if all_classes:  # every class among the kept voxels of the batch
        flat_labels, flat_keep = labels.view(-1), keep.view(-1)
        flat_labels[:classes] = torch.arange(classes)
        flat_keep[:classes] = True
    return logits, labels.masked_fill(~keep, ignore), keep


def _kept(logits, labels, keep, image=None):
    """The kept voxels as one image: ``(1, C, N)`` logits and ``(1, N)`` labels (of one
    image, or of the whole batch pooled)."""
    if image is not None:
        logits, labels, keep = logits[image : image + 1], labels[image : image + 1], keep[image]
    x = logits.movedim(1, -1)[keep.expand(labels.shape)]  # (N, C)
    return x.T[None], labels[keep.expand(labels.shape)][None]


# ------------------------------------------------------------------ cross-entropy oracle


@pytest.mark.parametrize("spatial", [(6, 7), (3, 4, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("weighted", [False, True], ids=["plain", "weighted"])
@pytest.mark.parametrize("ignore", [255, -100, 0])
def test_ce_ignore_index_matches_torch(spatial, weighted, ignore):
    logits, labels, _ = _case(3, 4, spatial, seed=len(spatial) + weighted, ignore=ignore)
    w = torch.tensor([0.2, 1.0, 2.5, 0.7], dtype=torch.float64) if weighted else None
    for reduction in ("mean", "sum", "none"):
        expected = F.cross_entropy(
            logits, labels, weight=w, ignore_index=ignore, reduction=reduction
        )
        for target in (labels, labels[:, None]):  # both label-map forms
            got = ce_loss(logits, target, class_weights=w, ignore_index=ignore, reduction=reduction)
            torch.testing.assert_close(got, expected, **EXACT)
    # the weighted mean is PyTorch's: sum of w_y l over kept voxels / sum of their w_y
    kept = labels != ignore
    per_voxel = F.cross_entropy(logits, labels.clamp(0, 3), weight=w, reduction="none")
    w_y = torch.ones_like(per_voxel) if w is None else w[labels.clamp(0, 3)]
    by_hand = (per_voxel * kept).sum() / (w_y * kept).sum()
    torch.testing.assert_close(
        ce_loss(logits, labels, class_weights=w, ignore_index=ignore), by_hand, **EXACT
    )


def test_ce_ignore_index_gradient_matches_torch():
    logits, labels, _ = _case(2, 3, (5, 6), seed=3, ignore=-100)
    w = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    x, y = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ce_loss(x, labels, class_weights=w, ignore_index=-100).backward()
    F.cross_entropy(y, labels, weight=w, ignore_index=-100).backward()
    torch.testing.assert_close(x.grad, y.grad, **EXACT)


def test_ce_every_voxel_ignored_is_zero_not_nan():
    logits = torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.full((2, 4, 4), 255)
    value = ce_loss(logits, labels, ignore_index=255)
    assert value.item() == 0.0  # PyTorch gives NaN here
    value.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_bce_ignore_index_matches_torch_on_the_kept_voxels():
    for channels in (1, 3):
        logits, labels, keep = _case(2, channels, (5, 6), seed=channels, ignore=-1)
        pos = torch.tensor([2.0, 0.5, 1.0][:channels], dtype=torch.float64)
        onehot = (
            labels.clamp_min(0)[:, None].double()
            if channels == 1
            else F.one_hot(labels.clamp_min(0), channels).movedim(-1, 1).double()
        )
        full = F.binary_cross_entropy_with_logits(
            logits, onehot, pos_weight=pos.view(-1, 1, 1), reduction="none"
        )
        mask = keep[:, None].expand_as(full)
        got = bce_loss(logits, labels, pos_weight=pos, ignore_index=-1, reduction="none")
        torch.testing.assert_close(got, full * mask, **EXACT)
        torch.testing.assert_close(
            bce_loss(logits, labels, pos_weight=pos, ignore_index=-1), full[mask].mean(), **EXACT
        )
        torch.testing.assert_close(
            bce_loss(logits, labels, pos_weight=pos, ignore_index=-1, reduction="sum"),
            full[mask].sum(),
            **EXACT,
        )


# ------------------------------------------------------------------ Dice against SMP


@pytest.fixture(scope="module")
def smp_losses():
    return pytest.importorskip("segmentation_models_pytorch.losses")


def _value_and_grad(fn, logits):
    x = logits.detach().clone().requires_grad_(True)
    value = fn(x)
    (grad,) = torch.autograd.grad(value, x)
    return value.detach(), grad


# SMP 0.6's Dice (soft_tversky_score with alpha = beta = 1/2) is
#   (I + s) / ((P + G) / 2 + s) = (2 I + 2 s) / (P + G + 2 s),
# summed over the batch and the spatial axes (dims=(0, 2)), and averaged over classes,
# with I recovered as (P + G - |p - g|_1) / 2, which equals sum p g for a hard target.
# So it is our dice_loss with batch=True, squared=False, smooth_nr = smooth_dr = 2 s,
# include_background=True (SMP's classes=[1..C-1] for False), as long as every class
# occurs in the batch's kept voxels: SMP zeroes the loss of a class absent from the
# target, ours scores it 1 - 2 s / (P + 2 s).
@pytest.mark.parametrize("spatial", [(7, 6), (4, 3, 5)], ids=["2d", "3d"])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("ignore", [255, -100])
@pytest.mark.parametrize("smooth", [0.5, 1e-3])
def test_dice_ignore_index_matches_smp_multiclass(
    smp_losses, spatial, include_background, ignore, smooth
):
    logits, labels, _ = _case(2, 4, spatial, seed=len(spatial), ignore=ignore, all_classes=True)
    ref = smp_losses.DiceLoss(
        mode="multiclass",
        classes=None if include_background else [1, 2, 3],
        smooth=smooth,
        ignore_index=ignore,
    )
    kw = {
        "batch": True,
        "smooth_nr": 2 * smooth,
        "smooth_dr": 2 * smooth,
        "include_background": include_background,
        "ignore_index": ignore,
    }
    value, grad = _value_and_grad(lambda x: dice_loss(x, labels, **kw), logits)
    ref_value, ref_grad = _value_and_grad(lambda x: ref(x, labels), logits)
    torch.testing.assert_close(value, ref_value, **EXACT)
    torch.testing.assert_close(grad, ref_grad, **EXACT)
    # the module form gives the same number
    assert torch.equal(DiceLoss(**kw)(logits, labels), dice_loss(logits, labels, **kw))


@pytest.mark.parametrize("spatial", [(7, 6), (4, 3, 5)], ids=["2d", "3d"])
def test_dice_ignore_index_matches_smp_binary(smp_losses, spatial):
    logits, labels, _ = _case(3, 1, spatial, seed=11, ignore=255, all_classes=True)
    ref = smp_losses.DiceLoss(mode="binary", smooth=0.25, ignore_index=255)
    kw = {"batch": True, "smooth_nr": 0.5, "smooth_dr": 0.5, "ignore_index": 255}
    value, grad = _value_and_grad(lambda x: dice_loss(x, labels, **kw), logits)
    ref_value, ref_grad = _value_and_grad(lambda x: ref(x, labels[:, None]), logits)
    torch.testing.assert_close(value, ref_value, **EXACT)
    torch.testing.assert_close(grad, ref_grad, **EXACT)


def test_dice_ignore_index_hand_computed():
    # one image, one channel, probabilities given: voxel 2 (label 7) is ignored
    probs = torch.tensor([[[0.5, 1.0, 0.9, 0.5]]], dtype=torch.float64)
    labels = torch.tensor([[1, 1, 7, 0]])
    # kept: p = 0.5 1.0 0.5, g = 1 1 0: I = 1.5, P = 2, G = 2 -> 1 - (3 + 1) / (4 + 1)
    value = dice_loss(probs, labels, activation=None, ignore_index=7)
    assert value.item() == pytest.approx(1 / 5, abs=1e-15)
    # IoU: union = 2 + 2 - 1.5 = 2.5 -> 1 - (1.5 + 1) / (2.5 + 1)
    value = iou_loss(probs, labels, activation=None, ignore_index=7)
    assert value.item() == pytest.approx(2 / 7, abs=1e-15)


# ------------------------------------------------------------------ every option: cut out


@st.composite
def _ignore_cases(draw):
    spatial = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    return (
        draw(st.integers(1, 3)),  # batch
        draw(st.integers(1, 4)),  # channels
        spatial,
        draw(st.integers(0, 2**16)),  # seed
        draw(st.sampled_from([255, -100, -1, 0])),  # ignore value
        draw(st.sampled_from([0.0, 0.3, 0.9])),  # fraction ignored
    )


_overlap_options = st.fixed_dictionaries(
    {
        "include_background": st.booleans(),
        "squared": st.booleans(),
        "batch": st.booleans(),
        "smooth_nr": st.sampled_from([1.0, 1e-5, 0.0]),
        "smooth_dr": st.sampled_from([1.0, 1e-5]),
    }
)


def _per_image(fn, logits, labels, keep):
    """``fn`` on each image's kept voxels, stacked."""
    return torch.cat([fn(*_kept(logits, labels, keep, image=i)) for i in range(len(labels))])


@_fast
@given(case=_ignore_cases(), options=_overlap_options, weighted=st.booleans())
def test_overlap_losses_ignore_equals_cutting_the_voxels_out(case, options, weighted):
    b, c, spatial, seed, ignore, fraction = case
    logits, labels, keep = _case(b, c, spatial, seed, ignore=ignore, fraction=fraction)
    if ignore == 0:  # label 0 is then the ignored value: keep = labels != 0
        keep = labels != 0
    activations = ["auto", "sigmoid"] + (["softmax"] if c > 1 else [])
    weights = [0.5 + k for k in range(c)] if weighted else None
    for loss, activation in itertools.product((dice_loss, iou_loss), activations):
        kw = {**options, "activation": activation, "class_weights": weights}
        got = loss(logits, labels, ignore_index=ignore, reduction="none", **kw)

        def cut(x, y, loss=loss, kw=kw):
            return loss(x, y, reduction="none", **kw)

        if options["batch"]:
            expected = cut(*_kept(logits, labels, keep))
        else:
            expected = _per_image(cut, logits, labels, keep)
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)


@_fast
@given(case=_ignore_cases(), weighted=st.booleans(), lambdas=st.sampled_from([(1, 1), (0.3, 2)]))
def test_dice_ce_ignore_is_the_sum_of_its_checked_terms(case, weighted, lambdas):
    b, c, spatial, seed, ignore, fraction = case
    logits, labels, keep = _case(b, c, spatial, seed, ignore=ignore, fraction=fraction)
    keep = labels != ignore
    weights = [0.5 + k for k in range(c)] if weighted else None
    lambda_dice, lambda_ce = lambdas
    kw = {"class_weights": weights, "ignore_index": ignore}
    dice = dice_loss(logits, labels, **kw)
    if c > 1:  # softmax: CE is PyTorch's ignore_index mean (0 when everything is ignored)
        w = None if weights is None else torch.tensor(weights, dtype=torch.float64)
        ce = F.cross_entropy(logits, labels, weight=w, ignore_index=ignore)
        ce = torch.nan_to_num(ce, nan=0.0)
    else:  # sigmoid: BCE averaged over the kept voxels
        kept_x, kept_y = _kept(logits, labels, keep)
        bce = F.binary_cross_entropy_with_logits(kept_x[:, 0], kept_y.double(), reduction="sum")
        ce = bce / keep.sum().clamp_min(1)
        if weights is not None:
            ce = ce * weights[0]
    expected = lambda_dice * dice + lambda_ce * ce
    got = dice_ce_loss(logits, labels, lambda_dice=lambda_dice, lambda_ce=lambda_ce, **kw)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    module = DiceCELoss(lambda_dice=lambda_dice, lambda_ce=lambda_ce, **kw)
    assert torch.equal(module(logits, labels), got)
    # per image: each image's Dice mean plus its own CE mean over its kept voxels
    per_image = dice_ce_loss(logits, labels, reduction="none", **kw)

    def one(x, y):
        if y.numel() == 0:  # nothing kept: Dice 1 - 1/1 = 0 and a CE mean of 0/0 taken as 0
            return torch.zeros(1, dtype=torch.float64)
        return dice_ce_loss(x, y, reduction="none", class_weights=weights)

    torch.testing.assert_close(
        per_image, _per_image(one, logits, labels, keep), rtol=1e-12, atol=1e-12
    )


# ------------------------------------------------------------------ gradients


def _entry_points(channels, ignore):
    fns = [
        functools.partial(dice_loss, ignore_index=ignore),
        functools.partial(dice_loss, ignore_index=ignore, batch=True, squared=True),
        functools.partial(iou_loss, ignore_index=ignore),
        functools.partial(bce_loss, ignore_index=ignore, reduction="sum"),
        functools.partial(dice_ce_loss, ignore_index=ignore),
        functools.partial(dice_ce_loss, ignore_index=ignore, activation="sigmoid"),
        DiceLoss(ignore_index=ignore, include_background=False),
        IoULoss(ignore_index=ignore),
        DiceCELoss(ignore_index=ignore, class_weights=[1.0 + k for k in range(channels)]),
    ]
    if channels > 1:
        fns.append(functools.partial(ce_loss, ignore_index=ignore))
        fns.append(functools.partial(ce_loss, ignore_index=ignore, reduction="none"))
    return fns


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("ignore", [255, -100])
def test_gradient_is_exactly_zero_at_ignored_voxels(channels, ignore):
    logits, labels, keep = _case(2, channels, (6, 5), seed=channels, ignore=ignore, fraction=0.4)
    logits = 4 * logits  # large logits: the gradients elsewhere are far from 0 and from 1
    for fn in _entry_points(channels, ignore):
        x = logits.clone().requires_grad_(True)
        value = fn(x, labels)
        value.sum().backward()
        grad = x.grad.movedim(1, -1)
        assert torch.equal(grad[~keep], torch.zeros_like(grad[~keep])), fn
        assert grad[keep].abs().amax() > 0, fn


# ------------------------------------------------------------------ range checks

# (name, logits channels, target builder, a pattern the message must contain)
B, H, W = 2, 4, 5


def _mask_0_255(dtype):
    mask = torch.zeros(B, 1, H, W, dtype=dtype)
    mask[:, :, 1:3, 1:4] = 255
    return mask


def _with_nan():
    soft = torch.softmax(torch.randn(B, 3, H, W), 1)
    soft[0, 1, 2, 3] = float("nan")
    return soft


BAD_TARGETS = [
    ("float 0/255 mask", 1, lambda: _mask_0_255(torch.float32), r"\[0, 255\].*255"),
    ("float64 0/255 mask", 1, lambda: _mask_0_255(torch.float64), r"\[0, 255\].*255"),
    ("uint8 0/255 mask", 1, lambda: _mask_0_255(torch.uint8), r"0\.\.255"),
    ("dense 2.0", 3, lambda: torch.full((B, 3, H, W), 2.0), r"\[2, 2\]"),
    ("dense negative", 3, lambda: torch.full((B, 3, H, W), -0.5), r"\[-0\.5, -0\.5\]"),
    ("dense one-hot x 255", 3, lambda: 255 * _one_hot(3), r"\[0, 255\]"),
    ("NaN", 3, _with_nan, r"1 NaN value.*\[0\.\d+, 0\.\d+\]"),
    ("one-channel NaN", 1, lambda: torch.full((B, 1, H, W), float("nan")), "NaN"),
    ("label C", 3, lambda: _labels(3, high=3), r"0\.\.2 .* 0\.\.3"),
    ("label -1", 3, lambda: _labels(3, low=-1), r"0\.\.2 .* -1\.\.2"),
    ("label 2, one channel", 1, lambda: _labels(1, high=2), r"0\.\.1 .* 0\.\.2"),
]


def _labels(channels, low=0, high=None):
    high = max(channels - 1, 1) if high is None else high
    labels = torch.randint(0, max(channels, 2), (B, H, W), generator=torch.Generator())
    labels[0, 0, 0], labels[-1, -1, -1] = low, high
    return labels


def _one_hot(channels):
    return F.one_hot(_labels(channels), channels).movedim(-1, 1)


def _all_losses(channels):
    """Every entry point as ``(name, loss(logits, target))``."""
    out = [
        ("bce_loss", bce_loss),
        ("dice_loss", dice_loss),
        ("iou_loss", iou_loss),
        ("dice_ce_loss", dice_ce_loss),
        ("raunet_loss", raunet_loss),
        ("DiceLoss", DiceLoss()),
        ("IoULoss", IoULoss()),
        ("DiceCELoss", DiceCELoss()),
        ("RAUNetLoss", RAUNetLoss()),
        ("deep_supervision_loss", functools.partial(deep_supervision_loss, DiceCELoss())),
        ("DeepSupervisionLoss", DeepSupervisionLoss(functools.partial(bce_loss))),
    ]
    if channels > 1:
        out.append(("ce_loss", ce_loss))
    return out


def _outputs(name, channels):
    logits = torch.randn(B, channels, H, W)
    if name.lower().startswith("deep"):
        return [logits, torch.randn(B, channels, H // 2, W // 2)]
    return logits


@pytest.mark.parametrize(("case", "channels", "build", "pattern"), BAD_TARGETS)
def test_out_of_range_targets_are_refused_by_every_loss(case, channels, build, pattern):
    target = build()
    for name, loss in _all_losses(channels):
        with pytest.raises(ValueError, match=pattern) as info:
            loss(_outputs(name, channels), target)
        message = str(info.value)
        if channels == 1:  # a label map from one channel is a threshold, never an argmax
            assert "argmax" not in message, (name, message)
            if "NaN" not in message:
                assert "(target > 0).long()" in message, (name, message)


def test_the_measured_negative_losses_are_refused():
    """The issue's cases: a float 0/255 mask gave dice -0.028, bce -9.92, DiceCE -9.95."""
    logits = torch.randn(2, 1, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float() * 255
    for loss in (dice_loss, bce_loss, DiceCELoss()):
        with pytest.raises(ValueError, match=r"0/255 mask: divide it by 255 \(target / 255\)"):
            loss(logits, mask)
        assert loss(logits, mask / 255).item() >= 0  # the advice works
        assert loss(logits, (mask > 0).long()).item() >= 0


def test_advice_fits_the_channel_count():
    # several channels: argmax(1) does make a label map from a scaled one-hot target
    with pytest.raises(ValueError, match=r"0\.\.2 \(e\.g\. target\.argmax\(1\)"):
        dice_loss(torch.randn(B, 3, H, W), 255.0 * _one_hot(3))
    # a label map with an unlabelled value: the message suggests ignore_index
    labels = _labels(3, high=255)
    with pytest.raises(ValueError, match=r"pass ignore_index=255"):
        ce_loss(torch.randn(B, 3, H, W), labels)
    assert torch.isfinite(ce_loss(torch.randn(B, 3, H, W), labels, ignore_index=255))
    # labels counted from 1
    with pytest.raises(ValueError, match="count from 1, subtract 1"):
        ce_loss(torch.randn(B, 3, H, W), _labels(3, high=3).clamp_min(1))
    # a one-channel float map without the channel axis
    with pytest.raises(ValueError, match=r"\(target > 0\)\.long\(\)") as info:
        dice_loss(torch.randn(B, 1, H, W), _mask_0_255(torch.float32)[:, 0])
    assert "argmax" not in str(info.value)
    # the ignore value is exempt, nothing else is
    labels[1, 0, 0] = 3
    with pytest.raises(ValueError, match=r"0\.\.3 \(ignore_index=255 exempts that one value"):
        dice_loss(torch.randn(B, 3, H, W), labels, ignore_index=255)


@pytest.mark.parametrize("channels", [1, 3])
def test_boundary_values_are_accepted(channels):
    zeros, ones = torch.zeros(B, channels, H, W), torch.ones(B, channels, H, W)
    high = max(channels - 1, 1)
    targets = [zeros, ones, _labels(channels, low=0, high=high), _labels(channels) > 0]
    for target in targets:
        for name, loss in _all_losses(channels):
            assert torch.isfinite(loss(_outputs(name, channels), target)), (name, target.dtype)


def test_soft_targets_a_rounding_step_outside_are_accepted_and_beyond_refused():
    # trilinear resizing of a one-hot target can land an ulp above 1
    soft = torch.nn.functional.interpolate(
        torch.nn.functional.one_hot(_labels(3, high=2), 3).movedim(-1, 1).float(),
        scale_factor=1.7,
        mode="bilinear",
    )
    logits = torch.randn(soft.shape)
    for dtype in (torch.float32, torch.bfloat16, torch.float64):
        eps = torch.finfo(dtype).eps
        target = soft.to(dtype)
        target[0, 0, 0, 0] = 1 + eps
        target[0, 1, 0, 0] = -eps
        assert torch.isfinite(dice_ce_loss(logits.to(dtype), target))
        target[0, 0, 0, 0] = 1.1
        with pytest.raises(ValueError, match="must lie in"):
            dice_ce_loss(logits.to(dtype), target)


def test_ignore_index_needs_a_label_map_and_an_int():
    logits = torch.randn(B, 3, H, W)
    soft = torch.softmax(torch.randn(B, 3, H, W), 1)
    for fn in (dice_loss, iou_loss, ce_loss, bce_loss, dice_ce_loss):
        with pytest.raises(ValueError, match=r"ignore_index=255 applies to label maps"):
            fn(logits, soft, ignore_index=255)
        with pytest.raises(ValueError, match="ignore_index"):
            fn(logits, _one_hot(3), ignore_index=255)  # integer one-hot is dense too
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            fn(logits, _labels(3), ignore_index=255.0)  # type: ignore[arg-type]
    for cls in (DiceLoss, IoULoss, DiceCELoss):
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            cls(ignore_index=True)  # type: ignore[arg-type]
        assert "ignore_index=-100" in repr(cls(ignore_index=-100))


def test_ignore_value_outside_a_narrow_dtype_ignores_nothing():
    # 256 would wrap to 0 in uint8: it must not drop label 0
    logits = torch.randn(B, 3, H, W, dtype=torch.float64)
    labels = _labels(3)
    for fn in (dice_loss, ce_loss, dice_ce_loss):
        torch.testing.assert_close(
            fn(logits, labels.to(torch.uint8), ignore_index=256), fn(logits, labels), **EXACT
        )


@pytest.mark.parametrize("channels", [1, 3])
def test_ignore_index_with_nothing_ignored_changes_nothing(channels):
    logits = torch.randn(B, channels, H, W, dtype=torch.float64)
    labels = _labels(channels)
    fns = [dice_loss, iou_loss, bce_loss, dice_ce_loss, functools.partial(dice_loss, batch=True)]
    if channels > 1:
        fns.append(ce_loss)
    for fn in fns:
        x, y = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
        a, b = fn(x, labels, ignore_index=255), fn(y, labels)
        a.backward()
        b.backward()
        torch.testing.assert_close(a, b, rtol=1e-15, atol=0.0)
        torch.testing.assert_close(x.grad, y.grad, rtol=1e-15, atol=0.0)


def test_deep_supervision_keeps_the_ignore_value_through_resizing():
    logits, labels, _ = _case(2, 3, (8, 8), seed=5, ignore=255)
    outputs = [logits, logits[..., ::2, ::2].contiguous()]
    inner = DiceCELoss(ignore_index=255)
    got = DeepSupervisionLoss(inner, weights=[0.7, 0.3])(outputs, labels)
    expected = 0.7 * inner(outputs[0], labels) + 0.3 * inner(
        outputs[1], losses_module.resize_nearest(labels, [4, 4])
    )
    torch.testing.assert_close(got, expected, **EXACT)


@pytest.mark.parametrize("dense", [False, True])
def test_one_range_read_per_call(monkeypatch, dense):
    """The range check reads back min and max together: one host synchronisation."""
    calls = []
    original = targets_module.min_max

    def counting(values):
        calls.append(values.shape)
        return original(values)

    monkeypatch.setattr(targets_module, "min_max", counting)
    logits = torch.randn(B, 3, H, W)
    target = torch.softmax(torch.randn(B, 3, H, W), 1) if dense else _labels(3)
    for name, loss in _all_losses(3):  # deep supervision of one tensor: one call
        calls.clear()
        loss(logits, target)
        assert len(calls) == 1, name
    calls.clear()
    dice_ce_loss(logits, _labels(3), ignore_index=255)
    assert len(calls) == 1


def test_hints_for_0_255_masks_and_losses_without_ignore_index():
    # a uint8 0/255 mask for two-channel logits: the first fix is a threshold, not
    # ignore_index=255 (which would leave all the foreground out)
    mask = (_mask_0_255(torch.float32)[:, 0] > 0).to(torch.uint8) * 255
    with pytest.raises(ValueError, match=r"0/255 binary mask .*\(target > 0\)\.long\(\)"):
        ce_loss(torch.randn(B, 2, H, W), mask)
    with pytest.raises(ValueError, match=r"\(target > 0\)\.long\(\)"):
        ce_loss(torch.randn(B, 2, H, W), mask.float())
    # raunet_loss takes no ignore_index, so its message must not suggest one
    with pytest.raises(ValueError, match=r"0\.\.1") as info:
        raunet_loss(torch.randn(B, 2, H, W), mask)
    assert "ignore_index" not in str(info.value)
    with pytest.raises(ValueError, match="ignore_index=255"):
        ce_loss(torch.randn(B, 3, H, W), mask.long().clamp_max(2).masked_fill(mask > 0, 255))


def test_ignore_index_takes_numpy_and_torch_integer_scalars():
    logits = torch.randn(B, 3, H, W, dtype=torch.float64)
    labels = _labels(3, high=2)
    labels[0, :2] = 255
    expected = ce_loss(logits, labels, ignore_index=255)
    for value in (np.int64(255), np.int32(255), torch.tensor(255)):
        assert ce_loss(logits, labels, ignore_index=value) == expected
    for bad in (255.0, torch.tensor(255.0), True):
        with pytest.raises(TypeError, match="ignore_index must be an int"):
            ce_loss(logits, labels, ignore_index=bad)
