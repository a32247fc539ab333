"""The ``attnunet`` command on medical volumes the tests write: NIfTI and NRRD files with
oblique affines, anisotropic voxels and non-contiguous labels; an nnU-Net raw dataset.

The oracles are nibabel and SimpleITK (reading what the command wrote) and MedPy (the
per-class HD95 in mm from the header's voxel size).
"""

import csv
import json

import numpy as np
import pytest

from attnunet.cli import main

nib = pytest.importorskip("nibabel", reason="NIfTI needs nibabel (the [medical] extra)")

LABELS = (0, 21, 22, 23)
SHAPE = (20, 22, 8)  # (i, j, k): thick slices along k
ZOOMS = (0.8, 0.9, 3.0)
TINY = [
    "--model-arg",
    "channels=[4,8]",
    "--epochs",
    "1",
    "--steps-per-epoch",
    "2",
    "--batch-size",
    "2",
    "--patch-size",
    "16,16,8",
    "--quiet",
]


def _affine(zooms=ZOOMS, origin=(-12.5, 30.0, 7.25)):
    """An oblique affine: a rotation of 20 degrees about the third axis, with ``zooms``."""
    angle = np.deg2rad(20.0)
    rotation = np.array(
        [
            [np.cos(angle), -np.sin(angle), 0.0],
            [np.sin(angle), np.cos(angle), 0.0],
            [0.0, 0.0, 1.0],
        ]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(zooms)
    affine[:3, 3] = origin
    return affine


def _volume(seed):
    """A CT-like volume (HU) with three 'vertebrae' labelled 21, 22, 23 along the first axis."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(SHAPE, np.uint8)
    for n, value in enumerate(LABELS[1:]):
        start = 2 + 6 * n + seed % 2
        mask[start : start + 4, 6:16, 2:6] = value
    image = np.where(mask > 0, 300.0 + 40.0 * (mask - 20.0), -1000.0)
    image = image + rng.normal(0, 30, SHAPE)
    return image.astype(np.int16), mask


def _save_nifti(path, array, affine):
    image = nib.Nifti1Image(array, affine)
    image.header.set_qform(affine, code=1)
    image.header.set_sform(affine, code=2)
    image.header.set_xyzt_units("mm")
    nib.save(image, path)


def _folder(root, n=4, mismatch=None):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        image, mask = _volume(i)
        _save_nifti(root / "images" / f"spine_{i:02d}.nii.gz", image, _affine())
        affine = _affine(origin=(0.0, 0.0, 0.0)) if i == mismatch else _affine()
        _save_nifti(root / "masks" / f"spine_{i:02d}.nii.gz", mask, affine)
    return root


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One tiny model trained on the NIfTI folder (no --spatial-dims, no --num-classes)."""
    root = tmp_path_factory.mktemp("spine")
    data = _folder(root / "data")
    run = root / "run"
    code = main(
        [
            "train",
            "--images",
            str(data / "images"),
            "--masks",
            str(data / "masks"),
            "--out",
            str(run),
            "--model",
            "unet",
            *TINY,
        ]
    )
    assert code == 0
    return data, run


def test_train_discovers_dims_labels_and_spacing(trained):
    _, run = trained
    record = json.loads((run / "training.json").read_text())
    task = record["task"]
    assert task["spatial_dims"] == 3 and task["in_channels"] == 1
    assert tuple(task["labels"]["values"]) == LABELS
    config = json.loads((run / "best" / "config.json").read_text())
    assert config["config"]["num_classes"] == 4
    assert config["metadata"]["task"] == task
    names = {c["name"] for c in record["data"]}
    assert names == {f"spine_{i:02d}" for i in range(4)}
    assert all(np.allclose(c["spacing"], ZOOMS) for c in record["data"])


def test_train_tells_its_story(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=3)
    code, out, err = _run(
        ["train", "--images", data / "images", "--out", tmp_path / "run", "--model", "unet", *TINY],
        capsys,
    )
    assert code == 0, err
    for text in (
        "3 cases",
        "3D",
        "2 training, 1 validation",
        "21",
        "22",
        "23",
        "mm",
        "device: cpu",
        "min",
        "best validation Dice",
        str(tmp_path / "run" / "best"),
    ):
        assert text in out, text
    assert "0.8 x 0.9 x 3 mm" in out
    assert "hint: channel 0" in out and "--normalisation ct" in out  # HU, z-scored per image


def test_predict_writes_nifti_with_the_input_geometry_and_labels(trained, tmp_path, capsys):
    data, run = trained
    out = tmp_path / "pred"
    code, _, err = _run(
        ["predict", "--model", run, "--images", data / "images", "--out", out, "--quiet"], capsys
    )
    assert code == 0, err
    for i in range(4):
        source = nib.load(data / "images" / f"spine_{i:02d}.nii.gz")
        written = nib.load(out / f"spine_{i:02d}.nii.gz")
        np.testing.assert_allclose(written.affine, source.affine, atol=1e-6)
        assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
        labels = np.asarray(written.dataobj)
        assert labels.shape == SHAPE
        assert set(np.unique(labels).tolist()) <= set(LABELS)


def test_evaluate_reports_every_class_in_mm_like_medpy(trained, tmp_path, capsys):
    medpy = pytest.importorskip("medpy.metric.binary", reason="MedPy is the HD95 oracle")
    data, run = trained
    pred = tmp_path / "pred"
    assert (
        _run(
            ["predict", "--model", run, "--images", data / "images", "--out", pred, "--quiet"],
            capsys,
        )[0]
        == 0
    )
    table = tmp_path / "eval.csv"
    code, out, err = _run(
        [
            "evaluate",
            "--model",
            run,
            "--images",
            data / "images",
            "--masks",
            data / "masks",
            "--out",
            table,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert "mm" in out
    rows = list(csv.DictReader(table.open()))
    assert [r["image"] for r in rows] == sorted(p.name for p in pred.iterdir())
    for row in rows:
        assert row["unit"] == "mm"
        predicted = np.asarray(nib.load(pred / row["image"]).dataobj)
        target = np.asarray(nib.load(data / "masks" / row["image"]).dataobj)
        for value in LABELS[1:]:
            p, t = predicted == value, target == value
            got = row[f"hd95_{value}"]
            if p.any() and t.any():
                # HD95 is the larger directed 95th percentile (MONAI's convention) of
                # MedPy's surface distances; ASSD is MedPy's own
                distances = getattr(medpy, "__surface_distances")
                directed = [distances(a, b, ZOOMS, 1) for a, b in ((p, t), (t, p))]
                expected = max(np.percentile(d, 95) for d in directed)
                assert float(got) == pytest.approx(expected, rel=1e-6), value
                assd = medpy.assd(p, t, voxelspacing=ZOOMS)
                assert float(row[f"assd_{value}"]) == pytest.approx(assd, rel=1e-6)
                dice = 2 * (p & t).sum() / (p.sum() + t.sum())
                assert float(row[f"dice_{value}"]) == pytest.approx(dice, rel=1e-6)


def test_evaluate_refuses_a_label_the_model_does_not_know(trained, tmp_path, capsys):
    _, run = trained
    image, mask = _volume(0)
    mask[0:2, 0:2, 0:2] = 24
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    _save_nifti(tmp_path / "images" / "odd.nii.gz", image, _affine())
    _save_nifti(tmp_path / "masks" / "odd.nii.gz", mask, _affine())
    code, _, err = _run(
        ["evaluate", "--model", run, "--images", tmp_path / "images", "--quiet"], capsys
    )
    assert code == 2 and "odd.nii.gz" in err and "24" in err


def test_image_and_mask_with_different_affines_are_refused(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=3, mismatch=1)
    args = ["train", "--images", data / "images", "--model", "unet", *TINY]
    code, _, err = _run([*args, "--out", tmp_path / "a"], capsys)
    assert code == 2
    assert "images/spine_01.nii.gz" in err and "masks/spine_01.nii.gz" in err
    code, _, err = _run([*args, "--out", tmp_path / "b", "--allow-geometry-mismatch"], capsys)
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("attnunet: warning:")]
    assert len(warned) == 1 and "spine_01" in warned[0] and "used anyway" in warned[0]


def test_resume_refuses_a_changed_data_set(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=3)
    args = [
        "train",
        "--images",
        data / "images",
        "--model",
        "unet",
        *TINY,
        "--out",
        tmp_path / "run",
    ]
    assert _run(args, capsys)[0] == 0
    image, mask = _volume(5)
    _save_nifti(data / "images" / "spine_09.nii.gz", image, _affine())
    _save_nifti(data / "masks" / "spine_09.nii.gz", mask, _affine())
    code, _, err = _run([*args, "--resume", "--epochs", "2"], capsys)
    assert code == 2 and "spine_09" in err and "new" in err
    (data / "images" / "spine_09.nii.gz").unlink()
    (data / "masks" / "spine_09.nii.gz").unlink()
    image, mask = _volume(1)
    _save_nifti(data / "images" / "spine_01.nii.gz", image, _affine(zooms=(1.0, 0.9, 3.0)))
    _save_nifti(data / "masks" / "spine_01.nii.gz", mask, _affine(zooms=(1.0, 0.9, 3.0)))
    code, _, err = _run([*args, "--resume", "--epochs", "2"], capsys)
    assert code == 2 and "spine_01" in err and "spacing" in err


def test_a_2d_model_given_a_volume_says_what_it_expects(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "flat"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        mask = np.zeros((32, 32), np.uint8)
        mask[8:20, 6 + i : 20 + i] = 1
        Image.fromarray((mask * 120 + rng.integers(0, 60, (32, 32))).astype(np.uint8)).save(
            root / "images" / f"c{i}.png"
        )
        Image.fromarray(mask).save(root / "masks" / f"c{i}.png")
    run = tmp_path / "run2d"
    code, _, err = _run(
        [
            "train",
            "--images",
            root / "images",
            "--out",
            run,
            "--model",
            "unet",
            "--model-arg",
            "channels=[4,8]",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--patch-size",
            "32,32",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    volume = tmp_path / "vol"
    volume.mkdir()
    _save_nifti(volume / "scan.nii.gz", _volume(0)[0], _affine())
    code, _, err = _run(
        ["predict", "--model", run, "--images", volume, "--out", tmp_path / "p", "--quiet"], capsys
    )
    assert code == 2
    assert "scan.nii.gz" in err and "3D" in err and "2D" in err
    assert len(err.strip().splitlines()) == 1


def _nnunet_dataset(root, channels=("CT", "T2"), cases=3, test_cases=1):
    (root / "imagesTr").mkdir(parents=True)
    (root / "labelsTr").mkdir()
    (root / "imagesTs").mkdir()
    for i in range(cases + test_cases):
        image, mask = _volume(i)
        folder = "imagesTr" if i < cases else "imagesTs"
        for c in range(len(channels)):
            _save_nifti(
                root / folder / f"spine_{i:03d}_{c:04d}.nii.gz",
                (image + 100 * c).astype(np.int16),
                _affine(),
            )
        if i < cases:
            _save_nifti(root / "labelsTr" / f"spine_{i:03d}.nii.gz", mask, _affine())
    dataset = {
        "channel_names": {str(c): name for c, name in enumerate(channels)},
        "labels": {"background": 0, "L1": 21, "L2": 22, "L3": 23},
        "numTraining": cases,
        "file_ending": ".nii.gz",
    }
    (root / "dataset.json").write_text(json.dumps(dataset))
    return root


def test_nnunet_raw_dataset_trains_and_predicts(tmp_path, capsys):
    root = _nnunet_dataset(tmp_path / "Dataset042_Spine")
    run = tmp_path / "run"
    code, out, err = _run(
        ["train", "--images", root, "--out", run, "--model", "unet", *TINY], capsys
    )
    assert code == 0, err
    task = json.loads((run / "training.json").read_text())["task"]
    assert task["in_channels"] == 2 and task["channel_names"] == ["CT", "T2"]
    assert tuple(task["labels"]["values"]) == LABELS
    assert task["labels"]["names"][1:] == ["L1", "L2", "L3"]
    assert task["preprocessing"]["schemes"] == ["ct", "zscore"]
    assert "L1" in out and "nnU-Net" in out
    code, _, err = _run(
        ["predict", "--model", run, "--images", root, "--out", tmp_path / "p", "--quiet"], capsys
    )
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["spine_003.nii.gz"]
    written = nib.load(tmp_path / "p" / "spine_003.nii.gz")
    np.testing.assert_allclose(written.affine, _affine(), atol=1e-6)


def test_nrrd_in_nrrd_out_keeps_spacing_origin_and_direction(tmp_path, capsys):
    sitk = pytest.importorskip("SimpleITK", reason="NRRD needs SimpleITK (the [medical] extra)")
    root = tmp_path / "nrrd"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    direction = (0.0, 1.0, 0.0, -1.0, 0.0, 0.0, 0.0, 0.0, 1.0)
    for i in range(3):
        image, mask = _volume(i)
        for folder, array in (("images", image), ("masks", mask)):
            item = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
            item.SetSpacing(ZOOMS)
            item.SetOrigin((4.0, -7.5, 12.0))
            item.SetDirection(direction)
            sitk.WriteImage(item, str(root / folder / f"case{i}.nrrd"))
    run = tmp_path / "run"
    code, _, err = _run(
        [
            "train",
            "--images",
            root / "images",
            "--out",
            run,
            "--model",
            "unet",
            "--model-arg",
            "channels=[4,8]",
            "--epochs",
            "1",
            "--steps-per-epoch",
            "1",
            "--batch-size",
            "2",
            "--patch-size",
            "8,16,16",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = _run(
        [
            "predict",
            "--model",
            run,
            "--images",
            root / "images",
            "--out",
            tmp_path / "p",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    written = sitk.ReadImage(str(tmp_path / "p" / "case0.nrrd"))
    assert np.allclose(written.GetSpacing(), ZOOMS)
    assert np.allclose(written.GetOrigin(), (4.0, -7.5, 12.0))
    assert np.allclose(written.GetDirection(), direction)
    assert set(np.unique(sitk.GetArrayFromImage(written)).tolist()) <= set(LABELS)


def test_ignore_label_is_declared_and_kept_out(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=3)
    for path in (data / "masks").iterdir():
        source = nib.load(path)
        mask = np.asarray(source.dataobj).copy()
        mask[:, :, 0] = 255  # an unlabelled slab
        _save_nifti(path, mask, source.affine)
    run = tmp_path / "run"
    code, _, err = _run(
        [
            "train",
            "--images",
            data / "images",
            "--out",
            run,
            "--model",
            "unet",
            "--ignore-label",
            "255",
            *TINY,
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads((run / "training.json").read_text())
    assert tuple(record["task"]["labels"]["values"]) == LABELS
    assert record["task"]["labels"]["ignore"] == 255
    assert record["settings"]["ignore_index"] == -1
    # evaluation takes the masks with their ignored slab
    code, _, err = _run(
        ["evaluate", "--model", run, "--images", data / "images", "--quiet"], capsys
    )
    assert code == 0, err
    code, _, err = _run(
        ["train", "--images", data / "images", "--out", tmp_path / "r2", "--model", "unet", *TINY],
        capsys,
    )
    assert code == 0, err  # undeclared, 255 is a class of its own
    values = json.loads((tmp_path / "r2" / "training.json").read_text())["task"]["labels"]
    assert tuple(values["values"]) == (*LABELS, 255)
    strict = tmp_path / "strict"
    assert (
        _run(
            [
                "train",
                "--images",
                data / "images",
                "--out",
                strict,
                "--model",
                "unet",
                "--num-classes",
                "4",
                *TINY,
            ],
            capsys,
        )[0]
        == 2
    )  # 21.. are not 0..3


def test_spacings_that_differ_are_resampled_to_the_median_and_back(tmp_path, capsys):
    root = tmp_path / "mixed"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    thickness = (2.0, 3.0, 4.0)
    for i, k in enumerate(thickness):
        image, mask = _volume(i)
        affine = _affine(zooms=(0.8, 0.9, k))
        _save_nifti(root / "images" / f"c{i}.nii.gz", image, affine)
        _save_nifti(root / "masks" / f"c{i}.nii.gz", mask, affine)
    run = tmp_path / "run"
    code, _out, err = _run(
        ["train", "--images", root / "images", "--out", run, "--model", "ag_unet", *TINY], capsys
    )
    assert code == 0, err
    task = json.loads((run / "training.json").read_text())["task"]
    # the training cases after the split decide the median
    train = json.loads((run / "training.json").read_text())["train_images"]
    expected = float(np.median([thickness[int(n[1])] for n in train]))
    assert task["preprocessing"]["target_spacing"] == pytest.approx([0.8, 0.9, expected])
    code, _, err = _run(
        [
            "predict",
            "--model",
            run,
            "--images",
            root / "images",
            "--out",
            tmp_path / "p",
            "--save-attention",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    for i in range(3):
        written = nib.load(tmp_path / "p" / f"c{i}.nii.gz")
        assert written.shape == SHAPE  # back on the case's own grid
        assert (tmp_path / "p" / "attention" / f"c{i}.png").is_file()


def test_evaluate_and_predict_an_nnunet_dataset_root_use_its_test_cases(tmp_path, capsys):
    root = _nnunet_dataset(tmp_path / "Dataset043_Spine", channels=("CT",), test_cases=2)
    run = tmp_path / "run"
    assert _run(["train", "--images", root, "--out", run, "--model", "unet", *TINY], capsys)[0] == 0
    code, _, err = _run(["evaluate", "--model", run, "--images", root, "--quiet"], capsys)
    assert code == 2 and "labelsTs" in err
    (root / "labelsTs").mkdir()
    for i in (3, 4):
        _save_nifti(root / "labelsTs" / f"spine_{i:03d}.nii.gz", _volume(i)[1], _affine())
    table = tmp_path / "test.json"
    code, _out, err = _run(
        ["evaluate", "--model", run, "--images", root, "--out", table, "--quiet"], capsys
    )
    assert code == 0, err
    rows = json.loads(table.read_text())
    assert [r["image"] for r in rows] == ["spine_003.nii.gz", "spine_004.nii.gz"]
    assert {"dice_l1", "hd95_l2", "one_piece_l3"} <= set(rows[0])


def test_a_model_saved_without_a_task_keeps_its_percentile_normalisation(tmp_path, capsys):
    import torch

    from attnunet.data import normalise_image, read_image
    from attnunet.models import create_model, save_pretrained
    from attnunet.training import TrainSettings, predict

    settings = TrainSettings(spatial_dims=3, num_classes=2, patch_size=(16, 16, 8))
    torch.manual_seed(0)
    model = create_model(
        "unet", spatial_dims=3, in_channels=1, num_classes=2, channels=(4, 8)
    ).eval()
    save_pretrained(model, tmp_path / "old", metadata={"settings": settings.to_dict()})
    (tmp_path / "in").mkdir()
    _save_nifti(tmp_path / "in" / "scan.nii.gz", _volume(0)[0], _affine())
    code, _, err = _run(
        [
            "predict",
            "--model",
            tmp_path / "old",
            "--images",
            tmp_path / "in",
            "--out",
            tmp_path / "p",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    image = normalise_image(read_image(tmp_path / "in" / "scan.nii.gz"))
    expected = predict(model, image, settings)
    written = np.asarray(nib.load(tmp_path / "p" / "scan.nii.gz").dataobj)
    np.testing.assert_array_equal(written, expected)


def _compare_args(data, out_dir):
    """A tiny ``compare`` of one model on ``data``, half of it held out."""
    tiny = ["--epochs", "1", "--steps-per-epoch", "1", "--patch-size", "16,16,8"]
    return [
        "compare",
        "--data",
        data,
        "--models",
        "unet",
        "--out",
        out_dir,
        *tiny,
        "--channels",
        "4,8",
        "--batch-size",
        "2",
        "--quiet",
        "--val-fraction",
        "0.5",
    ]


def test_compare_reports_every_class(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=4)
    out_dir = tmp_path / "study"
    code, out, err = _run(
        [
            *_compare_args(data, out_dir),
        ],
        capsys,
    )
    assert code == 0, err
    assert "Dice per class" in out and "HD95 and ASSD in mm" in out
    per_image = list(csv.DictReader((out_dir / "per_image.csv").open()))
    assert {"dice_21", "dice_22", "dice_23", "hd95_21", "one_piece_23"} <= set(per_image[0])
    assert all(r["unit"] == "mm" and r["image"].endswith(".nii.gz") for r in per_image)
    results = json.loads((out_dir / "results.json").read_text())["results"][0]
    assert {"dice_21", "dice_21_std"} <= set(results)


def test_pooled_hd95_equals_medpy_and_train_spacing_is_not_stored(trained, tmp_path, capsys):
    medpy = pytest.importorskip("medpy.metric.binary", reason="MedPy is the HD95 oracle")
    data, run = trained
    pred = tmp_path / "pred"
    assert (
        _run(
            ["predict", "--model", run, "--images", data / "images", "--out", pred, "--quiet"],
            capsys,
        )[0]
        == 0
    )
    table = tmp_path / "pooled.csv"
    code, _, err = _run(
        [
            "evaluate",
            "--model",
            run,
            "--images",
            data / "images",
            "--hd95",
            "pooled",
            "--out",
            table,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    checked = 0
    for row in csv.DictReader(table.open()):
        predicted = np.asarray(nib.load(pred / row["image"]).dataobj)
        target = np.asarray(nib.load(data / "masks" / row["image"]).dataobj)
        for value in LABELS[1:]:
            p, t = predicted == value, target == value
            if p.any() and t.any():
                expected = medpy.hd95(p, t, voxelspacing=ZOOMS)
                assert float(row[f"hd95_{value}"]) == pytest.approx(expected, rel=1e-6)
                checked += 1
    assert checked > 0
    # --spacing given to train is the cases' voxel size, not a setting kept for evaluate
    other = tmp_path / "run5"
    code, _, err = _run(
        [
            "train",
            "--images",
            data / "images",
            "--out",
            other,
            "--model",
            "unet",
            "--spacing",
            "5,5,5",
            "--target-spacing",
            "none",
            *TINY,
        ],
        capsys,
    )
    assert code == 0, err
    record = json.loads((other / "training.json").read_text())
    assert record["settings"]["spacing"] is None
    assert all(c["spacing"] == [5.0, 5.0, 5.0] for c in record["data"])
    code, _, err = _run(
        [
            "evaluate",
            "--model",
            other,
            "--images",
            data / "images",
            "--out",
            tmp_path / "own.csv",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    code, _, err = _run(
        [
            "evaluate",
            "--model",
            other,
            "--images",
            data / "images",
            "--spacing",
            ",".join(map(str, ZOOMS)),
            "--out",
            tmp_path / "given.csv",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    own = list(csv.DictReader((tmp_path / "own.csv").open()))
    given = list(csv.DictReader((tmp_path / "given.csv").open()))
    # the headers' voxel size (float32 in NIfTI, hence the tolerance)
    for a, b in zip(own, given, strict=True):
        assert float(a["hd95"]) == pytest.approx(float(b["hd95"]), rel=1e-6)
        assert float(a["hd95"]) != pytest.approx(float(b["hd95"]) * 5 / 0.9, rel=0.2)


def test_predict_never_replaces_an_input_even_with_overwrite(trained, tmp_path, capsys):
    import shutil

    data, run = trained
    folder = tmp_path / "both"
    shutil.copytree(data / "images", folder)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    code, _, err = _run(
        ["predict", "--model", run, "--images", folder, "--out", folder, "--overwrite", "--quiet"],
        capsys,
    )
    assert code == 2 and "is one of the input files" in err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_failed_train_writes_nothing_and_resume_names_what_changed(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=3)
    labels = tmp_path / "labels.txt"
    labels.write_text("0 background\n21 L1\n22 L2\n")  # 23 is missing
    run = tmp_path / "run"
    args = ["train", "--images", data / "images", "--model", "unet", *TINY, "--out", run]
    code, _, err = _run([*args, "--labels", labels], capsys)
    assert code == 2 and "23" in err and str(labels) in err
    assert not run.exists()  # nothing written: the corrected command just runs
    assert _run(args, capsys)[0] == 0
    code, _, err = _run([*args, "--resume", "--epochs", "2", "--normalisation", "ct"], capsys)
    assert (
        code == 2 and "task.preprocessing" in err and "'zscore'" in err and "\n" not in err.strip()
    )


def test_compare_saves_models_with_their_task(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=4)
    out_dir = tmp_path / "study"
    code, _, err = _run(
        [
            *_compare_args(data, out_dir),
            "--save-models",
        ],
        capsys,
    )
    assert code == 0, err
    config = json.loads((out_dir / "models" / "unet" / "config.json").read_text())
    assert tuple(config["metadata"]["task"]["labels"]["values"]) == LABELS
    code, _, err = _run(
        [
            "predict",
            "--model",
            out_dir / "models" / "unet",
            "--images",
            data / "images",
            "--out",
            tmp_path / "p",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    written = np.asarray(nib.load(tmp_path / "p" / "spine_00.nii.gz").dataobj)
    assert set(np.unique(written).tolist()) <= set(LABELS)


def test_normalisation_per_channel(tmp_path, capsys):
    root = _nnunet_dataset(tmp_path / "Dataset044_Two")
    run = tmp_path / "run"
    args = ["train", "--images", root, "--model", "unet", *TINY]
    code, _, err = _run([*args, "--out", run, "--normalisation", "percentile,none"], capsys)
    assert code == 0, err
    task = json.loads((run / "training.json").read_text())["task"]
    assert task["preprocessing"]["schemes"] == ["percentile", "none"]
    code, _, err = _run([*args, "--out", tmp_path / "r2", "--normalisation", "ct,ct,ct"], capsys)
    assert code == 2 and "3 schemes" in err and "2 channel" in err
    assert not (tmp_path / "r2").exists()
    with pytest.raises(SystemExit) as stopped:  # argparse: usage and exit status 2
        main([str(a) for a in [*args, "--out", tmp_path / "r3", "--normalisation", "hu"]])
    assert stopped.value.code == 2
    assert "ct, zscore, percentile or none" in capsys.readouterr().err


def test_refused_model_arguments_leave_nothing_and_exit_2(tmp_path, capsys):
    data = _folder(tmp_path / "data", n=3)
    args = ["train", "--images", data / "images", "--model", "unet", *TINY]
    for extra, text in (("bogus=3", "bogus"), ("in_channels=2", "set from the data")):
        out = tmp_path / extra.split("=")[0]
        code, _, err = _run([*args, "--out", out, "--model-arg", extra], capsys)
        assert code == 2 and text in err, err
        assert not out.exists()
    code, _, err = _run([*args, "--out", tmp_path / "x", "--model", "unett"], capsys)
    assert code == 2 and "attnunet models" in err


def test_evaluate_ignore_label_and_a_single_image_never_replaces_its_mask(
    trained, tmp_path, capsys
):
    import shutil

    data, run = trained
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)
    mask = nib.load(copy / "masks" / "spine_00.nii.gz")
    values = np.asarray(mask.dataobj).copy()
    values[:, :, 0] = 99  # an unlabelled slab, unknown to the model
    _save_nifti(copy / "masks" / "spine_00.nii.gz", values, mask.affine)
    args = ["evaluate", "--model", run, "--images", copy / "images", "--quiet"]
    code, _, err = _run(args, capsys)
    assert code == 2 and "99" in err and "--ignore-label" in err
    assert _run([*args, "--ignore-label", "99"], capsys)[0] == 0
    code, _, err = _run([*args, "--ignore-label", "21"], capsys)  # a class of the model
    assert code == 2 and "--ignore-label 21" in err
    before = (copy / "masks" / "spine_00.nii.gz").read_bytes()
    code, _, err = _run(
        [
            "predict",
            "--model",
            run,
            "--images",
            copy / "images" / "spine_00.nii.gz",
            "--out",
            copy / "masks",
            "--overwrite",
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and "is one of the input files" in err
    assert (copy / "masks" / "spine_00.nii.gz").read_bytes() == before


def test_spacing_that_overrides_headers_says_so(trained, tmp_path, capsys):
    data, run = trained
    code, _, err = _run(
        ["evaluate", "--model", run, "--images", data / "images", "--spacing", "1,1,1", "--quiet"],
        capsys,
    )
    assert code == 0, err
    notes = [line for line in err.splitlines() if "--spacing 1 x 1 x 1 replaces" in line]
    assert len(notes) == 1 and "4 file(s)" in notes[0]


def test_output_into_a_closed_pipe_is_not_a_failure():
    import subprocess
    import sys

    # a command printing far more than a pipe holds, read by `head -1`, which closes early
    script = (
        "import sys; from attnunet import cli; "
        "cli.COMMANDS['models'].run = lambda args: [print('x' * 100) for _ in range(20000)]; "
        "sys.exit(cli.main(['models']))"
    )
    done = subprocess.run(
        f'set -o pipefail; {sys.executable} -c "{script}" | head -1',
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "failed" not in done.stderr and done.stdout == "x" * 100 + "\n"
