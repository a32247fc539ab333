"""find_pairs on nnU-Net v2 raw datasets and DICOM series folders; read_dataset_json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from attnunet.data import SUPPORTED_EXTENSIONS, DataError, find_pairs, read_image, split_pairs
from attnunet.data.pairing import NnUNetDataset, Pair, find_dataset_json, read_dataset_json

LABELS = {"background": 0, "tumour": 1}


def write_json(root: Path, channels: dict[str, str], file_ending: str | None = ".nii.gz") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    content: dict[str, object] = {"channel_names": channels, "labels": LABELS, "numTraining": 1}
    if file_ending is not None:
        content["file_ending"] = file_ending
    (root / "dataset.json").write_text(json.dumps(content))
    return root / "dataset.json"


def nifti(path: Path, value: float, shape=(4, 3, 2)) -> Path:
    nib = pytest.importorskip("nibabel", reason="NIfTI files need nibabel")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.full(shape, value, np.float32), np.eye(4)), path)
    return path


def png(path: Path, value: int, shape=(5, 6)) -> Path:
    image = pytest.importorskip("PIL.Image", reason="PNG files need Pillow")
    path.parent.mkdir(parents=True, exist_ok=True)
    image.fromarray(np.full(shape, value, np.uint8)).save(path)
    return path


def fake_dicom(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(128) + b"DICM" + b"\x02\x00\x00\x00")
    return path


# ----------------------------------------------------------------------------- nnU-Net


def test_single_channel_dataset_from_root_or_images_folder(tmp_path):
    root = tmp_path / "Dataset001_Liver"
    write_json(root, {"0": "CT"})
    for i, case in enumerate(["liver_2", "liver_1", "a_0001"]):  # a case name may end in digits
        nifti(root / "imagesTr" / f"{case}_0000.nii.gz", 10 + i)
        nifti(root / "labelsTr" / f"{case}.nii.gz", i)
    (root / "imagesTr" / ".DS_Store").write_bytes(b"x")  # hidden: skipped
    nifti(root / "imagesTs" / "liver_9_0000.nii.gz", 99)  # not part of the training cases
    expected = [
        Pair(
            root / "imagesTr" / f"{case}_0000.nii.gz",
            root / "labelsTr" / f"{case}.nii.gz",
            (),
            case,
        )
        for case in ("a_0001", "liver_1", "liver_2")
    ]
    assert find_pairs(root) == expected
    assert find_pairs(root / "imagesTr") == expected
    assert [p.name for p in expected] == ["a_0001", "liver_1", "liver_2"]
    nib = pytest.importorskip("nibabel")
    # written values: liver_2 -> 10, liver_1 -> 11, a_0001 -> 12 (labels 0, 1, 2)
    values = [
        (nib.load(p.image).get_fdata()[0, 0, 0], nib.load(p.mask).get_fdata()[0, 0, 0])
        for p in expected
    ]
    assert values == [(12, 2), (11, 1), (10, 0)]


def test_channels_are_listed_in_channel_order_and_stack(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"1": "ADC", "0": "T2", "2": "DWI"})
    for channel in (2, 0, 1):  # written out of order
        nifti(root / "imagesTr" / f"p_01_{channel:04d}.nii.gz", 100 + channel)
    nifti(root / "labelsTr" / "p_01.nii.gz", 1)
    (pair,) = find_pairs(root)
    files = tuple(root / "imagesTr" / f"p_01_{c:04d}.nii.gz" for c in (0, 1, 2))
    assert pair == Pair(files[0], root / "labelsTr" / "p_01.nii.gz", files, "p_01")
    assert pair.images == files and pair.image == files[0] and pair.name == "p_01"
    stacked = np.concatenate([read_image(p, spatial_dims=3) for p in pair.images])
    assert stacked.shape == (3, 4, 3, 2)
    assert stacked.reshape(3, -1).mean(axis=1).tolist() == [100.0, 101.0, 102.0]
    assert read_dataset_json(root).channel_names == ("T2", "ADC", "DWI")


def test_images_ts_without_labels_for_prediction(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "CT"})
    for case in ("b", "a"):
        nifti(root / "imagesTs" / f"{case}_0000.nii.gz", 1)
    nifti(root / "imagesTr" / "t_0000.nii.gz", 1)
    pairs = find_pairs(root / "imagesTs", require_masks=False)
    assert [(p.image, p.mask, p.name) for p in pairs] == [
        (root / "imagesTs" / "a_0000.nii.gz", None, "a"),
        (root / "imagesTs" / "b_0000.nii.gz", None, "b"),
    ]
    with pytest.raises(DataError, match=r"labelsTs does not exist") as info:
        find_pairs(root / "imagesTs")
    assert "require_masks=False" in str(info.value)
    nifti(root / "labelsTs" / "b.nii.gz", 1)
    with pytest.raises(DataError, match=r"1 of 2 cases of .*imagesTs have no label") as info:
        find_pairs(root / "imagesTs")
    assert f"a: expected {root / 'labelsTs' / 'a.nii.gz'}" in str(info.value)
    assert "  b:" not in str(info.value)
    pairs = find_pairs(root / "imagesTs", require_masks=False)
    assert [p.mask for p in pairs] == [None, root / "labelsTs" / "b.nii.gz"]


def test_missing_and_extra_channel_files_are_listed_per_case(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "T2", "1": "ADC"})
    for name in ("ok_0000", "ok_0001", "b_0000", "c_0000", "c_0001", "c_0002", "d_0001"):
        nifti(root / "imagesTr" / f"{name}.nii.gz", 0)
    with pytest.raises(DataError) as info:
        find_pairs(root, require_masks=False)
    message = str(info.value)
    assert message.startswith(f"{root / 'imagesTr'}: 3 of 4 cases do not have exactly the 2")
    assert "0000 (T2), 0001 (ADC)" in message
    assert "  b: missing b_0001.nii.gz\n" in message
    assert "  c: extra c_0002.nii.gz\n" in message
    assert message.endswith("  d: missing d_0000.nii.gz")
    assert "ok:" not in message


def test_files_not_named_by_case_and_channel_are_named(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "CT"})
    nifti(root / "imagesTr" / "ok_0000.nii.gz", 0)
    nifti(root / "labelsTr" / "ok.nii.gz", 0)
    nifti(root / "imagesTr" / "nochannel.nii.gz", 0)
    nifti(root / "imagesTr" / "short_000.nii.gz", 0)
    png(root / "imagesTr" / "other_0000.png", 0)
    (root / "imagesTr" / "notes.txt").write_text("x")  # not an image type: skipped
    (root / "imagesTr" / "ok_0000.raw").write_bytes(b"x")  # as a .mhd header's data would be
    with pytest.raises(DataError) as info:
        find_pairs(root)
    message = str(info.value)
    assert message.startswith(f"{root / 'imagesTr'}: 3 files are not named as nnU-Net")
    assert "nochannel.nii.gz, other_0000.png, short_000.nii.gz." in message
    assert "ok_0000" not in message and "<case>_0000.nii.gz" in message
    for name in ("nochannel.nii.gz", "other_0000.png", "short_000.nii.gz"):
        (root / "imagesTr" / name).unlink()
    assert find_pairs(root) == [
        Pair(root / "imagesTr" / "ok_0000.nii.gz", root / "labelsTr" / "ok.nii.gz", (), "ok")
    ]


def test_explicit_masks_override_the_label_folder(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "CT"})
    nifti(root / "imagesTr" / "a_0000.nii.gz", 0)
    nifti(root / "labelsTr" / "a.nii.gz", 0)
    nifti(tmp_path / "predictions" / "a.nii.gz", 1)
    expected = [
        Pair(root / "imagesTr" / "a_0000.nii.gz", tmp_path / "predictions" / "a.nii.gz", (), "a")
    ]
    assert find_pairs(root, tmp_path / "predictions") == expected
    assert find_pairs(root / "imagesTr", tmp_path / "predictions") == expected
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist"):
        find_pairs(root, tmp_path / "nowhere", require_masks=False)
    with pytest.raises(DataError, match=r"a.nii.gz is a file; give the folder of label files"):
        find_pairs(root, tmp_path / "predictions" / "a.nii.gz")


def test_one_image_file_gives_its_whole_case(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "T2", "1": "ADC"})
    for name in ("a_0000", "a_0001", "broken_0000"):  # broken lacks a channel: not asked for
        nifti(root / "imagesTr" / f"{name}.nii.gz", 0)
    nifti(root / "labelsTr" / "a.nii.gz", 0)
    nifti(tmp_path / "other.nii.gz", 0)
    files = (root / "imagesTr" / "a_0000.nii.gz", root / "imagesTr" / "a_0001.nii.gz")
    assert find_pairs(files[1]) == [Pair(files[0], root / "labelsTr" / "a.nii.gz", files, "a")]
    assert find_pairs(files[0], tmp_path / "other.nii.gz") == [
        Pair(files[0], tmp_path / "other.nii.gz", files, "a")
    ]
    with pytest.raises(DataError, match=r"imagesTr: 1 of 1 cases do not have") as info:
        find_pairs(root / "imagesTr" / "broken_0000.nii.gz", require_masks=False)
    assert str(info.value).endswith("\n  broken: missing broken_0001.nii.gz")
    with pytest.raises(DataError, match=r"other.nii.gz: not named as nnU-Net names images"):
        nifti(root / "imagesTr" / "other.nii.gz", 0)
        find_pairs(root / "imagesTr" / "other.nii.gz")


def test_png_dataset_with_two_channels(tmp_path):
    image = pytest.importorskip("PIL.Image", reason="PNG files need Pillow")
    root = tmp_path / "Dataset002_Cells"
    write_json(root, {"0": "red", "1": "green"}, file_ending=".png")
    for case, base in (("cell2", 20), ("cell1", 10)):
        for channel in (1, 0):
            png(root / "imagesTr" / f"{case}_{channel:04d}.png", base + channel)
        png(root / "labelsTr" / f"{case}.png", base // 10)
    pairs = find_pairs(root)
    assert [(p.name, [f.name for f in p.images], p.mask.name) for p in pairs] == [
        ("cell1", ["cell1_0000.png", "cell1_0001.png"], "cell1.png"),
        ("cell2", ["cell2_0000.png", "cell2_0001.png"], "cell2.png"),
    ]
    pixels = [[int(np.asarray(image.open(f))[0, 0]) for f in p.images] for p in pairs]
    assert pixels == [[10, 11], [20, 21]]
    train, val = split_pairs(pairs, val_fraction=0.5, seed=0)
    assert sorted(train + val, key=lambda p: p.name) == pairs


def test_unsupported_file_ending_and_empty_folder_are_refused(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "CT"}, file_ending=".bmp")
    (root / "imagesTr").mkdir()
    (root / "imagesTr" / "a_0000.bmp").write_bytes(b"BM")
    with pytest.raises(DataError, match=r"dataset.json: file_ending '.bmp' is not a supported"):
        find_pairs(root)
    write_json(root, {"0": "CT"})
    (root / "imagesTr" / "a_0000.bmp").unlink()
    (root / "imagesTr" / "notes.txt").write_text("x")
    with pytest.raises(
        DataError, match=r"imagesTr: no image files; nnU-Net names them <case>_0000"
    ):
        find_pairs(root, require_masks=False)


# ----------------------------------------------------------------------------- dataset.json


def test_read_dataset_json_fields_and_defaults(tmp_path):
    json_file = write_json(tmp_path / "ds", {"0": "T2", "1": "ADC"}, file_ending=None)
    dataset = read_dataset_json(json_file)
    assert dataset == NnUNetDataset(tmp_path / "ds", ("T2", "ADC"), LABELS, ".nii.gz", None)
    assert read_dataset_json(tmp_path / "ds") == dataset and dataset.num_channels == 2
    regions = {"background": 0, "whole": [1, 2, 3], "core": [2, 3]}
    (tmp_path / "v1").mkdir()
    (tmp_path / "v1" / "dataset.json").write_text(
        json.dumps(
            {"name": "BraTS", "modality": {"0": "FLAIR"}, "labels": regions, "file_ending": ".png"}
        )
    )
    v1 = read_dataset_json(tmp_path / "v1")
    assert (v1.channel_names, v1.labels, v1.file_ending, v1.name) == (
        ("FLAIR",),
        regions,
        ".png",
        "BraTS",
    )


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ('{"channel_names": {"0": "CT"},', r"not valid JSON \(.* at line 1, column"),
        ("[1, 2]", r"holds a JSON list, not an object"),
        ('{"labels": {"background": 0}}', r'no "channel_names" entry'),
        ('{"channel_names": {"0": "CT"}}', r'no "labels" entry'),
        ('{"channel_names": {"0": "CT", "2": "T2"}, "labels": {"b": 0}}', r"0 to 1 without gaps"),
        ('{"channel_names": {"CT": "0"}, "labels": {"b": 0}}', r"keys must be channel numbers"),
        ('{"channel_names": ["CT"], "labels": {"b": 0}}', r'"channel_names" must be an object'),
        ('{"channel_names": {"0": "CT"}, "labels": [0, 1]}', r'"labels" must be an object'),
        (
            '{"channel_names": {"0": "CT"}, "labels": {"b": 0}, "file_ending": "nii"}',
            r"file_ending",
        ),
    ],
)
def test_bad_dataset_json_names_the_file(tmp_path, text, match):
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(DataError, match=match) as info:
        read_dataset_json(tmp_path / "dataset.json")
    assert str(info.value).startswith(f"{tmp_path / 'dataset.json'}: ")
    (tmp_path / "imagesTr").mkdir()
    with pytest.raises(DataError, match=match):  # find_pairs reads it too
        find_pairs(tmp_path)


def test_find_dataset_json(tmp_path):
    root = tmp_path / "ds"
    json_file = write_json(root, {"0": "CT"})
    for folder in ("imagesTr", "imagesTs", "labelsTr", "labelsTs"):
        (root / folder).mkdir()
        assert find_dataset_json(root / folder) == json_file
    assert find_dataset_json(root) == json_file
    nifti(root / "imagesTr" / "a_0000.nii.gz", 0)
    assert find_dataset_json(root / "imagesTr" / "a_0000.nii.gz") == json_file
    (root / "images").mkdir()
    assert find_dataset_json(root / "images") is None  # not one of nnU-Net's folders
    assert find_dataset_json(tmp_path) is None
    with pytest.raises(FileNotFoundError):
        read_dataset_json(tmp_path)


# ----------------------------------------------------------------------------- other layouts


def test_other_layouts_beside_a_dataset_json_keep_their_rules(tmp_path):
    # dataset.json without imagesTr/: the images/ + masks/ layout
    write_json(tmp_path / "a", {"0": "CT"})
    png(tmp_path / "a" / "images" / "x.png", 1)
    png(tmp_path / "a" / "masks" / "x.png", 1)
    assert find_pairs(tmp_path / "a") == [
        Pair(tmp_path / "a" / "images" / "x.png", tmp_path / "a" / "masks" / "x.png")
    ]
    # a folder named imagesTr without a dataset.json: images and masks by suffix
    png(tmp_path / "b" / "imagesTr" / "y.png", 1)
    png(tmp_path / "b" / "imagesTr" / "y_mask.png", 1)
    (pair,) = find_pairs(tmp_path / "b" / "imagesTr")
    assert pair == Pair(
        tmp_path / "b" / "imagesTr" / "y.png", tmp_path / "b" / "imagesTr" / "y_mask.png"
    )
    assert pair.case is None and pair.channels == () and pair.name == "y"


def test_pair_channels_must_start_with_the_image():
    with pytest.raises(ValueError, match=r"must be the first of channels"):
        Pair(Path("a_0001.png"), None, (Path("a_0000.png"), Path("a_0001.png")))
    assert Pair(Path("x.png")).images == (Path("x.png"),)
    assert Pair(Path("x_0000.png"), case="x").name == "x"


# ----------------------------------------------------------------------------- DICOM series


def test_dicom_series_subfolders_are_images(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    for i in range(3):  # DICOM files without an extension: told by the marker
        fake_dicom(images / "ct1" / f"IM{i:04d}")
    (images / "1.2.840.113619.2" / "scan.DCM").parent.mkdir(parents=True)
    (images / "1.2.840.113619.2" / "scan.DCM").write_bytes(b"no marker, but the extension")
    (images / "notes").mkdir()
    (images / "notes" / "readme.txt").write_text("x" * 200)  # not DICOM: skipped
    wrong = images / "wrong"
    wrong.mkdir()
    (wrong / "a").write_bytes(b"DICM" + bytes(200))  # the marker at the wrong offset
    png(images / "plain.png", 1)
    nifti(masks / "ct1.nii.gz", 1)
    png(masks / "1.2.840.113619.2.png", 1)
    png(masks / "plain.png", 1)
    pairs = find_pairs(tmp_path)
    assert [(p.image, p.mask, p.name) for p in pairs] == [
        (images / "1.2.840.113619.2", masks / "1.2.840.113619.2.png", "1.2.840.113619.2"),
        (images / "ct1", masks / "ct1.nii.gz", "ct1"),
        (images / "plain.png", masks / "plain.png", "plain"),
    ]
    fake_dicom(images / "ct3" / "IM0")
    with pytest.raises(DataError, match=r"1 of 4 images have no mask") as info:
        find_pairs(tmp_path)
    assert f"{images / 'ct3'}: expected {masks / 'ct3.*'}" in str(info.value)


def test_dicom_series_in_a_shared_folder(tmp_path):
    fake_dicom(tmp_path / "ct1" / "IM0")
    png(tmp_path / "ct1_seg.png", 1)
    assert find_pairs(tmp_path) == [Pair(tmp_path / "ct1", tmp_path / "ct1_seg.png", case="ct1")]
    fake_dicom(tmp_path / "ct2_seg" / "x.dcm")  # a series is an image, never a mask
    fake_dicom(tmp_path / "ct2" / "x.dcm")
    assert find_pairs(tmp_path, require_masks=False) == [
        Pair(tmp_path / "ct1", tmp_path / "ct1_seg.png", case="ct1"),
        Pair(tmp_path / "ct2", None, case="ct2"),
        Pair(tmp_path / "ct2_seg", None, case="ct2_seg"),
    ]


def test_folder_with_only_plain_subfolders_says_what_is_supported(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.txt").write_text("x")
    with pytest.raises(DataError, match=r"it is empty.*or subfolders of DICOM files"):
        find_pairs(tmp_path)


@pytest.mark.skipif(".mha" not in SUPPORTED_EXTENSIONS, reason="no MetaImage support")
def test_any_supported_file_ending(tmp_path):
    root = tmp_path / "ds"
    write_json(root, {"0": "MR"}, file_ending=".mha")
    for name in ("imagesTr/k_0000.mha", "imagesTr/k_0000.nii.gz", "labelsTr/k.mha"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")  # pairing reads names only
    with pytest.raises(DataError, match=r"1 file is not named .*: k_0000.nii.gz\."):
        find_pairs(root)
    (root / "imagesTr" / "k_0000.nii.gz").unlink()
    assert find_pairs(root) == [
        Pair(root / "imagesTr/k_0000.mha", root / "labelsTr/k.mha", (), "k")
    ]


def test_segmentation_folder_stacks_the_channels_of_a_case(tmp_path):
    from attnunet.data import SegmentationFolder

    root = tmp_path / "Dataset002_Prostate"
    write_json(root, {"0": "T2", "1": "ADC"}, file_ending=".png")
    png(root / "imagesTr" / "p1_0000.png", 10)
    png(root / "imagesTr" / "p1_0001.png", 200)
    png(root / "labelsTr" / "p1.png", 1)
    data = SegmentationFolder.from_folder(root, normalise=False)
    item = data[0]
    assert item["name"] == "p1" and item["image"].shape == (2, 5, 6)
    assert item["image"][0].unique().tolist() == [10.0]
    assert item["image"][1].unique().tolist() == [200.0]
    png(root / "imagesTr" / "p1_0001.png", 200, shape=(4, 6))
    with pytest.raises(DataError, match=r"p1_0001.png: size \(4, 6\) differs"):
        SegmentationFolder.from_folder(root, normalise=False)[0]


def test_one_dicom_series_folder_given_as_images(tmp_path):
    series = tmp_path / "CT_0001"
    for i in range(3):
        fake_dicom(series / f"slice{i}.dcm")
    assert find_pairs(series, require_masks=False) == [Pair(series, None, case="CT_0001")]
    mask = png(tmp_path / "CT_0001.png", 1)
    assert find_pairs(series, mask) == [Pair(series, mask, case="CT_0001")]
    with pytest.raises(DataError, match=r"CT_0001: is one DICOM series; give its mask file"):
        find_pairs(series)
