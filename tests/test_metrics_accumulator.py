"""MetricAccumulator: mean ± std over images, NaN and inf handling, routing, merging."""

import itertools
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from attnunet.metrics.accumulator import MetricAccumulator, MetricSummary
from attnunet.metrics.overlap import dice_score, iou_score

_fast = settings(max_examples=40, deadline=None)


def _label_maps(seed: int, batch: int, num_classes: int = 3, size: int = 6):
    """pred and target: batches of 2-D label maps ``(batch, size, size)`` (see S2)."""
    rng = np.random.default_rng(seed)
    shape = (batch, size, size)
    return rng.integers(0, num_classes, shape), rng.integers(0, num_classes, shape)


S2 = {"spatial_dims": 2}  # how the metrics read _label_maps: (B, H, W)


def _assert_same_summary(a: MetricSummary, b: MetricSummary) -> None:
    """Bit-identical fields (NaN equal to NaN)."""
    for field in ("mean", "std", "count", "missing"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
        assert type(getattr(a, field)) is type(getattr(b, field)), field


def _assert_same(a: MetricAccumulator, b: MetricAccumulator) -> None:
    ca, cb = a.compute(), b.compute()
    assert list(ca) == list(cb)
    for name in ca:
        _assert_same_summary(ca[name], cb[name])
        np.testing.assert_array_equal(a.values(name), b.values(name))


# ------------------------------------------------------------------ hand-computed values


def test_hand_computed_mean_and_std():
    # 1, 2, 3, 4: mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5.
    # Sample std sqrt(5 / 3), population std sqrt(5 / 4).
    acc = MetricAccumulator()
    acc.add("x", [1, 2])
    acc.add("x", np.array([3.0]))
    acc.add("x", 4)
    s = acc["x"]
    assert s.mean == 2.5
    assert s.std == pytest.approx(math.sqrt(5 / 3), rel=1e-15)
    assert (s.count, s.missing) == (4, 0)
    assert isinstance(s.mean, float) and isinstance(s.count, int)
    pop = MetricAccumulator(ddof=0)
    pop.add("x", [1, 2, 3, 4])
    assert pop["x"].std == pytest.approx(math.sqrt(5 / 4), rel=1e-15)
    assert len(acc) == 4


@pytest.mark.parametrize("ddof", [0, 1, 2])
def test_matches_numpy_on_concatenated_values(ddof):
    rng = np.random.default_rng(ddof)
    chunks = [rng.normal(0.8, 0.1, size=n) for n in (3, 1, 7, 5)]
    acc = MetricAccumulator(ddof=ddof)
    for chunk in chunks:
        acc.add("dice", chunk)
    everything = np.concatenate(chunks)
    s = acc["dice"]
    assert s.mean == pytest.approx(np.mean(everything), rel=1e-14)
    assert s.std == pytest.approx(np.std(everything, ddof=ddof), rel=1e-14)
    assert s.count == 16
    np.testing.assert_array_equal(acc.values("dice"), everything)


def test_default_ddof_is_sample_std():
    acc = MetricAccumulator()
    acc.add("x", [0.0, 2.0])
    assert acc["x"].std == pytest.approx(math.sqrt(2))  # population std would be 1
    assert acc.ddof == 1


# ------------------------------------------------------------------ per-class values


def test_per_class_summaries():
    values = np.array([[0.5, 0.9], [0.7, 0.8], [0.9, 1.0]])
    acc = MetricAccumulator()
    acc.add("dice", values[:2])
    acc.add("dice", torch.tensor(values[2:]))
    s = acc["dice"]
    for field in ("mean", "std", "count", "missing"):
        assert isinstance(getattr(s, field), np.ndarray) and getattr(s, field).shape == (2,)
    np.testing.assert_allclose(s.mean, [0.7, 0.9], rtol=1e-14)
    np.testing.assert_allclose(s.std, [0.2, 0.1], rtol=1e-13)
    np.testing.assert_allclose(s.std, np.std(values, axis=0, ddof=1), rtol=1e-14)
    np.testing.assert_array_equal(s.count, [3, 3])
    assert acc.values("dice").shape == (3, 2)


@pytest.mark.parametrize(
    ("first", "second"),
    [((4, 2), (4, 3)), ((4,), (4, 2)), ((4, 2), (4,)), ((4, 1), (4,))],
)
def test_class_width_mismatch_raises_and_records_nothing(first, second):
    acc = MetricAccumulator()
    acc.add("dice", np.zeros(first))
    with pytest.raises(ValueError, match="per-class width"):
        acc.add("dice", np.zeros(second))
    assert acc.values("dice").shape == first


# ------------------------------------------------------------------ NaN and inf


def test_nan_excluded_and_counted():
    acc = MetricAccumulator()
    acc.add("x", [1.0, float("nan"), 3.0])
    s = acc["x"]
    assert (s.mean, s.count, s.missing) == (2.0, 2, 1)
    assert s.std == pytest.approx(math.sqrt(2))
    assert np.isnan(acc.values("x")[1])  # still in the raw values


def test_nan_per_class_counts_differ():
    acc = MetricAccumulator()
    acc.add("dice", [[0.5, float("nan")], [0.7, 0.9], [0.9, float("nan")]])
    s = acc["dice"]
    np.testing.assert_allclose(s.mean, [0.7, 0.9])
    np.testing.assert_array_equal(s.count, [3, 1])
    np.testing.assert_array_equal(s.missing, [0, 2])
    std = np.asarray(s.std)
    assert std[0] == pytest.approx(0.2) and np.isnan(std[1])  # one value left


def test_all_nan_gives_nan_without_warnings(recwarn):
    acc = MetricAccumulator()
    acc.add("x", [float("nan")] * 3)
    s = acc["x"]
    assert math.isnan(s.mean) and math.isnan(s.std)
    assert (s.count, s.missing) == (0, 3)
    assert not recwarn.list


def test_inf_propagates():
    acc = MetricAccumulator()
    acc.add("hd95", torch.tensor([2.0, float("inf"), 4.0, float("nan")]))
    s = acc["hd95"]
    assert s.mean == math.inf and s.std == math.inf
    assert (s.count, s.missing) == (3, 1)


def test_too_few_values_for_ddof_give_nan_std():
    one = MetricAccumulator()
    one.add("x", 0.7)
    assert one["x"].mean == 0.7 and math.isnan(one["x"].std)
    zero = MetricAccumulator(ddof=0)
    zero.add("x", 0.7)
    assert zero["x"].std == 0.0
    two = MetricAccumulator(ddof=2)
    two.add("x", [0.1, 0.2])
    assert math.isnan(two["x"].std)
    two.add("x", 0.3)
    assert two["x"].std == pytest.approx(math.sqrt(0.02 / 1))


# ------------------------------------------------------------------ update with real metrics


def test_update_equals_per_batch_calls_concatenated():
    acc = MetricAccumulator({"dice": dice_score, "iou": iou_score}, num_classes=3, **S2)
    expected: dict[str, list] = {"dice": [], "iou": []}
    for seed, batch in enumerate((3, 1, 4)):
        pred, target = _label_maps(seed, batch)
        returned = acc.update(pred, target)
        for name, fn in (("dice", dice_score), ("iou", iou_score)):
            direct = fn(pred, target, num_classes=3, reduction="none", **S2)
            assert direct.shape == (batch, 2)
            np.testing.assert_array_equal(returned[name], direct)
            expected[name].append(direct)
    assert len(acc) == 8
    for name, chunks in expected.items():
        everything = np.concatenate(chunks)
        np.testing.assert_array_equal(acc.values(name), everything)
        s = acc[name]
        np.testing.assert_allclose(s.mean, everything.mean(axis=0), rtol=1e-14)
        np.testing.assert_allclose(s.std, everything.std(axis=0, ddof=1), rtol=1e-14)
    # Binary (no num_classes): one value per image.
    binary = MetricAccumulator({"dice": dice_score}, **S2)
    pred, target = _label_maps(7, 5)
    binary.update(pred, target)
    np.testing.assert_array_equal(
        binary.values("dice"), dice_score(pred, target, reduction="none", **S2)
    )


def test_update_returns_copies():
    acc = MetricAccumulator({"dice": dice_score}, **S2)
    pred, target = _label_maps(0, 2)
    out = acc.update(pred, target)
    out["dice"][:] = -1.0
    assert (acc.values("dice") >= 0).all()
    acc.values("dice")[:] = -1.0
    assert (acc.values("dice") >= 0).all()


def test_metric_kwargs_routed_only_where_accepted():
    seen = {}

    def fake_distance(pred, target, spacing=(1.0, 1.0), reduction="mean"):
        seen["spacing"] = spacing
        return np.full(len(pred), float(sum(spacing)))

    def anything(pred, target, **kwargs):
        seen["anything"] = kwargs
        return np.zeros(len(pred))

    acc = MetricAccumulator(
        {"dice": dice_score, "dist": fake_distance, "any": anything},
        num_classes=3,
        spacing=(2.0, 0.5),
        **S2,
    )
    pred, target = _label_maps(1, 3)
    # dice would raise on spacing=, fake_distance on num_classes= and spatial_dims=
    batch = acc.update(pred, target)
    assert seen["spacing"] == (2.0, 0.5)
    assert seen["anything"] == {
        "num_classes": 3,
        "spacing": (2.0, 0.5),
        "spatial_dims": 2,
        "reduction": "none",
    }
    np.testing.assert_array_equal(batch["dist"], [2.5, 2.5, 2.5])
    assert batch["dice"].shape == (3, 2)


def test_construction_errors():
    with pytest.raises(TypeError, match=r"'spacing'.*accepted by none"):
        MetricAccumulator({"dice": dice_score}, spacing=(1, 1))
    with pytest.raises(TypeError, match="accepted by none"):
        MetricAccumulator(num_classes=3)  # no metrics at all
    with pytest.raises(TypeError, match="reduction"):
        MetricAccumulator({"dice": dice_score}, reduction="mean")
    with pytest.raises(TypeError, match="takes no 'reduction'"):
        MetricAccumulator({"bad": lambda pred, target: pred})
    with pytest.raises(TypeError, match="callable"):
        MetricAccumulator({"dice": 0.9})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="ddof"):
        MetricAccumulator(ddof=-1)


def test_update_errors_record_nothing():
    def mean_only(pred, target, reduction="mean"):
        return 0.5  # ignores reduction

    def wrong_length(pred, target, reduction="mean"):
        return np.zeros(len(pred) + 1)

    pred, target = _label_maps(2, 3)
    with pytest.raises(RuntimeError, match="no metric functions"):
        MetricAccumulator().update(pred, target)
    for bad, message in ((mean_only, "single number"), (wrong_length, "batch of 3")):
        acc = MetricAccumulator({"dice": dice_score, "bad": bad}, **S2)
        with pytest.raises(ValueError, match=message):
            acc.update(pred, target)
        assert acc.compute() == {} and len(acc) == 0  # dice's values were not kept either
    # A class count other than the one recorded before: nothing of the batch is kept.
    acc = MetricAccumulator({"dice": dice_score, "iou": iou_score}, num_classes=3, **S2)
    acc.add("iou", np.zeros((1, 5)))
    with pytest.raises(ValueError, match="per-class width"):
        acc.update(pred, target)
    assert list(acc.compute()) == ["iou"] and len(acc) == 1


# ------------------------------------------------------------------ input kinds


def test_torch_and_numpy_give_identical_summaries():
    values = np.random.default_rng(3).uniform(size=(9, 3))
    values[2, 1] = np.nan
    from_numpy, from_torch = MetricAccumulator(), MetricAccumulator()
    for lo, hi in ((0, 4), (4, 9)):
        from_numpy.add("m", values[lo:hi])
        from_torch.add("m", torch.from_numpy(values[lo:hi]))
    _assert_same(from_numpy, from_torch)
    # float32 values, one a tensor requiring grad: same float64 conversion either way.
    f32 = values.astype(np.float32)
    a, b = MetricAccumulator(), MetricAccumulator()
    a.add("m", f32)
    b.add("m", torch.from_numpy(f32).requires_grad_())
    _assert_same(a, b)


def test_update_with_torch_and_numpy_inputs_agree():
    # torch metrics return float32, NumPy ones float64: equal to float32 precision.
    pred, target = _label_maps(4, 6)
    a = MetricAccumulator({"dice": dice_score}, num_classes=3, **S2)
    b = MetricAccumulator({"dice": dice_score}, num_classes=3, **S2)
    a.update(pred, target)
    b.update(torch.from_numpy(pred), torch.from_numpy(target))
    assert b.values("dice").dtype == np.float64
    np.testing.assert_allclose(a["dice"].mean, b["dice"].mean, rtol=1e-6)
    np.testing.assert_allclose(a["dice"].std, b["dice"].std, rtol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_tensors_are_moved_to_cpu():
    pred, target = _label_maps(5, 4)
    a = MetricAccumulator({"dice": dice_score}, num_classes=3, **S2)
    b = MetricAccumulator({"dice": dice_score}, num_classes=3, **S2)
    a.update(torch.from_numpy(pred), torch.from_numpy(target))
    b.update(torch.from_numpy(pred).cuda(), torch.from_numpy(target).cuda())
    b.add("extra", torch.tensor([1.0, 2.0], device="cuda", dtype=torch.bfloat16))
    np.testing.assert_array_equal(a.values("dice"), b.values("dice"))
    assert b["extra"].mean == 1.5


def test_add_copies_its_input():
    array = np.array([1.0, 2.0])
    tensor = torch.tensor([3.0, 4.0], dtype=torch.float64)
    acc = MetricAccumulator()
    acc.add("a", array)
    acc.add("t", tensor)
    array[:] = 0.0
    tensor[:] = 0.0
    np.testing.assert_array_equal(acc.values("a"), [1.0, 2.0])
    np.testing.assert_array_equal(acc.values("t"), [3.0, 4.0])


def test_add_input_forms_and_errors():
    acc = MetricAccumulator()
    acc.add("m", 1)
    acc.add("m", np.float32(2.0))
    acc.add("m", torch.tensor(3))
    acc.add("m", [True, False])
    acc.add("m", [])  # an empty batch records nothing
    np.testing.assert_array_equal(acc.values("m"), [1.0, 2.0, 3.0, 1.0, 0.0])
    assert acc.values("m").dtype == np.float64
    with pytest.raises(ValueError, match=r"\(B,\) or \(B, K\)"):
        acc.add("m3", np.zeros((2, 2, 2)))
    with pytest.raises(TypeError, match="real numbers"):
        acc.add("c", np.array([1 + 2j]))
    with pytest.raises(TypeError, match="real numbers"):
        acc.add("c", torch.tensor([1 + 2j]))
    with pytest.raises(TypeError, match="real numbers"):
        acc.add("s", ["a", "b"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="string"):
        acc.add(3, [1.0])  # type: ignore[arg-type]
    assert list(acc.compute()) == ["m"]


# ------------------------------------------------------------------ bookkeeping


def test_empty_accumulator_and_lookup_errors():
    acc = MetricAccumulator({"dice": dice_score})
    assert acc.compute() == {} and len(acc) == 0
    assert acc.summary() == "" and acc.to_dict() == {}
    with pytest.raises(KeyError, match="call update"):
        acc["dice"]
    with pytest.raises(KeyError, match="recorded names"):
        acc.values("hd95")
    assert "dice" not in acc


def test_reset_forgets_values_keeps_metrics():
    acc = MetricAccumulator({"dice": dice_score}, num_classes=3, **S2)
    pred, target = _label_maps(0, 2)
    acc.update(pred, target)
    acc.add("dice", np.zeros((1, 2)))
    assert len(acc) == 3
    acc.reset()
    assert acc.compute() == {} and len(acc) == 0
    acc.update(pred, target)
    np.testing.assert_array_equal(
        acc.values("dice"), dice_score(pred, target, num_classes=3, reduction="none", **S2)
    )


def test_len_is_the_most_values_under_one_name():
    acc = MetricAccumulator()
    acc.add("a", [1.0, 2.0, 3.0])
    acc.add("b", [[1.0, 2.0]])
    assert len(acc) == 3


def test_merge_equals_accumulating_everything():
    pred, target = _label_maps(6, 7)
    whole = MetricAccumulator({"dice": dice_score, "iou": iou_score}, num_classes=3, **S2)
    whole.update(pred, target)
    whole.add("extra", [1.0, float("nan"), 2.0])
    a = MetricAccumulator({"dice": dice_score, "iou": iou_score}, num_classes=3, **S2)
    b = MetricAccumulator({"dice": dice_score, "iou": iou_score}, num_classes=3, **S2)
    a.update(pred[:3], target[:3])
    a.add("extra", [1.0, float("nan")])
    b.update(pred[3:], target[3:])
    b.add("extra", 2.0)
    before = b.values("dice")
    assert a.merge(b) is a
    _assert_same(a, whole)
    np.testing.assert_array_equal(b.values("dice"), before)  # other unchanged
    assert len(a) == 7


def test_merge_with_itself_doubles_and_mismatch_merges_nothing():
    a = MetricAccumulator()
    a.add("x", [1.0, 2.0])
    a.merge(a)
    np.testing.assert_array_equal(a.values("x"), [1.0, 2.0, 1.0, 2.0])
    b = MetricAccumulator()
    b.add("y", [5.0])
    b.add("x", [[1.0, 2.0]])
    with pytest.raises(ValueError, match="per-class width"):
        a.merge(b)
    assert list(a.compute()) == ["x"] and len(a) == 4
    with pytest.raises(TypeError, match="MetricAccumulator"):
        a.merge({"x": [1.0]})  # type: ignore[arg-type]


_values = st.one_of(
    hnp.arrays(
        np.float64,
        st.integers(0, 12),
        elements=st.one_of(st.floats(-10, 10), st.just(math.nan)),
    ),
    hnp.arrays(
        np.float64,
        st.tuples(st.integers(0, 12), st.integers(1, 3)),
        elements=st.floats(allow_nan=True, allow_infinity=True, width=32),
    ),
)


@_fast
@given(values=_values, data=st.data(), ddof=st.integers(0, 2))
def test_batch_splitting_and_merging_invariance(values, data, ddof):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(values)), max_size=4)))
    bounds = [0, *cuts, len(values)]
    pieces = [values[lo:hi] for lo, hi in itertools.pairwise(bounds)]
    whole = MetricAccumulator(ddof=ddof)
    whole.add("m", values)
    batched = MetricAccumulator(ddof=ddof)
    for piece in pieces:
        batched.add("m", torch.from_numpy(piece) if data.draw(st.booleans()) else piece)
    merged = MetricAccumulator(ddof=ddof)
    for piece in pieces:
        part = MetricAccumulator(ddof=ddof)
        part.add("m", piece)
        merged.merge(part)
    if values.shape == (0,):  # nothing recorded at all ((0, K) does record K)
        assert whole.compute() == batched.compute() == merged.compute() == {}
        return
    _assert_same(whole, batched)
    _assert_same(whole, merged)
    # And the summary is NumPy's on the non-NaN values.
    column = values if values.ndim == 1 else values[:, 0]
    kept = column[~np.isnan(column)]
    s = whole["m"]
    means, _, counts, _ = s.as_arrays()  # length 1 for (N,) values
    mean0, count0 = means[0], counts[0]
    assert count0 == kept.size
    if kept.size and np.isfinite(kept).all():
        assert mean0 == pytest.approx(np.mean(kept), rel=1e-12, abs=1e-12)


# ------------------------------------------------------------------ reports


def test_summary_string():
    acc = MetricAccumulator()
    acc.add("dice", [1, 2, 3, 4])  # 2.5 ± 1.291
    acc.add("hd95", [1.0, float("nan")])
    lines = acc.summary().splitlines()
    assert lines == ["dice  2.500 ± 1.291  (n=4)", "hd95  1.000 ± nan  (n=1, missing=1)"]
    assert acc.summary(digits=1).splitlines()[0] == "dice  2.5 ± 1.3  (n=4)"
    with pytest.raises(ValueError, match="digits"):
        acc.summary(digits=-1)


def test_summary_per_class_labels():
    values = [[0.8, 0.6], [0.9, 0.7]]
    acc = MetricAccumulator()
    acc.add("dice", values)
    # and a [mean] row: each image's mean over its classes (0.7, 0.8), over images
    assert acc.summary(digits=2).splitlines() == [
        "dice[1]     0.85 ± 0.07  (n=2)",
        "dice[2]     0.65 ± 0.07  (n=2)",
        "dice[mean]  0.75 ± 0.07  (n=2)",
    ]
    assert acc.summary(first_class=0).splitlines()[0].startswith("dice[0]     0.850")
    with_bg = MetricAccumulator(
        {"dice": dice_score}, num_classes=3, include_background=True, spatial_dims=2
    )
    with_bg.add("dice", [[0.1, 0.2, 0.3]])
    assert [line.split()[0] for line in with_bg.summary().splitlines()] == [
        "dice[0]",
        "dice[1]",
        "dice[2]",
        "dice[mean]",
    ]


def test_to_dict_is_json_ready():
    acc = MetricAccumulator({"dice": dice_score}, num_classes=3, **S2)
    pred, target = _label_maps(8, 5)
    acc.update(pred, target)
    acc.add("hd95", [1.0, float("inf"), float("nan")])
    acc.add("vol", [0.5, 1.5])
    d = acc.to_dict()
    back = json.loads(json.dumps(d))
    s = acc["dice"]
    assert back["dice"]["mean"] == s.as_arrays()[0].tolist()
    assert back["dice"]["std"] == s.as_arrays()[1].tolist()
    assert back["dice"]["count"] == [5, 5] and back["dice"]["classes"] == [1, 2]
    # per-class metrics also get the per-image class mean summarised over images
    overall = acc.overall("dice")
    assert back["dice"]["overall"] == {
        "mean": overall.mean,
        "std": overall.std,
        "count": overall.count,
        "missing": overall.missing,
    }
    assert overall.mean == pytest.approx(np.nanmean(acc.values("dice"), axis=1).mean())
    assert back["vol"] == {"mean": 1.0, "std": math.sqrt(0.5), "count": 2, "missing": 0}
    assert back["hd95"]["mean"] == math.inf and back["hd95"]["missing"] == 1
    assert type(d["vol"]["mean"]) is float and type(d["vol"]["count"]) is int
    assert all(type(v) is float for v in d["dice"]["mean"])
