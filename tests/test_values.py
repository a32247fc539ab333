"""attnunet.layers.values: integer scalars and one-read ranges, against values worked out by
hand."""

import numpy as np
import pytest
import torch

from attnunet.layers import int_value, min_max

# ------------------------------------------------------------------------- int_value


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0, 0),
        (255, 255),
        (-100, -100),
        (2**40, 2**40),
        (np.int8(-3), -3),
        (np.int64(7), 7),
        (np.uint8(255), 255),
        (np.uint64(2**63), 2**63),
        (np.array(4), 4),  # 0-dim arrays are scalars
        (np.array(9, dtype=np.uint16), 9),
        (torch.tensor(3), 3),
        (torch.tensor(-5, dtype=torch.int8), -5),
        (torch.tensor(200, dtype=torch.uint8), 200),
        (torch.tensor(2**40), 2**40),
    ],
)
def test_int_value_reads_integer_scalars(value, expected):
    got = int_value(value)
    assert got == expected
    assert type(got) is int


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        np.bool_(True),
        np.array(True),
        torch.tensor(True),
        torch.tensor(False),
        2.0,
        2.5,
        float("nan"),
        np.float64(3.0),
        np.array(3.0),
        torch.tensor(3.0),
        torch.tensor(3.0, dtype=torch.float16),
        torch.tensor(2 + 0j),
        1j,
        "3",
        b"3",
        [3],
        (3,),
        np.array([3]),
        np.zeros((1, 1), dtype=np.int64),
        torch.tensor([3]),
        torch.zeros(1, 1, dtype=torch.long),
        object(),
    ],
)
def test_int_value_refuses_everything_else(value):
    assert int_value(value) is None


def test_int_value_takes_other_integral_types():
    class Seven(int):
        pass

    assert int_value(Seven(7)) == 7
    assert type(int_value(Seven(7))) is int


# ------------------------------------------------------------------------- min_max


def test_min_max_of_one_tensor_by_hand():
    x = torch.tensor([[3, -2, 9], [0, 5, 4]])
    assert min_max(x) == [(-2, 9)]
    y = torch.tensor([0.5, -0.25, 1.75], dtype=torch.float64)
    assert min_max(y) == [(-0.25, 1.75)]


def test_min_max_of_several_tensors_keeps_their_order_and_types():
    labels = torch.tensor([4, 1, 3], dtype=torch.uint8)
    mask = torch.tensor([[False, True], [False, False]])
    ones = torch.ones(2, 2, dtype=torch.bool)
    got = min_max(labels, torch.empty(0, 3, dtype=torch.long), mask, ones)
    assert got == [(1, 4), None, (0, 1), (1, 1)]
    assert all(type(v) is int for pair in got if pair is not None for v in pair)


def test_min_max_floats_stay_exact_in_their_own_dtype():
    # float32 values that float16 could not hold: no narrowing on the way back
    x = torch.tensor([1.0 + 2**-20, -3.0], dtype=torch.float32)
    assert min_max(x) == [(-3.0, 1.0 + 2**-20)]
    h = torch.tensor([0.1, 0.7], dtype=torch.bfloat16)
    low, high = min_max(h)[0]
    assert (low, high) == (h[0].item(), h[1].item())


def test_min_max_mixed_dtypes_read_in_the_promoted_dtype():
    got = min_max(torch.tensor([2, 6]), torch.tensor([0.5, 1.5]))
    assert got == [(2.0, 6.0), (0.5, 1.5)]
    assert type(got[0][0]) is float


def test_min_max_reports_nan():
    low, high = min_max(torch.tensor([0.0, float("nan"), 1.0]))[0]
    assert np.isnan(low) and np.isnan(high)


def test_min_max_with_nothing_to_read():
    assert min_max() == []
    assert min_max(torch.empty(0), torch.empty(2, 0, dtype=torch.long)) == [None, None]


def test_min_max_reads_back_once(monkeypatch):
    calls = []
    original = torch.Tensor.tolist

    def counting(self):
        calls.append(self.shape)
        return original(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting)
    assert min_max(torch.arange(5), torch.tensor([7, -1]), torch.tensor([True])) == [
        (0, 4),
        (-1, 7),
        (1, 1),
    ]
    assert calls == [torch.Size([6])]
