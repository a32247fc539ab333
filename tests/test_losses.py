"""Losses: agreement with MONAI, hand-computed values, empty masks, properties, deep
supervision."""

import functools
import itertools
import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from attnunet.losses import (
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    IoULoss,
    RAUNetLoss,
    bce_loss,
    ce_loss,
    deep_supervision_loss,
    deep_supervision_weights,
    dice_ce_loss,
    dice_loss,
    iou_loss,
    raunet_loss,
    resize_nearest,
)

F64 = {"rtol": 1e-10, "atol": 1e-12}  # tolerance against MONAI, float64 throughout


def _random_case(batch, channels, spatial, seed, dtype=torch.float64, scale=1.0):
    """Logits ``(B, C, *S)`` and a label map ``(B, *S)`` (0/1 for one channel)."""
    g = torch.Generator().manual_seed(seed)
    logits = scale * torch.randn(batch, channels, *spatial, generator=g, dtype=dtype)
    labels = torch.randint(0, max(channels, 2), (batch, *spatial), generator=g)
    return logits, labels


def _one_hot(labels, channels, dtype=torch.float64):
    if channels == 1:
        return labels[:, None].to(dtype)
    return F.one_hot(labels, channels).movedim(-1, 1).to(dtype)


def _value_and_grad(fn, logits):
    """``fn(logits)`` and the gradient of a fixed, non-uniform weighting of it."""
    x = logits.detach().clone().requires_grad_(True)
    out = fn(x)
    probe = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype).reshape(out.shape)
    (grad,) = torch.autograd.grad((out * probe).sum(), x)
    return out.detach(), grad


def _assert_same_loss_and_grad(mine, reference, logits, **tol):
    value, grad = _value_and_grad(mine, logits)
    ref_value, ref_grad = _value_and_grad(lambda x: reference(x).reshape(value.shape), logits)
    torch.testing.assert_close(value, ref_value, **tol)
    torch.testing.assert_close(grad, ref_grad, **tol)


@pytest.fixture(scope="module")
def monai_losses():
    return pytest.importorskip("monai.losses")


# ------------------------------------------------------------------ agreement with MONAI

SHAPES = {"2d": (3, 9, 11), "3d": (2, 5, 6, 7)}  # (B, *spatial)


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
@pytest.mark.parametrize(
    ("include_background", "squared", "batch"), list(itertools.product([True, False], repeat=3))
)
def test_dice_matches_monai(monai_losses, dims, activation, include_background, squared, batch):
    b, *spatial = SHAPES[dims]
    seed = 7 * len(spatial) + include_background + 2 * squared + 4 * batch
    logits, labels = _random_case(b, 4, spatial, seed)
    # MONAI's to_onehot_y builds a float32 one-hot, which costs precision in the squared
    # form; give it the float64 one-hot instead and our loss the label map.
    onehot = _one_hot(labels, 4)
    for (smooth_nr, smooth_dr), reduction in itertools.product(
        [(1e-5, 1e-5), (0.3, 0.7), (1.0, 1.0)], ["mean", "sum", "none"]
    ):
        ref = monai_losses.DiceLoss(
            sigmoid=activation == "sigmoid",
            softmax=activation == "softmax",
            include_background=include_background,
            squared_pred=squared,
            batch=batch,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            reduction=reduction,
        )
        kw = {
            "activation": activation,
            "include_background": include_background,
            "squared": squared,
            "batch": batch,
            "smooth_nr": smooth_nr,
            "smooth_dr": smooth_dr,
            "reduction": reduction,
        }
        target = labels[:, None] if reduction == "sum" else labels  # both label-map forms
        _assert_same_loss_and_grad(
            lambda x, t=target, kw=kw: dice_loss(x, t, **kw),
            lambda x, ref=ref: ref(x, onehot),
            logits,
            **F64,
        )


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("squared", [False, True])
@pytest.mark.parametrize("batch", [False, True])
def test_iou_matches_monai_jaccard(monai_losses, dims, squared, batch):
    b, *spatial = SHAPES[dims]
    logits, labels = _random_case(b, 3, spatial, seed=11 + squared + 2 * batch)
    onehot = _one_hot(labels, 3)
    # MONAI doubles numerator and denominator of the Jaccard ratio: its smoothing s is
    # our s / 2.
    ref = monai_losses.DiceLoss(
        softmax=True, jaccard=True, squared_pred=squared, batch=batch, smooth_nr=0.4, smooth_dr=0.6
    )
    _assert_same_loss_and_grad(
        lambda x: iou_loss(x, labels, squared=squared, batch=batch, smooth_nr=0.2, smooth_dr=0.3),
        lambda x: ref(x, onehot),
        logits,
        **F64,
    )


@pytest.mark.parametrize("include_background", [True, False])
def test_dice_class_weights_match_monai(monai_losses, include_background):
    logits, labels = _random_case(2, 4, (6, 7), seed=3)
    weights = torch.tensor([0.5, 2.0, 1.0, 0.25], dtype=torch.float64)
    # MONAI's DiceLoss wants the weights of the scored classes only; we take one per channel.
    ref = monai_losses.DiceLoss(
        softmax=True,
        include_background=include_background,
        weight=weights if include_background else weights[1:],
        reduction="none",
    )
    _assert_same_loss_and_grad(
        lambda x: dice_loss(
            x,
            labels,
            include_background=include_background,
            class_weights=weights,
            reduction="none",
            smooth_nr=1e-5,
            smooth_dr=1e-5,
        ),
        lambda x: ref(x, _one_hot(labels, 4)),
        logits,
        **F64,
    )


@pytest.mark.parametrize("dims", ["2d", "3d"])
@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("weighted", [False, True])
def test_dice_ce_matches_monai(monai_losses, dims, include_background, weighted):
    b, *spatial = SHAPES[dims]
    logits, labels = _random_case(b, 3, spatial, seed=5 + weighted)
    # MONAI's DiceLoss keeps its weights in float32: use values float32 holds exactly
    weights = torch.tensor([0.25, 1.0, 3.0], dtype=torch.float64) if weighted else None
    ref = monai_losses.DiceCELoss(
        to_onehot_y=True,
        softmax=True,
        include_background=include_background,
        weight=weights,
        lambda_dice=0.7,
        lambda_ce=1.3,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )
    loss = DiceCELoss(
        lambda_dice=0.7,
        lambda_ce=1.3,
        include_background=include_background,
        class_weights=weights,
        smooth_nr=1e-5,
        smooth_dr=1e-5,
    )
    _assert_same_loss_and_grad(
        lambda x: loss(x, labels), lambda x: ref(x, labels[:, None]), logits, **F64
    )


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dice_bce_single_channel_matches_monai(monai_losses):
    logits, labels = _random_case(3, 1, (8, 5, 4), seed=9)
    ref = monai_losses.DiceCELoss(sigmoid=True, lambda_ce=0.5)
    _assert_same_loss_and_grad(
        lambda x: dice_ce_loss(x, labels, lambda_ce=0.5, smooth_nr=1e-5, smooth_dr=1e-5),
        lambda x: ref(x, labels[:, None].double()),
        logits,
        **F64,
    )


def test_cross_entropy_wrappers_match_torch():
    logits, labels = _random_case(2, 4, (5, 6), seed=1)
    w = torch.tensor([0.1, 1.0, 2.0, 0.5], dtype=torch.float64)
    onehot = _one_hot(labels, 4)
    expected = F.cross_entropy(logits, labels, weight=w)
    # label map, (B, 1, *S) label map and one-hot all give PyTorch's label-map mean
    for target in (labels, labels[:, None], onehot):
        torch.testing.assert_close(ce_loss(logits, target, class_weights=w), expected, **F64)
    torch.testing.assert_close(
        ce_loss(logits, labels, class_weights=w, reduction="none"),
        F.cross_entropy(logits, labels, weight=w, reduction="none"),
        **F64,
    )
    # BCE: a multi-channel label map is one-hot encoded (one-vs-rest)
    pos = torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(
        bce_loss(logits, labels, class_weights=w, pos_weight=pos),
        F.binary_cross_entropy_with_logits(
            logits, onehot, weight=w.view(1, 4, 1, 1), pos_weight=pos.view(4, 1, 1)
        ),
        **F64,
    )


# ------------------------------------------------------------------ hand-computed values

# One image, one channel, four pixels, probabilities given directly (activation=None):
#   p = 0.5  1.0  0.0  0.5
#   g = 1    1    0    0
# I = sum p g = 0.5 + 1 = 1.5; P = sum p = 2; G = sum g = 2;
# squared: sum p^2 = 0.25 + 1 + 0 + 0.25 = 1.5, sum g^2 = 2.
PROBS = torch.tensor([[[0.5, 1.0, 0.0, 0.5]]], dtype=torch.float64)
LABELS = torch.tensor([[1, 1, 0, 0]])
RAW = {"smooth_nr": 0.0, "smooth_dr": 1e-12}  # (almost) no smoothing


def test_dice_and_iou_hand_computed():
    kw = {"activation": None}
    # Dice, smoothing 1:  1 - (2 * 1.5 + 1) / (2 + 2 + 1) = 1 - 4/5 = 1/5
    assert dice_loss(PROBS, LABELS, **kw).item() == pytest.approx(1 / 5)
    # Dice, no smoothing: 1 - 3/4 = 1/4
    assert dice_loss(PROBS, LABELS, **kw, **RAW).item() == pytest.approx(1 / 4)
    # squared: 1 - (3 + 1) / (1.5 + 2 + 1) = 1 - 4/4.5 = 1/9; raw: 1 - 3/3.5 = 1/7
    assert dice_loss(PROBS, LABELS, squared=True, **kw).item() == pytest.approx(1 / 9)
    assert dice_loss(PROBS, LABELS, squared=True, **kw, **RAW).item() == pytest.approx(1 / 7)
    # IoU: union = 2 + 2 - 1.5 = 2.5;  1 - (1.5 + 1) / (2.5 + 1) = 1 - 5/7 = 2/7
    assert iou_loss(PROBS, LABELS, **kw).item() == pytest.approx(2 / 7)
    # raw: 1 - 1.5 / 2.5 = 2/5, and IoU = D / (2 - D) with D = 3/4: 0.75 / 1.25 = 3/5
    assert iou_loss(PROBS, LABELS, **kw, **RAW).item() == pytest.approx(2 / 5)
    # squared IoU: union = 1.5 + 2 - 1.5 = 2;  1 - 1.5 / 2 = 1/4
    assert iou_loss(PROBS, LABELS, squared=True, **kw, **RAW).item() == pytest.approx(1 / 4)


def test_batch_dice_and_reductions_hand_computed():
    # Image A as above (I = 1.5, P = 2, G = 2); image B: p = 0.2 0 0 0, empty target
    # (I = 0, P = 0.2, G = 0).
    probs = torch.cat([PROBS, torch.tensor([[[0.2, 0.0, 0.0, 0.0]]], dtype=torch.float64)])
    labels = torch.cat([LABELS, torch.zeros_like(LABELS)])
    kw = {"activation": None}
    # per image, smoothing 1:  A: 1/5;  B: 1 - (0 + 1) / (0.2 + 1) = 1/6
    per_image = dice_loss(probs, labels, reduction="none", **kw)
    assert per_image.shape == (2, 1)
    assert per_image[:, 0].tolist() == pytest.approx([1 / 5, 1 / 6])
    assert dice_loss(probs, labels, **kw).item() == pytest.approx((1 / 5 + 1 / 6) / 2)
    assert dice_loss(probs, labels, reduction="sum", **kw).item() == pytest.approx(11 / 30)
    # batch Dice pools the sums: I = 1.5, P = 2.2, G = 2: 1 - 4 / 5.2 = 3/13
    pooled = dice_loss(probs, labels, batch=True, reduction="none", **kw)
    assert pooled.shape == (1,)
    assert pooled.item() == pytest.approx(3 / 13)


def test_class_weights_and_background_hand_computed():
    # Two channels of one image (probabilities):
    #   channel 1: p = 0.5 1 0 0, g = 1 1 0 0:  I = 1.5, P = 1.5, G = 2
    #              Dice loss = 1 - (3 + 1) / (3.5 + 1) = 1/9
    #   channel 0: p = 0.5 0 1 1, g = 0 0 1 1:  I = 2, P = 2.5, G = 2
    #              Dice loss = 1 - (4 + 1) / (4.5 + 1) = 1/11
    p1 = torch.tensor([0.5, 1.0, 0.0, 0.0], dtype=torch.float64)
    probs = torch.stack([1 - p1, p1])[None]  # (1, 2, 4)
    kw = {"activation": None, "class_weights": [2.0, 0.5]}
    none = dice_loss(probs, LABELS, reduction="none", **kw)
    assert none[0].tolist() == pytest.approx([2 / 11, 0.5 / 9])  # w_c * loss_c
    assert dice_loss(probs, LABELS, **kw).item() == pytest.approx((2 / 11 + 0.5 / 9) / 2)
    # without background only channel 1 is scored, with its weight 0.5
    assert dice_loss(probs, LABELS, include_background=False, **kw).item() == pytest.approx(0.5 / 9)


def test_raunet_loss_hand_computed():
    # One image of two pixels, two classes; logits = log-probabilities, so softmax gives
    #   pixel 0: (0.75, 0.25), label 0;  pixel 1: (0.5, 0.5), label 1.
    # NLL = -(log 0.75 + log 0.5) / 2
    # class 0: I = 0.75, U = (0.75 + 0.5) + 1 = 2.25, Dice = 1.5 / 2.25 = 2/3
    # class 1: I = 0.5,  U = (0.25 + 0.5) + 1 = 1.75, Dice = 1.0 / 1.75 = 4/7
    # loss = 0.8 NLL - 0.2 (log 2/3 + log 4/7)   (eps = 1e-15 changes nothing visible)
    logits = torch.tensor([[[0.75, 0.5], [0.25, 0.5]]], dtype=torch.float64).log()
    labels = torch.tensor([[0, 1]])
    nll = -(math.log(0.75) + math.log(0.5)) / 2
    expected = 0.8 * nll - 0.2 * (math.log(2 / 3) + math.log(4 / 7))
    assert raunet_loss(logits, labels).item() == pytest.approx(expected, rel=1e-12)
    assert expected == pytest.approx(0.58534, abs=1e-5)
    # without background: only class 1's log-Dice
    no_bg = 0.8 * nll - 0.2 * math.log(4 / 7)
    assert raunet_loss(logits, labels, include_background=False).item() == pytest.approx(no_bg)
    # w = 0 is the plain NLL, w = 1 the plain log-Dice sum
    assert raunet_loss(logits, labels, dice_weight=0.0).item() == pytest.approx(nll)
    assert raunet_loss(logits, labels, dice_weight=1.0).item() == pytest.approx(
        -(math.log(2 / 3) + math.log(4 / 7))
    )
    # The same numbers from one sigmoid channel: z = logit(0.25), logit(0.5) is the
    # foreground (class 1) and the background is 1 - sigmoid(z).
    z = torch.tensor([[[math.log(0.25 / 0.75), 0.0]]], dtype=torch.float64)
    assert raunet_loss(z, labels).item() == pytest.approx(expected, rel=1e-12)


def test_raunet_single_channel_equals_two_channel_form():
    z, labels = _random_case(3, 1, (6, 5), seed=4)
    two = torch.cat([torch.zeros_like(z), z], dim=1)
    for kw in ({}, {"include_background": False}, {"batch": False, "reduction": "none"}):
        _assert_same_loss_and_grad(
            lambda x, kw=kw: raunet_loss(x, labels, **kw),
            lambda x, kw=kw: raunet_loss(torch.cat([torch.zeros_like(x), x], 1), labels, **kw),
            z,
            **F64,
        )
    assert raunet_loss(two, labels).item() == pytest.approx(raunet_loss(z, labels).item())


def test_raunet_matches_a_direct_loop():
    # The reference's definition, written out with a loop over classes.
    logits, labels = _random_case(2, 3, (5, 4), seed=8)
    log_probs = F.log_softmax(logits, 1)
    expected = 0.8 * F.nll_loss(log_probs, labels)
    for c in range(3):
        p, g = log_probs[:, c].exp(), (labels == c).double()
        expected = expected - 0.2 * torch.log(
            (2 * (p * g).sum() + 1e-15) / (p.sum() + g.sum() + 1e-15)
        )
    torch.testing.assert_close(raunet_loss(logits, labels), expected, **F64)
    torch.testing.assert_close(RAUNetLoss()(logits, _one_hot(labels, 3)), expected, **F64)


def test_dice_ce_hand_computed_parts():
    # One image, two pixels, two classes: logits (0, 0) and (2, 0); labels 1, 0.
    # CE = (log 2 + log(1 + e^-2)) / 2 (both pixels).
    logits = torch.tensor([[[0.0, 2.0], [0.0, 0.0]]], dtype=torch.float64)
    labels = torch.tensor([[1, 0]])
    ce = (math.log(2) + math.log(1 + math.exp(-2))) / 2
    assert ce_loss(logits, labels).item() == pytest.approx(ce)
    parts = 0.3 * dice_loss(logits, labels).item() + 2.0 * ce
    assert dice_ce_loss(logits, labels, lambda_dice=0.3, lambda_ce=2.0).item() == pytest.approx(
        parts
    )
    # per image: the mean of "none" equals "mean" without class weights
    logits, labels = _random_case(3, 3, (4, 5), seed=2)
    none = dice_ce_loss(logits, labels, reduction="none")
    assert none.shape == (3,)
    assert none.mean().item() == pytest.approx(dice_ce_loss(logits, labels).item())
    assert none.sum().item() == pytest.approx(dice_ce_loss(logits, labels, reduction="sum").item())


def test_deep_supervision_weights_hand_computed():
    # nnU-Net: 1, 1/2, 1/4, ... with the last set to 0, normalised.
    #   3 scales: (1, 1/2, 0) / 1.5 = 2/3, 1/3, 0
    #   4 scales: (1, 1/2, 1/4, 0) / 1.75 = 4/7, 2/7, 1/7, 0
    assert deep_supervision_weights(3, scheme="nnunet") == pytest.approx([2 / 3, 1 / 3, 0])
    assert deep_supervision_weights(4, scheme="nnunet") == pytest.approx([4 / 7, 2 / 7, 1 / 7, 0])
    # exponential: 3 scales (1, 1/2, 1/4) / 1.75; 4 scales (1, 1/2, 1/4, 1/8) / 1.875
    assert deep_supervision_weights(3, scheme="exponential") == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    assert deep_supervision_weights(4, scheme="exponential") == pytest.approx(
        [8 / 15, 4 / 15, 2 / 15, 1 / 15]
    )
    assert deep_supervision_weights(3, scheme="same") == pytest.approx([1 / 3] * 3)
    assert deep_supervision_weights(4, scheme="same") == pytest.approx([1 / 4] * 4)
    for scheme in ("nnunet", "exponential", "same"):
        assert deep_supervision_weights(1, scheme=scheme) == [1.0]
        for n in range(1, 8):
            assert sum(deep_supervision_weights(n, scheme=scheme)) == pytest.approx(1.0)


def test_deep_supervision_loss_hand_computed():
    # A "loss" that reports the fraction of foreground in the (resized) target shows both
    # the weights and the resizing.
    def foreground(_, target):
        return target.double().mean()

    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :4, :4] = 1  # 1/4 foreground; nearest-exact keeps 1/4 at 4x4 and 2x2
    # nearest-exact samples rows/columns 1, 3, 5, 7 at 4x4 and 2, 6 at 2x2, so this
    # pixel counts at full resolution only (17/64)
    target[:, 0, 7] = 1
    outputs = [torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2)]
    # nnunet, 3 outputs: 2/3 * 17/64 + 1/3 * 1/4 + 0 * 1/4
    value = deep_supervision_loss(foreground, outputs, target)
    assert value.item() == pytest.approx(2 / 3 * 17 / 64 + 1 / 3 * 1 / 4)
    # explicit weights are used as given (not normalised)
    value = deep_supervision_loss(foreground, outputs, target, weights=[1.0, 2.0, 4.0])
    assert value.item() == pytest.approx(17 / 64 + 2 / 4 + 4 / 4)
    # BCE of zero logits is log 2 at every scale; "same" weights average them
    bce = DeepSupervisionLoss(bce_loss, weights="same")
    assert bce(outputs, target).item() == pytest.approx(math.log(2))


# ------------------------------------------------------------------ empty masks


def test_empty_target_and_prediction_documented_values():
    empty = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    labels = torch.zeros(1, 4, 4, dtype=torch.long)
    kw = {"activation": None}
    for loss in (dice_loss, iou_loss):
        # both empty: 1 - smooth_nr / smooth_dr = 0 with equal smoothing
        assert loss(empty, labels, **kw).item() == 0.0
        assert loss(empty, labels, smooth_nr=1e-5, smooth_dr=1e-5, **kw).item() == 0.0
        # without numerator smoothing an empty target always scores 1
        assert loss(empty, labels, smooth_nr=0.0, **kw).item() == 1.0
    # empty target, predicted volume P: P / (P + 1) with the default smoothing
    full = torch.ones_like(empty)
    assert dice_loss(full, labels, **kw).item() == pytest.approx(16 / 17)
    half = torch.full_like(empty, 0.25)  # P = 4
    assert dice_loss(half, labels, **kw).item() == pytest.approx(4 / 5)
    # empty prediction, target of G = 3 pixels: Dice 1 - 1 / (3 + 1); IoU the same
    target = labels.clone()
    target[0, 0, :3] = 1
    assert dice_loss(empty, target, **kw).item() == pytest.approx(3 / 4)
    assert iou_loss(empty, target, **kw).item() == pytest.approx(3 / 4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("sign", [-30.0, 30.0, 0.0])
@pytest.mark.parametrize("empty_target", [True, False])
def test_empty_cases_are_finite_with_finite_gradients(dtype, sign, empty_target):
    # Confident empty predictions (-30), confident full ones (+30) and undecided ones (0),
    # against an empty target or one with an absent class; tiny smoothing too.
    b, channels, spatial = 2, 3, (6, 5)
    labels = torch.zeros(b, *spatial, dtype=torch.long)
    if not empty_target:
        labels[:, 1:3, 1:3] = 1  # class 2 stays absent
    logits = torch.full((b, channels, *spatial), sign, dtype=dtype)
    logits[:, 0] = 0.0
    binary = torch.full((b, 1, *spatial), sign, dtype=dtype)
    losses = [
        lambda x, t: dice_loss(x, t),
        lambda x, t: dice_loss(x, t, smooth_nr=1e-5, smooth_dr=1e-5, squared=True),
        lambda x, t: iou_loss(x, t, smooth_nr=1e-5, smooth_dr=1e-5, batch=True),
        lambda x, t: dice_ce_loss(x, t, include_background=False),
        lambda x, t: raunet_loss(x, t),
        lambda x, t: raunet_loss(x, t, batch=False),
    ]
    for loss in losses:
        for x in (logits, binary):
            t = labels.clamp_max(1) if x.shape[1] == 1 else labels
            value, grad = _value_and_grad(lambda x, loss=loss, t=t: loss(x, t), x)
            assert torch.isfinite(value).all(), loss
            assert torch.isfinite(grad).all(), loss


def test_perfect_empty_prediction_of_empty_target_scores_zero():
    labels = torch.zeros(2, 5, 5, dtype=torch.long)
    logits = torch.full((2, 1, 5, 5), -40.0, dtype=torch.float64)
    for loss in (dice_loss, iou_loss):
        assert loss(logits, labels).item() == pytest.approx(0.0, abs=1e-12)
        assert loss(logits, labels, batch=True).item() == pytest.approx(0.0, abs=1e-12)
    # RAUNet's reference eps (1e-15) is smaller than the predicted volume 50 sigmoid(-40)
    # = 2e-16 only by a factor 5, so its log-Dice of the empty class is not yet 0
    assert raunet_loss(logits, labels, smooth=1.0).item() == pytest.approx(0.0, abs=1e-12)
    assert raunet_loss(logits, labels).item() == pytest.approx(
        -0.2 * math.log(1e-15 / (50 * torch.sigmoid(torch.tensor(-40.0)).item() + 1e-15)), rel=1e-4
    )


def test_half_precision_is_computed_in_float32():
    logits, labels = _random_case(2, 3, (16, 16), seed=6, dtype=torch.float32)
    for loss in (dice_loss, iou_loss, dice_ce_loss, raunet_loss, ce_loss, bce_loss):
        for dtype in (torch.float16, torch.bfloat16):
            value = loss(logits.to(dtype), labels)
            assert value.dtype == torch.float32
            reference = loss(logits.to(dtype).float(), labels)
            torch.testing.assert_close(value, reference)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_inputs_device():
    logits, labels = _random_case(2, 3, (6, 7, 5), seed=12)
    ds = DeepSupervisionLoss(DiceCELoss(class_weights=[0.5, 1.0, 2.0]), weights="exponential")
    outputs = [logits, logits[..., ::2, ::2, ::2].contiguous()]
    expected = ds(outputs, labels)
    cuda_outputs = [y.cuda().requires_grad_(True) for y in outputs]
    value = ds.cuda()(cuda_outputs, labels.cuda())
    assert value.device == cuda_outputs[0].device
    value.backward()
    assert all(y.grad is not None and y.grad.device == value.device for y in cuda_outputs)
    torch.testing.assert_close(value.cpu(), expected, **F64)
    for loss in (dice_loss, iou_loss, raunet_loss, ce_loss, bce_loss):
        out = loss(logits.cuda(), labels.cuda())
        torch.testing.assert_close(out.cpu(), loss(logits, labels), **F64)


# ------------------------------------------------------------------ validation


def test_invalid_inputs_raise_clear_errors():
    """Malformed logits or targets are refused with a message naming the problem."""
    logits, labels = _random_case(2, 3, (4, 5), seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match=r"shape \[2, 4, 5\] or \[2, 1, 4, 5\]"):
        dice_loss(logits, labels[:, None].expand(2, 2, 4, 5))
    with pytest.raises(ValueError, match="spatial size"):
        dice_loss(logits, labels[:, :3])
    with pytest.raises(ValueError, match="batch size"):
        dice_loss(logits, labels[:1])
    with pytest.raises(ValueError, match=r"target\.long\(\)"):
        dice_loss(logits, labels[:, None].float())
    with pytest.raises(ValueError, match=r"0\.\.2"):
        dice_loss(logits, labels + 1)
    with pytest.raises(ValueError, match="binary"):
        dice_loss(logits[:, :1], labels)
    with pytest.raises(ValueError, match="at least one spatial axis"):
        dice_loss(logits[:, :, 0, 0], labels[:, 0, 0])
    with pytest.raises(TypeError, match="floating-point"):
        dice_loss(labels[:, None], labels)
    with pytest.raises(ValueError, match="sigmoid"):
        dice_loss(logits[:, :1], labels.clamp_max(1), activation="softmax")


def test_invalid_options_raise_clear_errors():
    """Bad options, weights or output lists of the losses, their modules and helpers are
    refused with a message naming the argument."""
    logits, labels = _random_case(2, 3, (4, 5), seed=0, dtype=torch.float32)
    with pytest.raises(ValueError, match="activation"):
        dice_loss(logits, labels, activation="relu")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="reduction"):
        iou_loss(logits, labels, reduction="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="smooth_dr"):
        dice_loss(logits, labels, smooth_dr=0.0)
    with pytest.raises(ValueError, match="smooth_nr"):
        DiceLoss(smooth_nr=-1.0)
    with pytest.raises(ValueError, match="class_weights"):
        dice_loss(logits, labels, class_weights=[1.0, 2.0])
    with pytest.raises(ValueError, match="class_weights"):
        DiceLoss(class_weights=[1.0, -2.0, 1.0])
    with pytest.raises(ValueError, match="bce_loss"):
        ce_loss(logits[:, :1], labels.clamp_max(1))
    with pytest.raises(ValueError, match="activation"):
        dice_ce_loss(logits, labels, activation=None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch=False"):
        dice_ce_loss(logits, labels, batch=True, reduction="none")
    with pytest.raises(ValueError, match="batch=False"):
        RAUNetLoss(reduction="sum")
    with pytest.raises(ValueError, match="dice_weight"):
        raunet_loss(logits, labels, dice_weight=1.5)
    with pytest.raises(ValueError, match="smooth"):
        raunet_loss(logits, labels, smooth=0.0)
    with pytest.raises(ValueError, match="weights"):
        DeepSupervisionLoss(dice_loss, weights="linear")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="weights"):
        DeepSupervisionLoss(dice_loss, weights=[1.0, -1.0])
    with pytest.raises(ValueError, match="2 weights for 3 outputs"):
        deep_supervision_loss(dice_loss, [logits] * 3, labels, weights=[0.5, 0.5])
    with pytest.raises(ValueError, match="empty"):
        deep_supervision_loss(dice_loss, [], labels)
    with pytest.raises(ValueError, match="mode"):
        resize_nearest(labels, [2, 2], mode="bilinear")  # type: ignore[arg-type]


# ------------------------------------------------------------------ properties


@st.composite
def _cases(draw, min_channels=1, max_channels=4):
    spatial = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    return (
        draw(st.integers(1, 3)),  # batch
        draw(st.integers(min_channels, max_channels)),  # channels
        spatial,
        draw(st.integers(0, 2**16)),  # seed
        draw(st.sampled_from([0.1, 1.0, 10.0])),  # logit scale
    )


_options = st.fixed_dictionaries(
    {
        "include_background": st.booleans(),
        "squared": st.booleans(),
        "batch": st.booleans(),
    }
)
_smoothing = st.sampled_from([(1.0, 1.0), (1e-5, 1e-5), (0.0, 1e-3), (0.5, 1.0)])
_fast = settings(max_examples=30, deadline=None)


def _activations(channels):
    return ["auto", "sigmoid"] + (["softmax"] if channels > 1 else [])


@_fast
@given(case=_cases(), options=_options, smoothing=_smoothing, soft=st.booleans())
def test_overlap_losses_lie_in_unit_interval(case, options, smoothing, soft):
    b, c, spatial, seed, scale = case
    logits, labels = _random_case(b, c, spatial, seed, scale=scale)
    target = labels
    if soft:  # probabilistic target
        target = torch.rand(logits.shape, generator=torch.Generator().manual_seed(seed + 1))
        target = target.double()
    nr, dr = smoothing
    for activation in _activations(c):
        for loss in (dice_loss, iou_loss):
            value = loss(
                logits,
                target,
                activation=activation,
                smooth_nr=nr,
                smooth_dr=dr,
                reduction="none",
                **options,
            )
            assert (value >= -1e-12).all() and (value <= 1 + 1e-12).all()


@_fast
@given(case=_cases(), options=_options, tiny=st.booleans())
def test_perfect_logits_score_zero(case, options, tiny):
    b, c, spatial, seed, _ = case
    _, labels = _random_case(b, c, spatial, seed)
    onehot = _one_hot(labels.clamp_max(c - 1) if c > 1 else labels.clamp_max(1), c)
    smooth = {"smooth_nr": 1e-5, "smooth_dr": 1e-5} if tiny else {}
    perfect = {"sigmoid": 40.0 * (2 * onehot - 1), "softmax": 40.0 * onehot}
    for activation in _activations(c):
        act = "sigmoid" if activation == "sigmoid" or c == 1 else "softmax"
        logits = perfect[act]
        for loss in (dice_loss, iou_loss):
            value = loss(logits, onehot, activation=activation, **options, **smooth)
            assert value.item() == pytest.approx(0.0, abs=1e-9)
    labels = onehot.argmax(1) if c > 1 else onehot[:, 0].long()
    # smooth=1: the reference's 1e-15 is below the ~1e-17-per-voxel volume of an absent class
    perfect_logits = perfect["sigmoid" if c == 1 else "softmax"]
    assert raunet_loss(perfect_logits, labels, smooth=1.0).item() == pytest.approx(0.0, abs=1e-9)


@_fast
@given(case=_cases(), options=_options, squared=st.booleans())
def test_overlap_losses_are_symmetric_in_probabilities(case, options, squared):
    b, c, spatial, seed, _ = case
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(b, c, *spatial, generator=g, dtype=torch.float64)
    q = torch.rand(b, c, *spatial, generator=g, dtype=torch.float64)
    options = {**options, "squared": squared, "activation": None, "reduction": "none"}
    for loss in (dice_loss, iou_loss):
        torch.testing.assert_close(loss(p, q, **options), loss(q, p, **options), **F64)


@_fast
@given(case=_cases(min_channels=2), options=_options, seed=st.integers(0, 2**16))
def test_invariant_to_batch_order(case, options, seed):
    b, c, spatial, data_seed, scale = case
    logits, labels = _random_case(b, c, spatial, data_seed, scale=scale)
    perm = torch.randperm(b, generator=torch.Generator().manual_seed(seed))
    losses = [
        functools.partial(dice_loss, **options),
        functools.partial(iou_loss, **options),
        functools.partial(dice_ce_loss, **options, class_weights=[0.5] + [1.0] * (c - 1)),
        functools.partial(raunet_loss, batch=options["batch"]),
        functools.partial(bce_loss),
        functools.partial(ce_loss),
    ]
    for loss in losses:
        torch.testing.assert_close(loss(logits[perm], labels[perm]), loss(logits, labels), **F64)
    none = dice_loss(logits, labels, reduction="none", include_background=True)
    torch.testing.assert_close(
        dice_loss(logits[perm], labels[perm], reduction="none", include_background=True),
        none[perm],
        **F64,
    )


@_fast
@given(
    case=_cases(),
    options=_options,
    smoothing=_smoothing,
    reduction=st.sampled_from(["mean", "sum", "none"]),
    weighted=st.booleans(),
)
def test_functional_and_module_forms_agree(case, options, smoothing, reduction, weighted):
    b, c, spatial, seed, scale = case
    logits, labels = _random_case(b, c, spatial, seed, scale=scale)
    nr, dr = smoothing
    weights = [0.5 + k for k in range(c)] if weighted else None
    kw = {**options, "smooth_nr": nr, "smooth_dr": dr, "class_weights": weights}
    kw["reduction"] = reduction
    pairs = [(dice_loss, DiceLoss), (iou_loss, IoULoss)]
    if not (options["batch"] and reduction != "mean"):
        pairs.append((functools.partial(dice_ce_loss, lambda_ce=0.3), DiceCELoss))
    for fn, cls in pairs:
        module = cls(**kw) if cls is not DiceCELoss else cls(lambda_ce=0.3, **kw)
        assert torch.equal(module(logits, labels), fn(logits, labels, **kw))
    raunet_kw = {"batch": options["batch"], "include_background": options["include_background"]}
    if not options["batch"]:
        raunet_kw["reduction"] = reduction
    assert torch.equal(
        RAUNetLoss(**raunet_kw)(logits, labels), raunet_loss(logits, labels, **raunet_kw)
    )


@_fast
@given(case=_cases(), weighted=st.booleans())
def test_label_map_and_one_hot_targets_agree(case, weighted):
    b, c, spatial, seed, scale = case
    logits, labels = _random_case(b, c, spatial, seed, scale=scale)
    onehot = _one_hot(labels, c)
    weights = [1.0 + k for k in range(c)] if weighted else None
    losses = [
        functools.partial(dice_loss, class_weights=weights),
        functools.partial(iou_loss, squared=True),
        functools.partial(dice_ce_loss, class_weights=weights),
        functools.partial(raunet_loss, batch=False),
        functools.partial(bce_loss, class_weights=weights),
    ]
    if c > 1:
        losses.append(functools.partial(ce_loss, class_weights=weights))
    for loss in losses:
        expected = loss(logits, labels)
        torch.testing.assert_close(loss(logits, labels[:, None]), expected, **F64)
        torch.testing.assert_close(loss(logits, onehot), expected, **F64)


# ------------------------------------------------------------------ deep supervision


@_fast
@given(
    size=st.lists(st.integers(1, 12), min_size=1, max_size=3),
    out=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["nearest-exact", "nearest"]),
)
def test_nearest_resize_keeps_only_original_labels(size, out, seed, mode):
    g = torch.Generator().manual_seed(seed)
    values = torch.tensor([0, 3, 7])  # non-contiguous ids: any blending would show
    labels = values[torch.randint(0, 3, (2, *size), generator=g)]
    new_size = out[: len(size)]
    resized = resize_nearest(labels, new_size, mode=mode)
    assert resized.dtype == labels.dtype
    assert resized.shape == (2, *new_size)
    assert set(resized.unique().tolist()) <= set(labels.unique().tolist())
    # the same picks as F.interpolate on a float copy (exact for small integers)
    ref = F.interpolate(labels[:, None].double(), size=new_size, mode=mode)[:, 0]
    assert torch.equal(resized, ref.long())
    # a one-hot target stays one-hot, and equals the one-hot of the resized labels
    onehot = _one_hot(labels, 8)
    assert torch.equal(resize_nearest(onehot, new_size, mode=mode), _one_hot(resized, 8))


def test_deep_supervision_with_a_real_model():
    from attnunet import UNet

    torch.manual_seed(0)
    model = UNet(2, 1, 3, channels=(4, 8, 16, 32), deep_supervision=True)
    x = torch.randn(2, 1, 13, 10)
    target = torch.randint(0, 3, (2, 13, 10))
    outputs = model(x)
    assert [tuple(y.shape[2:]) for y in outputs] == [(13, 10), (7, 5), (4, 3)]
    for weights in ("exponential", "nnunet"):
        model.zero_grad()
        loss = DeepSupervisionLoss(DiceCELoss(include_background=False), weights=weights)
        value = loss(model(x), target)
        assert value.shape == () and torch.isfinite(value)
        value.backward()
        grads = [model.head.conv.weight.grad] + [h.conv.weight.grad for h in model.aux_heads]
        assert all(grad is not None for grad in grads)
        # the coarsest head has weight 0 under "nnunet": scored, so its gradient exists
        # (distributed training needs that), but it is zero
        coarsest_zero = [bool((grad == 0).all()) for grad in grads]
        assert coarsest_zero == [False, False, weights == "nnunet"]
    # a single tensor is scored alone with weight 1
    single = UNet(2, 1, 3, channels=(4, 8, 16))(x)
    torch.testing.assert_close(
        DeepSupervisionLoss(DiceCELoss())(single, target), DiceCELoss()(single, target)
    )


def test_deep_supervision_module_carries_the_inner_loss_buffers():
    ds = DeepSupervisionLoss(DiceLoss(class_weights=[1.0, 2.0]), weights=(0.7, 0.3))
    assert "loss.class_weights" in ds.state_dict()
    ds = ds.double()
    assert ds.loss.class_weights.dtype == torch.float64
    outputs = [torch.randn(1, 2, 6, 6, 6), torch.randn(1, 2, 3, 3, 3)]
    target = torch.randint(0, 2, (1, 1, 6, 6, 6))  # (B, 1, *S) label map, 3D
    # nearest-exact from 6 to 3 picks voxels 1, 3, 5
    expected = 0.7 * ds.loss(outputs[0], target) + 0.3 * ds.loss(
        outputs[1], target[..., 1::2, 1::2, 1::2]
    )
    torch.testing.assert_close(ds(outputs, target), expected)


# ------------------------------------------------------------------ packaging


def test_losses_package_imports_no_model_code():
    # A fresh interpreter: `import attnunet.losses` loads only the losses package and the
    # ground floor of attnunet (the root package resolves its names lazily), never the
    # model zoo, the data readers or timm.
    code = (
        "import sys, attnunet.losses as losses\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('attnunet.'))\n"
        "own = ('attnunet.losses', 'attnunet.layers')\n"
        "foreign = [m for m in loaded if not m.startswith(own)]\n"
        "assert not foreign, foreign\n"
        "assert 'timm' not in sys.modules\n"
        "print(losses.dice_loss.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "dice_loss"


@pytest.mark.parametrize(
    ("call", "by_name"),
    [
        (
            lambda: deep_supervision_weights(3, "same"),
            lambda: deep_supervision_weights(3, scheme="same"),
        ),
        (
            lambda: DeepSupervisionLoss(dice_loss, "same"),
            lambda: DeepSupervisionLoss(dice_loss, weights="same"),
        ),
        (
            lambda: DeepSupervisionLoss(dice_loss, [0.5, 0.5], "nearest"),
            lambda: DeepSupervisionLoss(dice_loss, weights=[0.5, 0.5], mode="nearest"),
        ),
    ],
    ids=["deep_supervision_weights", "DeepSupervisionLoss-weights", "DeepSupervisionLoss-all"],
)
def test_options_are_keyword_only(call, by_name):
    with pytest.raises(TypeError, match="positional"):
        call()
    by_name()  # the same option passed by name is accepted


def test_every_public_loss_takes_its_options_by_name():
    # Only tensors (and the wrapped loss, a count, a size) are positional: an option with
    # a default must be keyword-only, in every function and every module's constructor.
    import inspect

    from attnunet import losses

    operands = {"logits", "target", "outputs", "loss", "n", "size", "self"}
    checked = 0
    for name in losses.__all__:
        obj = getattr(losses, name)
        if inspect.isclass(obj) and issubclass(obj, torch.nn.Module):
            fn = obj.__init__
        elif inspect.isfunction(obj):
            fn = obj
        else:
            continue  # type aliases
        checked += 1
        for p in inspect.signature(fn).parameters.values():
            if p.kind is p.POSITIONAL_OR_KEYWORD:
                assert p.name in operands, (name, p.name)
                assert p.default is p.empty, (name, p.name)
            else:
                assert p.kind is p.KEYWORD_ONLY, (name, p.name, p.kind)
    assert checked == 14
