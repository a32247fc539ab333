"""V_rand and V_info: hand-computed values, a brute-force pair count, scikit-image, properties."""

import itertools
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import entropy
from skimage.measure import label as sk_label
from skimage.metrics import adapted_rand_error, variation_of_information

from attnunet.metrics.partition import v_info, v_rand

# ------------------------------------------------------------------ hand-computed values

# One 1x4 image (B = 1):
#   pred   = 1 1 2 2
#   target = 1 1 1 2
# joint counts n_ij: (1,1) = 2, (2,1) = 1, (2,2) = 1        sum n_ij^2 = 4 + 1 + 1 = 6
# pred sizes a = (2, 2)                                      sum a_i^2  = 8
# target sizes b = (3, 1)                                    sum b_j^2  = 10
PRED_1X4 = torch.tensor([[1, 1, 2, 2]])
TARGET_1X4 = torch.tensor([[1, 1, 1, 2]])
S1 = {"spatial_dims": 1}  # (B, W) inputs: a batch of 1-D images
S2 = {"spatial_dims": 2}  # (B, H, W) inputs: a batch of 2-D images


def test_v_rand_hand_computed_1d():
    # all pairs: 6 / (8/2 + 10/2) = 6/9
    assert v_rand(PRED_1X4, TARGET_1X4, **S1).item() == pytest.approx(6 / 9)
    # distinct pairs (n = 4 self-pairs removed): (6 - 4) / ((8 - 4)/2 + (10 - 4)/2) = 2/5
    assert v_rand(PRED_1X4, TARGET_1X4, **S1, pairs="distinct").item() == pytest.approx(2 / 5)
    # alpha = 1 (merge score): 6 / 8;  alpha = 0 (split score): 6 / 10
    assert v_rand(PRED_1X4, TARGET_1X4, **S1, alpha=1.0).item() == pytest.approx(6 / 8)
    assert v_rand(PRED_1X4, TARGET_1X4, **S1, alpha=0.0).item() == pytest.approx(6 / 10)
    # alpha = 0.25: 6 / (8/4 + 3*10/4) = 6 / 9.5
    assert v_rand(PRED_1X4, TARGET_1X4, **S1, alpha=0.25).item() == pytest.approx(6 / 9.5)


def test_v_info_hand_computed_1d():
    # In bits: H(S) = H(1/2, 1/2) = 1; H(T) = H(3/4, 1/4) = 3/4 log2(4/3) + 1/4 log2(4);
    # H(S, T) = H(1/2, 1/4, 1/4) = 1.5; I = H(S) + H(T) - H(S, T).
    hs = 1.0
    ht = 0.75 * math.log2(4 / 3) + 0.25 * 2  # = 0.811278...
    mutual = hs + ht - 1.5  # = 0.311278...
    assert v_info(PRED_1X4, TARGET_1X4, **S1).item() == pytest.approx(mutual / (hs / 2 + ht / 2))
    # alpha = 0: I / H(S); alpha = 1: I / H(T)
    assert v_info(PRED_1X4, TARGET_1X4, **S1, alpha=0.0).item() == pytest.approx(mutual / hs)
    assert v_info(PRED_1X4, TARGET_1X4, **S1, alpha=1.0).item() == pytest.approx(mutual / ht)


# One 2x3 image:
#   pred      target
#   3 3 3     0 1 1
#   0 0 4     0 2 2
PRED_2X3 = np.array([[[3, 3, 3], [0, 0, 4]]])
TARGET_2X3 = np.array([[[0, 1, 1], [0, 2, 2]]])


def test_hand_computed_2d_with_and_without_background():
    # All 6 voxels (pixel form default): (pred, target) pairs per voxel
    #   (3,0) (3,1) (3,1) (0,0) (0,2) (4,2)
    # n_ij: (3,0) 1, (3,1) 2, (0,0) 1, (0,2) 1, (4,2) 1     sum n_ij^2 = 1 + 4 + 1 + 1 + 1 = 8
    # a: 3 -> 3, 0 -> 2, 4 -> 1                              sum a^2 = 9 + 4 + 1 = 14
    # b: 0 -> 2, 1 -> 2, 2 -> 2                              sum b^2 = 12
    # V_rand = 8 / (14/2 + 12/2) = 8/13
    assert float(v_rand(PRED_2X3, TARGET_2X3, **S2)) == pytest.approx(8 / 13)

    # Dropping target background leaves the 4 voxels (3,1) (3,1) (0,2) (4,2):
    # n_ij: (3,1) 2, (0,2) 1, (4,2) 1   sum = 6;  a = (2, 1, 1) sum = 6;  b = (2, 2) sum = 8
    # V_rand = 6 / (6/2 + 8/2) = 6/7; distinct: (6-4) / ((6-4)/2 + (8-4)/2) = 2/3
    # merge score (alpha=1) 6/6 = 1: pred only splits, never merges; split score 6/8.
    kw = {"ignore_background": True}
    assert float(v_rand(PRED_2X3, TARGET_2X3, **S2, **kw)) == pytest.approx(6 / 7)
    assert float(v_rand(PRED_2X3, TARGET_2X3, **S2, pairs="distinct", **kw)) == pytest.approx(2 / 3)
    assert float(v_rand(PRED_2X3, TARGET_2X3, **S2, alpha=1.0, **kw)) == 1.0
    assert float(v_rand(PRED_2X3, TARGET_2X3, **S2, alpha=0.0, **kw)) == pytest.approx(6 / 8)
    # In bits: H(S) = H(1/2, 1/4, 1/4) = 1.5, H(T) = H(1/2, 1/2) = 1, and pred refines
    # target so H(T | S) = 0, I = H(T) = 1. V_info = 1 / (1.5/2 + 1/2) = 0.8;
    # merge score I / H(T) = 1; split score I / H(S) = 2/3.
    assert float(v_info(PRED_2X3, TARGET_2X3, **S2, **kw)) == pytest.approx(0.8)
    assert float(v_info(PRED_2X3, TARGET_2X3, **S2, alpha=1.0, **kw)) == 1.0
    assert float(v_info(PRED_2X3, TARGET_2X3, **S2, alpha=0.0, **kw)) == pytest.approx(2 / 3)


def test_segment_form_hand_computed():
    # pred = 1 1 0 1 1, target = 2 2 2 2 2 (no target background: all 5 voxels scored).
    pred = np.array([[1, 1, 0, 1, 1]])
    target = np.array([[2, 2, 2, 2, 2]])
    # pixel form: segments {0,1,3,4} (label 1) and {2} (label 0) vs one segment:
    # sum n_ij^2 = 16 + 1 = 17 = sum a^2; sum b^2 = 25 -> 17 / (17/2 + 25/2) = 17/21
    assert float(v_rand(pred, target, **S1)) == pytest.approx(17 / 21)
    # segment form: label 1 is two components {0,1}, {3,4}, plus background {2}:
    # sum n_ij^2 = 4 + 4 + 1 = 9 = sum a^2 -> 9 / (9/2 + 25/2) = 9/17
    assert float(v_rand(pred, target, **S1, form="segment")) == pytest.approx(9 / 17)
    # touching different labels join one segment in the segment form
    assert (
        float(v_rand(np.array([[1, 1, 2, 2]]), np.array([[5, 5, 5, 5]]), **S1, form="segment")) == 1
    )


def test_segment_form_connectivity_2d():
    # pred has a diagonal pair, target is one 2x2 square:
    #   1 0     1 1
    #   0 1     1 1
    pred = torch.tensor([[[1, 0], [0, 1]]])
    target = torch.ones_like(pred)
    # connectivity 1: pred segments {a}, {d}, background {b, c}: sum n^2 = sum a^2 = 1 + 1 + 4
    # = 6, sum b^2 = 16 -> 6 / (6/2 + 16/2) = 6/11
    assert v_rand(pred, target, spatial_dims=2, form="segment").item() == pytest.approx(6 / 11)
    # connectivity 2: {a, d} joins, background {b, c}: 4 + 4 = 8 -> 8 / (8/2 + 16/2) = 2/3
    out = v_rand(pred, target, spatial_dims=2, form="segment", connectivity=2)
    assert out.item() == pytest.approx(2 / 3)
    # V_info: with connectivity 2 pred has H(S) = 1 bit, target H(T) = 0, I = 0 -> 0
    assert v_info(pred, target, spatial_dims=2, form="segment", connectivity=2).item() == 0.0


def test_ignore_background_defaults():
    # pixel form keeps background by default, segment form drops it
    assert float(v_rand(PRED_2X3, TARGET_2X3, spatial_dims=2)) == float(
        v_rand(PRED_2X3, TARGET_2X3, spatial_dims=2, ignore_background=False)
    )
    seg = v_rand(PRED_2X3, TARGET_2X3, spatial_dims=2, form="segment")
    assert float(seg) == float(
        v_rand(PRED_2X3, TARGET_2X3, spatial_dims=2, form="segment", ignore_background=True)
    )
    assert float(seg) != float(
        v_rand(PRED_2X3, TARGET_2X3, spatial_dims=2, form="segment", ignore_background=False)
    )


# ------------------------------------------------------------------ edge cases


def test_no_voxels_left_takes_empty_value():
    # Image 0 is the 1x4 example (V_rand 2/3), image 1 has an all-background target.
    pred = torch.tensor([[1, 1, 2, 2], [1, 2, 3, 4]])
    target = torch.tensor([[1, 1, 1, 2], [0, 0, 0, 0]])
    for metric in (v_rand, v_info):
        out = metric(pred, target, spatial_dims=1, ignore_background=True, reduction="none")
        assert out[1].item() == 1.0
        out = metric(
            pred, target, spatial_dims=1, ignore_background=True, empty_value=0.25, reduction="none"
        )
        assert out[1].item() == 0.25
        nan = metric(pred, target, spatial_dims=1, ignore_background=True, empty_value=math.nan)
        assert nan.item() == pytest.approx(metric(pred[:1], target[:1], spatial_dims=1).item())
        assert math.isnan(
            metric(
                pred[1:], target[1:], spatial_dims=1, ignore_background=True, empty_value=math.nan
            )
        )


def test_single_voxel_image():
    one, other = np.array([[3]]), np.array([[5]])
    # all pairs: the voxel paired with itself agrees, 1 / 1
    assert float(v_rand(one, other, spatial_dims=1, empty_value=0.5)) == 1.0
    # distinct pairs: 0 / 0 -> empty_value
    assert float(v_rand(one, other, spatial_dims=1, pairs="distinct", empty_value=0.5)) == 0.5
    # V_info: H(S) = H(T) = 0 -> empty_value
    assert float(v_info(one, other, spatial_dims=1, empty_value=0.5)) == 0.5


def test_trivial_partitions():
    # Both partitions one segment (different ids): identical, V_info 0/0 -> empty_value 1.0
    pred = np.full((1, 3, 3), 4)
    target = np.full((1, 3, 3), 9)
    assert float(v_info(pred, target, spatial_dims=2)) == 1.0
    assert float(v_rand(pred, target, spatial_dims=2)) == 1.0
    assert float(v_info(pred, target, spatial_dims=2, empty_value=0.0)) == 0.0
    # One trivial side: the denominator is not 0 for 0 < alpha < 1, and I = 0
    split = np.array([[[1, 1, 1], [2, 2, 2], [2, 2, 2]]])
    assert float(v_info(pred, split, spatial_dims=2)) == 0.0
    assert float(v_info(split, target, spatial_dims=2)) == 0.0
    # alpha = 0 is I / H(S): with H(S) = 0 it is 0 / 0 (no false split possible)
    assert float(v_info(pred, split, spatial_dims=2, alpha=0.0, empty_value=0.5)) == 0.5
    assert float(v_info(pred, split, spatial_dims=2, alpha=1.0, empty_value=0.5)) == 0.0


def test_all_singletons_distinct_pairs():
    # Every voxel its own segment in both: no pair of distinct voxels shares a segment
    pred = np.arange(6).reshape(1, 6)
    target = pred * 3 + 1
    assert float(v_rand(pred, target, spatial_dims=1, pairs="distinct", empty_value=0.5)) == 0.5
    assert float(v_rand(pred, target, spatial_dims=1)) == 1.0  # 6 / 6
    assert float(v_info(pred, target, spatial_dims=1)) == pytest.approx(1.0)


# ------------------------------------------------------------------ brute-force pair count


def _brute_force_rand(pred: np.ndarray, target: np.ndarray, alpha: float, distinct: bool):
    """Count ordered voxel pairs directly: pairs in one segment of pred, of target, of both."""
    p, t = pred.ravel().tolist(), target.ravel().tolist()
    same_p = same_t = same_both = 0
    for u, v in itertools.product(range(len(p)), repeat=2):
        if distinct and u == v:
            continue
        sp, st_ = p[u] == p[v], t[u] == t[v]
        same_p += sp
        same_t += st_
        same_both += sp and st_
    return same_both / (alpha * same_p + (1 - alpha) * same_t)


@pytest.mark.parametrize("pairs", ["all", "distinct"])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_v_rand_matches_brute_force_pair_count(pairs, alpha):
    rng = np.random.default_rng(7)
    shapes = [(5, 6), (4, 3, 2), (30,)]
    for shape in shapes:
        pred = rng.integers(0, 4, (3, *shape))
        target = rng.integers(0, 3, (3, *shape)) * 100  # ids 0, 100, 200
        out = v_rand(
            pred, target, spatial_dims=len(shape), alpha=alpha, pairs=pairs, reduction="none"
        )
        ref = [
            _brute_force_rand(p, t, alpha, pairs == "distinct")
            for p, t in zip(pred, target, strict=True)
        ]
        np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)


# ------------------------------------------------------------------ scikit-image


def test_skimage_vi_argument_order():
    # variation_of_information(image0, image1) returns [H(image1 | image0), H(image0 | image1)]:
    # a constant image1 is determined by anything, so H(image1 | image0) = 0, while
    # H(image0 | image1) = H(image0) = H(1/2, 1/2) = 1 bit.
    image0 = np.array([1, 1, 2, 2])
    image1 = np.array([5, 5, 5, 5])
    np.testing.assert_allclose(variation_of_information(image0, image1), [0.0, 1.0], atol=1e-12)


# The references return NaN for a 0 / 0 (e.g. both partitions one segment), so the
# comparisons below call our metrics with empty_value=nan: NaN must then match NaN.


def _sk_rand(pred: np.ndarray, target: np.ndarray, ignore: bool, alpha: float = 0.5) -> float:
    # skimage's alpha weighs the true image's term: ours is 1 - alpha there.
    with np.errstate(invalid="ignore", divide="ignore"):
        are, _, _ = adapted_rand_error(
            target, pred, ignore_labels=(0,) if ignore else (), alpha=1.0 - alpha
        )
    return 1.0 - are


def _sk_info(pred: np.ndarray, target: np.ndarray, ignore: bool, alpha: float = 0.5) -> float:
    keep = target != 0 if ignore else np.ones(target.shape, bool)
    h_pred_given_target, _ = variation_of_information(
        target, pred, ignore_labels=(0,) if ignore else ()
    )
    hs = entropy(np.unique(pred[keep], return_counts=True)[1], base=2)
    ht = entropy(np.unique(target[keep], return_counts=True)[1], base=2)
    mutual = hs - h_pred_given_target
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.float64(mutual) / ((1 - alpha) * hs + alpha * ht))


def _blobs(rng: np.random.Generator, shape: tuple[int, ...], cell: int, labels: int):
    """Piecewise-constant label map: a coarse random grid repeated ``cell`` times per axis."""
    coarse = rng.integers(0, labels, tuple(-(-s // cell) for s in shape))
    for axis in range(len(shape)):
        coarse = np.repeat(coarse, cell, axis=axis)
    return coarse[tuple(slice(0, s) for s in shape)]


def _cases(rng: np.random.Generator):
    """Random and structured (pred, target) batches in 2D and 3D."""
    for shape in [(16, 16), (6, 7, 8)]:
        b = (3, *shape)
        yield rng.integers(0, 5, b), rng.integers(0, 4, b)
        yield rng.integers(0, 2, b), rng.integers(0, 2, b)
        target = np.stack([_blobs(rng, shape, 3, 6) for _ in range(3)])
        # prediction: the target with 10% of voxels relabelled, one label merged into another
        noisy = np.where(rng.random(b) < 0.1, rng.integers(0, 6, b), target)
        yield np.where(noisy == 5, 4, noisy), target
        yield target * 7 + 1000 * (target > 0), target  # relabelled: perfect
        yield np.roll(target, 1, axis=1), target  # shifted by one voxel


@pytest.mark.parametrize("ignore", [False, True])
def test_pixel_form_matches_skimage(ignore):
    rng = np.random.default_rng(0)
    for pred, target in _cases(rng):
        kw = {"ignore_background": ignore, "reduction": "none", "empty_value": math.nan}
        for alpha in (0.5, 0.2):
            ref_rand = [_sk_rand(p, t, ignore, alpha) for p, t in zip(pred, target, strict=True)]
            ref_info = [_sk_info(p, t, ignore, alpha) for p, t in zip(pred, target, strict=True)]
            out_rand = v_rand(
                pred, target, spatial_dims=pred.ndim - 1, pairs="distinct", alpha=alpha, **kw
            )
            np.testing.assert_allclose(out_rand, ref_rand, rtol=0, atol=1e-12)
            np.testing.assert_allclose(
                v_info(pred, target, spatial_dims=pred.ndim - 1, alpha=alpha, **kw),
                ref_info,
                atol=1e-12,
            )


@pytest.mark.parametrize("ignore", [False, True])
def test_segment_form_matches_skimage(ignore):
    rng = np.random.default_rng(1)
    for pred, target in _cases(rng):
        for connectivity in range(1, pred.ndim):
            p_seg = [sk_label(p != 0, connectivity=connectivity) for p in pred]
            t_seg = [sk_label(t != 0, connectivity=connectivity) for t in target]
            kw = {
                "form": "segment",
                "connectivity": connectivity,
                "ignore_background": ignore,
                "reduction": "none",
                "empty_value": math.nan,
            }
            ref = [_sk_rand(p, t, ignore) for p, t in zip(p_seg, t_seg, strict=True)]
            out = v_rand(pred, target, spatial_dims=pred.ndim - 1, pairs="distinct", **kw)
            np.testing.assert_allclose(out, ref, rtol=0, atol=1e-12)
            ref = [_sk_info(p, t, ignore) for p, t in zip(p_seg, t_seg, strict=True)]
            np.testing.assert_allclose(
                v_info(pred, target, spatial_dims=pred.ndim - 1, **kw), ref, rtol=0, atol=1e-12
            )


def test_many_labels_sparse_table_matches_skimage():
    # 400 x 400 labels present: the contingency table is built by sorting keys, not by a
    # dense bincount; ids up to 2**40 exercise the sort-based relabelling as well.
    rng = np.random.default_rng(3)
    target = rng.permutation(np.repeat(np.arange(400), 3))[None]  # 1200 voxels
    pred = np.where(rng.random(target.shape) < 0.3, rng.integers(0, 400, target.shape), target)
    big = pred.astype(np.int64) * 2**30 + 5
    for p in (pred, big):
        assert float(v_rand(p, target, spatial_dims=1, pairs="distinct")) == pytest.approx(
            _sk_rand(pred[0], target[0], False), abs=1e-12
        )
        assert float(v_info(p, target, spatial_dims=1)) == pytest.approx(
            _sk_info(pred[0], target[0], False), abs=1e-12
        )


# ------------------------------------------------------------------ input kinds


def test_numpy_and_torch_agree_and_types():
    rng = np.random.default_rng(5)
    pred, target = rng.integers(0, 4, (2, 5, 5)), rng.integers(0, 3, (2, 5, 5))
    for metric in (v_rand, v_info):
        np_out = metric(pred, target, spatial_dims=2)
        t_out = metric(torch.from_numpy(pred), torch.from_numpy(target), spatial_dims=2)
        assert isinstance(np_out, np.floating) and np_out.dtype == np.float64
        assert t_out.dtype == torch.float32 and t_out.shape == ()
        assert t_out.item() == pytest.approx(float(np_out), rel=1e-6)
        np_none = metric(pred, target, spatial_dims=2, reduction="none")
        assert np_none.dtype == np.float64 and np_none.shape == (2,)
        assert float(np_out) == pytest.approx(np_none.mean())


def test_label_dtypes_give_the_same_scores():
    rng = np.random.default_rng(6)
    pred, target = rng.integers(0, 3, (2, 4, 5)), rng.integers(0, 3, (2, 4, 5))
    ref = v_info(pred, target, spatial_dims=2, reduction="none")
    for dtype in (np.uint8, np.int16, np.uint16, np.uint32, np.uint64):
        out = v_info(pred.astype(dtype), target.astype(dtype), spatial_dims=2, reduction="none")
        np.testing.assert_array_equal(out, ref)
    # negative labels are just other names for segments
    np.testing.assert_allclose(
        v_info(pred - 1, target - 1, spatial_dims=2, reduction="none"), ref, atol=1e-15
    )
    # bool masks are two-segment partitions
    mp, mt = pred > 0, target > 0
    np.testing.assert_allclose(
        v_rand(mp, mt, spatial_dims=2), v_rand(mp.astype(int) * 5, mt.astype(int), spatial_dims=2)
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_runs_on_the_inputs_device():
    out = v_rand(PRED_1X4.cuda(), TARGET_1X4.cuda(), spatial_dims=1, reduction="none")
    assert out.device == PRED_1X4.cuda().device and out.dtype == torch.float32
    assert out.tolist() == pytest.approx([6 / 9])


def test_invalid_arguments():
    p, t = PRED_1X4, TARGET_1X4  # one 1-D image of 4
    s1 = {"spatial_dims": 1}
    for metric in (v_rand, v_info):
        # probabilities are refused; floats holding whole numbers are label maps
        with pytest.raises(TypeError, match="threshold"):
            metric(p.float() * 0.5, t, **s1)
        assert metric(p.float(), t, **s1) == metric(p, t, **s1)
        with pytest.raises(TypeError, match=r"numpy\.ndarray"):
            metric(p.tolist(), t, **s1)
        with pytest.raises(ValueError, match="same images"):
            metric(p, t[:, :3], **s1)
        # no spatial axis left for 2 spatial dims; and no spatial_dims at all
        with pytest.raises(ValueError, match="spatial"):
            metric(p[0], t[0], spatial_dims=2)
        with pytest.raises(ValueError, match="pass spatial_dims"):
            metric(p, t)
        for alpha in (-0.1, 1.5, math.nan, True, "0.5"):
            with pytest.raises(ValueError, match=r"alpha must be a number in \[0, 1\]"):
                metric(p, t, alpha=alpha, **s1)
        with pytest.raises(ValueError, match="'pixel', 'segment'"):
            metric(p, t, form="segments", **s1)
        for connectivity in (0, 2, True, 1.0):
            with pytest.raises(ValueError, match=r"connectivity must be an int in 1\.\.1"):
                metric(p, t, connectivity=connectivity, **s1)
        with pytest.raises(ValueError, match=r"in 1\.\.3 for 3 spatial axes"):
            metric(
                torch.zeros(1, 2, 2, 2, dtype=torch.long),
                torch.zeros(1, 2, 2, 2).long(),
                spatial_dims=3,
                connectivity=4,
            )
        with pytest.raises(ValueError, match="reduction"):
            metric(p, t, reduction="sum", **s1)
        with pytest.raises(ValueError, match="ignore_background"):
            metric(p, t, ignore_background=0, **s1)
    with pytest.raises(ValueError, match="'all', 'distinct'"):
        v_rand(p, t, pairs="unique", **s1)


# ------------------------------------------------------------------ properties

_shapes = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5)
_fast = settings(max_examples=40, deadline=None)


@st.composite
def _label_pairs(draw, max_label=4):
    shape = draw(_shapes)
    labels = st.integers(0, max_label)
    return (
        draw(hnp.arrays(np.int64, shape, elements=labels)),
        draw(hnp.arrays(np.int64, shape, elements=labels)),
    )


_forms = st.sampled_from(["pixel", "segment"])
# multiples of 1/16, so that 1 - alpha is exact too (at alpha = 0 or 1 a trivial partition
# makes V_info a 0 / 0, so alpha = 1e-308 and 1 - 1e-308 = 1.0 would not mirror each other)
_alphas = st.integers(0, 16).map(lambda k: k / 16)


@_fast
@given(
    pair=_label_pairs(),
    form=_forms,
    alpha=_alphas,
    pairs=st.sampled_from(["all", "distinct"]),
)
def test_scores_lie_in_unit_interval(pair, form, alpha, pairs):
    p, t = pair
    for out in (
        v_rand(
            p, t, spatial_dims=p.ndim - 1, form=form, alpha=alpha, pairs=pairs, reduction="none"
        ),
        v_info(p, t, spatial_dims=p.ndim - 1, form=form, alpha=alpha, reduction="none"),
    ):
        assert ((out >= 0) & (out <= 1)).all()


@_fast
@given(pair=_label_pairs(), form=_forms, alpha=_alphas)
def test_identity_scores_one(pair, form, alpha):
    p, _ = pair
    for pairs in ("all", "distinct"):
        out = v_rand(
            p, p, spatial_dims=p.ndim - 1, form=form, alpha=alpha, pairs=pairs, reduction="none"
        )
        np.testing.assert_allclose(out, 1.0, rtol=0, atol=1e-12)
    np.testing.assert_allclose(
        v_info(p, p, spatial_dims=p.ndim - 1, form=form, alpha=alpha, reduction="none"),
        1.0,
        atol=1e-12,
    )


@_fast
@given(pair=_label_pairs(), form=_forms, alpha=_alphas)
def test_swapping_inputs_swaps_alpha(pair, form, alpha):
    # with the background kept, S and T play mirrored roles: alpha = 0.5 is symmetric, and
    # in general swapping pred and target turns alpha into 1 - alpha
    p, t = pair
    kw = {"form": form, "ignore_background": False, "reduction": "none"}
    for metric in (v_rand, v_info):
        np.testing.assert_allclose(
            metric(p, t, spatial_dims=p.ndim - 1, **kw),
            metric(t, p, spatial_dims=p.ndim - 1, **kw),
            atol=1e-12,
        )
        np.testing.assert_allclose(
            metric(p, t, spatial_dims=p.ndim - 1, alpha=alpha, **kw),
            metric(t, p, spatial_dims=p.ndim - 1, alpha=1 - alpha, **kw),
            atol=1e-12,
        )


@_fast
@given(pair=_label_pairs(), seed=st.integers(0, 2**32 - 1), ignore=st.booleans())
def test_invariant_to_relabelling(pair, seed, ignore):
    # Any injective renaming of the labels leaves the partitions and so the scores alone;
    # with the background ignored the target's 0 must stay 0.
    p, t = pair
    rng = np.random.default_rng(seed)
    p_ids = rng.choice(10**6, size=5, replace=False)
    t_ids = rng.choice(np.arange(1, 10**6), size=5, replace=False)
    if ignore:
        t_ids[0] = 0
    kw = {"ignore_background": ignore, "reduction": "none"}
    for metric in (v_rand, v_info):
        np.testing.assert_allclose(
            metric(p_ids[p], t_ids[t], spatial_dims=p.ndim - 1, **kw),
            metric(p, t, spatial_dims=p.ndim - 1, **kw),
            atol=1e-12,
        )


@_fast
@given(pair=_label_pairs(), seed=st.integers(0, 2**16), form=_forms)
def test_mean_is_invariant_to_batch_order(pair, seed, form):
    p, t = pair
    perm = np.random.default_rng(seed).permutation(p.shape[0])
    for metric in (v_rand, v_info):
        mean = float(metric(p, t, spatial_dims=p.ndim - 1, form=form))
        assert float(metric(p[perm], t[perm], spatial_dims=p.ndim - 1, form=form)) == pytest.approx(
            mean, abs=1e-12
        )
        per_image = metric(p, t, spatial_dims=p.ndim - 1, form=form, reduction="none")
        np.testing.assert_array_equal(
            metric(p[perm], t[perm], spatial_dims=p.ndim - 1, form=form, reduction="none"),
            per_image[perm],
        )
        assert mean == pytest.approx(per_image.mean(), abs=1e-12)
