"""Writing label maps: :func:`write_mask`, :func:`write_prediction` and :func:`prediction_name`.

The extension of the file picks the format (PNG, TIFF, ``.npy``, NIfTI, NRRD or
MetaImage); labels are stored in the smallest unsigned integer type that holds them, and
an existing file is replaced only when asked. :func:`attnunet.data.read_mask` reads the
files back. Given the :class:`~attnunet.data.geometry.Geometry` of the image the labels
belong to, NIfTI, NRRD and MetaImage files keep its spacing, origin and orientation (a
NIfTI image's own header is written back), so that the labels overlay the image in any
viewer.

Examples:
    >>> import tempfile
    >>> from attnunet.data import read_mask
    >>> path = write_mask(Path(tempfile.mkdtemp()) / "cells.png", np.array([[0, 1], [1, 2]]))
    >>> read_mask(path).tolist()
    [[0, 1], [1, 2]]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from attnunet.data.geometry import Geometry, _itk_from_affine
from attnunet.data.readers import (
    _FORMATS,
    DataError,
    _extension,
    _optional,
    _sitk,
    _stem,
    read_geometry,
)

__all__ = ["prediction_name", "write_mask", "write_prediction"]

_ITK_EXTENSIONS = (".nrrd", ".nhdr", ".mha", ".mhd")
_WRITE_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".nii", ".nii.gz", *_ITK_EXTENSIONS)
_COMPRESSED = (".nrrd", ".mha")
_MEDICAL = (
    ".nii",
    ".nii.gz",
    ".nrrd",
    ".nhdr",
    ".mha",
    ".mhd",
)  # inputs with geometry  # single-file formats written with compression

# fmt="auto": the extension of the prediction for each input extension
_AUTO_EXTENSIONS = {
    ".nii": "nii",
    ".nii.gz": "nii.gz",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
    ".mha": "mha",
    ".mhd": "mhd",
    ".png": "png",
    ".jpg": "png",
    ".jpeg": "png",
    ".tif": "tif",
    ".tiff": "tiff",
    ".npy": "npy",
    ".npz": "npy",
}


def _as_labels(mask: np.ndarray | torch.Tensor) -> np.ndarray:
    array = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
    if array.dtype == np.bool_:
        return array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            f"write_mask takes integer labels, got {array.dtype}; convert first "
            f"(e.g. logits.argmax(1) or (probability > 0.5))"
        )
    if array.size and array.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {int(array.min())}")
    top = int(array.max()) if array.size else 0
    for dtype in (np.uint8, np.uint16, np.uint32):
        if top <= np.iinfo(dtype).max:
            return array.astype(dtype)
    raise ValueError(f"label {top} does not fit in 32 bits")


def _write_tiff(handle: Any, labels: np.ndarray) -> None:
    tifffile = _optional("tifffile")
    if tifffile is not None:
        tifffile.imwrite(handle, labels, photometric="minisblack")
        return
    from PIL import Image

    if labels.dtype == np.uint32:
        if labels.max() > np.iinfo(np.int32).max:
            raise ValueError("labels above 2**31 - 1 need tifffile (pip install tifffile)")
        labels = labels.astype(np.int32)
    pages = [Image.fromarray(page) for page in (labels[None] if labels.ndim == 2 else labels)]
    pages[0].save(handle, format="TIFF", save_all=True, append_images=pages[1:])


def _header_fits(header: Any, geometry: Geometry, labels: np.ndarray) -> bool:
    """Whether a NIfTI ``header`` describes the voxel grid of ``labels`` (and ``geometry``)."""
    if geometry.affine is None or not np.allclose(header.get_best_affine(), geometry.affine):
        return False
    shape = tuple(int(n) for n in header.get_data_shape()[:3])
    spatial = tuple(n for i, n in enumerate(shape) if i < 2 or n != 1)
    return spatial == labels.shape


def _nifti_image(nibabel: Any, labels: np.ndarray, geometry: Geometry | None) -> Any:
    """The NIfTI image to write: the source header, else the geometry's affine, else eye(4)."""
    header = None if geometry is None else geometry.header
    if (
        geometry is not None
        and isinstance(header, nibabel.Nifti1Header)
        and _header_fits(header, geometry, labels)
    ):
        kind = nibabel.Nifti2Image if isinstance(header, nibabel.Nifti2Header) else None
        stored = tuple(int(n) for n in header.get_data_shape()[:3])
        if len(stored) == 3 and labels.ndim == 2:  # a 2D image stored as (X, Y, 1) stays so
            labels = labels.reshape(stored)
        image = (kind or nibabel.Nifti1Image)(labels, header.get_best_affine(), header=header)
        image.set_data_dtype(labels.dtype)
        image.header.set_slope_inter(None, None)  # labels are stored unscaled
        image.header["cal_min"] = image.header["cal_max"] = 0  # the image's display range
        return image
    if geometry is not None and geometry.affine is not None:
        image = nibabel.Nifti1Image(labels, geometry.affine)
        image.set_sform(geometry.affine, code=1)
        image.set_qform(geometry.affine, code=1)
        image.header.set_xyzt_units("mm")
        return image
    return nibabel.Nifti1Image(labels, np.eye(4))


def _write_nifti(
    handle: IO[bytes], labels: np.ndarray, gzipped: bool, path: Path, geometry: Geometry | None
) -> None:
    import gzip

    nibabel = _optional("nibabel")
    if nibabel is None:
        raise DataError(f"{path}: writing NIfTI files needs nibabel: pip install nibabel")
    data = _nifti_image(nibabel, labels, geometry).to_bytes()
    handle.write(gzip.compress(data) if gzipped else data)


def _itk_frame(
    geometry: Geometry | None, labels: np.ndarray
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]] | None:
    """``(origin, spacing, direction)`` in ITK order for ``labels``, or ``None``."""
    if geometry is None:
        return None
    header = geometry.header
    if isinstance(header, dict) and len(header.get("spacing", ())) == labels.ndim:
        return tuple(header["origin"]), tuple(header["spacing"]), tuple(header["direction"])
    if geometry.affine is not None:
        return _itk_from_affine(geometry.affine, labels.ndim)
    return None


def _write_itk(path: Path, labels: np.ndarray, geometry: Geometry | None) -> None:
    ext = _extension(path)
    sitk = _sitk(path, _FORMATS[ext], "writing")
    # the labels are in ITK index order (x, y, z); GetImageFromArray takes (z, y, x)
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.transpose()))
    frame = _itk_frame(geometry, labels)
    if frame is not None:
        origin, spacing, direction = frame
        image.SetOrigin(origin)
        image.SetSpacing(spacing)
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path), useCompression=ext in _COMPRESSED)


def _data_file(path: Path) -> Path | None:
    """The detached data file SimpleITK writes next to a ``.nhdr`` or ``.mhd`` header."""
    if _extension(path) in (".nhdr", ".mhd"):
        return path.with_name(_stem(path) + ".raw")
    return None


def _check_labels(path: Path, ext: str, labels: np.ndarray, geometry: Geometry | None) -> None:
    if labels.ndim not in (2, 3):
        raise ValueError(f"{path}: a mask must be 2D or 3D, got shape {labels.shape}")
    if ext == ".png" and labels.ndim != 2:
        raise DataError(f"{path}: PNG holds 2D images; write 3D masks as .tif, .npy or .nii.gz")
    if ext == ".png" and labels.dtype == np.uint32:
        raise DataError(f"{path}: labels above 65535 do not fit in PNG; use .tif or .npy")
    if geometry is not None and geometry.shape != labels.shape:
        raise ValueError(
            f"{path}: the labels have shape {labels.shape} but the geometry describes "
            f"{geometry.shape}; pass the geometry of the image these labels belong to"
        )
    if ext in _ITK_EXTENSIONS:
        _sitk(path, _FORMATS[ext], "writing")  # before creating the file


def _open(path: Path, overwrite: bool) -> IO[bytes]:
    data_file = _data_file(path)
    try:
        if data_file is not None and data_file.exists() and not overwrite:
            raise FileExistsError
        return open(path, "w+b" if overwrite else "x+b")
    except FileExistsError:
        existing = path if path.exists() else data_file
        raise FileExistsError(
            f"{existing} already exists; pass overwrite=True (--overwrite) to replace it, or "
            f"write somewhere else"
        ) from None


def _write(handle: IO[bytes], path: Path, labels: np.ndarray, geometry: Geometry | None) -> None:
    ext = _extension(path)
    if ext == ".png":
        from PIL import Image

        Image.fromarray(labels).save(handle, format="PNG")
    elif ext in (".tif", ".tiff"):
        _write_tiff(handle, labels)
    elif ext == ".npy":
        np.save(handle, labels)
    elif ext in (".nii", ".nii.gz"):
        _write_nifti(handle, labels, ext == ".nii.gz", path, geometry)
    else:
        handle.close()  # SimpleITK writes by name
        _write_itk(path, labels, geometry)


def write_mask(
    path: str | os.PathLike[str],
    mask: np.ndarray | torch.Tensor,
    *,
    overwrite: bool = False,
    geometry: Geometry | None = None,
) -> Path:
    """Write a label map, refusing to replace an existing file unless ``overwrite``.

    The extension picks the format: ``.png`` (2D only), ``.tif``/``.tiff`` (2D, or 3D as
    one page per slice), ``.npy``, ``.nii``/``.nii.gz`` (needs nibabel), or ``.nrrd``,
    ``.nhdr``, ``.mha``, ``.mhd`` (need SimpleITK; ``.nrrd`` and ``.mha`` are compressed,
    ``.nhdr`` and ``.mhd`` put the voxels in a ``.raw`` file next to the header). Labels
    are stored as ``uint8`` when they are all below 256, else ``uint16`` (PNG's limit),
    else ``uint32``. Missing parent folders are created. Reading the file back with
    :func:`read_mask` gives the same labels, except that a mask holding only 0 and 255
    (or 0 and 65535) reads back as 0 and 1 (unless ``keep_values=True``).

    The ``geometry`` (that of the image the labels belong to, from
    :func:`~attnunet.data.read_image` with ``with_geometry=True``) places the labels in
    the world:

    * NIfTI, when ``geometry.header`` is a nibabel NIfTI header of this voxel grid: that
      header is written back (the same affine, qform and sform with their codes, pixdim
      and units), with the label data type, no intensity scaling (``scl_slope``,
      ``scl_inter`` unset) and no display range (``cal_min = cal_max = 0``). Otherwise
      ``geometry.affine`` becomes both the sform and the qform, with code 1
      (``NIFTI_XFORM_SCANNER_ANAT``: scanner-based anatomical coordinates) and units of
      mm. Without a geometry (or an affine), the affine is the identity, with sform code
      2 (aligned) and qform code 0, as nibabel writes it.
    * NRRD and MetaImage: the labels' axes (ITK's ``x, y, z``, as the readers give
      them) are reversed for ``SimpleITK.GetImageFromArray``. Spacing, origin and
      direction come from ``geometry.header`` when it is a SimpleITK header dict of the
      labels' dimension, else from ``geometry.affine`` (a 2D label map takes the affine's
      in-plane part); without either, SimpleITK's defaults (unit spacing, origin 0,
      identity direction). The source's metadata dictionary is not copied (it describes
      the image, not the labels).
    * PNG, TIFF and ``.npy`` store no geometry; it is ignored.

    Args:
        path: the file to write.
        mask: integer or bool labels, shape ``(*spatial)``, NumPy or torch, in the axis
            order the readers return (the image's order).
        overwrite: replace ``path`` (and a ``.nhdr``/``.mhd`` data file) if it exists.
        geometry: the geometry of the labels' voxel grid; its shape must be the mask's.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: when ``path`` exists and ``overwrite`` is false.
        ValueError: for non-integer or negative labels, a shape the format cannot hold,
            or a geometry of another shape (:class:`DataError` for an extension that
            cannot be written, or a missing nibabel or SimpleITK).
    """
    path = Path(path)
    ext = _extension(path)
    if ext not in _WRITE_EXTENSIONS:
        raise DataError(
            f"{path}: cannot write masks as {ext or 'a file without extension'}; use one of "
            f"{', '.join(_WRITE_EXTENSIONS)}"
        )
    labels = _as_labels(mask)
    _check_labels(path, ext, labels, geometry)
    path.parent.mkdir(parents=True, exist_ok=True)
    data_file = _data_file(path)
    data_file_existed = data_file is not None and data_file.exists()
    handle = _open(path, overwrite)
    try:
        with handle:
            _write(handle, path, labels, geometry)
    except BaseException:
        path.unlink(missing_ok=True)
        if data_file is not None and not data_file_existed:
            data_file.unlink(missing_ok=True)
        raise
    return path


def _auto_extension(path: Path, spatial_dims: int | None) -> str:
    if path.is_dir():
        return "nii.gz"  # a DICOM series
    ext = _AUTO_EXTENSIONS.get(_extension(path))
    if ext is not None:
        return ext
    if spatial_dims is None:
        raise DataError(
            f"{path}: cannot tell which format to write its labels in (its extension is not "
            f"one of {', '.join(_AUTO_EXTENSIONS)}); pass fmt, e.g. 'nii.gz', 'tif' or 'png'"
        )
    return "png" if spatial_dims == 2 else "tif"


def prediction_name(
    image_path: str | os.PathLike[str],
    fmt: str = "auto",
    *,
    name: str | None = None,
    spatial_dims: int | None = None,
) -> str:
    """The file name :func:`write_prediction` gives the labels predicted for ``image_path``.

    ``fmt="auto"`` keeps the input's format where it can hold labels: NIfTI gives the
    same extension (``.nii`` or ``.nii.gz``), NRRD ``.nrrd`` (also for ``.nhdr``),
    MetaImage ``.mha`` (``.mhd`` for ``.mhd``), a DICOM folder ``.nii.gz``, PNG and JPEG
    ``.png``, TIFF ``.tif`` (``.tiff`` for ``.tiff``), ``.npy`` and ``.npz`` ``.npy``.
    Any other input gets PNG for 2D and TIFF for 3D labels, by ``spatial_dims``.

    Args:
        image_path: the image file (or DICOM folder); it need not exist.
        fmt: ``"auto"`` or the extension to write (``"png"``, ``"tif"``, ``"npy"``,
            ``"nii.gz"``, ``"nrrd"``, ...).
        name: the name without extension; default: the image's (``scan.nii.gz`` gives
            ``scan``, a DICOM folder its folder name). Pass it to drop a suffix, e.g.
            nnU-Net's channel suffix ``_0000``.
        spatial_dims: 2 or 3, for ``fmt="auto"`` with an input of another format.

    Returns:
        The file name.

    Raises:
        DataError: ``fmt="auto"`` for an input of another format and no ``spatial_dims``.

    Examples:
        >>> prediction_name("scans/case01.nii.gz"), prediction_name("photos/slide.jpg")
        ('case01.nii.gz', 'slide.png')
        >>> prediction_name("nnunet/case_0000.nrrd", name="case"), prediction_name("a.mhd", "npy")
        ('case.nrrd', 'a.npy')
    """
    path = Path(image_path)
    ext = fmt.lower().lstrip(".")
    if ext == "auto":
        ext = _auto_extension(path, spatial_dims)
    if name is None:
        name = path.name if path.is_dir() else _stem(path)
    return f"{name}.{ext}"


def _input_geometry(image_path: Path, target: Path, shape: tuple[int, ...]) -> Geometry | None:
    """The geometry of ``image_path`` when it is a medical image that exists and the
    ``target`` format stores geometry; ``None`` otherwise.

    Raises:
        ValueError: when the image's grid is not the labels' (naming both files).
    """
    if _extension(target) not in (".nii", ".nii.gz", *_ITK_EXTENSIONS):
        return None
    if not (image_path.is_dir() or (image_path.is_file() and _extension(image_path) in _MEDICAL)):
        return None
    try:
        geometry = read_geometry(image_path, len(shape) if len(shape) in (2, 3) else None)
    except DataError as error:
        raise ValueError(
            f"{image_path}: cannot give its geometry to the labels of shape {shape} "
            f"for {target} ({error}); pass geometry= (from read_image(..., "
            f"with_geometry=True)) of the image the labels belong to"
        ) from error
    if geometry.shape != shape:
        raise ValueError(
            f"{image_path}: the image has shape {geometry.shape} but the labels written to "
            f"{target} have shape {shape}; pass geometry= (from read_image(..., "
            f"with_geometry=True)) of the image the labels belong to"
        )
    return geometry


def write_prediction(
    out_dir: str | os.PathLike[str],
    image_path: str | os.PathLike[str],
    labels: np.ndarray | torch.Tensor,
    *,
    fmt: str = "auto",
    overwrite: bool = False,
    geometry: Geometry | None = None,
    name: str | None = None,
) -> Path:
    """Write the label map predicted for ``image_path`` into ``out_dir``, named after it.

    The file is ``out_dir / prediction_name(image_path, fmt, name=name)``:
    ``fmt="auto"`` writes the input's format (NIfTI stays NIfTI, NRRD NRRD, a DICOM
    series becomes ``.nii.gz``, JPEG becomes PNG, ``.npz`` becomes ``.npy``; see
    :func:`prediction_name`). The labels keep the image's place in the world: pass the
    image's ``geometry`` (from :func:`~attnunet.data.read_image` with
    ``with_geometry=True``); without it, when ``image_path`` exists and is a NIfTI,
    NRRD, MetaImage file or a DICOM folder and the file written stores geometry (NIfTI,
    NRRD, MetaImage), its geometry is read with :func:`~attnunet.data.read_geometry`
    (``spatial_dims`` = the labels' dimensions), so that a medical input never gets an
    identity affine by accident. See :func:`write_mask` for formats, geometry and the
    overwrite rule.

    Raises:
        ValueError: as :func:`write_mask`; also when ``geometry`` is not given and the
            geometry read from ``image_path`` has another shape than ``labels`` (the
            message names the file).

    Examples:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> write_prediction(out, "scans/case01.npz", np.zeros((4, 5, 6), np.int64)).name
        'case01.npy'
        >>> write_prediction(out, "photos/slide.jpg", np.zeros((5, 6), np.int64)).name
        'slide.png'
    """
    spatial_dims = int(np.ndim(labels)) if isinstance(labels, np.ndarray) else labels.dim()
    target = Path(out_dir) / prediction_name(image_path, fmt, name=name, spatial_dims=spatial_dims)
    if geometry is None:
        geometry = _input_geometry(Path(image_path), target, tuple(labels.shape))
    return write_mask(target, labels, overwrite=overwrite, geometry=geometry)
