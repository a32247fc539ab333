"""Reading, pairing, checking, serving and writing images and masks (attnunet.data: its
modules readers, pairing, dataset and writers)."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attnunet.data import (
    SUPPORTED_EXTENSIONS,
    DataError,
    Pair,
    SegmentationFolder,
    find_pairs,
    normalise_image,
    read_image,
    read_mask,
    split_pairs,
    write_mask,
    write_prediction,
)

RNG = np.random.default_rng(1234)


def ramp(shape, dtype, top):
    """A deterministic array of ``shape`` with values spread over ``[0, top]``."""
    return (np.arange(np.prod(shape)).reshape(shape) * 7919 % (top + 1)).astype(dtype)


@pytest.fixture(params=["tifffile", "pillow"])
def tiff_backend(request, monkeypatch):
    """Run a test with tifffile, and again as if tifffile were not installed."""
    if request.param == "pillow":
        monkeypatch.setitem(sys.modules, "tifffile", None)
    return request.param


def save_pages(path, pages):
    frames = [Image.fromarray(p) for p in pages]
    frames[0].save(path, save_all=True, append_images=frames[1:])


# ----------------------------------------------------------------------------- read_image


def test_png_8_and_16_bit_grayscale_exact(tmp_path):
    for dtype, top in ((np.uint8, 255), (np.uint16, 65535)):
        data = ramp((13, 17), dtype, top)
        Image.fromarray(data).save(tmp_path / "a.png")
        image = read_image(tmp_path / "a.png")
        assert image.shape == (1, 13, 17) and image.dtype == np.float32
        np.testing.assert_array_equal(image[0], data.astype(np.float32))


def test_png_rgb_and_rgba_give_three_channels(tmp_path):
    rgb = ramp((9, 11, 3), np.uint8, 255)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.png"), rgb.transpose(2, 0, 1))
    rgba = np.concatenate([rgb, np.full((9, 11, 1), 7, np.uint8)], axis=-1)
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    image = read_image(tmp_path / "rgba.png", spatial_dims=2)
    np.testing.assert_array_equal(image, rgb.transpose(2, 0, 1))  # alpha dropped


def test_jpeg_rgb_and_gray_shapes_and_approximate_values(tmp_path):
    yy, xx = np.mgrid[0:32, 0:48]
    rgb = np.stack([4 * yy, 5 * xx, np.full_like(xx, 128)], axis=-1).astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.jpg", quality=95)
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (3, 32, 48)
    assert np.abs(image - rgb.transpose(2, 0, 1)).mean() < 3  # lossy, but close
    Image.fromarray(rgb[..., 0]).save(tmp_path / "b.JPEG")
    assert read_image(tmp_path / "b.JPEG").shape == (1, 32, 48)


def test_multipage_tiff_is_a_volume(tmp_path, tiff_backend):
    volume = ramp((5, 12, 10), np.uint16, 60000)
    save_pages(tmp_path / "v.tif", volume)
    image = read_image(tmp_path / "v.tif")
    assert image.shape == (1, 5, 12, 10)
    np.testing.assert_array_equal(image[0], volume)
    # The same file read as 2D: the pages become channels.
    assert read_image(tmp_path / "v.tif", spatial_dims=2).shape == (5, 12, 10)


def test_single_page_and_float_tiff(tmp_path, tiff_backend):
    data = (ramp((6, 7), np.float32, 1000) / 8).astype(np.float32)
    Image.fromarray(data).save(tmp_path / "f.tiff")
    np.testing.assert_array_equal(read_image(tmp_path / "f.tiff")[0], data)


def test_tiff_colour_and_channel_axes_with_tifffile(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rgb = ramp((8, 9, 3), np.uint8, 255)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb)
    np.testing.assert_array_equal(read_image(tmp_path / "rgb.tif"), rgb.transpose(2, 0, 1))
    zcyx = ramp((4, 2, 8, 9), np.uint16, 999)
    tifffile.imwrite(tmp_path / "h.tif", zcyx, imagej=True, metadata={"axes": "ZCYX"})
    np.testing.assert_array_equal(read_image(tmp_path / "h.tif"), zcyx.transpose(1, 0, 2, 3))


def test_numpy_files_and_the_channel_rule(tmp_path):
    stack = ramp((3, 8, 8), np.int16, 500)
    np.save(tmp_path / "s.npy", stack)
    # spatial_dims=2: the first of 3 axes holds channels; 3 or None: a one-channel volume.
    np.testing.assert_array_equal(read_image(tmp_path / "s.npy", spatial_dims=2), stack)
    np.testing.assert_array_equal(read_image(tmp_path / "s.npy", spatial_dims=3), stack[None])
    np.testing.assert_array_equal(read_image(tmp_path / "s.npy"), stack[None])
    cases = {
        (8, 8): ((None, (1, 8, 8)), (2, (1, 8, 8))),
        (1, 8, 8): ((None, (1, 8, 8)), (2, (1, 8, 8)), (3, (1, 1, 8, 8))),
        (1, 1, 8, 8): ((2, (1, 8, 8)), (3, (1, 1, 8, 8)), (None, (1, 1, 8, 8))),
        (2, 4, 8, 8): ((None, (2, 4, 8, 8)), (3, (2, 4, 8, 8))),
    }
    for shape, expected in cases.items():
        np.save(tmp_path / "x.npy", np.zeros(shape, np.float64))
        for spatial_dims, out in expected:
            assert read_image(tmp_path / "x.npy", spatial_dims=spatial_dims).shape == out


def test_npz_prefers_image_key_else_first_array(tmp_path):
    a, b = ramp((4, 5), np.uint8, 255), ramp((4, 5), np.uint8, 9)
    np.savez(tmp_path / "k.npz", labels=b, image=a)
    np.testing.assert_array_equal(read_image(tmp_path / "k.npz")[0], a)
    np.testing.assert_array_equal(read_mask(tmp_path / "k.npz"), b)
    np.savez_compressed(tmp_path / "f.npz", first=a, second=b)
    np.testing.assert_array_equal(read_image(tmp_path / "f.npz")[0], a)


def test_nifti_round_trip_when_nibabel_is_installed(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = ramp((6, 7, 5), np.int16, 300)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), tmp_path / "v.nii.gz")
    np.testing.assert_array_equal(read_image(tmp_path / "v.nii.gz")[0], volume)
    write_mask(tmp_path / "m.nii.gz", volume % 3)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.nii.gz"), volume % 3)


def test_nifti_without_nibabel_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "nibabel", None)
    (tmp_path / "scan.nii.gz").write_bytes(b"not empty")
    with pytest.raises(DataError, match=r"pip install nibabel") as info:
        read_image(tmp_path / "scan.nii.gz")
    assert "scan.nii.gz" in str(info.value)


# ----------------------------------------------------------------------------- read errors


def test_unsupported_extension_lists_supported_ones(tmp_path):
    (tmp_path / "x.bmp").write_bytes(b"BM....")
    with pytest.raises(DataError, match=r"x.bmp") as info:
        read_image(tmp_path / "x.bmp")
    assert all(ext in str(info.value) for ext in SUPPORTED_EXTENSIONS)


@pytest.mark.parametrize("name", ["a.png", "a.tif", "a.npy", "a.npz", "a.jpg"])
def test_empty_and_corrupt_files_name_the_file(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(DataError, match=r"a\.\w+ is empty \(0 bytes\)"):
        read_image(tmp_path / name)
    (tmp_path / name).write_bytes(b"\x89garbage, not an image" * 3)
    with pytest.raises(DataError, match=r"a\.\w+: cannot be read as \w+") as info:
        read_image(tmp_path / name)
    assert "export it again" in str(info.value)


def test_truncated_png_is_reported(tmp_path):
    Image.fromarray(ramp((64, 64), np.uint8, 255)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"t.png: cannot be read as PNG"):
        read_image(tmp_path / "t.png")


def test_missing_file_and_wrong_shapes(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope.png"):
        read_image(tmp_path / "nope.png")
    np.save(tmp_path / "v.npy", np.zeros((2, 3, 4, 5)))
    with pytest.raises(DataError, match=r"v.npy: an array of shape \(2, 3, 4, 5\) is not a 2D"):
        read_image(tmp_path / "v.npy", spatial_dims=2)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "c.png")
    with pytest.raises(DataError, match=r"c.png: is a 2D image with 3 channels"):
        read_image(tmp_path / "c.png", spatial_dims=3)
    np.save(tmp_path / "n.npy", np.array([[0.0, np.nan]]))
    with pytest.raises(DataError, match=r"n.npy: holds 1 NaN"):
        read_image(tmp_path / "n.npy")
    with pytest.raises(ValueError, match=r"spatial_dims"):
        read_image(tmp_path / "n.npy", spatial_dims=4)


# ----------------------------------------------------------------------------- read_mask


def test_mask_0_255_and_0_65535_become_binary(tmp_path):
    binary = ramp((10, 12), np.uint8, 1)
    Image.fromarray(binary * 255).save(tmp_path / "m8.png")
    Image.fromarray(binary.astype(np.uint16) * 65535).save(tmp_path / "m16.png")
    for name in ("m8.png", "m16.png"):
        mask = read_mask(tmp_path / name)
        assert mask.dtype == np.int64
        np.testing.assert_array_equal(mask, binary)
    # Any other set of values is kept: 255 alone, or 255 next to other labels.
    Image.fromarray(np.full((3, 3), 255, np.uint8)).save(tmp_path / "all.png")
    assert set(np.unique(read_mask(tmp_path / "all.png"))) == {255}
    Image.fromarray(np.array([[0, 1, 255]], np.uint8)).save(tmp_path / "three.png")
    assert read_mask(tmp_path / "three.png").tolist() == [[0, 1, 255]]


def test_mask_label_values_are_kept_exactly(tmp_path, tiff_backend):
    labels = ramp((4, 9, 7), np.uint16, 1000)
    save_pages(tmp_path / "m.tif", labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.tif"), labels)
    palette = Image.fromarray(ramp((5, 6), np.uint8, 4), mode="P")
    palette.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255, 9, 9, 9])
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), ramp((5, 6), np.uint8, 4))
    np.save(tmp_path / "b.npy", np.eye(3, dtype=bool))
    np.testing.assert_array_equal(read_mask(tmp_path / "b.npy"), np.eye(3, dtype=np.int64))
    np.save(tmp_path / "f.npy", np.array([[0.0, 2.0], [1.0, 0.0]]))
    assert read_mask(tmp_path / "f.npy").tolist() == [[0, 2], [1, 0]]


def test_grey_mask_saved_as_rgb_is_accepted_colour_mask_refused(tmp_path):
    labels = ramp((6, 6), np.uint8, 3)
    Image.fromarray(np.repeat(labels[..., None], 3, axis=-1)).save(tmp_path / "g.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "g.png"), labels)
    colour = np.zeros((6, 6, 3), np.uint8)
    colour[0, 0] = (255, 0, 0)
    Image.fromarray(colour).save(tmp_path / "c.png")
    with pytest.raises(DataError, match=r"c.png: a colour mask with 3 different channels"):
        read_mask(tmp_path / "c.png")


@pytest.mark.parametrize(
    ("array", "kwargs", "match"),
    [
        (np.array([[0, -1], [2, -3]]), {}, r"2 negative values \(minimum -3\)"),
        (np.array([[0.0, 0.5], [1.0, 0.25]]), {}, r"2 non-integer values \(e.g. 0.25, 0.5\)"),
        (np.array([[0.0, np.inf]]), {}, "NaN or infinite"),
        (np.array([[0, 1], [2, 3]]), {"num_classes": 3}, "holds label 3 but num_classes=3"),
        (np.zeros((2, 4, 4)), {"spatial_dims": 2}, r"shape \(2, 4, 4\) is not a 2D label map"),
        (np.array([["a"]]), {}, "must hold integer labels"),
    ],
)
def test_bad_mask_values_are_refused_naming_the_file(tmp_path, array, kwargs, match):
    np.save(tmp_path / "bad_mask.npy", array)
    with pytest.raises(DataError, match=match) as info:
        read_mask(tmp_path / "bad_mask.npy", **kwargs)
    assert str(info.value).startswith(str(tmp_path / "bad_mask.npy"))


def test_mask_num_classes_applies_after_the_binary_rule(tmp_path):
    Image.fromarray(np.array([[0, 255]], np.uint8)).save(tmp_path / "m.png")
    assert read_mask(tmp_path / "m.png", num_classes=2).tolist() == [[0, 1]]


def test_jpeg_masks_and_ambiguous_npz_masks_are_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.jpg")
    with pytest.raises(DataError, match=r"m.jpg: JPEG is lossy"):
        read_mask(tmp_path / "m.jpg")
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 2)), b=np.ones((2, 2)))
    with pytest.raises(DataError, match=r"two.npz: holds arrays"):
        read_mask(tmp_path / "two.npz")


# ----------------------------------------------------------------------------- find_pairs


def touch_image(path, shape=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ramp(shape, np.uint8, 255)).save(path)


def test_pairs_in_one_folder_by_suffix(tmp_path):
    for name in ("c.png", "c_seg.tif", "a.png", "a_mask.png", "b.jpg", "b_label.png"):
        touch_image(tmp_path / name)
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden.png").write_bytes(b"")
    pairs = find_pairs(tmp_path)
    assert [(p.image.name, p.mask.name) for p in pairs] == [
        ("a.png", "a_mask.png"),
        ("b.jpg", "b_label.png"),
        ("c.png", "c_seg.tif"),
    ]
    assert [p.name for p in pairs] == ["a", "b", "c"]


def test_pairs_in_separate_folders_by_stem_or_suffix(tmp_path):
    for name in ("x2.png", "x1.png"):
        touch_image(tmp_path / "img" / name)
    touch_image(tmp_path / "seg" / "x1.tif")
    touch_image(tmp_path / "seg" / "x2_mask.png")
    touch_image(tmp_path / "seg" / "unused.png")
    pairs = find_pairs(tmp_path / "img", tmp_path / "seg")
    assert [(p.image.name, p.mask.name) for p in pairs] == [
        ("x1.png", "x1.tif"),
        ("x2.png", "x2_mask.png"),
    ]
    assert Pair(Path("scan.v2.nii.gz")).name == "scan.v2"
    assert Pair(Path("SCAN.TIF")).name == "SCAN"


@pytest.mark.parametrize("masks_name", ["masks", "labels"])
def test_pairs_in_images_and_masks_subfolders(tmp_path, masks_name):
    for stem in ("b", "a"):
        touch_image(tmp_path / "images" / f"{stem}.png")
        touch_image(tmp_path / masks_name / f"{stem}.png")
    expected = [
        (tmp_path / "images" / "a.png", tmp_path / masks_name / "a.png"),
        (tmp_path / "images" / "b.png", tmp_path / masks_name / "b.png"),
    ]
    for given in (tmp_path, tmp_path / "images"):  # the root, or images/ with its sibling
        assert [(p.image, p.mask) for p in find_pairs(given)] == expected


def test_images_without_masks_are_listed_with_expected_names(tmp_path):
    touch_image(tmp_path / "images" / "lonely.png")
    touch_image(tmp_path / "images" / "ok.png")
    touch_image(tmp_path / "masks" / "ok.png")
    with pytest.raises(DataError, match=r"1 of 2 images have no mask") as info:
        find_pairs(tmp_path)
    message = str(info.value)
    assert str(tmp_path / "images" / "lonely.png") in message
    assert str(tmp_path / "masks" / "lonely.*") in message and "lonely_mask.*" in message
    assert "ok.png:" not in message
    pairs = find_pairs(tmp_path, require_masks=False)
    assert [(p.image.name, p.mask) for p in pairs] == [
        ("lonely.png", None),
        ("ok.png", tmp_path / "masks" / "ok.png"),
    ]


def test_folder_of_images_only_for_prediction(tmp_path):
    for name in ("b.png", "a.tif", "c_seg.png"):
        touch_image(tmp_path / name)
    pairs = find_pairs(tmp_path, None, require_masks=False)
    # c_seg.png has no c.* beside it, so it is an image, not a mask.
    assert [(p.image.name, p.mask) for p in pairs] == [
        ("a.tif", None),
        ("b.png", None),
        ("c_seg.png", None),
    ]
    assert find_pairs(tmp_path / "b.png", require_masks=False) == [Pair(tmp_path / "b.png")]


def test_empty_and_unsupported_folders(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no supported image files; it is empty") as info:
        find_pairs(tmp_path / "empty")
    assert ".png" in str(info.value) and ".nii.gz" in str(info.value)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "scan.bmp").write_bytes(b"x")
    with pytest.raises(DataError, match=r"other: no supported .* 1 other files \(scan.bmp\)"):
        find_pairs(tmp_path / "other")
    with pytest.raises(FileNotFoundError, match=r"missing"):
        find_pairs(tmp_path / "missing")


def test_duplicate_names_and_ambiguous_masks(tmp_path):
    touch_image(tmp_path / "d" / "a.png")
    touch_image(tmp_path / "d" / "a.tif")
    with pytest.raises(DataError, match=r"images a.png, a.tif share the name 'a'"):
        find_pairs(tmp_path / "d", require_masks=False)
    touch_image(tmp_path / "e" / "a.png")
    touch_image(tmp_path / "e" / "a_mask.png")
    touch_image(tmp_path / "e" / "a_seg.png")
    with pytest.raises(DataError, match=r"a.png: several files could be its mask"):
        find_pairs(tmp_path / "e")


def test_npz_holding_image_and_labels_is_its_own_pair(tmp_path):
    np.savez(tmp_path / "vol.npz", image=np.zeros((3, 4, 5)), labels=np.ones((3, 4, 5), np.uint8))
    pairs = find_pairs(tmp_path)
    assert pairs == [Pair(tmp_path / "vol.npz", tmp_path / "vol.npz")]
    item = SegmentationFolder(pairs, spatial_dims=3)[0]
    assert item["image"].shape == (1, 3, 4, 5) and int(item["mask"].sum()) == 60


# ----------------------------------------------------------------------------- split_pairs


def test_split_pairs_is_deterministic_disjoint_and_covering():
    pairs = [Pair(Path(f"{i:02d}.png"), Path(f"{i:02d}_mask.png")) for i in range(10)]
    train, val = split_pairs(pairs, val_fraction=0.3, seed=5)
    assert (len(train), len(val)) == (7, 3)
    assert sorted(train + val, key=lambda p: p.image) == pairs
    assert train == sorted(train, key=lambda p: p.image) and not set(train) & set(val)
    assert split_pairs(pairs, val_fraction=0.3, seed=5) == (train, val)
    assert split_pairs(pairs, val_fraction=0.3, seed=6) != (train, val)
    assert split_pairs(pairs, val_fraction=0.0) == (pairs, [])
    assert [len(part) for part in split_pairs(pairs[:2], val_fraction=0.01)] == [1, 1]
    assert [len(part) for part in split_pairs(pairs[:3], val_fraction=0.9)] == [1, 2]


def test_split_pairs_with_one_image_explains_the_options():
    only = [Pair(Path("only.png"), Path("only_mask.png"))]
    with pytest.raises(DataError, match=r"only.png: only 1 image") as info:
        split_pairs(only)
    assert "--val-fraction 0" in str(info.value) and "validation folder" in str(info.value)
    assert split_pairs(only, val_fraction=0) == (only, [])
    with pytest.raises(ValueError, match=r"val_fraction"):
        split_pairs(only, val_fraction=1.0)


# ----------------------------------------------------------------------------- dataset


def make_folder(root, shapes, fg_box=None, channels=1):
    """Images ``a``, ``b``, ... as .npy with masks as PNG (2D) or TIFF (3D)."""
    for i, shape in enumerate(shapes):
        name = chr(ord("a") + i)
        image = RNG.normal(100 * (i + 1), 10, (channels, *shape)).astype(np.float32)
        np.save(root / f"{name}.npy", image)
        mask = np.zeros(shape, np.uint8)
        if fg_box is not None:
            mask[fg_box] = 1
        write_mask(root / f"{name}_mask.{'png' if len(shape) == 2 else 'tif'}", mask)
    return find_pairs(root)


def test_items_are_normalised_tensors_with_name(tmp_path):
    pairs = make_folder(
        tmp_path, [(20, 30), (25, 15)], fg_box=(slice(2, 5), slice(3, 9)), channels=2
    )
    data = SegmentationFolder(pairs, spatial_dims=2)
    assert len(data) == 2
    item = data[1]
    assert set(item) == {"image", "mask", "name"}
    assert item["name"] == "b"
    assert item["image"].dtype == torch.float32 and item["image"].shape == (2, 25, 15)
    assert item["mask"].dtype == torch.int64 and item["mask"].shape == (25, 15)
    assert int(item["mask"].sum()) == 18
    raw = np.load(tmp_path / "b.npy")
    for c in range(2):
        lo, hi = np.percentile(raw[c], [1.0, 99.8])
        expected = np.clip((raw[c] - lo) / (hi - lo), 0, 1)
        np.testing.assert_allclose(item["image"][c].numpy(), expected, atol=1e-6)
    assert torch.equal(data[-1]["image"], item["image"])
    with pytest.raises(IndexError):
        data[2]
    raw_data = SegmentationFolder(pairs, spatial_dims=2, normalise=False)
    np.testing.assert_array_equal(raw_data[1]["image"].numpy(), raw)


def test_normalise_image_matches_numpy_percentiles():
    image = RNG.gamma(2.0, 50.0, (3, 40, 40)).astype(np.float32)
    image[2] = 7.0  # a constant channel becomes zeros
    out = normalise_image(image, low=2.0, high=98.0)
    for c in range(2):
        lo, hi = np.percentile(image[c], [2.0, 98.0])
        np.testing.assert_allclose(out[c], np.clip((image[c] - lo) / (hi - lo), 0, 1), atol=1e-6)
    assert out.dtype == np.float32 and not out[2].any()


def test_patches_have_the_patch_shape_in_2d_and_3d_and_pad_small_images(tmp_path):
    (tmp_path / "two").mkdir()
    (tmp_path / "three").mkdir()
    pairs2 = make_folder(tmp_path / "two", [(40, 50), (10, 12)])
    data = SegmentationFolder(
        pairs2, patch_size=(16, 24), generator=torch.Generator().manual_seed(0)
    )
    for i in range(2):
        item = data[i]
        assert item["image"].shape == (1, 16, 24) and item["mask"].shape == (16, 24)
    small = data[1]["image"][0]
    assert (small[10:] == 0).all() and (small[:, 12:] == 0).all()  # zero-padded at the end
    pairs3 = make_folder(tmp_path / "three", [(6, 20, 22)], fg_box=(slice(1, 3),) * 3)
    data3 = SegmentationFolder(pairs3, spatial_dims=3, patch_size=8, samples_per_image=3)
    assert len(data3) == 3
    assert all(data3[i]["image"].shape == (1, 8, 8, 8) for i in range(3))
    with pytest.raises(DataError, match=r"patch_size .* has 2 entries but the image is 3D"):
        SegmentationFolder(pairs3, patch_size=(4, 4))[0]


def test_patches_are_windows_of_the_image_and_reproducible(tmp_path):
    pairs = make_folder(tmp_path, [(30, 31)], fg_box=(slice(10, 14), slice(20, 25)))
    whole = SegmentationFolder(pairs)[0]

    def draws(seed):
        data = SegmentationFolder(
            pairs, patch_size=(9, 7), generator=torch.Generator().manual_seed(seed)
        )
        return [data[0] for _ in range(20)]

    first, again, other = draws(3), draws(3), draws(4)
    assert all(torch.equal(a["image"], b["image"]) for a, b in zip(first, again, strict=True))
    assert any(not torch.equal(a["image"], b["image"]) for a, b in zip(first, other, strict=True))
    windows = whole["image"][0].unfold(0, 9, 1).unfold(1, 7, 1)
    for item in first:
        hits = (windows == item["image"][0]).flatten(2).all(-1).nonzero()
        i, j = hits[0].tolist()
        assert torch.equal(whole["mask"][i : i + 9, j : j + 7], item["mask"])


def test_foreground_fraction_biases_patches_towards_foreground(tmp_path):
    # One 4 x 4 foreground square in a 64 x 64 image; 8 x 8 patches. A uniform patch
    # corner (57 x 57 choices) overlaps the square for 11 x 11 of them: q = 121 / 3249.
    pairs = make_folder(tmp_path, [(64, 64)], fg_box=(slice(40, 44), slice(10, 14)))
    q = 121 / 3249
    n = 600
    for fraction, expected in ((0.0, q), (0.5, 0.5 + 0.5 * q), (1.0, 1.0)):
        data = SegmentationFolder(
            pairs,
            patch_size=8,
            foreground_fraction=fraction,
            generator=torch.Generator().manual_seed(11),
        )
        hits = sum(bool(data[0]["mask"].any()) for _ in range(n))
        sd = (expected * (1 - expected) / n) ** 0.5
        assert abs(hits / n - expected) <= 4 * sd + 1e-9, (fraction, hits / n, expected)


def test_transform_gets_tensors_and_the_generator(tmp_path):
    pairs = make_folder(tmp_path, [(12, 12)])
    seen = []

    def transform(image, mask, generator):
        seen.append((image.dtype, mask.dtype, generator))
        return image.flip(-1) + 1, mask

    g = torch.Generator().manual_seed(0)
    data = SegmentationFolder(pairs, transform=transform, generator=g)
    plain = SegmentationFolder(pairs)[0]["image"]
    assert torch.equal(data[0]["image"], plain.flip(-1) + 1)
    assert seen == [(torch.float32, torch.int64, g)]


def test_cache_reads_each_file_once(tmp_path, monkeypatch):
    pairs = make_folder(tmp_path, [(10, 10), (10, 10)])
    import attnunet.data.cases as cases_module  # the dataset reads through load_case

    calls = []
    real = cases_module.read_image
    monkeypatch.setattr(
        cases_module, "read_image", lambda *a, **k: calls.append(a) or real(*a, **k)
    )
    cached = SegmentationFolder(pairs, cache=True)
    for _ in range(3):
        cached[0], cached[1]
    assert len(calls) == 2
    calls.clear()
    lazy = SegmentationFolder(pairs)
    lazy[0], lazy[0]
    assert len(calls) == 2
    calls.clear()
    fresh = SegmentationFolder(pairs, cache=True)
    fresh.validate()
    fresh[0], fresh[1]
    assert len(calls) == 2  # validate() filled the cache


def test_mask_size_mismatch_names_both_files_and_shapes(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros((20, 30)))
    write_mask(tmp_path / "a_mask.png", np.zeros((20, 31), np.uint8))
    data = SegmentationFolder.from_folder(tmp_path)
    with pytest.raises(DataError, match=r"a_mask.png: mask size \(20, 31\) differs .* \(20, 30\)"):
        data[0]


def test_validate_reports_every_problem(tmp_path):
    make_folder(tmp_path, [(10, 10)] * 4)
    write_mask(tmp_path / "b_mask.png", np.full((10, 10), 5, np.uint8), overwrite=True)
    (tmp_path / "c.npy").write_bytes(b"")
    np.save(tmp_path / "d.npy", np.zeros((3, 10, 10)))
    data = SegmentationFolder.from_folder(tmp_path, spatial_dims=2, num_classes=2)
    with pytest.raises(DataError) as info:
        data.validate()
    message = str(info.value)
    first, _, report = message.partition("\n\n")
    assert "b_mask.png" in first and "num_classes=2" in first
    assert "3 problem(s) in 4 image/mask pairs" in report
    assert "c.npy is empty" in report
    assert "differ in their number of channels (1: a.npy; 3: d.npy)" in report


def test_validate_summary(tmp_path):
    make_folder(tmp_path, [(10, 12), (14, 8)], fg_box=(slice(0, 2), slice(0, 4)))
    summary = SegmentationFolder.from_folder(tmp_path).validate()
    assert summary.num_pairs == 2 and summary.spatial_dims == 2 and summary.channels == 1
    assert summary.min_shape == (10, 8) and summary.max_shape == (14, 12)
    assert summary.labels == (0, 1)
    assert summary.foreground_fraction == pytest.approx(16 / (120 + 112))


def test_dataset_works_with_a_dataloader(tmp_path):
    pairs = make_folder(tmp_path, [(20, 20)] * 3, fg_box=(slice(5, 9), slice(5, 9)))
    data = SegmentationFolder(pairs, patch_size=16, samples_per_image=2)
    batches = list(torch.utils.data.DataLoader(data, batch_size=4))
    assert [b["image"].shape[0] for b in batches] == [4, 2]
    assert batches[0]["mask"].shape == (4, 16, 16) and batches[0]["name"][:2] == ["a", "a"]


def test_dataset_argument_checks(tmp_path):
    pairs = make_folder(tmp_path, [(8, 8)])
    with pytest.raises(DataError, match=r"no image pairs"):
        SegmentationFolder([])
    for kwargs, match in (
        ({"patch_size": 0}, "patch_size"),
        ({"foreground_fraction": 1.5}, "foreground_fraction"),
        ({"samples_per_image": 0}, "samples_per_image"),
    ):
        with pytest.raises(ValueError, match=match):
            SegmentationFolder(pairs, **kwargs)


# ----------------------------------------------------------------------------- writing


def test_write_mask_png_round_trip_and_dtype(tmp_path):
    small = ramp((9, 10), np.int64, 200)
    write_mask(tmp_path / "s.png", small)
    with Image.open(tmp_path / "s.png") as image:
        assert image.mode == "L"
    np.testing.assert_array_equal(read_mask(tmp_path / "s.png"), small)
    large = ramp((9, 10), np.int64, 3000)
    write_mask(tmp_path / "l.png", torch.from_numpy(large))
    with Image.open(tmp_path / "l.png") as image:
        assert image.mode.startswith("I")  # 16 bit
    np.testing.assert_array_equal(read_mask(tmp_path / "l.png"), large)


def test_write_mask_3d_round_trips(tmp_path, tiff_backend):
    labels = ramp((3, 9, 10), np.int64, 70000 if tiff_backend == "tifffile" else 300)
    for name in ("v.tif", "v.npy"):
        write_mask(tmp_path / name, labels)
        np.testing.assert_array_equal(read_mask(tmp_path / name), labels)
    write_mask(tmp_path / "b.tiff", labels > 100)
    np.testing.assert_array_equal(read_mask(tmp_path / "b.tiff"), labels > 100)


def test_write_mask_never_overwrites_unless_asked(tmp_path):
    target = tmp_path / "out" / "m.png"
    write_mask(target, np.ones((4, 4), np.uint8))
    with pytest.raises(FileExistsError, match=r"m.png already exists; pass overwrite=True"):
        write_mask(target, np.zeros((4, 4), np.uint8))
    assert read_mask(target).sum() == 16  # untouched
    write_mask(target, np.zeros((4, 4), np.uint8), overwrite=True)
    assert read_mask(target).sum() == 0


def test_write_mask_refuses_what_it_cannot_store(tmp_path):
    with pytest.raises(DataError, match=r"PNG holds 2D images"):
        write_mask(tmp_path / "v.png", np.zeros((2, 3, 4), np.uint8))
    with pytest.raises(DataError, match=r"above 65535 do not fit in PNG"):
        write_mask(tmp_path / "big.png", np.array([[0, 70000]]))
    with pytest.raises(ValueError, match=r"integer labels"):
        write_mask(tmp_path / "f.png", np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match=r"labels must be >= 0"):
        write_mask(tmp_path / "n.png", np.array([[0, -1]]))
    with pytest.raises(DataError, match=r"x.jpg: cannot write masks as .jpg"):
        write_mask(tmp_path / "x.jpg", np.zeros((3, 3), np.uint8))
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing half-written


def test_write_prediction_names_the_file_after_the_image(tmp_path):
    out = tmp_path / "pred"
    assert (
        write_prediction(out, "in/case.v2.png", np.zeros((5, 5), np.int64)) == out / "case.v2.png"
    )
    # the input's format: NIfTI in, NIfTI out; TIFF for a volume from a .tif
    pytest.importorskip("nibabel", reason="writing NIfTI needs nibabel")
    assert write_prediction(out, "scan.nii.gz", np.zeros((2, 5, 5), np.int64)).name == "scan.nii.gz"
    assert write_prediction(out, "stack.tif", np.zeros((2, 5, 5), np.int64)).name == "stack.tif"
    assert write_prediction(out, "x.png", np.ones((5, 5), np.int64), fmt="npy").name == "x.npy"
    with pytest.raises(FileExistsError, match=r"scan.nii.gz"):
        write_prediction(out, "scan.nii.gz", np.zeros((2, 5, 5), np.int64))


@pytest.mark.parametrize(
    ("suffixes", "expected"),
    [
        ((), "no mask name to look for"),
        (("_mask",), "a_mask.*\n"),
        (("_mask", "_seg"), "a_mask.* or a_seg.*"),
    ],
)
def test_a_missing_mask_in_a_shared_folder_names_what_was_looked_for(tmp_path, suffixes, expected):
    # one folder for images and masks: a.npy has no mask, b.npy has b_mask.npy
    np.save(tmp_path / "a.npy", np.zeros((4, 4)))
    np.save(tmp_path / "b.npy", np.zeros((4, 4)))
    np.save(tmp_path / "b_mask.npy", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as caught:
        find_pairs(tmp_path, tmp_path, mask_suffixes=suffixes)
    message = str(caught.value)
    assert expected in message
    assert " or \n" not in message and not message.split("\n")[1].endswith(" or ")
