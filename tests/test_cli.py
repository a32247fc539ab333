"""The ``attnunet`` command end to end, on tiny generated folders (2D PNG, 3D NumPy)."""

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from attnunet.cli import main
from attnunet.data import read_image
from attnunet.models import from_pretrained
from attnunet.training import CHECKPOINT, TrainSettings, predict

TINY = ["--model-arg", "channels=[4,8]", "--epochs", "2", "--steps-per-epoch", "3"]


def _folder_2d(root, n=4, size=(36, 40)):
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, dtype=np.uint8)
        mask[6 + i : 20 + i, 8:28] = 1
        image = (mask * 150 + rng.integers(0, 80, size)).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"case{i}.png")
        Image.fromarray(mask * 255).save(root / "masks" / f"case{i}.png")
    return root


def _folder_3d(root, n=3, size=(10, 20, 18)):
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for i in range(n):
        mask = np.zeros(size, dtype=np.int64)
        mask[2:7, 4 + i : 12 + i, 3:12] = 1
        image = (mask + 0.3 * rng.standard_normal(size)).astype(np.float32)
        np.save(root / "images" / f"vol{i}.npy", image)
        np.save(root / "masks" / f"vol{i}.npy", mask)
    return root


def _run(args, capsys):
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_evaluate_predict_2d(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data")
    run = tmp_path / "run"
    code, out, err = _run(
        [
            "train",
            "--images",
            data / "images",
            "--masks",
            data / "masks",
            "--out",
            run,
            "--model",
            "ag_unet",
            "--patch-size",
            "32,32",
            "--batch-size",
            "2",
            *TINY,
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert "best validation Dice" in out
    for name in (
        "training.json",
        CHECKPOINT,
        "best/config.json",
        "best/model.safetensors",
        "history.json",
        "curves.png",
        "val_metrics.csv",
    ):
        assert (run / name).is_file(), name
    record = json.loads((run / "training.json").read_text())
    assert record["model"] == "ag_unet" and len(record["val_images"]) == 1

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
            tmp_path / "eval.csv",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "eval.csv").open()))
    # rows are named as predict names the files it writes
    assert [r["image"] for r in rows] == ["case0.png", "case1.png", "case2.png", "case3.png"]
    assert "dice" in out and "(n=4)" in out

    code, out, err = _run(
        [
            "predict",
            "--model",
            run,
            "--images",
            data / "images",
            "--out",
            tmp_path / "pred",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    # The written label maps equal an in-process prediction with the saved model, on the
    # image z-scored by hand (the default normalisation of a folder that is not CT).
    model = from_pretrained(run / "best")
    metadata = json.loads((run / "best" / "config.json").read_text())["metadata"]
    settings = TrainSettings.from_dict(metadata["settings"])
    assert metadata["task"]["preprocessing"]["schemes"] == ["zscore"]
    for i in range(4):
        written = np.asarray(Image.open(tmp_path / "pred" / f"case{i}.png"))
        image = read_image(data / "images" / f"case{i}.png", spatial_dims=2).astype(np.float64)
        image = ((image - image.mean()) / image.std()).astype(np.float32)
        # the masks hold 0 and 255, and so do the predictions: the label values as written
        values = np.array(metadata["task"]["labels"]["values"])
        assert values.tolist() == [0, 255]
        np.testing.assert_array_equal(written, values[predict(model, image, settings)])
        assert float(rows[i]["dice"]) >= 0.0


def test_train_evaluate_predict_3d(tmp_path, capsys):
    data = _folder_3d(tmp_path / "data")
    run = tmp_path / "run"
    code, _, err = _run(
        [
            "train",
            "--images",
            data / "images",
            "--masks",
            data / "masks",
            "--out",
            run,
            "--model",
            "unet",
            "--spatial-dims",
            "3",
            "--patch-size",
            "8,16,16",
            *TINY,
            "--quiet",
            "--spacing",
            "2,1,1",
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = _run(
        [
            "evaluate",
            "--model",
            run / "best",
            "--images",
            data / "images",
            "--masks",
            data / "masks",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    assert "(n=3)" in out
    # .npy files have no voxel size: the model's (the --spacing of training) is assumed, aloud
    assert "vol0.npy has no voxel size: taken as the model's 2 x 1 x 1 mm" in err
    code, _, err = _run(
        [
            "predict",
            "--model",
            run,
            "--images",
            data / "images",
            "--out",
            tmp_path / "pred",
            "--format",
            "npy",
            "--quiet",
        ],
        capsys,
    )
    assert code == 0, err
    labels = np.load(tmp_path / "pred" / "vol0.npy")
    assert labels.shape == (10, 20, 18) and set(np.unique(labels)) <= {0, 1}


def test_compare_two_models_on_a_folder(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data", n=5)
    out_dir = tmp_path / "study"
    code, out, err = _run(
        [
            "compare",
            "--data",
            data,
            "--models",
            "unet,ag_unet",
            "--out",
            out_dir,
            "--epochs",
            "2",
            "--steps-per-epoch",
            "2",
            "--patch-size",
            "32,32",
            "--channels",
            "4,8",
            "--quiet",
            "--val-fraction",
            "0.4",
        ],
        capsys,
    )
    assert code == 0, err
    for column in ("IoU", "Dice", "HD95", "ASSD", "one-piece", "parameters", "s/step"):
        assert column in out
    results = json.loads((out_dir / "results.json").read_text())
    assert [r["model"] for r in results["results"]] == ["unet", "ag_unet"]
    assert results["results"][0]["images"] == 2
    assert (out_dir / "curves.png").is_file() and (out_dir / "results.csv").is_file()
    # Only the gated model has a spatial attention figure.
    assert sorted(p.name for p in (out_dir / "attention").iterdir()) == ["ag_unet.png"]
    # A second run refuses to overwrite, and says how to proceed.
    code, _, err = _run(["compare", "--data", data, "--models", "unet", "--out", out_dir], capsys)
    assert code == 2 and "results.json already exists" in err and "--overwrite" in err


def test_interrupted_training_resumes_to_the_same_weights(tmp_path, capsys, monkeypatch):
    data = _folder_2d(tmp_path / "data")
    common = [
        "train",
        "--images",
        data / "images",
        "--masks",
        data / "masks",
        "--model",
        "unet",
        "--patch-size",
        "32,32",
        "--batch-size",
        "2",
        *TINY,
        "--quiet",
    ]
    assert _run([*common, "--out", tmp_path / "whole"], capsys)[0] == 0

    import attnunet.training as training

    real_update = training.Progress.update
    calls = {"n": 0}

    def interrupt(self, n=1, postfix=""):
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2, step 2
            raise KeyboardInterrupt
        real_update(self, n, postfix)

    monkeypatch.setattr(training.Progress, "update", interrupt)
    code, _, err = _run([*common, "--out", tmp_path / "parts"], capsys)
    assert code == 130 and "--resume" in err
    saved = torch.load(tmp_path / "parts" / CHECKPOINT, weights_only=False)
    assert saved["epoch"] == 1
    monkeypatch.setattr(training.Progress, "update", real_update)
    # Without --resume the folder is protected; with it the run finishes.
    code, _, err = _run([*common, "--out", tmp_path / "parts"], capsys)
    assert code == 2 and "--resume" in err
    # Resuming with another recipe is refused before anything is written.
    before = (tmp_path / "parts" / "training.json").read_text()
    code, _, err = _run([*common, "--out", tmp_path / "parts", "--resume", "--lr", "0.5"], capsys)
    assert code == 2 and "learning_rate" in err
    assert (tmp_path / "parts" / "training.json").read_text() == before
    assert _run([*common, "--out", tmp_path / "parts", "--resume"], capsys)[0] == 0
    a = torch.load(tmp_path / "whole" / CHECKPOINT, weights_only=False)["model"]
    b = torch.load(tmp_path / "parts" / CHECKPOINT, weights_only=False)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------ bad input


def _train_args(data, out, *extra):
    return [
        "train",
        "--images",
        data / "images",
        "--masks",
        data / "masks",
        "--out",
        out,
        "--model",
        "unet",
        *TINY,
        "--patch-size",
        "32,32",
        "--quiet",
        *extra,
    ]


def test_image_without_a_mask(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data")
    (data / "masks" / "case2.png").unlink()
    code, _, err = _run(_train_args(data, tmp_path / "run"), capsys)
    assert code == 2 and "case2.png" in err and "mask" in err


def test_mask_of_another_size(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(data / "masks" / "case1.png")
    code, _, err = _run(_train_args(data, tmp_path / "run"), capsys)
    assert code == 2 and "case1.png" in err and "(36, 40)" in err and "(10, 10)" in err


@pytest.mark.parametrize("content", [b"", b"not a png at all"])
def test_empty_or_corrupt_file(tmp_path, capsys, content):
    data = _folder_2d(tmp_path / "data")
    (data / "images" / "case3.png").write_bytes(content)
    code, _, err = _run(_train_args(data, tmp_path / "run"), capsys)
    assert code == 2 and "case3.png" in err


def test_mask_with_unexpected_values(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data")
    mask = np.zeros((36, 40), np.uint8)
    mask[3:9, 3:9] = 7
    Image.fromarray(mask).save(data / "masks" / "case0.png")
    # declared labels 0 and 1: the 7 is refused, naming the file and the value
    code, _, err = _run(_train_args(data, tmp_path / "run", "--num-classes", "2"), capsys)
    assert code == 2 and "case0.png" in err and "7" in err
    # undeclared, the labels are the values the masks hold: 0, 7 and 255 as three classes
    assert _run(_train_args(data, tmp_path / "run3"), capsys)[0] == 0
    task = json.loads((tmp_path / "run3" / "training.json").read_text())["task"]
    assert task["labels"]["values"] == [0, 7, 255]


def test_existing_results_are_never_overwritten(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data")
    run = tmp_path / "run"
    run.mkdir()
    (run / "history.json").write_text("my notes")
    code, _, err = _run(_train_args(data, run), capsys)
    assert code == 2 and "history.json" in err and "--overwrite" in err
    assert (run / "history.json").read_text() == "my notes"
    # predict into a folder that holds a file of the same name
    assert _run(_train_args(data, tmp_path / "ok"), capsys)[0] == 0
    (tmp_path / "pred").mkdir()
    (tmp_path / "pred" / "case0.png").write_bytes(b"mine")
    code, _, err = _run(
        [
            "predict",
            "--model",
            tmp_path / "ok",
            "--images",
            data / "images",
            "--out",
            tmp_path / "pred",
            "--quiet",
        ],
        capsys,
    )
    assert code == 2 and "case0.png" in err
    assert (tmp_path / "pred" / "case0.png").read_bytes() == b"mine"


def test_usage_errors_name_what_would_work(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data")
    code, _, err = _run(_train_args(data, tmp_path / "r", "--patch-size", "32,32,32"), capsys)
    assert code == 2 and "needs 2 sizes" in err
    code, _, err = _run(["compare", "--models", "unett"], capsys)
    assert code == 2 and "unknown model 'unett'" in err
    code, _, err = _run(_train_args(data, tmp_path / "r2", "--model", "ag_res_unett"), capsys)
    assert code == 2 and "ag_res_unet" in err
    code, _, err = _run(["evaluate", "--model", tmp_path, "--images", data / "images"], capsys)
    assert code == 2 and "holds no trained model" in err
    code, _, err = _run(
        ["train", "--images", tmp_path / "nowhere", "--out", tmp_path / "x"], capsys
    )
    assert code == 2 and "does not exist" in err


def test_models_lists_the_zoo(capsys):
    code, out, _ = _run(["models", "--no-parameters"], capsys)
    assert code == 0
    for name in ("unet", "ag_res_unet", "attention_unet_oktay", "raunet_ni", "unet_plus_plus"):
        assert name in out
    code, out, _ = _run(["models", "ag_*"], capsys)
    assert code == 0 and "2,380,757" in out  # ag_res_unet_krd, the reference count


def test_module_entry_point_prints_help():
    done = subprocess.run(
        [sys.executable, "-m", "attnunet"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "compare" in done.stdout and "predict" in done.stdout


@pytest.mark.slow
def test_distributed_training_with_two_cpu_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    if torchrun is None:
        pytest.skip("torchrun is not installed next to this Python")
    data = _folder_2d(tmp_path / "data")
    run = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ATTNUNET_DEBUG": "1"}
    done = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "attnunet",
            *[str(a) for a in _train_args(data, run)],
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    state = torch.load(run / CHECKPOINT, weights_only=False)
    assert state["world_size"] == 2 and state["epoch"] == 2
    assert (run / "best" / "model.safetensors").is_file()


def test_a_single_image_cannot_be_split(tmp_path, capsys):
    data = _folder_2d(tmp_path / "data", n=1)
    code, _, err = _run(_train_args(data, tmp_path / "run"), capsys)
    assert code == 2 and "only 1 image" in err and "--val-fraction 0" in err
    code, _, err = _run(_train_args(data, tmp_path / "run", "--val-fraction", "0"), capsys)
    assert code == 0, err
