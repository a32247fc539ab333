"""The training engine: patches, the loop, checkpoints and resuming, the study helpers."""

import math

import numpy as np
import pytest
import torch

from attnunet import UNet
from attnunet.study import prepare_output, tiles
from attnunet.training import (
    CHECKPOINT,
    PatchSampler,
    TrainSettings,
    Volume,
    evaluate,
    object_one_piece_fraction,
    recipe_changes,
    train,
)


def _volume(shape=(40, 48), seed=0, name="v"):
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, dtype=np.int64)
    mask[tuple(slice(s // 4, s // 2) for s in shape)] = 1
    image = (mask + 0.3 * rng.standard_normal(shape)).astype(np.float32)[None]
    return Volume(image, mask, name)


# --------------------------------------------------------------------------- sampler


def test_patches_have_the_patch_shape_and_match_their_masks():
    v = _volume()
    sampler = PatchSampler([v], (16, 24), batch_size=5, foreground_fraction=0.5)
    images, masks = sampler.sample(torch.Generator().manual_seed(0))
    assert images.shape == (5, 1, 16, 24) and masks.shape == (5, 16, 24)
    # Each patch is a window of the volume: find it and compare the mask voxel for voxel.
    full = torch.from_numpy(v.image[0])
    for x, y in zip(images[:, 0], masks, strict=True):
        hits = [
            (i, j)
            for i in range(40 - 16 + 1)
            for j in range(48 - 24 + 1)
            if torch.equal(full[i : i + 16, j : j + 24], x)
        ]
        assert len(hits) == 1
        i, j = hits[0]
        assert torch.equal(torch.from_numpy(v.mask[i : i + 16, j : j + 24]), y)


def test_foreground_fraction_biases_patch_centres():
    v = _volume((64, 64))  # foreground: 16 x 16 of 64 x 64 = 1/16 of the voxels
    gen = torch.Generator().manual_seed(1)
    always = PatchSampler([v], (8, 8), batch_size=200, foreground_fraction=1.0)
    never = PatchSampler([v], (8, 8), batch_size=200, foreground_fraction=0.0)
    _, m_always = always.sample(gen)
    _, m_never = never.sample(gen)
    centre_always = m_always[:, 4, 4].float().mean().item()
    centre_never = m_never[:, 4, 4].float().mean().item()
    # Centred on a foreground voxel every time -> the centre voxel is foreground; uniform
    # placement puts it there about 1/16 of the time.
    assert centre_always == 1.0
    assert centre_never < 0.2


def test_small_volumes_are_padded_and_sampling_is_seeded():
    v = _volume((10, 12))
    sampler = PatchSampler([v], (16, 16), batch_size=3)
    a = sampler.sample(torch.Generator().manual_seed(3))
    b = sampler.sample(torch.Generator().manual_seed(3))
    assert a[0].shape == (3, 1, 16, 16)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    # The padding is background.
    assert a[1][:, 10:, :].sum() == 0 and a[1][:, :, 12:].sum() == 0


# ------------------------------------------------------------------- one-piece check


def test_object_one_piece_fraction_hand_cases():
    target = np.zeros((20, 20), dtype=np.int64)
    target[2:6, 2:6] = 1  # object A
    target[12:17, 12:17] = 1  # object B
    pred = target.copy()
    assert object_one_piece_fraction(pred, target) == 1.0
    pred[14, :] = 0  # B split in two by a cut through it -> A one piece, B two pieces
    assert object_one_piece_fraction(pred, target) == 0.5
    pred[2:6, 2:6] = 0  # A missed -> not one piece either
    assert object_one_piece_fraction(pred, target) == 0.0
    assert math.isnan(object_one_piece_fraction(pred, np.zeros_like(target)))


def test_tiles_cover_the_volume():
    v = _volume((40, 50))
    parts = tiles(v, (16, 16))
    covered = np.zeros((40, 50), dtype=int)
    for part in parts:
        assert part.image.shape[1:] == (16, 16)
    # 40 = 16 + 16 + 8 -> starts 0, 16, 24; 50 -> 0, 16, 32, 34: 3 x 4 tiles.
    assert len(parts) == 12
    for i in (0, 16, 24):
        for j in (0, 16, 32, 34):
            covered[i : i + 16, j : j + 16] += 1
    assert covered.min() >= 1


# ----------------------------------------------------------------------- the loop


def _settings(**kw):
    base = dict(patch_size=(16, 16), batch_size=2, epochs=2, steps_per_epoch=3, augment="light")
    return TrainSettings(**{**base, **kw})


def test_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    data = [_volume(seed=0), _volume(seed=1)]
    val = [_volume(seed=2)]

    def fresh():
        torch.manual_seed(0)
        return UNet(spatial_dims=2, in_channels=1, num_classes=2, channels=(4, 8))

    whole = train(fresh(), data, val, _settings(), tmp_path / "whole", progress=False)
    first = train(fresh(), data, val, _settings(epochs=1), tmp_path / "parts", progress=False)
    assert (tmp_path / "parts" / CHECKPOINT).is_file()
    assert len(first.history) == 1
    resumed = train(
        fresh(), data, val, _settings(), tmp_path / "parts", resume=True, progress=False
    )
    assert [h.epoch for h in resumed.history] == [1, 2]
    for a, b in zip(
        whole.model.state_dict().values(), resumed.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b)
    assert (tmp_path / "parts" / "best" / "config.json").is_file()


def test_validation_without_foreground_still_keeps_a_best_model(tmp_path):
    # Every class is absent from the validation masks and (after a short run) mostly from
    # the predictions: the validation Dice is NaN, which must not leave the run without a
    # best model.
    torch.manual_seed(0)
    model = UNet(spatial_dims=2, in_channels=1, num_classes=2, channels=(4, 8))
    empty = Volume(np.zeros((1, 40, 48), np.float32), np.zeros((40, 48), np.int64), "empty")
    result = train(model, [_volume()], [empty], _settings(), tmp_path / "run", progress=False)
    assert all(math.isnan(h.val["dice"]) for h in result.history)  # seeded: nothing found
    assert result.best_epoch == 1
    assert (tmp_path / "run" / "best" / "config.json").is_file()


def test_resume_refuses_another_recipe_and_a_missing_checkpoint(tmp_path):
    data = [_volume()]
    model = UNet(spatial_dims=2, in_channels=1, num_classes=2, channels=(4, 8))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(model, data, [], _settings(), tmp_path, resume=True, progress=False)
    train(model, data, [], _settings(epochs=1), tmp_path, progress=False)
    with pytest.raises(ValueError, match="another recipe"):
        train(model, data, [], _settings(learning_rate=0.5), tmp_path, resume=True, progress=False)


def test_recipe_changes_names_the_changed_settings_but_epochs():
    now = TrainSettings(batch_size=4, learning_rate=1e-3, patch_size=(32, 32))
    same = {**now.to_dict(), "epochs": 50}
    assert recipe_changes(same, now) == []
    assert recipe_changes(None, now) == []
    assert recipe_changes({}, now) == []
    # A key missing from the saved recipe counts as unchanged; unknown extra keys are ignored.
    assert recipe_changes({"batch_size": 4, "old_option": 1}, now) == []
    saved = {
        "seed": 3,
        "patch_size": [32, 16],
        "batch_size": 4,
        "learning_rate": 1e-3,
        "augment": "none",
        "epochs": 1,
        "spacing": [1.0, 1.0],
    }
    assert recipe_changes(saved, now) == ["augment", "patch_size", "seed", "spacing"]
    # Lists as written to JSON equal the settings' tuples once in to_dict form.
    assert recipe_changes({"patch_size": [32, 32], "spacing": None}, now) == []


def test_training_learns_and_evaluation_matches_the_metrics():
    torch.manual_seed(0)
    data = [_volume((48, 48), seed=s) for s in range(3)]
    model = UNet(spatial_dims=2, in_channels=1, num_classes=2, channels=(8, 16))
    settings = _settings(
        epochs=3, steps_per_epoch=15, learning_rate=1e-2, batch_size=4, augment="none"
    )
    result = train(model, data, data[:1], settings, progress=False)
    assert result.history[-1].train_loss < result.history[0].train_loss
    rows, acc = evaluate(model, data, settings)
    # An easy task: a bright square on noise.
    assert acc["dice"].mean > 0.8
    from attnunet.metrics import dice_score
    from attnunet.training import predict

    for row, v in zip(rows, data, strict=True):
        pred = predict(model, v.image, settings)
        expected = dice_score(
            torch.from_numpy(pred)[None],
            torch.from_numpy(v.mask)[None],
            spatial_dims=settings.spatial_dims,
        )
        assert row["dice"] == pytest.approx(float(expected))


def test_three_d_training_runs():
    torch.manual_seed(0)
    v = _volume((12, 20, 20))
    model = UNet(spatial_dims=3, in_channels=1, num_classes=2, channels=(4, 8))
    settings = TrainSettings(
        spatial_dims=3, patch_size=(8, 16, 16), batch_size=2, epochs=1, steps_per_epoch=2
    )
    result = train(model, [v], [v], settings, progress=False)
    assert set(result.history[0].val) == {"dice", "iou", "hd95", "assd", "one_piece"}


def test_settings_validate_and_round_trip():
    s = TrainSettings(spatial_dims=3, patch_size=(8, 16, 16), spacing=(2.0, 1.0, 1.0))
    assert TrainSettings.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="patch_size needs 2"):
        TrainSettings(patch_size=(8, 8, 8))
    with pytest.raises(ValueError, match="augment"):
        TrainSettings(augment="heavy")
    with pytest.raises(ValueError, match="unknown training settings"):
        TrainSettings.from_dict({"epochz": 3})


def test_prepare_output_never_touches_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"results\.json.*--overwrite"):
        prepare_output(tmp_path, ("results.json", "curves.png"), overwrite=False)
    assert (tmp_path / "results.json").read_text() == "{}"
    prepare_output(tmp_path, ("results.json", "curves.png"), overwrite=True)
    assert not (tmp_path / "results.json").exists()
    assert (tmp_path / "notes.txt").read_text() == "mine"
