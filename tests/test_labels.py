"""attnunet.data.labels: label values as written, class indices, and the label files.

Oracles: masks and their class indices written out by hand, and counts from
``np.unique``.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from attnunet.data.labels import IGNORE_INDEX, LabelSet, label_counts
from attnunet.data.readers import DataError

VALUES = (0, 21, 22, 23, 105, 205)

# A mask over the non-contiguous values with ignore 255, and its classes by hand.
MASK = np.array(
    [
        [0, 21, 22, 23],
        [105, 205, 255, 0],
        [23, 23, 205, 21],
    ],
    np.uint8,
)
CLASSES = np.array(
    [
        [0, 1, 2, 3],
        [4, 5, -1, 0],
        [3, 3, 5, 1],
    ]
)


def test_ignore_index_is_minus_one():
    assert IGNORE_INDEX == -1


# ----------------------------------------------------------------------------- encode/decode


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint32])
def test_encode_non_contiguous_values(dtype):
    labels = LabelSet(VALUES, ignore=255)
    out = labels.encode(MASK.astype(dtype))
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out, CLASSES)


def test_decode_round_trip():
    labels = LabelSet(VALUES, ignore=255)
    classes = labels.encode(MASK)
    predicted = np.where(classes == IGNORE_INDEX, 0, classes)  # a prediction never ignores
    decoded = labels.decode(predicted)
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, np.where(MASK == 255, 0, MASK))


def test_encode_large_values_by_search():
    # values beyond the lookup-table limit take the searchsorted path
    labels = LabelSet((0, 3_000_000, 7), ignore=5_000_000)
    mask = np.array([[0, 3_000_000], [5_000_000, 7]], np.int64)
    np.testing.assert_array_equal(labels.encode(mask), [[0, 2], [-1, 1]])
    with pytest.raises(DataError, match="4000000"):
        labels.encode(np.array([0, 4_000_000]))


def test_encode_boolean_and_whole_float_masks():
    labels = LabelSet((0, 1))
    np.testing.assert_array_equal(labels.encode(np.array([True, False])), [1, 0])
    np.testing.assert_array_equal(labels.encode(np.array([1.0, 0.0])), [1, 0])
    with pytest.raises(DataError, match="non-integer"):
        labels.encode(np.array([0.5, 1.0]))


def test_unknown_values_name_file_values_and_fix():
    labels = LabelSet(VALUES, ignore=255)
    mask = MASK.copy()
    mask[0, 0], mask[2, 3] = 7, 99
    with pytest.raises(DataError) as info:
        labels.encode(mask, path="case_003.nii.gz")
    message = str(info.value)
    assert message.startswith("case_003.nii.gz:")
    assert "7, 99" in message
    assert "0, 21, 22, 23, 105, 205" in message and "255" in message
    assert "dataset.json" in message and "labels file" in message


def test_unknown_values_without_path_and_ignore_unset():
    # 255 is unknown when the label set has no ignore value
    with pytest.raises(DataError, match=r"^the mask holds label value 255 "):
        LabelSet(VALUES).encode(MASK)


def test_unknown_values_listed_up_to_ten():
    with pytest.raises(DataError) as info:
        LabelSet((0,)).encode(np.arange(1, 31))
    message = str(info.value)
    assert "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, ..." in message and "30 in all" in message
    assert "11," not in message


def test_negative_values_are_unknown():
    with pytest.raises(DataError, match="-3"):
        LabelSet((0, 1)).encode(np.array([0, -3, 1]))


def test_decode_dtypes_and_refusals():
    assert LabelSet((0, 300)).decode(np.array([1])).dtype == np.uint16
    assert LabelSet((0, 70_000)).decode(np.array([1])).tolist() == [70_000]
    assert LabelSet((0, 70_000)).decode(np.array([1])).dtype == np.uint32
    labels = LabelSet((0, 5))
    with pytest.raises(ValueError, match="IGNORE_INDEX"):
        labels.decode(np.array([0, IGNORE_INDEX]))
    with pytest.raises(ValueError, match=r"0\.\.1"):
        labels.decode(np.array([2]))


# ----------------------------------------------------------------------------- the set


def test_values_are_sorted_with_their_names():
    labels = LabelSet((0, 22, 21), names=("background", "L2", "L1"))
    assert labels.values == (0, 21, 22)
    assert labels.names == ("background", "L1", "L2")
    assert labels == LabelSet((0, 21, 22), names=("background", "L1", "L2"))


def test_class_and_column_names():
    unnamed = LabelSet(VALUES)
    assert unnamed.num_classes == 6
    assert unnamed.class_names == ("background", "21", "22", "23", "105", "205")
    assert unnamed.column_names == ("0", "21", "22", "23", "105", "205")
    named = LabelSet((0, 1, 2), names=("Background", "Left Kidney", "tumour, core"))
    assert named.class_names == ("Background", "Left Kidney", "tumour, core")
    assert named.column_names == ("background", "left_kidney", "tumour__core")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"values": (1, 2)}, "no 0"),
        ({"values": (0, 1, 1)}, "distinct"),
        ({"values": (0, -1)}, ">= 0"),
        ({"values": (0, 1.5)}, "not an integer"),
        ({"values": (0, True)}, "not an integer"),
        ({"values": (0, 1), "ignore": 1}, "ignore value 1"),
        ({"values": (0, 1), "names": ("a",)}, "1 names for 2"),
        ({"values": (0, 1), "names": ("Left lung", "left_lung")}, "distinct"),
        ({"values": (0, 1), "names": ("bg", " ")}, "empty"),
    ],
)
def test_invalid_sets(kwargs, match):
    with pytest.raises(DataError, match=match):
        LabelSet(**kwargs)


def test_missing_background_message_says_what_to_do():
    with pytest.raises(DataError, match='background": 0'):
        LabelSet((21, 22))


def test_dict_round_trip_through_json():
    labels = LabelSet(VALUES, names=("bg", "a", "b", "c", "d", "e"), ignore=255)
    data = json.loads(json.dumps(labels.to_dict()))
    assert data == {
        "values": [0, 21, 22, 23, 105, 205],
        "names": ["bg", "a", "b", "c", "d", "e"],
        "ignore": 255,
    }
    assert LabelSet.from_dict(data) == labels
    with pytest.raises(DataError, match="unknown keys"):
        LabelSet.from_dict({**data, "colour": 1})
    with pytest.raises(DataError, match="values"):
        LabelSet.from_dict({"names": None})


# ----------------------------------------------------------------------------- discovery


def test_discover_union_plus_background_minus_ignore():
    masks = [np.array([[21, 22], [255, 21]]), np.array([205, 105, 255])]
    labels = LabelSet.discover(masks, ignore=255)
    assert labels.values == (0, 21, 22, 105, 205) and labels.ignore == 255
    assert labels.names is None


def test_discover_with_names():
    labels = LabelSet.discover([np.array([0, 21])], names={21: "L1", 22: "L2"})
    assert labels.values == (0, 21, 22)  # named values count even when absent
    assert labels.names == ("background", "L1", "L2")


def test_discover_refuses_negative_values():
    with pytest.raises(DataError, match="negative"):
        LabelSet.discover([np.array([0, -2])])


def test_label_counts_against_unique():
    rng = np.random.default_rng(0)
    masks = [rng.choice(np.array((*VALUES, 255)), size=(7, 9)) for _ in range(3)]
    expected: dict[int, int] = {}
    for mask in masks:
        values, counts = np.unique(mask, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            expected[value] = expected.get(value, 0) + count
    assert label_counts(masks) == expected
    assert list(label_counts(masks)) == sorted(expected)
    assert label_counts([np.array([-1, -1, 4_000_000])]) == {-1: 2, 4_000_000: 1}


def test_describe_lists_values_names_and_counts():
    labels = LabelSet((0, 21), names=("background", "L1"), ignore=255)
    lines = labels.describe({0: 1000, 21: 50, 255: 7}).splitlines()
    assert lines[0] == "2 classes (label value -> class):"
    assert lines[1].split() == ["class", "0:", "value", "0", "background", "1,000", "voxels"]
    assert lines[2].split() == ["class", "1:", "value", "21", "L1", "50", "voxels"]
    assert lines[3].split() == ["ignored:", "value", "255", "ignore", "7", "voxels"]
    assert "voxels" not in LabelSet((0, 3)).describe()


# ----------------------------------------------------------------------------- files


def test_from_dataset_json_dict_and_file(tmp_path):
    dataset = {
        "channel_names": {"0": "CT"},
        "labels": {"background": 0, "L1": 21, "L2": 22, "ignore": 255},
        "numTraining": 3,
    }
    labels = LabelSet.from_dataset_json(dataset)
    assert labels == LabelSet((0, 21, 22), names=("background", "L1", "L2"), ignore=255)
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps(dataset))
    assert LabelSet.from_dataset_json(path) == labels
    assert LabelSet.from_file(path) == labels  # a dataset.json works as a labels file


def test_from_dataset_json_value_to_name_form():
    labels = LabelSet.from_dataset_json({"labels": {"0": "background", "1": "liver"}})
    assert labels.values == (0, 1) and labels.names == ("background", "liver")


def test_region_labels_refused():
    region = {"labels": {"background": 0, "whole tumor": [1, 2, 3], "enhancing": 3}}
    with pytest.raises(DataError, match=r"region-based \(overlapping\)"):
        LabelSet.from_dataset_json(region)
    ordered = {"labels": {"background": 0, "a": 1}, "regions_class_order": [1]}
    with pytest.raises(DataError, match="does not train region-based"):
        LabelSet.from_dataset_json(ordered)
    # a one-element list is one value, not a region
    assert LabelSet.from_dataset_json({"labels": {"background": 0, "a": [4]}}).values == (0, 4)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ({"background": 0, "a": 1, "b": 1}, "'a' and 'b' have the same value 1"),
        ({"background": 0, "a": "one"}, "not an integer"),
        ({"background": 0, "a": 1.5}, "not an integer"),
        ({"a": 1, "b": 2}, "no 0"),
        ({}, "expected a mapping"),
    ],
)
def test_dataset_json_errors(labels, match):
    with pytest.raises(DataError, match=match):
        LabelSet.from_dataset_json({"labels": labels})


def test_dataset_json_errors_name_the_file(tmp_path):
    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"channel_names": {"0": "CT"}}))
    with pytest.raises(DataError, match=r"dataset\.json: has no \"labels\""):
        LabelSet.from_dataset_json(path)
    path.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        LabelSet.from_dataset_json(path)
    path.write_text(json.dumps({"labels": {"liver": 1}}))
    with pytest.raises(DataError, match=str(path)):
        LabelSet.from_dataset_json(path)
    with pytest.raises(FileNotFoundError):
        LabelSet.from_dataset_json(tmp_path / "missing.json")


@pytest.mark.parametrize(
    "content",
    [
        {"background": 0, "L1": 21, "L5": 105, "ignore": 255},
        {"0": "background", "21": "L1", "105": "L5", "255": "ignore"},
    ],
)
def test_from_json_file_either_orientation(tmp_path, content):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content))
    labels = LabelSet.from_file(path)
    assert labels == LabelSet((0, 21, 105), names=("background", "L1", "L5"), ignore=255)


def test_from_text_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text(
        "# vertebrae\n0 background\n\n21 L1  # first lumbar\n22 left kidney\n255 ignore\n"
    )
    labels = LabelSet.from_file(path)
    assert labels.values == (0, 21, 22)
    assert labels.names == ("background", "L1", "left kidney")
    assert labels.ignore == 255


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("0 background\nL1 21\n", "line 2"),
        ("0 background\n21\n", "line 2"),
        ("0 background\n21 a\n21 b\n", "same value 21"),
        ("1 a\n", "no 0"),
        ("# nothing\n", "declares no labels"),
        ("0 background\n9 ignore\n8 ignore\n", "ignore label 2 times"),
    ],
)
def test_text_file_errors(tmp_path, text, match):
    path = tmp_path / "labels.txt"
    path.write_text(text)
    with pytest.raises(DataError, match=match) as info:
        LabelSet.from_file(path)
    assert str(path) in str(info.value)


def test_missing_labels_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        LabelSet.from_file(tmp_path / "labels.txt")
