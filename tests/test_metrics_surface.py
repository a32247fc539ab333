"""Surface distances: hand-computed values, MedPy, MONAI, SciPy's erosion, properties."""

import math
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import ndimage

from attnunet.metrics.surface import (
    SurfaceDistances,
    assd,
    hausdorff_distance,
    hd95,
    surface_distances,
    surface_metrics,
    surface_to_surface,
    surface_voxels,
)

medpy_binary = pytest.importorskip("medpy.metric.binary")
monai_metrics = pytest.importorskip("monai.metrics")


def blobs(shape, seed, count=3, noise=0.0):
    """A random mask made of a few smoothed blobs, plus optional speckle noise."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), sigma=max(shape) / 8)
    mask = field > np.quantile(field, 1 - 0.25 * count / 3)
    if noise:
        mask ^= rng.random(shape) < noise
    return mask


def pairs(dims, n=4, noise=0.0):
    size = {2: (37, 29), 3: (19, 23, 17)}[dims]
    return [
        (blobs(size, 2 * i, noise=noise), blobs(size, 2 * i + 1, noise=noise)) for i in range(n)
    ]


# ----------------------------------------------------------------------- hand-computed


def test_hand_computed_1d_segments():
    # A row of 9: pred covers 1..3, target 6..7. The row is one voxel tall, so every voxel
    # touches the border and is surface. d(pred->target): 5, 4, 3; d(target->pred): 3, 4.
    a = np.zeros((1, 1, 9), dtype=bool)
    a[0, 0, 1:4] = True
    b = np.zeros((1, 1, 9), dtype=bool)
    b[0, 0, 6:8] = True
    out = surface_metrics(a, b, spatial_dims=2, reduction="none")
    assert out["hd"].tolist() == [5.0]
    # max convention: max(P95(5, 4, 3), P95(3, 4)) = max(4.9, 3.95) = 4.9.
    assert out["hd95"].tolist() == pytest.approx([4.9])
    # pooled: P95 of (3, 3, 4, 4, 5): position 0.95 * 4 = 3.8 -> 4 + 0.8 * (5 - 4) = 4.8.
    pooled = hd95(a, b, spatial_dims=2, convention="pooled", reduction="none")
    assert pooled.tolist() == pytest.approx([4.8])
    assert out["assd"].tolist() == pytest.approx([19 / 5])  # (12 + 7) / 5
    assert out["s2s"].tolist() == pytest.approx([(4 + 3.5) / 2])
    # Directed: only 5, 4, 3.
    directed = surface_metrics(a, b, spatial_dims=2, directed=True, reduction="none")
    assert directed["hd"].tolist() == [5.0]
    assert directed["assd"].tolist() == pytest.approx([4.0])


def test_hand_computed_squares_with_anisotropic_spacing():
    # Two 2x2 squares offset by one voxel diagonally. Every voxel of a 2x2 square is
    # surface. With spacing (2, 3): the far corner (1, 1) of a is nearest to b's (2, 2)
    # at sqrt(2^2 + 3^2) = sqrt(13); shared voxel (2, 2) is at 0.
    a = torch.zeros(1, 6, 6, dtype=torch.bool)
    a[0, 1:3, 1:3] = True
    b = torch.zeros(1, 6, 6, dtype=torch.bool)
    b[0, 2:4, 2:4] = True
    d = surface_distances(a[0], b[0], spacing=(2.0, 3.0))
    # a's voxels in raster order: (1,1), (1,2), (2,1), (2,2) -> sqrt13, 2, 3, 0.
    np.testing.assert_allclose(d.pred_to_target, [math.sqrt(13), 2.0, 3.0, 0.0])
    np.testing.assert_allclose(d.target_to_pred, [0.0, 3.0, 2.0, math.sqrt(13)])
    hd = hausdorff_distance(a, b, spatial_dims=2, spacing=(2.0, 3.0))
    assert isinstance(hd, torch.Tensor) and hd.dtype == torch.float32
    assert hd.item() == pytest.approx(math.sqrt(13))
    expected = (5 + math.sqrt(13)) / 4
    assert assd(a, b, spatial_dims=2, spacing=(2.0, 3.0)).item() == pytest.approx(expected)


def test_surface_is_mask_minus_scipy_erosion_for_every_connectivity():
    for shape in ((17, 13), (9, 11, 7)):
        mask = blobs(shape, seed=5, noise=0.05)
        mask[0, 0] = True  # touches the border: border voxels are surface
        for connectivity in range(1, len(shape) + 1):
            structure = ndimage.generate_binary_structure(len(shape), connectivity)
            reference = mask & ~ndimage.binary_erosion(mask, structure)
            np.testing.assert_array_equal(
                surface_voxels(mask, connectivity=connectivity), reference
            )


# ------------------------------------------------------------------------------- MedPy


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("connectivity", [1, 2, 3])
@pytest.mark.parametrize("spacing", [None, "aniso"])
def test_matches_medpy(dims, connectivity, spacing):
    if connectivity > dims:
        pytest.skip("connectivity exceeds the dimensionality")
    sp = None if spacing is None else (0.7, 2.5, 1.3)[:dims]
    for pred, target in pairs(dims, noise=0.01):
        kw = dict(spacing=sp, connectivity=connectivity, spatial_dims=dims, reduction="none")
        ref = dict(voxelspacing=sp, connectivity=connectivity)
        ours = surface_metrics(pred[None], target[None], convention="pooled", **kw)
        assert ours["hd"][0] == pytest.approx(medpy_binary.hd(pred, target, **ref), rel=1e-12)
        assert ours["hd95"][0] == pytest.approx(medpy_binary.hd95(pred, target, **ref), rel=1e-12)
        # MedPy >= 0.5 pools both directions in "assd", as we do; older MedPy averaged
        # the two directed means, which is our S2S.
        assert ours["assd"][0] == pytest.approx(medpy_binary.assd(pred, target, **ref), rel=1e-12)
        mean_of_means = 0.5 * (
            medpy_binary.asd(pred, target, **ref) + medpy_binary.asd(target, pred, **ref)
        )
        assert ours["s2s"][0] == pytest.approx(mean_of_means, rel=1e-12)
        directed = assd(pred[None], target[None], directed=True, **kw)
        assert directed[0] == pytest.approx(medpy_binary.asd(pred, target, **ref), rel=1e-12)
        # MedPy's own layout, one unbatched image, reads as a batch of one
        unbatched = surface_metrics(pred, target, convention="pooled", **kw)
        for name, value in ours.items():
            np.testing.assert_array_equal(unbatched[name], value)


# ------------------------------------------------------------------------------- MONAI


def _monai(fn, pred, target, **kw):
    p = torch.from_numpy(pred)[None, None]
    t = torch.from_numpy(target)[None, None]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(fn(p, t, include_background=True, **kw)[0, 0])


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("spacing", [None, "aniso"])
@pytest.mark.parametrize("directed", [False, True])
def test_matches_monai(dims, spacing, directed):
    sp = None if spacing is None else [0.7, 2.5, 1.3][:dims]
    for pred, target in pairs(dims, noise=0.01):
        ours = surface_metrics(
            pred[None],
            target[None],
            spatial_dims=dims,
            spacing=sp,
            directed=directed,
            reduction="none",
        )
        hd_ref = _monai(
            monai_metrics.compute_hausdorff_distance, pred, target, spacing=sp, directed=directed
        )
        hd95_ref = _monai(
            monai_metrics.compute_hausdorff_distance,
            pred,
            target,
            spacing=sp,
            directed=directed,
            percentile=95,
        )
        asd_ref = _monai(
            monai_metrics.compute_average_surface_distance,
            pred,
            target,
            spacing=sp,
            symmetric=not directed,
        )
        # MONAI returns float32.
        assert ours["hd"][0] == pytest.approx(hd_ref, rel=1e-6)
        assert ours["hd95"][0] == pytest.approx(hd95_ref, rel=1e-6)
        assert ours["assd"][0] == pytest.approx(asd_ref, rel=1e-6)


def test_conventions_differ_and_each_matches_its_peer():
    # The prediction finds the target's square and adds a far small square: 8 of its 44
    # surface voxels lie far away, so its directed 95th percentile is large, while pooled
    # with the target's 36 near distances the far ones fall to 10%: the conventions
    # disagree, and each agrees with the library that uses it.
    target = np.zeros((40, 40), dtype=bool)
    target[5:15, 5:15] = True
    pred = target.copy()
    pred[30:33, 30:33] = True
    max_conv = float(hd95(pred[None], target[None], spatial_dims=2, convention="max"))
    pooled = float(hd95(pred[None], target[None], spatial_dims=2, convention="pooled"))
    assert max_conv != pytest.approx(pooled)
    assert pooled == pytest.approx(medpy_binary.hd95(pred, target))
    assert max_conv == pytest.approx(
        _monai(monai_metrics.compute_hausdorff_distance, pred, target, percentile=95), rel=1e-6
    )


# ------------------------------------------------------------------- methods and forms


@pytest.mark.parametrize("noise", [0.0, 0.3])
def test_kdtree_and_distance_transform_agree(noise):
    for pred, target in pairs(3, n=3, noise=noise):
        kd = surface_distances(pred, target, spacing=(1.0, 0.5, 2.0), method="kdtree")
        edt = surface_distances(pred, target, spacing=(1.0, 0.5, 2.0), method="edt")
        auto = surface_distances(pred, target, spacing=(1.0, 0.5, 2.0))
        for x, y in ((kd, edt), (kd, auto)):
            np.testing.assert_allclose(x.pred_to_target, y.pred_to_target, rtol=1e-12)
            np.testing.assert_allclose(x.target_to_pred, y.target_to_pred, rtol=1e-12)


def test_label_maps_one_hot_numpy_and_torch_agree():
    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.random((3, 24, 20)), sigma=(0, 3, 3))
    pred = np.digitize(field, np.quantile(field, [0.4, 0.7])).astype(np.int64)
    target = np.digitize(np.roll(field, 2, axis=1), np.quantile(field, [0.4, 0.7]))
    s2 = {"spatial_dims": 2}
    by_class = hd95(pred, target, num_classes=3, reduction="none", **s2)
    assert isinstance(by_class, np.ndarray) and by_class.shape == (3, 2)
    for k in (1, 2):
        for b in range(3):
            one = hd95(pred[b : b + 1] == k, target[b : b + 1] == k, **s2)
            assert by_class[b, k - 1] == float(one)
    one_hot = np.stack([pred == k for k in range(3)], axis=1)
    one_hot_t = np.stack([target == k for k in range(3)], axis=1)
    np.testing.assert_array_equal(
        hd95(one_hot, one_hot_t, one_hot=True, reduction="none", **s2), by_class
    )
    as_torch = hd95(
        torch.from_numpy(pred), torch.from_numpy(target), num_classes=3, reduction="none", **s2
    )
    assert as_torch.dtype == torch.float32
    np.testing.assert_allclose(as_torch.numpy(), by_class, rtol=1e-6)


# ------------------------------------------------------------------------- edge cases


def test_empty_masks_take_their_documented_values():
    full = np.zeros((4, 8, 8), dtype=bool)
    full[:, 2:5, 2:5] = True
    empty = np.zeros_like(full)
    pred = np.stack([full[0], empty[0], full[0], empty[0]])
    target = np.stack([full[0], full[0], empty[0], empty[0]])
    s2 = {"spatial_dims": 2}
    # defaults: inf for one side empty, NaN for both empty (left out of the mean)
    out = hd95(pred, target, reduction="none", **s2)
    assert out[:3].tolist() == [0.0, math.inf, math.inf] and math.isnan(out[3])
    # both_empty=0.0 counts "nothing to find, nothing found" as a perfect match
    out = hd95(pred, target, both_empty=0.0, reduction="none", **s2)
    assert out.tolist() == [0.0, math.inf, math.inf, 0.0]
    custom = hd95(
        pred, target, empty_pred=-1.0, empty_target=-2.0, both_empty=-3.0, reduction="none", **s2
    )
    assert custom.tolist() == [0.0, -1.0, -2.0, -3.0]
    # NaN leaves images out of the mean: with both_empty=0.0 images 0 and 3 remain, both 0;
    # with the default only image 0.
    nans = {"empty_pred": math.nan, "empty_target": math.nan, **s2}
    assert float(hd95(pred, target, both_empty=0.0, **nans)) == 0.0
    assert float(hd95(pred, target, **nans)) == 0.0
    assert float(hd95(pred, target, **s2)) == math.inf
    assert float(hd95(pred, target, both_empty=0.0, **s2)) == math.inf
    # only both-empty images: nothing to average by default
    assert math.isnan(float(hd95(pred[3:], target[3:], **s2)))
    assert float(hd95(pred[3:], target[3:], both_empty=0.0, **s2)) == 0.0
    with pytest.raises(ValueError, match="target is empty"):
        surface_distances(full[0], empty[0])


def test_single_voxels():
    # A one-voxel mask is its own surface; every summary of one distance is that distance.
    a = np.zeros((1, 5, 9, 7), dtype=bool)
    b = np.zeros_like(a)
    a[0, 1, 2, 3] = True
    b[0, 4, 6, 3] = True  # offset (3, 4, 0): distance 5
    out = surface_metrics(a, b, spatial_dims=3, reduction="none")
    assert {k: float(v[0]) for k, v in out.items()} == {
        "hd": 5.0,
        "hd95": 5.0,
        "assd": 5.0,
        "s2s": 5.0,
    }
    assert float(hd95(a, a, spatial_dims=3)) == 0.0


def test_bad_arguments_say_what_would_work():
    a = np.ones((1, 4, 4), dtype=bool)
    s2 = {"spatial_dims": 2}
    with pytest.raises(ValueError, match="convention must be 'max'"):
        hd95(a, a, convention="medpy", **s2)
    with pytest.raises(ValueError, match="one per spatial axis"):
        hd95(a, a, spacing=(1.0, 1.0, 1.0), **s2)
    with pytest.raises(ValueError, match="positive"):
        hd95(a, a, spacing=0.0, **s2)
    with pytest.raises(ValueError, match=r"connectivity must be in 1\.\.2"):
        hd95(a, a, connectivity=3, **s2)
    with pytest.raises(ValueError, match="percentile"):
        hausdorff_distance(a, a, percentile=101, **s2)
    with pytest.raises(ValueError, match="unknown surface metric"):
        surface_metrics(a, a, metrics=("hd99",), **s2)
    # probabilities are refused; floats holding whole numbers are masks
    with pytest.raises(TypeError, match="threshold"):
        hd95(a * np.float32(0.5), a * np.float32(0.5), **s2)
    assert float(hd95(a.astype(np.float32), a.astype(np.float32), **s2)) == 0.0
    with pytest.raises(ValueError, match="same images"):
        hd95(a, a[:, :3], **s2)
    with pytest.raises(ValueError, match="method"):
        hd95(a, a, method="brute", **s2)
    with pytest.raises(ValueError, match="pass spatial_dims"):
        hd95(a, a)


# ------------------------------------------------------------------------- properties

small_masks = hnp.arrays(
    np.bool_, st.tuples(st.integers(3, 9), st.integers(3, 9), st.integers(2, 6))
)


@settings(max_examples=40, deadline=None)
@given(pair=small_masks.flatmap(lambda m: st.tuples(st.just(m), hnp.arrays(np.bool_, m.shape))))
def test_symmetry_bounds_and_identity(pair):
    pred, target = pair
    if not pred.any() or not target.any():
        return
    s3 = {"spatial_dims": 3}
    fwd = surface_metrics(pred[None], target[None], reduction="none", **s3)
    bwd = surface_metrics(target[None], pred[None], reduction="none", **s3)
    pooled = hd95(pred[None], target[None], convention="pooled", **s3)
    for name in fwd:
        assert fwd[name][0] == pytest.approx(bwd[name][0])
    assert fwd["hd"][0] >= fwd["hd95"][0] >= 0.0
    assert fwd["hd"][0] >= pooled >= 0.0
    assert fwd["hd"][0] >= fwd["assd"][0] >= 0.0
    same = surface_metrics(pred[None], pred[None], reduction="none", **s3)
    assert all(v[0] == 0.0 for v in same.values())


@settings(max_examples=30, deadline=None)
@given(
    pair=small_masks.flatmap(lambda m: st.tuples(st.just(m), hnp.arrays(np.bool_, m.shape))),
    factor=st.floats(0.25, 4.0),
)
def test_distances_scale_with_spacing(pair, factor):
    pred, target = pair
    if not pred.any() or not target.any():
        return
    kw = {"spatial_dims": 3, "reduction": "none"}
    base = surface_metrics(pred[None], target[None], spacing=(1.0, 2.0, 0.5), **kw)
    scaled = surface_metrics(
        pred[None], target[None], spacing=(factor, 2.0 * factor, 0.5 * factor), **kw
    )
    for name in base:
        assert scaled[name][0] == pytest.approx(factor * base[name][0], rel=1e-9)


@settings(max_examples=30, deadline=None)
@given(
    pair=hnp.arrays(np.bool_, (2, 6, 7)).flatmap(
        lambda m: st.tuples(st.just(m), hnp.arrays(np.bool_, m.shape))
    ),
    shift=st.tuples(st.integers(0, 4), st.integers(0, 4)),
)
def test_translation_invariance_away_from_the_border(pair, shift):
    pred, target = pair
    canvas = np.zeros((2, 16, 17), dtype=bool)
    p, t = canvas.copy(), canvas.copy()
    window = (slice(None), slice(2 + shift[0], 8 + shift[0]), slice(2 + shift[1], 9 + shift[1]))
    p[window], t[window] = pred, target
    p0, t0 = canvas.copy(), canvas.copy()
    p0[:, 2:8, 2:9], t0[:, 2:8, 2:9] = pred, target
    kw = {"spatial_dims": 2, "reduction": "none"}
    for name, value in surface_metrics(p, t, **kw).items():
        np.testing.assert_allclose(value, surface_metrics(p0, t0, **kw)[name])


def test_returns_surface_distances_tuple():
    a = np.zeros((3, 3), dtype=bool)
    a[1, 1] = True
    d = surface_distances(a, a)
    assert isinstance(d, SurfaceDistances)
    assert d.pred_to_target.tolist() == [0.0] and d.target_to_pred.tolist() == [0.0]
    assert surface_to_surface(a[None], a[None], spatial_dims=2) == 0.0


@settings(max_examples=40, deadline=None)
@given(
    pair=small_masks.flatmap(lambda m: st.tuples(st.just(m), hnp.arrays(np.bool_, m.shape))),
    spacing=st.tuples(st.floats(0.2, 5.0), st.floats(0.2, 5.0), st.floats(0.2, 5.0)),
)
def test_neighbour_lookup_is_exact_for_any_spacing(pair, spacing):
    # "auto" resolves near voxels by grid lookups; a plain k-d tree search is the reference.
    pred, target = pair
    if not pred.any() or not target.any():
        return
    auto = surface_distances(pred, target, spacing=spacing, method="auto")
    tree = surface_distances(pred, target, spacing=spacing, method="kdtree")
    np.testing.assert_allclose(auto.pred_to_target, tree.pred_to_target, rtol=1e-12)
    np.testing.assert_allclose(auto.target_to_pred, tree.target_to_pred, rtol=1e-12)


# ----------------------------------------------------------------- keyword-only options

_A = np.zeros((1, 7), dtype=bool)
_A[0, 1:3] = True
_B = np.zeros((1, 7), dtype=bool)
_B[0, 4:6] = True


@pytest.mark.parametrize(
    ("call", "by_name", "message"),
    [
        # MedPy's hd95(result, reference, voxelspacing): 2 must not be read as anything
        (
            lambda: surface_distances(_A, _B, 2),
            lambda: surface_distances(_A, _B, spacing=2),
            "positional",
        ),
        (
            lambda: surface_distances(_A, _B, (1.0, 2.0), 1, "kdtree"),
            lambda: surface_distances(_A, _B, spacing=(1.0, 2.0), connectivity=1, method="kdtree"),
            "positional",
        ),
        (
            lambda: surface_voxels(_A, 2),
            lambda: surface_voxels(_A, connectivity=2),
            "positional",
        ),
        (
            lambda: surface_metrics(_A[None], _B[None], ("hd95",), spatial_dims=2),
            lambda: surface_metrics(_A[None], _B[None], metrics=("hd95",), spatial_dims=2),
            r"metrics=\('hd95',\)",
        ),
        (
            lambda: surface_metrics(_A[None], _B[None], "hd", spatial_dims=2),
            lambda: surface_metrics(_A[None], _B[None], metrics=("hd",), spatial_dims=2),
            "metrics='hd'",
        ),
        (
            lambda: surface_metrics(_A[None], _B[None], 2, spatial_dims=2),
            lambda: surface_metrics(_A[None], _B[None], spacing=2, spatial_dims=2),
            "spacing=2",
        ),
    ],
    ids=[
        "surface_distances-spacing",
        "surface_distances-all",
        "surface_voxels",
        "surface_metrics-metrics",
        "surface_metrics-one-name",
        "surface_metrics-spacing",
    ],
)
def test_options_are_keyword_only(call, by_name, message):
    with pytest.raises(TypeError, match=message):
        call()
    by_name()  # the same option passed by name is accepted
