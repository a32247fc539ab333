"""Medical volumes keep their geometry: NIfTI, NRRD, MetaImage and DICOM in, labels out.

Every volume is written by the test with nibabel or SimpleITK themselves, with an oblique
orientation, anisotropic spacing and a non-zero origin; what attnunet reads and writes is
checked against those libraries (the oracles) and against world points computed here by
hand from the numbers the test wrote.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest

from attnunet.data import DataError, read_image, read_mask, write_mask, write_prediction
from attnunet.data.geometry import Geometry
from attnunet.data.readers import read_geometry
from attnunet.data.writers import prediction_name

SPACING = (0.7, 0.8, 3.0)  # along the first, second and third voxel index (ITK's x, y, z)
ORIGIN_LPS = (12.5, -30.0, 47.0)
LABELS = (0, 21, 22, 105)
FLIP = np.diag([-1.0, -1.0, 1.0])  # LPS <-> RAS


def rotation() -> np.ndarray:
    """An oblique proper rotation (columns: the directions of the three voxel axes)."""
    a, b = 0.3, 0.2
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    return rz @ rx


def ras_affine() -> np.ndarray:
    """By hand: the RAS affine of voxel index (i, j, k) -> world, for the test geometry."""
    affine = np.eye(4)
    affine[:3, :3] = FLIP @ (rotation() * SPACING)
    affine[:3, 3] = FLIP @ ORIGIN_LPS
    return affine


def label_volume(shape=(5, 6, 4), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array(LABELS, np.uint8), size=shape)


def intensity_volume(shape=(5, 6, 4), seed=1) -> np.ndarray:
    return np.random.default_rng(seed).normal(100, 30, size=shape).astype(np.float32)


def sitk_image(sitk, array_ijk: np.ndarray, **kw):
    """A SimpleITK image with voxel (i, j, k) = ``array_ijk[i, j, k]``, placed as the test says."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_ijk.transpose(2, 1, 0)), **kw)
    image.SetSpacing(SPACING)
    image.SetOrigin(ORIGIN_LPS)
    image.SetDirection(rotation().ravel().tolist())
    return image


def nifti_image(nibabel, array: np.ndarray, sform_shift=(0.0, 0.0, 0.0)):
    """A NIfTI image with qform code 1 (the test affine) and sform code 2 (shifted)."""
    image = nibabel.Nifti1Image(array, ras_affine())
    image.set_qform(ras_affine(), code=1)
    sform = ras_affine()
    sform[:3, 3] += sform_shift
    image.set_sform(sform, code=2)
    image.header.set_xyzt_units("mm", "sec")
    return image


@pytest.fixture
def nibabel():
    return pytest.importorskip("nibabel", reason="NIfTI needs nibabel")


@pytest.fixture
def sitk():
    return pytest.importorskip("SimpleITK", reason="NRRD, MetaImage and DICOM need SimpleITK")


# ----------------------------------------------------------------------------- reading


def test_nifti_and_nrrd_of_one_volume_send_each_voxel_to_the_same_world_point(
    tmp_path, nibabel, sitk
):
    volume = intensity_volume()
    nibabel.save(nifti_image(nibabel, volume), tmp_path / "v.nii.gz")
    source = sitk_image(sitk, volume)
    sitk.WriteImage(source, str(tmp_path / "v.nrrd"))
    nii, g_nii = read_image(tmp_path / "v.nii.gz", with_geometry=True)
    nrrd, g_nrrd = read_image(tmp_path / "v.nrrd", with_geometry=True)
    assert nii.shape == nrrd.shape == (1, 5, 6, 4)  # both (i, j, k), ITK's (x, y, z)
    np.testing.assert_allclose(g_nii.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(g_nrrd.spacing, SPACING, rtol=1e-6)
    np.testing.assert_allclose(g_nii.affine, nibabel.load(tmp_path / "v.nii.gz").affine)
    for i, j, k in [(0, 0, 0), (4, 5, 3), (2, 1, 3), (1, 4, 0)]:
        by_hand = (ras_affine() @ [i, j, k, 1])[:3]
        by_sitk = FLIP @ source.TransformIndexToPhysicalPoint((i, j, k))
        np.testing.assert_allclose((g_nii.affine @ [i, j, k, 1])[:3], by_hand, atol=1e-4)
        np.testing.assert_allclose((g_nrrd.affine @ [i, j, k, 1])[:3], by_sitk, atol=1e-4)
        np.testing.assert_allclose(by_hand, by_sitk, atol=1e-4)
        assert nii[0, i, j, k] == nrrd[0, i, j, k] == volume[i, j, k]
    assert g_nii.format == "NIfTI" and g_nrrd.format == "NRRD" and g_nrrd.unit == "mm"


def test_one_scan_as_nifti_nrrd_and_mha_gives_one_array_spacing_and_affine(tmp_path, nibabel, sitk):
    volume = intensity_volume()
    nibabel.save(nifti_image(nibabel, volume), tmp_path / "v.nii.gz")
    # the same physical description, as SimpleITK reads it from the NIfTI file
    source = sitk.ReadImage(str(tmp_path / "v.nii.gz"))
    assert source.GetSize() == volume.shape
    for ext in (".nrrd", ".mha"):
        sitk.WriteImage(source, str(tmp_path / f"v{ext}"))
    oracle = nibabel.load(tmp_path / "v.nii.gz")
    nii, g_nii = read_image(tmp_path / "v.nii.gz", with_geometry=True)
    np.testing.assert_array_equal(nii[0], np.asanyarray(oracle.dataobj))
    for ext in (".nrrd", ".mha"):
        other, g_other = read_image(tmp_path / f"v{ext}", with_geometry=True)
        np.testing.assert_array_equal(other, nii)
        np.testing.assert_allclose(g_other.spacing, oracle.header.get_zooms(), rtol=1e-6)
        np.testing.assert_allclose(g_other.affine, oracle.affine, atol=1e-5)
        np.testing.assert_allclose(g_other.affine, g_nii.affine, atol=1e-5)
        assert g_other.shape == g_nii.shape == volume.shape
        assert g_other.mismatch(g_nii) is None and g_nii.mismatch(g_other) is None


def test_an_nrrd_image_with_a_nifti_mask_of_the_same_scan_agrees(tmp_path, nibabel, sitk):
    from attnunet.data import Pair, load_case

    mask = label_volume()
    nibabel.save(nifti_image(nibabel, mask), tmp_path / "case_mask.nii.gz")
    nibabel.save(nifti_image(nibabel, intensity_volume()), tmp_path / "scan.nii.gz")
    sitk.WriteImage(sitk.ReadImage(str(tmp_path / "scan.nii.gz")), str(tmp_path / "case.nrrd"))
    image, geometry = read_image(tmp_path / "case.nrrd", with_geometry=True)
    labels, mask_geometry = read_mask(tmp_path / "case_mask.nii.gz", with_geometry=True)
    assert geometry.mismatch(mask_geometry) is None
    assert image.shape[1:] == labels.shape == mask.shape
    case = load_case(Pair(tmp_path / "case.nrrd", tmp_path / "case_mask.nii.gz"))
    np.testing.assert_array_equal(case.mask, mask)
    np.testing.assert_array_equal(
        case.image[0], np.asanyarray(nibabel.load(tmp_path / "scan.nii.gz").dataobj)
    )


@pytest.mark.parametrize("ext", [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"])
def test_read_geometry_reads_the_header_and_agrees_with_read_image(tmp_path, ext, nibabel, sitk):
    path = tmp_path / f"v{ext}"
    if ext.startswith(".nii"):
        nibabel.save(nifti_image(nibabel, intensity_volume()), path)
    else:
        sitk.WriteImage(sitk_image(sitk, intensity_volume()), str(path))
    _, geometry = read_image(path, with_geometry=True)
    assert read_geometry(path) == geometry
    assert read_geometry(path).header is not None


def test_a_detached_data_file_that_is_missing_is_named_in_the_error(tmp_path, sitk):
    sitk.WriteImage(sitk_image(sitk, intensity_volume()), str(tmp_path / "v.mhd"))
    (tmp_path / "v.raw").unlink()
    with pytest.raises(DataError, match=r"v\.mhd: cannot be read as MetaImage .*data file"):
        read_image(tmp_path / "v.mhd")


def test_a_single_slice_volume_reads_as_2d_with_the_right_world_points(tmp_path, sitk):
    plane = intensity_volume((5, 6, 1))
    source = sitk_image(sitk, plane)  # ITK size (5, 6, 1): the array is (5, 6)
    sitk.WriteImage(source, str(tmp_path / "p.mha"))
    image, geometry = read_image(tmp_path / "p.mha", with_geometry=True)
    assert image.shape == (1, 5, 6) and geometry.shape == (5, 6)
    np.testing.assert_allclose(geometry.spacing, SPACING[:2])
    for i, j in [(0, 0), (4, 5), (3, 2)]:
        by_sitk = FLIP @ source.TransformIndexToPhysicalPoint((i, j, 0))
        np.testing.assert_allclose((geometry.affine @ [i, j, 0, 1])[:3], by_sitk, atol=1e-4)
        assert image[0, i, j] == plane[i, j, 0]
    mask = label_volume((5, 6, 1))
    sitk.WriteImage(sitk_image(sitk, mask), str(tmp_path / "m.mha"))
    labels, mask_geometry = read_mask(tmp_path / "m.mha", with_geometry=True)
    np.testing.assert_array_equal(labels, mask[:, :, 0])
    assert (
        mask_geometry.mismatch(geometry) is None and read_geometry(tmp_path / "p.mha") == geometry
    )
    # asked for 3D, it is a volume of one slice, still in (i, j, k) order
    volume, volume_geometry = read_image(tmp_path / "p.mha", spatial_dims=3, with_geometry=True)
    np.testing.assert_array_equal(volume[0], plane)
    assert volume_geometry.shape == (5, 6, 1)
    np.testing.assert_allclose(volume_geometry.affine, geometry.affine)


def test_a_2d_nifti_keeps_a_4x4_affine_with_its_two_axes_first(tmp_path, nibabel):
    plane = intensity_volume((5, 6, 1))
    nibabel.save(nifti_image(nibabel, plane), tmp_path / "p.nii.gz")
    image, geometry = read_image(tmp_path / "p.nii.gz", with_geometry=True)
    assert image.shape == (1, 5, 6) and geometry.shape == (5, 6)
    np.testing.assert_allclose(geometry.spacing, SPACING[:2], rtol=1e-6)
    oracle = nibabel.load(tmp_path / "p.nii.gz").affine
    np.testing.assert_allclose(geometry.affine, oracle)
    np.testing.assert_allclose(geometry.affine[:3, :2], (ras_affine())[:3, :2], atol=1e-5)


def test_vector_pixels_are_channels(tmp_path, sitk):
    rgb = np.random.default_rng(2).integers(0, 255, (5, 6, 4, 3)).astype(np.uint8)  # i, j, k, c
    source = sitk.GetImageFromArray(np.ascontiguousarray(rgb.transpose(2, 1, 0, 3)), isVector=True)
    source.SetSpacing(SPACING)
    sitk.WriteImage(source, str(tmp_path / "rgb.mha"))
    assert sitk.ReadImage(str(tmp_path / "rgb.mha")).GetNumberOfComponentsPerPixel() == 3
    image, geometry = read_image(tmp_path / "rgb.mha", with_geometry=True)
    assert image.shape == (3, 5, 6, 4) and geometry.shape == (5, 6, 4)
    np.testing.assert_array_equal(image, rgb.transpose(3, 0, 1, 2))
    np.testing.assert_allclose(geometry.spacing, SPACING)
    with pytest.raises(DataError, match=r"rgb\.mha: a mask with 3 components per voxel"):
        read_mask(tmp_path / "rgb.mha")


# ----------------------------------------------------------------------------- DICOM


def write_dicom_series(sitk, folder, volume_ijk, series="1.2.826.0.1.3680043.2.1125.2"):
    """Write ``volume_ijk`` as one .dcm file per slice k, with positions and orientation."""
    folder.mkdir(parents=True, exist_ok=True)
    image = sitk_image(sitk, volume_ijk)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    columns = rotation()
    for k in range(volume_ijk.shape[2]):
        position = np.asarray(ORIGIN_LPS) + columns[:, 2] * SPACING[2] * k  # by hand
        tags = {
            "0008|0060": "CT",
            "0020|000d": "1.2.826.0.1.3680043.2.1125.1",
            "0020|000e": series,
            "0008|0018": f"{series}.{k + 1}",
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in position),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (*columns[:, 0], *columns[:, 1])),
        }
        plane = image[:, :, k]
        for key, value in tags.items():
            plane.SetMetaData(key, value)
        writer.SetFileName(str(folder / f"{series[-1]}_{k}.dcm"))
        writer.Execute(plane)


def test_a_dicom_series_reads_with_its_spacing_and_world_positions(tmp_path, sitk):
    volume = (np.arange(5 * 6 * 4).reshape(5, 6, 4) * 7 - 100).astype(np.int16)
    write_dicom_series(sitk, tmp_path / "series", volume)
    image, geometry = read_image(tmp_path / "series", with_geometry=True)
    assert geometry.format == "DICOM" and image.shape == (1, 5, 6, 4)
    np.testing.assert_array_equal(image[0], volume)
    np.testing.assert_allclose(geometry.spacing, SPACING, atol=1e-5)
    for i, j, k in [(0, 0, 0), (4, 5, 3), (1, 2, 2)]:
        by_hand = FLIP @ (np.asarray(ORIGIN_LPS) + rotation() @ (np.multiply(SPACING, (i, j, k))))
        np.testing.assert_allclose((geometry.affine @ [i, j, k, 1])[:3], by_hand, atol=1e-4)
    assert read_geometry(tmp_path / "series") == geometry
    assert geometry.header["metadata"]["0008|0060"].strip() == "CT"
    # the labels of a DICOM series come out as NIfTI, in the same place
    labels = label_volume()
    out = write_prediction(tmp_path / "pred", tmp_path / "series", labels, geometry=geometry)
    assert out.name == "series.nii.gz"
    nibabel = pytest.importorskip("nibabel")
    written = nibabel.load(out)
    np.testing.assert_allclose(written.affine, geometry.affine, atol=1e-5)
    assert int(written.header["sform_code"]) == int(written.header["qform_code"]) == 1
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), labels)


def test_a_dicom_series_round_trips_through_write_mask(tmp_path, sitk):
    volume = label_volume().astype(np.int16)
    write_dicom_series(sitk, tmp_path / "series", volume)
    oracle = sitk.ReadImage(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path / "series")))
    labels, geometry = read_mask(tmp_path / "series", with_geometry=True)
    np.testing.assert_array_equal(labels, volume)
    for ext in (".nrrd", ".mha"):
        written = sitk.ReadImage(str(write_mask(tmp_path / f"m{ext}", labels, geometry=geometry)))
        np.testing.assert_array_equal(
            sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(oracle)
        )
        np.testing.assert_allclose(written.GetSpacing(), oracle.GetSpacing(), rtol=1e-6)
        np.testing.assert_allclose(written.GetOrigin(), oracle.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(written.GetDirection(), oracle.GetDirection(), atol=1e-6)


def test_a_folder_with_two_dicom_series_is_refused_naming_them(tmp_path, sitk):
    volume = np.zeros((3, 3, 2), np.int16)
    write_dicom_series(sitk, tmp_path / "mixed", volume, series="1.2.3.4")
    write_dicom_series(sitk, tmp_path / "mixed", volume, series="1.2.3.5")
    with pytest.raises(DataError, match=r"mixed: holds 2 DICOM series \(1\.2\.3\.4, 1\.2\.3\.5\)"):
        read_image(tmp_path / "mixed")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty is a folder without a DICOM series"):
        read_image(tmp_path / "empty")


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ext", [".nii.gz", ".nii"])
def test_nifti_prediction_keeps_the_image_header(tmp_path, ext, nibabel):
    shift = (1.0, -2.0, 0.5)  # sform and qform differ: both must come back
    nibabel.save(nifti_image(nibabel, intensity_volume(), shift), tmp_path / f"case{ext}")
    mask = label_volume()
    nibabel.save(nifti_image(nibabel, mask, shift), tmp_path / f"case_mask{ext}")
    _, geometry = read_image(tmp_path / f"case{ext}", with_geometry=True)
    labels, mask_geometry = read_mask(tmp_path / f"case_mask{ext}", with_geometry=True)
    assert geometry.mismatch(mask_geometry) is None
    np.testing.assert_array_equal(labels, mask)
    out = write_prediction(tmp_path / "pred", tmp_path / f"case{ext}", labels, geometry=geometry)
    assert out.name == f"case{ext}"
    source, written = nibabel.load(tmp_path / f"case{ext}"), nibabel.load(out)
    for coded in ("get_qform", "get_sform"):
        (want, want_code), (got, got_code) = (
            getattr(x, coded)(coded=True) for x in (source, written)
        )
        np.testing.assert_allclose(got, want, atol=1e-6)
        assert int(got_code) == int(want_code)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 2)
    np.testing.assert_allclose(written.affine, source.affine)
    assert written.header.get_zooms() == source.header.get_zooms()
    assert written.header.get_xyzt_units() == ("mm", "sec")
    assert written.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), mask)
    assert sorted(np.unique(np.asanyarray(written.dataobj)).tolist()) == list(LABELS)


@pytest.mark.parametrize(
    ("ext", "written_ext"),
    [(".nrrd", ".nrrd"), (".nhdr", ".nrrd"), (".mha", ".mha"), (".mhd", ".mhd")],
)
def test_itk_prediction_keeps_spacing_origin_and_direction(tmp_path, ext, written_ext, sitk):
    sitk.WriteImage(sitk_image(sitk, intensity_volume()), str(tmp_path / f"case{ext}"))
    mask = label_volume()
    sitk.WriteImage(sitk_image(sitk, mask), str(tmp_path / f"case_mask{ext}"))
    _, geometry = read_image(tmp_path / f"case{ext}", with_geometry=True)
    labels, mask_geometry = read_mask(tmp_path / f"case_mask{ext}", with_geometry=True)
    assert geometry.mismatch(mask_geometry) is None
    np.testing.assert_array_equal(labels, mask)  # (i, j, k), as the test wrote it
    out = write_prediction(tmp_path / "pred", tmp_path / f"case{ext}", labels, geometry=geometry)
    assert out.name == f"case{written_ext}"
    written = sitk.ReadImage(str(out))
    np.testing.assert_allclose(written.GetSpacing(), SPACING, rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), ORIGIN_LPS, atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), rotation().ravel(), atol=1e-6)
    assert written.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), mask.transpose(2, 1, 0))
    with pytest.raises(FileExistsError, match=r"already exists"):
        write_prediction(tmp_path / "pred", tmp_path / f"case{ext}", labels, geometry=geometry)
    write_prediction(
        tmp_path / "pred", tmp_path / f"case{ext}", labels, geometry=geometry, overwrite=True
    )


@pytest.mark.parametrize("keep_header", [True, False])
def test_nrrd_read_and_written_with_its_geometry_is_the_same_image(tmp_path, sitk, keep_header):
    source = sitk_image(sitk, label_volume())
    sitk.WriteImage(source, str(tmp_path / "case.nrrd"))
    labels, geometry = read_mask(tmp_path / "case.nrrd", with_geometry=True)
    if not keep_header:  # the affine alone must give the same spacing, origin and direction
        geometry = dataclasses.replace(geometry, header=None)
    written = sitk.ReadImage(str(write_mask(tmp_path / "out.nrrd", labels, geometry=geometry)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(source))
    np.testing.assert_allclose(written.GetSpacing(), source.GetSpacing(), rtol=1e-6)
    np.testing.assert_allclose(written.GetOrigin(), source.GetOrigin(), atol=1e-6)
    np.testing.assert_allclose(written.GetDirection(), source.GetDirection(), atol=1e-6)


def test_a_2d_itk_image_is_read_in_index_order(tmp_path, sitk):
    plane = label_volume((5, 6, 1))[:, :, 0]
    source = sitk.GetImageFromArray(np.ascontiguousarray(plane.T))  # ITK size (5, 6)
    source.SetSpacing((0.4, 0.9))
    source.SetOrigin((3.0, -2.0))
    sitk.WriteImage(source, str(tmp_path / "p.nrrd"))
    labels, geometry = read_mask(tmp_path / "p.nrrd", with_geometry=True)
    assert source.GetSize() == labels.shape == (5, 6)
    for i, j in [(0, 0), (4, 5), (3, 1)]:
        assert labels[i, j] == source.GetPixel(i, j)
        by_sitk = source.TransformIndexToPhysicalPoint((i, j))
        np.testing.assert_allclose((geometry.affine @ [i, j, 0, 1])[:2], FLIP[:2, :2] @ by_sitk)
    np.testing.assert_allclose(geometry.spacing, (0.4, 0.9))
    written = sitk.ReadImage(str(write_mask(tmp_path / "out.mha", labels, geometry=geometry)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(source))
    assert written.GetSpacing() == source.GetSpacing() and written.GetOrigin() == (3.0, -2.0)


def test_nrrd_labels_written_as_nifti_and_back_stay_in_place(tmp_path, nibabel, sitk):
    source = sitk_image(sitk, intensity_volume())
    sitk.WriteImage(source, str(tmp_path / "case.nrrd"))
    _, geometry = read_image(tmp_path / "case.nrrd", with_geometry=True)
    labels = label_volume()  # array order (i, j, k), ITK's (x, y, z)
    out = write_prediction(
        tmp_path / "p", tmp_path / "case.nrrd", labels, fmt="nii.gz", geometry=geometry
    )
    written = nibabel.load(out)
    assert (int(written.header["qform_code"]), int(written.header["sform_code"])) == (1, 1)
    for i, j, k in [(0, 0, 0), (4, 5, 3), (3, 2, 1)]:
        by_sitk = FLIP @ source.TransformIndexToPhysicalPoint((i, j, k))
        np.testing.assert_allclose((written.affine @ [i, j, k, 1])[:3], by_sitk, atol=1e-4)
    # and from that NIfTI (a nibabel header now) on to MetaImage: the same world points
    back, nifti_geometry = read_mask(out, with_geometry=True)
    np.testing.assert_array_equal(back, labels)
    mha = sitk.ReadImage(str(write_mask(tmp_path / "again.mha", back, geometry=nifti_geometry)))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(mha), labels.transpose(2, 1, 0))
    for i, j, k in [(0, 0, 0), (4, 5, 3)]:
        np.testing.assert_allclose(
            mha.TransformIndexToPhysicalPoint((i, j, k)),
            source.TransformIndexToPhysicalPoint((i, j, k)),
            atol=1e-4,
        )


def test_write_prediction_without_a_geometry_reads_the_input_geometry(tmp_path, nibabel, sitk):
    shift = (1.0, -2.0, 0.5)
    nibabel.save(nifti_image(nibabel, intensity_volume(), shift), tmp_path / "case.nii.gz")
    labels = label_volume()
    out = write_prediction(tmp_path / "pred", tmp_path / "case.nii.gz", labels)
    source, written = nibabel.load(tmp_path / "case.nii.gz"), nibabel.load(out)
    np.testing.assert_allclose(written.affine, source.affine)
    np.testing.assert_allclose(written.get_qform(), source.get_qform(), atol=1e-6)
    assert written.header.get_zooms() == source.header.get_zooms()
    np.testing.assert_array_equal(np.asanyarray(written.dataobj), labels)
    # NRRD in, NRRD out, and a DICOM series in, NIfTI out: the input's geometry too
    sitk.WriteImage(sitk_image(sitk, intensity_volume()), str(tmp_path / "case.nrrd"))
    nrrd = sitk.ReadImage(str(write_prediction(tmp_path / "pred", tmp_path / "case.nrrd", labels)))
    np.testing.assert_allclose(nrrd.GetOrigin(), ORIGIN_LPS, atol=1e-6)
    np.testing.assert_allclose(nrrd.GetDirection(), rotation().ravel(), atol=1e-6)
    np.testing.assert_allclose(nrrd.GetSpacing(), SPACING, rtol=1e-6)
    write_dicom_series(sitk, tmp_path / "series", label_volume().astype(np.int16))
    from_dicom = nibabel.load(write_prediction(tmp_path / "pred", tmp_path / "series", labels))
    np.testing.assert_allclose(from_dicom.affine, ras_affine(), atol=1e-4)
    # labels of another shape are refused, naming the image
    with pytest.raises(ValueError, match=r"case\.nii\.gz: the image has shape \(5, 6, 4\) but"):
        write_prediction(tmp_path / "other", tmp_path / "case.nii.gz", labels[:4])
    assert not (tmp_path / "other").exists()
    # a format without geometry does not read it; a file that is not there gives eye(4)
    write_prediction(tmp_path / "other", tmp_path / "case.nii.gz", labels[:4], fmt="npy")
    missing = write_prediction(tmp_path / "other", tmp_path / "gone.nii.gz", labels)
    np.testing.assert_array_equal(nibabel.load(missing).affine, np.eye(4))


def test_without_a_geometry_nifti_keeps_the_identity_affine(tmp_path, nibabel):
    written = nibabel.load(write_mask(tmp_path / "m.nii.gz", label_volume()))
    np.testing.assert_array_equal(written.affine, np.eye(4))
    assert int(written.header["sform_code"]) == 2 and int(written.header["qform_code"]) == 0


def test_a_geometry_of_another_shape_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"labels have shape \(5, 6, 4\) but the geometry"):
        write_mask(tmp_path / "m.npy", label_volume(), geometry=Geometry.plain((4, 6, 5)))
    assert not (tmp_path / "m.npy").exists()


# ----------------------------------------------------------------------------- masks


def test_a_4d_mask_with_several_volumes_is_refused(tmp_path, nibabel, sitk):
    four = np.zeros((5, 6, 4, 2), np.uint8)
    nibabel.save(nibabel.Nifti1Image(four, np.eye(4)), tmp_path / "m4.nii.gz")
    with pytest.raises(
        DataError, match=r"m4\.nii\.gz: a mask with 2 volumes \(shape \(5, 6, 4, 2\)\)"
    ):
        read_mask(tmp_path / "m4.nii.gz")
    assert read_image(tmp_path / "m4.nii.gz").shape == (2, 5, 6, 4)  # an image: 2 channels
    nibabel.save(nibabel.Nifti1Image(four[..., :1], np.eye(4)), tmp_path / "m1.nii.gz")
    assert read_mask(tmp_path / "m1.nii.gz").shape == (5, 6, 4)
    volumes = [sitk.GetImageFromArray(np.full((4, 6, 5), v, np.uint8)) for v in (1, 2, 3)]
    sitk.WriteImage(sitk.JoinSeries(volumes), str(tmp_path / "m4.mha"))
    with pytest.raises(DataError, match=r"m4\.mha: a mask with 3 volumes"):
        read_mask(tmp_path / "m4.mha")
    image = read_image(tmp_path / "m4.mha")  # ITK size (5, 6, 4, 3): t is the channel
    assert image.shape == (3, 5, 6, 4) and image[:, 0, 0, 0].tolist() == [1, 2, 3]


def test_keep_values_keeps_255(tmp_path, nibabel):
    mask = np.zeros((5, 6, 4), np.uint8)
    mask[1:3, 2:4, 1] = 255
    nibabel.save(nibabel.Nifti1Image(mask, np.eye(4)), tmp_path / "m.nii.gz")
    np.testing.assert_array_equal(read_mask(tmp_path / "m.nii.gz"), mask // 255)
    np.testing.assert_array_equal(read_mask(tmp_path / "m.nii.gz", keep_values=True), mask)
    labels, geometry = read_mask(tmp_path / "m.nii.gz", keep_values=True, with_geometry=True)
    assert labels.max() == 255 and geometry.shape == mask.shape


# ----------------------------------------------------------------------------- SimpleITK missing


@pytest.mark.parametrize(("name", "kind"), [("x.nrrd", "NRRD"), ("x.mha", "MetaImage")])
def test_without_simpleitk_the_message_says_how_to_install_it(tmp_path, monkeypatch, name, kind):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    (tmp_path / name).write_bytes(b"not empty")
    expected = (
        rf"{name}: reading {kind} needs SimpleITK: pip install 'attnunet\[medical\]' "
        rf"\(or pip install SimpleITK\)"
    )
    with pytest.raises(DataError, match=expected):
        read_image(tmp_path / name)
    with pytest.raises(DataError, match=r"out\.nrrd: writing NRRD needs SimpleITK"):
        write_mask(tmp_path / "out.nrrd", np.zeros((3, 3), np.uint8))
    assert not (tmp_path / "out.nrrd").exists()
    (tmp_path / "dicom").mkdir()
    with pytest.raises(DataError, match=r"dicom: reading DICOM needs SimpleITK"):
        read_image(tmp_path / "dicom")


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("a/scan.nii.gz", "scan.nii.gz"),
        ("a/scan.nii", "scan.nii"),
        ("scan.NRRD", "scan.nrrd"),
        ("scan.nhdr", "scan.nrrd"),
        ("scan.mha", "scan.mha"),
        ("scan.mhd", "scan.mhd"),
        ("cells.png", "cells.png"),
        ("photo.v2.jpeg", "photo.v2.png"),
        ("stack.tif", "stack.tif"),
        ("stack.tiff", "stack.tiff"),
        ("arr.npz", "arr.npy"),
        ("arr.npy", "arr.npy"),
    ],
)
def test_auto_format_follows_the_input(image, expected):
    assert prediction_name(image) == expected


def test_prediction_name_rules(tmp_path):
    (tmp_path / "series.v2").mkdir()
    assert prediction_name(tmp_path / "series.v2") == "series.v2.nii.gz"  # a DICOM folder
    assert prediction_name("case_0000.nii.gz", name="case") == "case.nii.gz"
    assert prediction_name("scan.nii.gz", ".NPY") == "scan.npy"
    assert prediction_name("scan.bmp", spatial_dims=3) == "scan.tif"
    with pytest.raises(DataError, match=r"scan\.bmp: cannot tell which format"):
        prediction_name("scan.bmp")
    out = write_prediction(tmp_path, "case_0000.npz", np.ones((3, 3), np.int64), name="case")
    assert out == tmp_path / "case.npy"


# ----------------------------------------------------------------------------- Geometry


def test_geometry_mismatch_says_what_differs():
    affine = ras_affine()
    base = Geometry((5, 6, 4), SPACING, affine, "NIfTI")
    assert base.mismatch(Geometry((5, 6, 4), SPACING, affine + 1e-4, "NRRD")) is None
    assert base.mismatch(Geometry((5, 6, 4), (0.7002, 0.8, 3.0), affine, "NIfTI")) is None
    assert base.mismatch(Geometry((5, 6, 3), SPACING, affine, "NIfTI")) == (
        "shape (5, 6, 4) vs (5, 6, 3)"
    )
    assert base.mismatch(Geometry((5, 6, 4), (0.7, 0.8, 2.5), affine, "NIfTI")) == (
        "spacing (0.7, 0.8, 3) mm vs (0.7, 0.8, 2.5) mm"
    )
    moved = affine.copy()
    moved[:3, 3] += (3.0, 4.0, 0.0)
    assert base.mismatch(Geometry((5, 6, 4), SPACING, moved, "NIfTI")) == (
        "affine: the origin (voxel 0) moves by 5 mm"
    )
    turned = affine.copy()
    turned[:3, :2] = turned[:3, 1::-1]
    message = base.mismatch(Geometry((5, 6, 4), SPACING, turned, "NIfTI"))
    assert message is not None and message.startswith("affine: the axis directions")
    # parts missing on either side are not compared
    assert base.mismatch(Geometry.plain((5, 6, 4), "PNG")) is None
    assert Geometry.plain((5, 6, 4)).mismatch(base) is None


def test_geometry_mismatch_tolerances_fit_each_part():
    spacing = (0.5, 0.5, 0.5)
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = (-120.0, 80.0, 450.0)  # far from the world's origin
    base = Geometry((5, 6, 4), spacing, affine, "NIfTI")

    def moved(shift=(0.0, 0.0, 0.0), turn=0.0, sizes=spacing):
        other = affine.copy()
        other[:3, 3] += shift
        other[0, 1] = turn * sizes[1]  # the second axis tilts towards the first world axis
        return Geometry((5, 6, 4), sizes, other, "NRRD")

    # origin: 0.05 x 0.5 mm = 0.025 mm apart at most
    assert base.mismatch(moved((0.0, 0.0, 1e-4))) is None
    assert base.mismatch(moved((0.0, 0.0, 0.02))) is None
    assert base.mismatch(moved((0.0, 0.0, 0.4))) == "affine: the origin (voxel 0) moves by 0.4 mm"
    assert base.mismatch(moved((0.0, 0.03, 0.0))) is not None
    # direction cosines: 1e-3 absolutely
    assert base.mismatch(moved(turn=5e-4)) is None
    message = base.mismatch(moved(turn=2e-3))
    assert message is not None and message.startswith("affine: the axis directions differ")
    # spacing: 1e-3 relatively (0.5004 passes, 0.5006 does not)
    assert base.mismatch(moved(sizes=(0.5004, 0.5, 0.5))) is None
    assert base.mismatch(moved(sizes=(0.5006, 0.5, 0.5))) == (
        "spacing (0.5, 0.5, 0.5) mm vs (0.5006, 0.5, 0.5) mm"
    )
    # the tolerance follows the smallest voxel size of either side
    coarse = Geometry((5, 6, 4), (2.0, 2.0, 2.0), np.diag([2.0, 2.0, 2.0, 1.0]), "NIfTI")
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[2, 3] = 0.09
    assert coarse.mismatch(Geometry((5, 6, 4), (2.0, 2.0, 2.0), shifted, "NRRD")) is None
    shifted[2, 3] = 0.11
    assert coarse.mismatch(Geometry((5, 6, 4), (2.0, 2.0, 2.0), shifted, "NRRD")) is not None


def test_geometry_equality_dict_and_validation():
    affine = ras_affine()
    a = Geometry((5, 6, 4), SPACING, affine, "NIfTI", header={"x": 1})
    b = Geometry((5, 6, 4), SPACING, affine.copy(), "NIfTI")
    assert a == b and hash(a) == hash(b) and a != Geometry((5, 6, 4), SPACING, None, "NIfTI")
    assert not a.affine.flags.writeable
    record = a.to_dict()
    assert record["shape"] == [5, 6, 4] and record["format"] == "NIfTI"
    np.testing.assert_allclose(record["affine"], affine, atol=1e-6)
    assert record["affine"][0][0] == round(affine[0, 0], 6)
    assert Geometry.plain((3, 3)).to_dict() == {
        "shape": [3, 3],
        "spacing": None,
        "affine": None,
        "format": "NumPy",
    }
    with pytest.raises(ValueError, match=r"2 values for 3 axes"):
        Geometry((5, 6, 4), (1.0, 1.0), None, "NRRD")
    with pytest.raises(ValueError, match=r"4x4"):
        Geometry((5, 6, 4), None, np.eye(3), "NRRD")


def test_plain_files_give_a_shape_only_geometry(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((1, 7, 8), np.float32))
    image, geometry = read_image(tmp_path / "v.npy", with_geometry=True)
    assert image.shape == (1, 7, 8)
    assert geometry == Geometry.plain((7, 8), "NumPy") and geometry.unit == "px"
    write_mask(tmp_path / "m.png", np.eye(4, dtype=np.uint8) * 21)
    labels, mask_geometry = read_mask(tmp_path / "m.png", with_geometry=True)
    assert mask_geometry == Geometry.plain((4, 4), "PNG") and labels[1, 1] == 21


def test_a_dicom_series_with_a_missing_slice_is_refused(tmp_path, sitk, capfd):
    volume = (np.arange(5 * 6 * 6).reshape(5, 6, 6) * 3).astype(np.int16)
    write_dicom_series(sitk, tmp_path / "series", volume)
    read_image(tmp_path / "series")  # complete: read
    (tmp_path / "series" / "2_3.dcm").unlink()  # the fourth slice of six
    with pytest.raises(
        DataError,
        match=r"series: the DICOM slices are not evenly spaced \(6 mm "
        r"between slices 3 and 4, 3 mm elsewhere\)",
    ):
        read_image(tmp_path / "series")
    assert "WARNING" not in capfd.readouterr().err  # ITK's own warning is not printed


def test_a_2d_nifti_slice_is_written_back_with_its_third_axis(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    affine = np.diag([0.5, 0.6, 2.0, 1.0])
    affine[:3, 3] = (1.0, 2.0, 3.0)
    source = nibabel.Nifti1Image(np.zeros((6, 5, 1), np.int16), affine)
    source.header.set_qform(affine, code=1)
    source.header.set_sform(affine, code=2)
    nibabel.save(source, tmp_path / "slice.nii.gz")
    image, geometry = read_image(tmp_path / "slice.nii.gz", with_geometry=True)
    assert image.shape == (1, 6, 5)  # read as 2D
    labels = np.arange(30).reshape(6, 5) % 3
    out = write_prediction(tmp_path / "pred", tmp_path / "slice.nii.gz", labels, geometry=geometry)
    written = nibabel.load(out)
    assert written.shape == (6, 5, 1)
    np.testing.assert_allclose(written.affine, affine)
    assert int(written.header["qform_code"]) == 1 and int(written.header["sform_code"]) == 2
    np.testing.assert_array_equal(np.asanyarray(written.dataobj)[..., 0], labels)
