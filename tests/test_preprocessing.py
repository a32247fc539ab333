"""attnunet.data.preprocessing: normalisation schemes, the fingerprint, and resampling.

Oracles: CT statistics and z-scores computed by hand with NumPy in the tests, the
package's ``normalise_image`` for the percentile scheme, and scikit-image's ``resize``
(``mode="edge"``, ``anti_aliasing=False``, ``preserve_range=True``) for resampling.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnunet.data.labels import IGNORE_INDEX
from attnunet.data.preprocessing import (
    NORMALISATION_SCHEMES,
    CTStats,
    Preprocessing,
    resample_image,
    resample_labels,
    resample_probabilities,
    resampled_shape,
    schemes_for_channels,
)
from attnunet.data.readers import DataError, normalise_image

transform = pytest.importorskip("skimage.transform", reason="scikit-image is the oracle")


def _resize(array: np.ndarray, shape: tuple[int, ...], order: int) -> np.ndarray:
    return transform.resize(
        array, shape, order=order, mode="edge", anti_aliasing=False, preserve_range=True
    )


def _ct_cases() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Two CT-like images (2 channels) and masks with background, classes and ignore 255."""
    rng = np.random.default_rng(3)
    images, masks = [], []
    for shape in [(6, 7, 8), (5, 9, 6)]:
        image = np.stack([rng.normal(40.0, 300.0, shape), rng.normal(0.0, 1.0, shape)]).astype(
            np.float32
        )
        mask = rng.choice(np.array([0, 1, 2, 255]), size=shape, p=[0.5, 0.2, 0.2, 0.1])
        images.append(image)
        masks.append(mask)
    return images, masks


# ----------------------------------------------------------------------------- normalisation


def test_ct_normalisation_matches_hand_computation():
    images, masks = _ct_cases()
    prep = Preprocessing.fingerprint(images, masks, [None, None], schemes=("ct", "ct"), ignore=255)
    for channel in range(2):
        foreground = np.concatenate(
            [
                image[channel][(mask > 0) & (mask != 255)].astype(np.float64)
                for image, mask in zip(images, masks, strict=True)
            ]
        )
        low, high = np.percentile(foreground, [0.5, 99.5])
        mean, std = foreground.mean(), foreground.std()
        stats = prep.ct_stats[channel]
        assert stats is not None
        np.testing.assert_allclose(
            [stats.low, stats.high, stats.mean, stats.std], [low, high, mean, std], rtol=1e-12
        )
        for image in images:
            expected = (np.clip(image[channel].astype(np.float64), low, high) - mean) / std
            out = prep.normalise(image)
            assert out.dtype == np.float32
            np.testing.assert_allclose(out[channel], expected, rtol=1e-5, atol=1e-5)
    # the clip is really applied: values beyond the percentiles exist and are flattened
    out = prep.normalise(images[0])[0]
    assert np.isclose(
        out.max(), (prep.ct_stats[0].high - prep.ct_stats[0].mean) / prep.ct_stats[0].std
    )
    assert (out == out.max()).sum() > 1


def test_ct_statistics_ignore_encoded_ignore_index():
    image = np.arange(8.0, dtype=np.float32).reshape(1, 2, 4)
    mask = np.array([[0, 1, 1, IGNORE_INDEX], [2, 2, IGNORE_INDEX, 0]])
    prep = Preprocessing.fingerprint([image], [mask], [None], schemes="ct")
    foreground = np.array([1.0, 2.0, 4.0, 5.0])
    assert prep.ct_stats[0] == CTStats(
        float(np.percentile(foreground, 0.5)),
        float(np.percentile(foreground, 99.5)),
        3.0,
        float(foreground.std()),
    )


def test_ct_foreground_is_capped_per_case():
    image = np.full((1, 20, 20), 7.0, np.float32)
    image[0, 0, 0] = 1000.0
    mask = np.ones((20, 20), int)
    capped = Preprocessing.fingerprint(
        [image], [mask], [None], schemes="ct", max_voxels_per_case=399, seed=1
    )
    again = Preprocessing.fingerprint(
        [image], [mask], [None], schemes="ct", max_voxels_per_case=399, seed=1
    )
    assert capped == again
    full = Preprocessing.fingerprint([image], [mask], [None], schemes="ct")
    assert full.ct_stats[0].mean == pytest.approx((399 * 7 + 1000) / 400)
    # 399 of 400 voxels: either every 7 (mean 7) or the 1000 and 398 sevens
    assert capped.ct_stats[0].mean in (
        pytest.approx(7.0),
        pytest.approx((398 * 7 + 1000) / 399),
    )


def test_zscore_per_image():
    image = np.random.default_rng(0).gamma(2.0, 50.0, size=(2, 5, 6)).astype(np.float32)
    out = Preprocessing(("zscore", "zscore")).normalise(image)
    for channel in range(2):
        x = image[channel].astype(np.float64)
        np.testing.assert_allclose(out[channel], (x - x.mean()) / x.std(), rtol=1e-5, atol=1e-5)
    constant = Preprocessing(("zscore",)).normalise(np.full((1, 3, 3), 5.0))
    np.testing.assert_array_equal(constant, 0.0)


def test_percentile_and_none_schemes():
    image = np.random.default_rng(1).normal(size=(2, 9, 9)) * 100
    out = Preprocessing(("percentile", "none")).normalise(image)
    np.testing.assert_array_equal(out[0], normalise_image(image[:1].astype(np.float32))[0])
    np.testing.assert_array_equal(out[1], image[1].astype(np.float32))
    assert out.dtype == np.float32


def test_normalise_refuses_wrong_channel_count():
    with pytest.raises(DataError, match="2 channel"):
        Preprocessing(("zscore", "zscore")).normalise(np.zeros((3, 4, 4)))


def test_schemes_for_channels():
    assert schemes_for_channels({"1": "T2", "0": "ct"}, 2) == ("ct", "zscore")
    assert schemes_for_channels(["CT", "noNorm", "ADC"], 3) == ("ct", "none", "zscore")
    assert schemes_for_channels(None, 2, default="percentile") == ("percentile", "percentile")
    with pytest.raises(DataError, match="one name per channel"):
        schemes_for_channels(["CT"], 2)
    with pytest.raises(ValueError, match="unknown normalisation scheme"):
        schemes_for_channels(None, 1, default="minmax")
    assert set(NORMALISATION_SCHEMES) == {"ct", "zscore", "percentile", "none"}


@pytest.mark.parametrize(
    ("args", "match"),
    [
        ((("ct",),), "CT statistics go with"),
        ((("zscore",), (CTStats(0, 1, 0, 1),)), "CT statistics go with"),
        ((("minmax",),), "unknown normalisation scheme"),
        ((("zscore",), (None, None)), "2 CT statistics for 1"),
        ((("zscore",), (), (1.0, 0.0)), "positive"),
        (((),), "one normalisation scheme"),
    ],
)
def test_invalid_preprocessing(args, match):
    with pytest.raises(ValueError, match=match):
        Preprocessing(*args)


def test_dict_round_trip_and_describe():
    prep = Preprocessing(
        ("ct", "zscore"), (CTStats(-100.0, 250.5, 40.0, 80.0), None), (2.5, 0.75, 0.75)
    )
    data = json.loads(json.dumps(prep.to_dict()))
    assert data == {
        "schemes": ["ct", "zscore"],
        "ct_stats": [{"low": -100.0, "high": 250.5, "mean": 40.0, "std": 80.0}, None],
        "target_spacing": [2.5, 0.75, 0.75],
    }
    assert Preprocessing.from_dict(data) == prep
    assert prep.describe() == (
        "channel 0 ct (clip -100 to 250.5, mean 40, std 80), channel 1 zscore; "
        "spacing 2.5 x 0.75 x 0.75 (others resampled)"
    )


# ----------------------------------------------------------------------------- fingerprint


def _volumes(n: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    return [np.ones((1, 4, 4, 4), np.float32)] * n, [np.ones((4, 4, 4), int)] * n


def test_auto_target_is_median_spacing():
    images, masks = _volumes(3)
    spacings = [(3.0, 1.0, 0.8), (1.0, 1.0, 0.7), (2.0, 0.5, 0.9)]
    prep = Preprocessing.fingerprint(images, masks, spacings, schemes="zscore")
    assert prep.target_spacing == (2.0, 1.0, 0.8)


def test_auto_target_for_equal_spacings_and_none_for_unknown_or_2d():
    images, masks = _volumes(2)
    equal = [(1.0, 0.5, 0.5), (1.0005, 0.5, 0.5)]  # within 1e-3, relative
    prep = Preprocessing.fingerprint(images, masks, equal, schemes="zscore")
    # the training spacing is the target: training cases stay as they are, a test case at
    # another spacing is resampled to it
    assert prep.target_spacing == (1.0, 0.5, 0.5)
    image = np.arange(64, dtype=np.float32).reshape(1, 4, 4, 4)
    assert prep.prepare(image, (1.0005, 0.5, 0.5)).shape == (1, 4, 4, 4)
    assert prep.prepare(image, (2.0, 0.5, 0.5)).shape == (1, 8, 4, 4)
    unknown = [(1.0, 0.5, 0.5), None]
    assert (
        Preprocessing.fingerprint(images, masks, unknown, schemes="zscore").target_spacing is None
    )
    images2d = [np.ones((1, 4, 4), np.float32)] * 2
    masks2d = [np.ones((4, 4), int)] * 2
    spacings2d = [(1.0, 1.0), (0.5, 0.25)]
    prep2d = Preprocessing.fingerprint(images2d, masks2d, spacings2d, schemes="zscore")
    assert prep2d.target_spacing is None
    different = [(1.0, 0.5, 0.5), (1.01, 0.5, 0.5)]
    assert Preprocessing.fingerprint(
        images, masks, different, schemes="zscore"
    ).target_spacing == pytest.approx((1.005, 0.5, 0.5))


def test_given_or_disabled_target():
    images, masks = _volumes(2)
    spacings = [(3.0, 1.0, 1.0), (1.0, 1.0, 1.0)]
    given = Preprocessing.fingerprint(
        images, masks, spacings, schemes="zscore", target_spacing=(1, 2, 3)
    )
    assert given.target_spacing == (1.0, 2.0, 3.0)
    off = Preprocessing.fingerprint(images, masks, spacings, schemes="zscore", target_spacing=None)
    assert off.target_spacing is None
    with pytest.raises(DataError, match="3 spatial axes"):
        Preprocessing.fingerprint(images, masks, spacings, schemes="zscore", target_spacing=(1, 1))


def test_fingerprint_errors():
    images, masks = _volumes(2)
    with pytest.raises(DataError, match="training case 1: its mask has shape"):
        Preprocessing.fingerprint(
            images, [masks[0], np.ones((4, 4, 3))], [None, None], schemes="zscore"
        )
    with pytest.raises(DataError, match="differ in number"):
        Preprocessing.fingerprint(images, masks[:1], [None, None], schemes="zscore")
    with pytest.raises(DataError, match="no foreground voxels"):
        Preprocessing.fingerprint(
            images, [np.zeros((4, 4, 4), int)] * 2, [None, None], schemes="ct"
        )
    with pytest.raises(DataError, match="no training cases"):
        Preprocessing.fingerprint([], [], [], schemes="ct")
    with pytest.raises(DataError, match="2 normalisation schemes"):
        Preprocessing.fingerprint(images, masks, [None, None], schemes=("ct", "zscore"))


# ----------------------------------------------------------------------------- resampling


def test_resampled_shape():
    assert resampled_shape((10, 64, 64), (2.5, 0.7, 0.7), (1.25, 1.0, 1.0)) == (20, 45, 45)
    assert resampled_shape((3, 5), (1.0, 1.0), (10.0, 2.0)) == (1, 2)  # round(0.3) -> at least 1
    with pytest.raises(DataError, match="one value per axis"):
        resampled_shape((3, 5), (1.0,), (1.0, 1.0))


@pytest.mark.parametrize("new_shape", [(13, 5, 11), (3, 17, 6), (7, 9, 11)])
def test_resample_image_matches_skimage(new_shape):
    image = np.random.default_rng(2).normal(size=(2, 7, 9, 11)).astype(np.float32)
    image[1] *= 1000.0
    out = resample_image(image, new_shape)
    assert out.shape == (2, *new_shape) and out.dtype == np.float32
    for channel in range(2):
        expected = _resize(image[channel].astype(np.float64), new_shape, order=3)
        scale = np.abs(image[channel]).max()
        np.testing.assert_allclose(out[channel] / scale, expected / scale, atol=1e-4)


def test_resample_image_2d_linear_matches_skimage():
    image = np.random.default_rng(4).uniform(size=(1, 6, 10))
    out = resample_image(image, (15, 4), order=1)
    np.testing.assert_allclose(out[0], _resize(image[0], (15, 4), order=1), atol=1e-6)


def _label_volume() -> np.ndarray:
    labels = np.zeros((12, 14, 16), np.int64)
    labels[2:8, 3:10, 4:12] = 3
    labels[5:12, 8:14, 9:16] = 7
    labels[0:4, 0:5, 0:6] = IGNORE_INDEX
    labels[7:11, 1:6, 1:5] = 21
    return labels


def _one_hot_oracle(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    values = np.unique(labels)
    maps = [_resize((labels == v).astype(np.float32), shape, order=1) for v in values]
    # the largest indicator wins; a tie goes to the larger value (the last of the maxima)
    last = len(values) - 1 - np.argmax(np.stack(maps)[::-1], axis=0)
    return values[last]


@pytest.mark.parametrize("new_shape", [(6, 7, 8), (20, 25, 31), (9, 14, 5)])
def test_resample_labels_matches_one_hot_argmax(new_shape):
    labels = _label_volume()
    out = resample_labels(labels, new_shape)
    assert out.shape == new_shape and out.dtype == np.int64
    np.testing.assert_array_equal(out, _one_hot_oracle(labels, new_shape))
    assert set(np.unique(out).tolist()) == {IGNORE_INDEX, 0, 3, 7, 21}


def test_resample_labels_single_value_and_refusal():
    np.testing.assert_array_equal(resample_labels(np.full((3, 3), 4), (5, 2)), np.full((5, 2), 4))
    with pytest.raises(ValueError, match="integers"):
        resample_labels(np.zeros((3, 3)), (2, 2))


def test_resample_probabilities_matches_skimage_and_round_trips():
    labels = np.zeros((8, 10), int)
    labels[2:6, 2:8] = 1
    labels[5:8, 6:10] = 2
    probs = np.stack([(labels == k).astype(np.float32) for k in range(3)])
    probs = 0.8 * probs + 0.2 / 3  # softened, still summing to 1
    up = resample_probabilities(probs, (16, 20))
    for k in range(3):
        np.testing.assert_allclose(up[k], _resize(probs[k], (16, 20), order=1), atol=1e-6)
    np.testing.assert_allclose(up.sum(axis=0), 1.0, atol=1e-6)
    back = resample_probabilities(up, (8, 10))
    assert back.shape == probs.shape
    np.testing.assert_allclose(back.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_array_equal(back.argmax(axis=0), labels)


# ----------------------------------------------------------------------------- prepare


def test_prepare_normalises_then_resamples():
    image = np.random.default_rng(5).normal(10.0, 3.0, size=(1, 5, 6, 7)).astype(np.float32)
    prep = Preprocessing(("zscore",), target_spacing=(1.0, 1.0, 1.0))
    out = prep.prepare(image, (2.0, 1.0, 0.5))
    x = image[0].astype(np.float64)
    expected = _resize((x - x.mean()) / x.std(), (10, 6, 4), order=3)
    assert out.shape == (1, 10, 6, 4)
    np.testing.assert_allclose(out[0], expected, atol=1e-4)
    # same spacing: no resampling
    np.testing.assert_array_equal(prep.prepare(image, (1.0, 1.0, 1.0)), prep.normalise(image))
    with pytest.raises(DataError, match="needs its voxel spacing"):
        prep.prepare(image, None)
    no_target = Preprocessing(("zscore",))
    np.testing.assert_array_equal(no_target.prepare(image, None), no_target.normalise(image))


def test_prepare_labels_follows_the_image():
    labels = _label_volume()
    prep = Preprocessing(("none",), target_spacing=(1.0, 1.0, 1.0))
    spacing = (0.5, 1.0, 2.0)
    image = prep.prepare(np.zeros((1, *labels.shape), np.float32), spacing)
    out = prep.prepare_labels(labels, spacing)
    assert out.shape == image.shape[1:] == (6, 14, 32)
    np.testing.assert_array_equal(out, _one_hot_oracle(labels, (6, 14, 32)))
    np.testing.assert_array_equal(
        prep.prepare_labels(labels, spacing, shape=(5, 5, 5)), _one_hot_oracle(labels, (5, 5, 5))
    )
    np.testing.assert_array_equal(Preprocessing(("none",)).prepare_labels(labels, None), labels)
