"""Reading images and masks from files: formats, channel axes and label values.

Supported files (the extension decides, case-insensitively):

=====================  =====================================================================
``.png``               8- or 16-bit grayscale, RGB (alpha dropped), palette; read with Pillow;
                       the array is ``(rows, columns)``, no geometry
``.jpg``, ``.jpeg``    grayscale or colour images (JPEG is lossy, so never masks)
``.tif``, ``.tiff``    one page: a 2D image; several pages: a 3D volume ``(Z, Y, X)`` (page,
                       row, column; no geometry); read with ``tifffile`` when it is
                       installed, else with Pillow
``.npy``, ``.npz``     NumPy arrays, axes as stored; in a ``.npz``, the image is the array
                       named ``image`` (else the first array) and the mask the one named
                       ``mask``, ``masks``, ``labels``, ``label`` or ``seg`` (else the only
                       array)
``.nii``, ``.nii.gz``  NIfTI, only when ``nibabel`` is installed (``pip install nibabel``);
                       the array has nibabel's axis order ``(i, j, k)``
``.nrrd``, ``.nhdr``   NRRD, only when ``SimpleITK`` is installed (``pip install
                       'attnunet[medical]'``); axes ``(i, j, k)`` as NIfTI (ITK's
                       ``(x, y, z)``). A ``.nhdr`` header names a detached data file,
                       which must lie where the header says (usually next to it)
``.mha``, ``.mhd``     MetaImage, with SimpleITK, axes ``(i, j, k)``; a ``.mhd`` header
                       has a detached data file (``.raw``, ``.zraw``) like ``.nhdr``
a folder               a DICOM series (the folder holds the slices of one series), with
                       SimpleITK, axes ``(i, j, k)`` (``k``: the slice); a folder with
                       several series is refused
=====================  =====================================================================

**Axis order.** Arrays of NIfTI, NRRD, MetaImage and DICOM files have the same axis
order: the file's index order ``(i, j, k)``, which ITK calls ``(x, y, z)``; the same scan
in two formats gives the same array. (SimpleITK's ``GetArrayFromImage`` gives
``(z, y, x)``; the readers reverse it, and the writers reverse it back.) A 3D file with a
single slice (``k`` of length 1) is read as a 2D image ``(i, j)``; with
``spatial_dims=3``, NRRD, MetaImage and DICOM files keep it as a volume of one slice.

**Geometry.** NIfTI, NRRD, MetaImage and DICOM files say where their voxels lie: pass
``with_geometry=True`` to :func:`read_image` or :func:`read_mask` to get the array with
its :class:`~attnunet.data.geometry.Geometry` (spacing, RAS affine in the array's axis
order, and the header a writer needs), or call :func:`read_geometry` to read only that.
Other files give a geometry with only a shape. SimpleITK images with several components
per voxel (vector images) have their components as channels, and a 4D SimpleITK image
has its fourth axis (ITK's ``t``) as channels.

**Images** come back as ``float32`` arrays ``(C, *spatial)`` with the stored intensities
(:func:`normalise_image` maps them to ``[0, 1]``). Files that say which axis holds the
channels are read that way: colour PNG/JPEG/TIFF give ``C = 3`` (an alpha channel is
dropped), a TIFF axis labelled ``C`` or ``S`` is the channel axis, and a 4D NIfTI has its
channels last. Plain arrays (``.npy``, ``.npz``, TIFF without such an axis) follow one
rule, decided by ``spatial_dims``:

* ``spatial_dims`` given (2 or 3): an array with ``spatial_dims`` axes is one channel; an
  array with ``spatial_dims + 1`` axes has its channels first; extra leading axes of
  length 1 are dropped. So with ``spatial_dims=2`` a ``(3, 64, 64)`` array is a 3-channel
  2D image, and with ``spatial_dims=3`` it is a one-channel volume of 3 slices.
* ``spatial_dims=None``: 2 axes are a one-channel 2D image; 3 axes are a one-channel 3D
  volume ``(Z, Y, X)``, except that a leading axis of length 1 is taken as the channel
  (``(1, Y, X)`` is 2D); 4 axes are a channels-first volume ``(C, Z, Y, X)``.

**Masks** come back as ``int64`` label maps ``(*spatial)``: 0 is background, 1, 2, ... are
classes (or instances). Values must be whole numbers >= 0; a float mask holding fractions
is refused. One rule converts binary masks saved for viewing: when the values present are
exactly ``{0, 255}`` or exactly ``{0, 65535}``, the non-zero value becomes 1 (unless
``keep_values=True``, for masks where 255 is an ignore label). Any other set of values is
kept as stored. A colour mask is accepted only when its channels are equal; a 4D NIfTI or
SimpleITK mask with several volumes (or components) is refused.

Every problem with a file raises :class:`DataError` (a :class:`ValueError`) whose message
names the file and says what would work.

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from attnunet.data import write_mask
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = write_mask(folder / "cells.png", np.array([[0, 1], [1, 2]]))
    >>> np.save(folder / "cells_image.npy", np.zeros((2, 2), np.uint16))
    >>> read_mask(folder / "cells.png").tolist(), read_image(folder / "cells_image.npy").shape
    ([[0, 1], [1, 2]], (1, 2, 2))
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from pathlib import Path
from typing import Any, Literal, NamedTuple, overload

import numpy as np

from attnunet.data.geometry import Geometry, _itk_affine

__all__ = [
    "HIGH_PERCENTILE",
    "LOW_PERCENTILE",
    "SUPPORTED_EXTENSIONS",
    "DataError",
    "normalise_image",
    "read_geometry",
    "read_image",
    "read_mask",
]

_FORMATS: dict[str, str] = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".npy": "NumPy",
    ".npz": "NumPy",
    ".nii": "NIfTI",
    ".nii.gz": "NIfTI",
    ".nrrd": "NRRD",
    ".nhdr": "NRRD",
    ".mha": "MetaImage",
    ".mhd": "MetaImage",
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)
"""File extensions that :func:`read_image`, :func:`read_mask` and :func:`find_pairs` accept
(the readers also take a folder holding a DICOM series)."""

_ITK_FORMATS = ("NRRD", "MetaImage", "DICOM")
_DETACHED = (".nhdr", ".mhd")  # headers whose voxels lie in a separate data file

LOW_PERCENTILE = 1.0
"""Intensity percentile that :func:`normalise_image` maps to 0 (the bundled samples too)."""
HIGH_PERCENTILE = 99.8
"""Intensity percentile that :func:`normalise_image` maps to 1 (the bundled samples too)."""

_IMAGE_KEYS = ("image",)
_MASK_KEYS = ("mask", "masks", "labels", "label", "seg")


class DataError(ValueError):
    """A file or folder that cannot be used; the message names it and says what would work."""


# ----------------------------------------------------------------------------- files


def _extension(path: Path) -> str:
    """The lower-case extension, with ``.nii.gz`` as one extension."""
    name = path.name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def _stem(path: Path) -> str:
    """The file name without its extension (``scan.nii.gz`` -> ``scan``)."""
    ext = _extension(path)
    return path.name[: len(path.name) - len(ext)] if ext else path.name


def _supported_list() -> str:
    return ", ".join(SUPPORTED_EXTENSIONS)


def _format(path: Path) -> str:
    ext = _extension(path)
    if ext not in _FORMATS:
        what = f"extension {ext!r}" if ext else "no extension"
        raise DataError(
            f"{path}: unsupported file type ({what}); supported: {_supported_list()}. "
            f"Convert the file to one of these (PNG or TIFF for images and masks, "
            f"multi-page TIFF, .npy or NIfTI for 3D volumes)"
        )
    return _FORMATS[ext]


def _kind(path: Path) -> str:
    """The format of ``path``: ``"DICOM"`` for a folder, else by its extension."""
    return "DICOM" if path.is_dir() else _format(path)


def _check_file(path: Path, kind: str = "") -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
        if kind == "DICOM":
            return
        raise DataError(f"{path} is a folder; give an image file ({_supported_list()})")
    if path.stat().st_size == 0:
        raise DataError(
            f"{path} is empty (0 bytes): it was not written or copied completely; "
            f"export or copy it again"
        )


def _optional(module: str) -> Any:
    """The module, or ``None`` when it is not installed."""
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def _sitk(path: Path, kind: str, action: str = "reading") -> Any:
    """The SimpleITK module, or a :class:`DataError` saying how to install it."""
    sitk = _optional("SimpleITK")
    if sitk is None:
        folder = " (a folder is read as a DICOM series)" if kind == "DICOM" else ""
        raise DataError(
            f"{path}: {action} {kind} needs SimpleITK: pip install 'attnunet[medical]' "
            f"(or pip install SimpleITK){folder}"
        )
    return sitk


def _check_spatial_dims(spatial_dims: int | None) -> int | None:
    if spatial_dims is not None and spatial_dims not in (2, 3):
        raise ValueError(f"spatial_dims must be 2, 3 or None, got {spatial_dims}")
    return spatial_dims


# ----------------------------------------------------------------------------- raw reading


def _pillow_frame(frame: Any, role: str) -> tuple[np.ndarray, bool]:
    """One Pillow frame as ``(array, has_channels)``; channels, when present, are last."""
    mode = frame.mode
    if role == "mask" and mode in ("P", "PA"):
        # Palette masks store class indices; the palette only colours them for viewing.
        array = np.asarray(frame)
        return (array[..., 0] if array.ndim == 3 else array), False
    if mode == "1" or mode in ("L", "I", "F") or mode.startswith("I;16"):
        return np.asarray(frame), False
    if mode in ("LA", "La"):
        return np.asarray(frame)[..., 0], False
    if mode == "RGB":
        return np.asarray(frame), True
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(frame)[..., :3], True
    return np.asarray(frame.convert("RGB")), True


def _read_pillow(path: Path, role: str, pages: bool = False) -> tuple[np.ndarray, int | None]:
    """Read with Pillow; ``pages``: every page of a multi-page file, as slices."""
    from PIL import Image, ImageSequence

    with Image.open(path) as image:
        if pages:
            frames = [_pillow_frame(frame, role) for frame in ImageSequence.Iterator(image)]
        else:
            frames = [_pillow_frame(image, role)]
    arrays = [np.array(a) for a, _ in frames]
    has_channels = frames[0][1]
    if any(c != has_channels for _, c in frames) or any(a.shape != arrays[0].shape for a in arrays):
        raise DataError(
            f"{path}: its pages differ in size or colour mode; a multi-page file must be "
            f"a stack of equal pages (one per slice)"
        )
    array = arrays[0] if len(arrays) == 1 else np.stack(arrays)
    return array, (array.ndim - 1 if has_channels else None)


def _read_tiff(path: Path, role: str) -> tuple[np.ndarray, int | None]:
    tifffile = _optional("tifffile")
    if tifffile is None:
        return _read_pillow(path, role, pages=True)
    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        array = np.asarray(series.asarray())
        axes = str(series.axes)
    channel_axes = [i for i, a in enumerate(axes) if a in "CS"]
    if len(channel_axes) > 1:
        raise DataError(
            f"{path}: has axes {axes!r} with more than one channel axis (C and S); "
            f"save it with a single channel axis"
        )
    if not channel_axes:
        return array, None
    axis = channel_axes[0]
    if axes[axis] == "S" and array.shape[axis] == 4:
        array = np.take(array, [0, 1, 2], axis=axis)  # RGBA: drop alpha
    return array, axis


def _read_numpy(path: Path, role: str) -> tuple[np.ndarray, int | None]:
    if _extension(path) == ".npy":
        return np.load(path, allow_pickle=False), None
    with np.load(path, allow_pickle=False) as archive:
        keys = list(archive.files)
        if not keys:
            raise DataError(f"{path}: holds no arrays; save the {role} with np.savez")
        preferred = _IMAGE_KEYS if role == "image" else _MASK_KEYS
        key = next((k for k in preferred if k in keys), None)
        if key is None:
            if role == "image" or len(keys) == 1:
                key = keys[0]
            else:
                raise DataError(
                    f"{path}: holds arrays {keys} and none is named "
                    f"{' or '.join(map(repr, _MASK_KEYS))}; store the mask under 'mask'"
                )
        return np.asarray(archive[key]), None


def _npz_with_mask(path: Path) -> bool:
    """Whether ``path`` is a ``.npz`` holding both an image and a mask array."""
    if _extension(path) != ".npz" or path.stat().st_size == 0:
        return False
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = set(archive.files)
    except Exception:
        return False
    return bool(keys & set(_IMAGE_KEYS)) and bool(keys & set(_MASK_KEYS))


class _Raw(NamedTuple):
    """A file's array as stored, its channel axis (``None``: unknown) and its geometry.

    The geometry describes the array's axes other than ``channel_axis`` (its affine's
    first columns are those axes, in order).
    """

    array: np.ndarray
    channel_axis: int | None
    geometry: Geometry


def _shape_only(shape: tuple[int, ...]) -> np.ndarray:
    """A read-only array of ``shape`` that takes no memory (for header-only reading)."""
    return np.broadcast_to(np.zeros((), np.float32), shape)


def _volumes_error(path: Path, count: int, shape: tuple[int, ...], what: str) -> DataError:
    return DataError(
        f"{path}: a mask with {count} {what} (shape {shape}); a mask is one label map "
        f"(0 = background, 1, 2, ... = classes): save each {what[:-1]} as its own file, "
        f"or keep only the one you mean"
    )


def _nibabel(path: Path) -> Any:
    nibabel = _optional("nibabel")
    if nibabel is None:
        raise DataError(
            f"{path}: reading NIfTI files needs the nibabel package: pip install nibabel "
            f"(or convert the file to .npy or a multi-page TIFF)"
        )
    return nibabel


def _nifti_layout(shape: tuple[int, ...], spatial_dims: int | None) -> tuple[list[int], int | None]:
    """The axes to keep and the channel axis (of the kept ones) of a NIfTI array."""
    # NIfTI pads 2D images with a length-1 third axis, and keeps time/channels after the
    # spatial axes: drop length-1 axes after the first two, then channels are last.
    keep = [i for i, n in enumerate(shape) if i < 2 or n != 1]
    if len(keep) == 4 or (len(keep) == 3 and spatial_dims == 2):
        return keep, len(keep) - 1
    return keep, None


def _nifti_geometry(image: Any, keep: list[int], channel_axis: int | None) -> Geometry:
    """The geometry of the kept, non-channel axes of a NIfTI image."""
    header = image.header
    full_shape = header.get_data_shape()
    axes = keep if channel_axis is None else keep[:channel_axis] + keep[channel_axis + 1 :]
    shape = tuple(int(full_shape[i]) for i in axes)
    if not axes or max(axes) > 2:  # a non-spatial axis (time) is a spatial one here
        return Geometry(shape, None, None, "NIfTI", header)
    zooms = header.get_zooms()
    order = [*axes, *(i for i in range(3) if i not in axes), 3]
    spacing = tuple(float(zooms[i]) for i in axes)
    return Geometry(shape, spacing, np.asarray(image.affine)[:, order], "NIfTI", header)


def _read_nifti(path: Path, role: str, spatial_dims: int | None, header_only: bool) -> _Raw:
    image = _nibabel(path).load(str(path))
    shape = tuple(int(n) for n in image.header.get_data_shape())
    keep, channel_axis = _nifti_layout(shape, spatial_dims)
    kept = tuple(shape[i] for i in keep)
    if role == "mask" and len(kept) == 4 and kept[3] > 1:
        raise _volumes_error(path, kept[3], shape, "volumes")
    array = _shape_only(kept) if header_only else np.asanyarray(image.dataobj).reshape(kept)
    return _Raw(array, channel_axis, _nifti_geometry(image, keep, channel_axis))


def _dicom_files(sitk: Any, path: Path) -> list[str]:
    """The files of the one DICOM series in the folder ``path``, in slice order."""
    series = list(sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(path)))
    if not series:
        raise DataError(
            f"{path} is a folder without a DICOM series; give an image file "
            f"({_supported_list()}) or a folder holding the slices of one DICOM series"
        )
    if len(series) > 1:
        raise DataError(
            f"{path}: holds {len(series)} DICOM series ({', '.join(series)}); a folder must "
            f"hold one series: move each series into a folder of its own"
        )
    return list(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(path), series[0]))


def _check_slices(reader: Any, count: int, image: Any, path: Path) -> None:
    """Refuse a DICOM series whose slices are not evenly spaced (missing or extra slices):
    read as one volume, its grid would be wrong."""
    if count < 3:
        return
    try:
        positions = np.array(
            [
                [float(v) for v in reader.GetMetaData(i, "0020|0032").split("\\")]
                for i in range(count)
            ]
        )
    except (RuntimeError, ValueError):  # no ImagePositionPatient: nothing to check
        return
    normal = np.asarray(image.GetDirection(), np.float64).reshape(3, 3)[:, 2]
    steps = np.diff(positions @ normal)
    typical = float(np.median(np.abs(steps)))
    uneven = np.abs(np.abs(steps) - typical) > 0.01 * typical + 1e-3
    if uneven.any():
        first = int(np.argmax(uneven))
        raise DataError(
            f"{path}: the DICOM slices are not evenly spaced ({abs(steps[first]):.4g} mm "
            f"between slices {first + 1} and {first + 2}, {typical:.4g} mm elsewhere): "
            f"slices are missing or extra; complete the series, or convert it to NIfTI with "
            f"the spacing it really has"
        )


def _metadata(source: Any, *index: int) -> dict[str, str]:
    return {key: source.GetMetaData(*index, key) for key in source.GetMetaDataKeys(*index)}


class _ItkLayout(NamedTuple):
    """How a SimpleITK image becomes an array in ITK index order ``(x, y, z)``.

    ``order`` transposes ``GetArrayFromImage``'s result (spatial axes reversed, the
    channel axis kept where it is); ``shape`` is the array's shape after that and after
    dropping a single slice (``flat``: a 3D image with one ``z`` slice read as 2D).
    """

    shape: tuple[int, ...]
    channel_axis: int | None
    order: tuple[int, ...]
    flat: bool


def _itk_layout(size: tuple[int, ...], components: int, spatial_dims: int | None) -> _ItkLayout:
    """The array layout of an ITK image of ``size`` (ITK order) with ``components``."""
    dim = len(size)
    n = min(dim, 3)
    if components > 1:  # GetArrayFromImage: (*reversed(size), components)
        order, channel_axis = (*reversed(range(dim)), dim), dim
        shape = (*size, components)
    elif dim == 4:  # GetArrayFromImage: (t, z, y, x); t is the channel axis
        order, channel_axis = (0, 3, 2, 1), 0
        shape = (size[3], *size[:3])
    else:
        order, channel_axis = tuple(reversed(range(dim))), None
        shape = size
    flat = n == 3 and size[2] == 1 and spatial_dims != 3
    if flat:  # one z slice: a 2D image, as NIfTI's (i, j, 1) is (unless 3D is asked for)
        z = 2 if channel_axis != 0 else 3
        shape = shape[:z] + shape[z + 1 :]
        channel_axis = None if channel_axis is None else min(channel_axis, len(shape) - 1)
    return _ItkLayout(tuple(shape), channel_axis, tuple(order), flat)


def _itk_geometry(kind: str, source: Any, layout: _ItkLayout, metadata: dict[str, str]) -> Geometry:
    """The geometry of the spatial axes of a SimpleITK image (or image reader)."""
    size = tuple(int(n) for n in source.GetSize())
    dim = len(size)
    n = min(dim, 3)
    origin, spacing = tuple(source.GetOrigin()), tuple(source.GetSpacing())
    direction = tuple(source.GetDirection())
    block = np.asarray(direction, np.float64).reshape(dim, dim)[:n, :n].ravel()
    header = {"origin": origin, "spacing": spacing, "direction": direction, "metadata": metadata}
    kept = 2 if layout.flat else n  # a single slice keeps its affine's z column (third)
    return Geometry(
        size[:kept],
        tuple(float(s) for s in spacing[:kept]),
        _itk_affine(origin[:n], spacing[:n], block),
        kind,
        header,
    )


def _itk_source(sitk: Any, path: Path, kind: str, header_only: bool) -> tuple[Any, dict[str, str]]:
    """The SimpleITK image (or, ``header_only``, a reader that read the header) and its
    metadata dictionary."""
    if kind == "DICOM":
        reader = sitk.ImageSeriesReader()
        files = _dicom_files(sitk, path)
        reader.SetFileNames(files)
        reader.MetaDataDictionaryArrayUpdateOn()
        warned = sitk.ProcessObject.GetGlobalWarningDisplay()
        sitk.ProcessObject.SetGlobalWarningDisplay(False)  # the gaps are checked below
        try:
            source = reader.Execute()  # a series has no header-only reading in SimpleITK
        finally:
            sitk.ProcessObject.SetGlobalWarningDisplay(warned)
        _check_slices(reader, len(files), source, path)
        return source, _metadata(reader, 0)
    if header_only:
        source = sitk.ImageFileReader()
        source.SetFileName(str(path))
        source.ReadImageInformation()
        return source, _metadata(source)
    source = sitk.ReadImage(str(path))
    return source, _metadata(source)


def _read_itk(
    path: Path, kind: str, role: str, spatial_dims: int | None, header_only: bool
) -> _Raw:
    """Read a SimpleITK image with its axes in ITK index order ``(x, y, z)``."""
    sitk = _sitk(path, kind)
    source, metadata = _itk_source(sitk, path, kind, header_only)
    components = int(
        source.GetNumberOfComponents()
        if isinstance(source, sitk.ImageFileReader)
        else source.GetNumberOfComponentsPerPixel()
    )
    size = tuple(int(n) for n in source.GetSize())
    if len(size) not in (2, 3, 4) or (len(size) == 4 and components > 1):
        raise DataError(
            f"{path}: a {len(size)}D {kind} image with {components} components per voxel; "
            f"expected a 2D or 3D image (with channels as components or a fourth axis)"
        )
    layout = _itk_layout(size, components, spatial_dims)
    geometry = _itk_geometry(kind, source, layout, metadata)
    shape, channel_axis = layout.shape, layout.channel_axis
    if role == "mask" and channel_axis is not None and shape[channel_axis] > 1:
        what = "components per voxel" if components > 1 else "volumes"
        raise _volumes_error(path, shape[channel_axis], shape, what)
    if header_only:
        return _Raw(_shape_only(shape), channel_axis, geometry)
    array = np.transpose(sitk.GetArrayFromImage(source), layout.order).reshape(shape)
    return _Raw(array, channel_axis, geometry)


def _without_axis(shape: tuple[int, ...], axis: int | None) -> tuple[int, ...]:
    return shape if axis is None else shape[:axis] + shape[axis + 1 :]


def _read_raw(
    path: Path, kind: str, role: str, spatial_dims: int | None, header_only: bool
) -> _Raw:
    if kind in _ITK_FORMATS:
        return _read_itk(path, kind, role, spatial_dims, header_only)
    if kind == "NIfTI":
        return _read_nifti(path, role, spatial_dims, header_only)
    if kind in ("PNG", "JPEG"):
        array, axis = _read_pillow(path, role)
    elif kind == "TIFF":
        array, axis = _read_tiff(path, role)
    else:
        array, axis = _read_numpy(path, role)
    return _Raw(array, axis, Geometry.plain(_without_axis(array.shape, axis), kind))


def _read(path: Path, role: str, spatial_dims: int | None, header_only: bool = False) -> _Raw:
    """Read ``path`` as an array, with its channel axis (``None``: unknown) and geometry.

    ``header_only``: the array is a stand-in of the right shape where the format allows
    reading the header alone (NIfTI, NRRD, MetaImage).
    """
    path = Path(path)
    kind = _kind(path)
    if role == "mask" and kind == "JPEG":
        raise DataError(
            f"{path}: JPEG is lossy and changes label values at object edges, so masks "
            f"cannot be JPEG; save masks as PNG, TIFF or .npy"
        )
    _check_file(path, kind)
    try:
        return _read_raw(path, kind, role, spatial_dims, header_only)
    except (DataError, PermissionError):
        raise
    except Exception as error:
        lines = [line for line in str(error).splitlines() if line.strip()]
        detail = lines[-1].strip() if lines else ""
        detached = (
            " (its data file, named in the header, must be where the header says)"
            if _extension(path) in _DETACHED
            else ""
        )
        raise DataError(
            f"{path}: cannot be read as {kind} ({type(error).__name__}: {detail}); the file "
            f"is damaged or not really {kind}{detached}: open it in a viewer, or export it "
            f"again"
        ) from error


def _fit(geometry: Geometry, shape: tuple[int, ...]) -> Geometry:
    """``geometry`` for the spatial axes ``shape`` that the reader's rules kept.

    Those rules only drop leading axes (length 1, or taken as channels), so ``shape``
    is the end of ``geometry.shape``; the affine's columns move with the axes.
    """
    shape = tuple(shape)
    if geometry.shape == shape:
        return geometry
    drop = len(geometry.shape) - len(shape)
    if drop <= 0 or geometry.shape[drop:] != shape:
        raise RuntimeError(f"the array's shape {shape} does not fit its geometry {geometry}")
    affine = geometry.affine
    if affine is not None:
        n = len(geometry.shape)
        affine = affine[:, [*range(drop, n), *range(drop), *range(n, 3), 3]]
    spacing = None if geometry.spacing is None else geometry.spacing[drop:]
    return dataclasses.replace(geometry, shape=shape, spacing=spacing, affine=affine)


# ----------------------------------------------------------------------------- images


def _arrange_image(
    array: np.ndarray, channel_axis: int | None, spatial_dims: int | None, path: Path
) -> np.ndarray:
    """Put ``array`` in ``(C, *spatial)`` order following the module's channel rule."""
    shape = array.shape
    if channel_axis is not None:
        image = np.moveaxis(array, channel_axis, 0)
        dims = image.ndim - 1
        if dims not in (2, 3) or (spatial_dims is not None and dims != spatial_dims):
            wanted = f"spatial_dims={spatial_dims}" if spatial_dims else "2D or 3D"
            hint = (
                "3D volumes go in multi-page TIFF, .npy or NIfTI files"
                if dims == 2
                else f"pass spatial_dims={dims} (--spatial-dims {dims}) if that is meant"
            )
            raise DataError(
                f"{path}: is a {dims}D image with {image.shape[0]} channels (shape {shape}) "
                f"but {wanted} was asked for; {hint}"
            )
        return image
    if spatial_dims is None:
        if array.ndim == 2 or (array.ndim == 3 and shape[0] != 1):
            return array[None]
        if array.ndim in (3, 4):
            return array
        raise DataError(
            f"{path}: an array of shape {shape} is not an image: expected (Y, X), (Z, Y, X), "
            f"(1, Y, X) or (C, Z, Y, X); pass spatial_dims=2 for channels-first 2D images"
        )
    while array.ndim > spatial_dims + 1 and array.shape[0] == 1:
        array = array[0]
    if array.ndim == spatial_dims:
        return array[None]
    if array.ndim == spatial_dims + 1:
        return array
    raise DataError(
        f"{path}: an array of shape {shape} is not a {spatial_dims}D image: expected "
        f"{spatial_dims} axes (one channel) or {spatial_dims + 1} axes (channels first)"
    )


@overload
def read_image(
    path: str | os.PathLike[str],
    spatial_dims: int | None = None,
    *,
    with_geometry: Literal[False] = False,
) -> np.ndarray: ...
@overload
def read_image(
    path: str | os.PathLike[str], spatial_dims: int | None = None, *, with_geometry: Literal[True]
) -> tuple[np.ndarray, Geometry]: ...
@overload
def read_image(
    path: str | os.PathLike[str], spatial_dims: int | None = None, *, with_geometry: bool
) -> np.ndarray | tuple[np.ndarray, Geometry]: ...
def read_image(
    path: str | os.PathLike[str], spatial_dims: int | None = None, *, with_geometry: bool = False
) -> np.ndarray | tuple[np.ndarray, Geometry]:
    """Read an image as ``float32`` ``(C, *spatial)``, intensities as stored.

    Args:
        path: a file with one of :data:`SUPPORTED_EXTENSIONS`, or a folder holding one
            DICOM series.
        spatial_dims: 2 or 3 to say what the image must be (and to settle whether the
            first axis of a plain array holds channels); ``None`` guesses by the rule in
            the module documentation.
        with_geometry: also return the image's :class:`~attnunet.data.geometry.Geometry`,
            which describes its spatial axes (``image.shape[1:]``).

    Returns:
        A ``float32`` array of shape ``(C, *spatial)``; grayscale files give ``C = 1``,
        colour files ``C = 3``. With ``with_geometry``, ``(image, geometry)``.

    Raises:
        DataError: an unsupported extension, an empty, damaged or unreadable file, a
            shape that is not an image of ``spatial_dims`` dimensions, values that are
            not finite numbers, or a missing optional reader (nibabel, SimpleITK).
        FileNotFoundError: when ``path`` does not exist.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "stack.npy"
        >>> np.save(path, np.zeros((3, 8, 8), np.uint8))
        >>> read_image(path, spatial_dims=2).shape, read_image(path, spatial_dims=3).shape
        ((3, 8, 8), (1, 3, 8, 8))
        >>> read_image(path, spatial_dims=2, with_geometry=True)[1]
        Geometry(shape=(8, 8), spacing=None, affine=None, format='NumPy')
    """
    path = Path(path)
    spatial_dims = _check_spatial_dims(spatial_dims)
    array, channel_axis, geometry = _read(path, "image", spatial_dims)
    if not (array.dtype == np.bool_ or np.issubdtype(array.dtype, np.number)) or np.issubdtype(
        array.dtype, np.complexfloating
    ):
        raise DataError(f"{path}: holds {array.dtype} data; an image must hold real numbers")
    image = np.ascontiguousarray(
        _arrange_image(array, channel_axis, spatial_dims, path), dtype=np.float32
    )
    if min(image.shape[1:]) == 0:
        raise DataError(f"{path}: has an empty axis (shape {image.shape[1:]})")
    if not np.isfinite(image).all():
        bad = int((~np.isfinite(image)).sum())
        raise DataError(
            f"{path}: holds {bad} NaN or infinite values; replace them (e.g. with "
            f"np.nan_to_num) before training"
        )
    if with_geometry:
        return image, _fit(geometry, image.shape[1:])
    return image


def read_geometry(path: str | os.PathLike[str], spatial_dims: int | None = None) -> Geometry:
    """Read the :class:`~attnunet.data.geometry.Geometry` of an image file or DICOM folder.

    It is the geometry :func:`read_image` returns with ``with_geometry=True`` (the same
    ``spatial_dims`` rule), read from the header alone where the library allows it:
    NIfTI (nibabel), NRRD and MetaImage (SimpleITK's ``ReadImageInformation``). A DICOM
    series, PNG, JPEG, TIFF and NumPy files are read in full.

    Args:
        path: a file with one of :data:`SUPPORTED_EXTENSIONS`, or a DICOM folder.
        spatial_dims: 2, 3 or ``None``, as for :func:`read_image`.

    Returns:
        The geometry of the image's spatial axes.

    Raises:
        DataError: as :func:`read_image`, for a file that cannot be read.
        FileNotFoundError: when ``path`` does not exist.

    Examples:
        >>> import tempfile
        >>> path = Path(tempfile.mkdtemp()) / "volume.npy"
        >>> np.save(path, np.zeros((5, 8, 8), np.uint8))
        >>> read_geometry(path)
        Geometry(shape=(5, 8, 8), spacing=None, affine=None, format='NumPy')
    """
    path = Path(path)
    spatial_dims = _check_spatial_dims(spatial_dims)
    array, channel_axis, geometry = _read(path, "image", spatial_dims, header_only=True)
    arranged = _arrange_image(array, channel_axis, spatial_dims, path)
    return _fit(geometry, arranged.shape[1:])


def normalise_image(
    image: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> np.ndarray:
    """Map each channel's ``low``/``high`` percentiles to 0/1 and clip, as ``float32``.

    This is the one normalisation of the package (1st and 99.8th percentiles by
    default), applied to every channel of a ``(C, *spatial)`` image on its own;
    :func:`attnunet.data.load_sample` normalises the bundled samples with it. A
    constant channel becomes all zeros.

    Examples:
        >>> image = np.stack([np.arange(1000.0), 5 * np.arange(1000.0)])
        >>> out = normalise_image(image)
        >>> out.dtype.name, float(out.min()), float(out.max()), bool(np.allclose(out[0], out[1]))
        ('float32', 0.0, 1.0, True)
    """
    image = np.asarray(image)
    if image.ndim < 2:
        raise ValueError(f"expected an image (C, *spatial), got shape {image.shape}")
    return np.stack([_normalise_channel(channel, low, high) for channel in image])


def _normalise_channel(channel: np.ndarray, low: float, high: float) -> np.ndarray:
    """Map the ``low``/``high`` percentiles of ``channel`` to 0/1 and clip, as float32.

    A constant channel (both percentiles equal) becomes all zeros.
    """
    lo, hi = np.percentile(channel, [low, high])
    scale = float(hi - lo) if hi > lo else 1.0
    out = (channel.astype(np.float32) - np.float32(lo)) / np.float32(scale)
    return np.clip(out, 0.0, 1.0, out=out)


# ----------------------------------------------------------------------------- masks


def _arrange_mask(
    array: np.ndarray, channel_axis: int | None, spatial_dims: int | None, path: Path
) -> np.ndarray:
    shape = array.shape
    if channel_axis is not None:
        channels = np.moveaxis(array, channel_axis, 0)
        if channels.shape[0] > 1 and not (channels == channels[:1]).all():
            raise DataError(
                f"{path}: a colour mask with {channels.shape[0]} different channels; a mask "
                f"must be one label map (0 = background, 1, 2, ... = classes): save it as "
                f"a grayscale or palette PNG, or map each colour to its class number"
            )
        array = channels[0]
    if spatial_dims is None:
        if array.ndim in (3, 4) and array.shape[0] == 1:
            array = array[0]
        if array.ndim in (2, 3):
            return array
    else:
        while array.ndim > spatial_dims and array.shape[0] == 1:
            array = array[0]
        if array.ndim == spatial_dims:
            return array
    expected = f"{spatial_dims}D" if spatial_dims else "2D or 3D"
    raise DataError(
        f"{path}: a mask of shape {shape} is not a {expected} label map; a mask holds one "
        f"label per pixel, shape (*spatial). A one-hot mask (one channel per class) "
        f"becomes a label map with argmax over its channel axis"
    )


def _label_values(
    array: np.ndarray, path: Path, num_classes: int | None, keep_values: bool = False
) -> np.ndarray:
    """``array`` as ``int64`` labels, after the checks and (unless ``keep_values``) the 0/255
    rule."""
    if array.dtype == np.bool_:
        labels = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise DataError(
                f"{path}: the mask holds {int((~finite).sum())} NaN or infinite values; "
                f"labels must be whole numbers 0, 1, 2, ..."
            )
        fractional = array != np.round(array)
        if fractional.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(array[fractional])[:3])
            raise DataError(
                f"{path}: the mask holds {int(fractional.sum())} non-integer values "
                f"(e.g. {examples}); labels must be whole numbers 0, 1, 2, ... "
                f"(threshold a probability map first, e.g. mask > 0.5)"
            )
        labels = array.astype(np.int64)
    elif np.issubdtype(array.dtype, np.integer):
        if array.dtype == np.uint64 and array.size and array.max() > np.iinfo(np.int64).max:
            raise DataError(f"{path}: the mask holds labels too large for int64")
        labels = array.astype(np.int64)
    else:
        raise DataError(f"{path}: a mask must hold integer labels, got {array.dtype} data")
    negative = labels < 0
    if negative.any():
        raise DataError(
            f"{path}: the mask holds {int(negative.sum())} negative values (minimum "
            f"{int(labels.min())}); labels must be 0 (background) or positive"
        )
    values = np.unique(labels)
    if not keep_values and values.tolist() in ([0, 255], [0, 65535]):
        labels = (labels > 0).astype(np.int64)
        values = np.array([0, 1])
    if num_classes is not None and values.size and values[-1] >= num_classes:
        shown = ", ".join(str(v) for v in values[:12]) + (", ..." if values.size > 12 else "")
        raise DataError(
            f"{path}: the mask holds label {int(values[-1])} but num_classes={num_classes} "
            f"allows 0 to {num_classes - 1} (values present: {shown}); raise num_classes "
            f"(--num-classes) or fix the mask"
        )
    return labels


@overload
def read_mask(
    path: str | os.PathLike[str],
    spatial_dims: int | None = None,
    num_classes: int | None = None,
    *,
    keep_values: bool = False,
    with_geometry: Literal[False] = False,
) -> np.ndarray: ...
@overload
def read_mask(
    path: str | os.PathLike[str],
    spatial_dims: int | None = None,
    num_classes: int | None = None,
    *,
    keep_values: bool = False,
    with_geometry: Literal[True],
) -> tuple[np.ndarray, Geometry]: ...
@overload
def read_mask(
    path: str | os.PathLike[str],
    spatial_dims: int | None = None,
    num_classes: int | None = None,
    *,
    keep_values: bool = False,
    with_geometry: bool,
) -> np.ndarray | tuple[np.ndarray, Geometry]: ...
def read_mask(
    path: str | os.PathLike[str],
    spatial_dims: int | None = None,
    num_classes: int | None = None,
    *,
    keep_values: bool = False,
    with_geometry: bool = False,
) -> np.ndarray | tuple[np.ndarray, Geometry]:
    """Read a mask as an ``int64`` label map ``(*spatial)``.

    Values must be whole numbers >= 0. A mask whose values are exactly ``{0, 255}`` or
    exactly ``{0, 65535}`` is binary, and its non-zero value becomes 1 unless
    ``keep_values``; other values are kept as stored. Bool masks become 0/1.

    Args:
        path: a file with one of :data:`SUPPORTED_EXTENSIONS` except JPEG (lossy), or a
            folder holding one DICOM series.
        spatial_dims: 2 or 3 to say what the mask must be; ``None`` accepts both.
        num_classes: when given, labels must be below it.
        keep_values: keep every value as stored, ``{0, 255}`` included (for masks where
            255 is an ignore label).
        with_geometry: also return the mask's :class:`~attnunet.data.geometry.Geometry`.

    Returns:
        The ``int64`` label map; with ``with_geometry``, ``(labels, geometry)``.

    Raises:
        DataError: an unsupported or lossy format, an empty or unreadable file, a shape
            that is not a label map (a 4D NIfTI or SimpleITK mask with several volumes
            included), negative or non-integer values, or a label ``>= num_classes``.
        FileNotFoundError: when ``path`` does not exist.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> path = Path(tempfile.mkdtemp()) / "mask.png"
        >>> Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(path)
        >>> read_mask(path).tolist(), read_mask(path, keep_values=True).tolist()
        ([[0, 1], [1, 0]], [[0, 255], [255, 0]])
    """
    path = Path(path)
    spatial_dims = _check_spatial_dims(spatial_dims)
    array, channel_axis, geometry = _read(path, "mask", spatial_dims)
    mask = _arrange_mask(array, channel_axis, spatial_dims, path)
    labels = np.ascontiguousarray(_label_values(mask, path, num_classes, keep_values))
    if with_geometry:
        return labels, _fit(geometry, labels.shape)
    return labels
