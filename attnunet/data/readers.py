"""Images and masks from folders: reading, pairing, checking, serving and writing.

Supported files (the extension decides, case-insensitively):

=====================  =====================================================================
``.png``               8- or 16-bit grayscale, RGB (alpha dropped), palette; read with Pillow
``.jpg``, ``.jpeg``    grayscale or colour images (JPEG is lossy, so never masks)
``.tif``, ``.tiff``    one page: a 2D image; several pages: a 3D volume ``(Z, Y, X)``; read
                       with ``tifffile`` when it is installed, else with Pillow
``.npy``, ``.npz``     NumPy arrays; in a ``.npz``, the image is the array named ``image``
                       (else the first array) and the mask the one named ``mask``,
                       ``masks``, ``labels``, ``label`` or ``seg`` (else the only array)
``.nii``, ``.nii.gz``  NIfTI, only when ``nibabel`` is installed (``pip install nibabel``);
                       the voxel array keeps nibabel's axis order ``(i, j, k)``
=====================  =====================================================================

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
exactly ``{0, 255}`` or exactly ``{0, 65535}``, the non-zero value becomes 1. Any other set
of values is kept as stored. A colour mask is accepted only when its channels are equal.

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

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import Dataset

from attnunet.data.samples import HIGH_PERCENTILE, LOW_PERCENTILE, _normalise

__all__ = [
    "DEFAULT_MASK_SUFFIXES",
    "SUPPORTED_EXTENSIONS",
    "DataError",
    "FolderSummary",
    "Pair",
    "SegmentationFolder",
    "find_pairs",
    "normalise_image",
    "read_image",
    "read_mask",
    "split_pairs",
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
}
SUPPORTED_EXTENSIONS: tuple[str, ...] = tuple(_FORMATS)
"""File extensions that :func:`read_image`, :func:`read_mask` and :func:`find_pairs` accept."""

DEFAULT_MASK_SUFFIXES: tuple[str, ...] = (
    "_mask",
    "_masks",
    "_label",
    "_labels",
    "_seg",
    "_segmentation",
    "_gt",
)
"""Name endings that mark a mask: ``cell_mask.png`` is the mask of ``cell.png``."""

_IMAGE_KEYS = ("image",)
_MASK_KEYS = ("mask", "masks", "labels", "label", "seg")
_IMAGE_FOLDERS = ("images",)
_MASK_FOLDERS = ("masks", "labels")

_T = TypeVar("_T")


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


def _check_file(path: Path) -> None:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_dir():
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


def _read_nifti(path: Path, role: str, spatial_dims: int | None) -> tuple[np.ndarray, int | None]:
    nibabel = _optional("nibabel")
    if nibabel is None:
        raise DataError(
            f"{path}: reading NIfTI files needs the nibabel package: pip install nibabel "
            f"(or convert the file to .npy or a multi-page TIFF)"
        )
    array = np.asanyarray(nibabel.load(str(path)).dataobj)
    # NIfTI pads 2D images with a length-1 third axis, and keeps time/channels after the
    # spatial axes: drop length-1 axes after the first two, then channels are last.
    keep = [i for i, n in enumerate(array.shape) if i < 2 or n != 1]
    array = array.reshape([array.shape[i] for i in keep])
    if array.ndim == 4 or (array.ndim == 3 and spatial_dims == 2):
        return array, array.ndim - 1
    return array, None


def _read(path: Path, role: str, spatial_dims: int | None) -> tuple[np.ndarray, int | None]:
    """Read ``path`` as an array, and say which axis holds channels (``None``: unknown)."""
    path = Path(path)
    kind = _format(path)
    if role == "mask" and kind == "JPEG":
        raise DataError(
            f"{path}: JPEG is lossy and changes label values at object edges, so masks "
            f"cannot be JPEG; save masks as PNG, TIFF or .npy"
        )
    _check_file(path)
    try:
        if kind in ("PNG", "JPEG"):
            return _read_pillow(path, role)
        if kind == "TIFF":
            return _read_tiff(path, role)
        if kind == "NumPy":
            return _read_numpy(path, role)
        return _read_nifti(path, role, spatial_dims)
    except (DataError, PermissionError):
        raise
    except Exception as error:
        raise DataError(
            f"{path}: cannot be read as {kind} ({type(error).__name__}: {error}); the file "
            f"is damaged or not really {kind}: open it in a viewer, or export it again"
        ) from error


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


def read_image(path: str | os.PathLike[str], spatial_dims: int | None = None) -> np.ndarray:
    """Read an image as ``float32`` ``(C, *spatial)``, intensities as stored.

    Args:
        path: a file with one of :data:`SUPPORTED_EXTENSIONS`.
        spatial_dims: 2 or 3 to say what the image must be (and to settle whether the
            first axis of a plain array holds channels); ``None`` guesses by the rule in
            the module documentation.

    Returns:
        A ``float32`` array of shape ``(C, *spatial)``; grayscale files give ``C = 1``,
        colour files ``C = 3``.

    Raises:
        DataError: an unsupported extension, an empty, damaged or unreadable file, a
            shape that is not an image of ``spatial_dims`` dimensions, or values that
            are not finite numbers.
        FileNotFoundError: when ``path`` does not exist.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> path = Path(tempfile.mkdtemp()) / "stack.npy"
        >>> np.save(path, np.zeros((3, 8, 8), np.uint8))
        >>> read_image(path, spatial_dims=2).shape, read_image(path, spatial_dims=3).shape
        ((3, 8, 8), (1, 3, 8, 8))
    """
    path = Path(path)
    spatial_dims = _check_spatial_dims(spatial_dims)
    array, channel_axis = _read(path, "image", spatial_dims)
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
    return image


def normalise_image(
    image: np.ndarray, low: float = LOW_PERCENTILE, high: float = HIGH_PERCENTILE
) -> np.ndarray:
    """Map each channel's ``low``/``high`` percentiles to 0/1 and clip, as ``float32``.

    This is the normalisation of the bundled samples (1st and 99.8th percentiles by
    default), applied to every channel of a ``(C, *spatial)`` image on its own. A
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
    return np.stack([_normalise(channel, low, high) for channel in image])


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


def _label_values(array: np.ndarray, path: Path, num_classes: int | None) -> np.ndarray:
    """``array`` as ``int64`` labels, after the checks and the 0/255 rule."""
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
    if values.tolist() in ([0, 255], [0, 65535]):
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


def read_mask(
    path: str | os.PathLike[str],
    spatial_dims: int | None = None,
    num_classes: int | None = None,
) -> np.ndarray:
    """Read a mask as an ``int64`` label map ``(*spatial)``.

    Values must be whole numbers >= 0. A mask whose values are exactly ``{0, 255}`` or
    exactly ``{0, 65535}`` is binary, and its non-zero value becomes 1; other values are
    kept as stored. Bool masks become 0/1.

    Args:
        path: a file with one of :data:`SUPPORTED_EXTENSIONS` except JPEG (lossy).
        spatial_dims: 2 or 3 to say what the mask must be; ``None`` accepts both.
        num_classes: when given, labels must be below it.

    Raises:
        DataError: an unsupported or lossy format, an empty or unreadable file, a shape
            that is not a label map, negative or non-integer values, or a label
            ``>= num_classes``.
        FileNotFoundError: when ``path`` does not exist.

    Examples:
        >>> import tempfile
        >>> from PIL import Image
        >>> path = Path(tempfile.mkdtemp()) / "mask.png"
        >>> Image.fromarray(np.array([[0, 255], [255, 0]], np.uint8)).save(path)
        >>> read_mask(path).tolist()
        [[0, 1], [1, 0]]
    """
    path = Path(path)
    spatial_dims = _check_spatial_dims(spatial_dims)
    array, channel_axis = _read(path, "mask", spatial_dims)
    mask = _arrange_mask(array, channel_axis, spatial_dims, path)
    return np.ascontiguousarray(_label_values(mask, path, num_classes))


# ----------------------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Pair:
    """An image file and its mask file (``None`` when reading images only)."""

    image: Path
    mask: Path | None = None

    @property
    def name(self) -> str:
        """The image's file name without its extension (``"case01"`` for ``case01.nii.gz``)."""
        return _stem(self.image)


def _list_files(folder: Path) -> list[Path]:
    """Supported files in ``folder`` (not recursive, no hidden files), sorted by name."""
    if not folder.is_dir():
        if folder.exists():
            raise DataError(f"{folder} is a file; give a folder of images")
        raise FileNotFoundError(f"{folder} does not exist")
    entries = sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    files = [p for p in entries if _extension(p) in _FORMATS]
    if not files:
        if entries:
            others = ", ".join(p.name for p in entries[:5]) + (", ..." if len(entries) > 5 else "")
            found = f"it holds {len(entries)} other files ({others})"
        else:
            found = "it is empty"
        raise DataError(
            f"{folder}: no supported image files; {found}. Supported extensions: "
            f"{_supported_list()}"
        )
    return files


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


def _layout(images: Path, masks: Path | None) -> tuple[Path, Path | None]:
    """The image folder and the mask folder (``None``: there is none)."""
    if masks is not None:
        return images, masks
    for image_name in _IMAGE_FOLDERS:
        if (images / image_name).is_dir():
            found = [images / m for m in _MASK_FOLDERS if (images / m).is_dir()]
            return images / image_name, (found[0] if found else None)
    if images.name in _IMAGE_FOLDERS:
        found = [images.parent / m for m in _MASK_FOLDERS if (images.parent / m).is_dir()]
        if found:
            return images, found[0]
    return images, images


def find_pairs(
    images: str | os.PathLike[str],
    masks: str | os.PathLike[str] | None = None,
    *,
    require_masks: bool = True,
    mask_suffixes: Sequence[str] = DEFAULT_MASK_SUFFIXES,
) -> list[Pair]:
    """Pair every image in a folder with its mask, matching file names.

    The mask of ``case01.png`` is the file whose name without extension is ``case01``
    (in a separate mask folder) or ``case01`` plus one of ``mask_suffixes``
    (``case01_mask.tif``, ``case01_seg.npy``, ...); its extension may differ from the
    image's. Folders are searched in this order:

    1. ``masks`` given: images in ``images``, masks in ``masks``.
    2. ``images`` holds an ``images/`` subfolder: images there, masks in its ``masks/``
       (or ``labels/``) subfolder.
    3. ``images`` is itself named ``images`` and has a ``masks/`` (or ``labels/``)
       sibling: masks there.
    4. Otherwise images and masks share the folder; a file is a mask when its name is
       another file's name plus a mask suffix.

    A ``.npz`` image that holds both an ``image`` and a ``mask``/``labels`` array and has
    no separate mask file is its own mask. Only the folder's top level is read; hidden
    files and files of other types are skipped.

    Args:
        images: a folder (or a single image file).
        masks: the mask folder, if not found by the rules above.
        require_masks: when ``False``, images without a mask get ``mask=None`` instead
            of an error (for prediction).
        mask_suffixes: name endings that mark masks.

    Returns:
        The pairs, sorted by image file name.

    Raises:
        DataError: no supported files, two images with the same name, a mask that
            matches in two ways, or (with ``require_masks``) images without masks; the
            message lists them with the mask names that were looked for.
        FileNotFoundError: when a folder does not exist.

    Examples:
        >>> import tempfile
        >>> from attnunet.data import write_mask
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("b.png", "b_mask.png", "a.png", "a_mask.png"):
        ...     _ = write_mask(root / name, np.zeros((4, 4), np.uint8))
        >>> [(p.image.name, p.mask.name) for p in find_pairs(root)]
        [('a.png', 'a_mask.png'), ('b.png', 'b_mask.png')]
    """
    images_path = Path(images)
    masks_path = None if masks is None else Path(masks)
    suffixes = tuple(mask_suffixes)
    mask_dir: Path | None
    if images_path.is_file():
        _format(images_path)
        if masks_path is not None and masks_path.is_file():
            _format(masks_path)
            return [Pair(images_path, masks_path)]
        image_dir = images_path.parent
        mask_dir = image_dir if masks_path is None else masks_path
        folder_files = _list_files(image_dir)
        image_files = [images_path]
    else:
        image_dir, mask_dir = _layout(images_path, masks_path)
        folder_files = _list_files(image_dir)
        image_files = folder_files
    same_folder = mask_dir is not None and mask_dir.resolve() == image_dir.resolve()
    mask_files = (
        folder_files if same_folder else (_list_files(mask_dir) if mask_dir is not None else [])
    )
    by_stem: dict[str, list[Path]] = {}
    for path in mask_files:
        by_stem.setdefault(_stem(path), []).append(path)

    if same_folder:
        # A file is a mask when stripping a suffix leaves the name of another file here.
        is_mask = {
            p
            for p in folder_files
            for s in suffixes
            if _stem(p).endswith(s) and len(_stem(p)) > len(s) and _stem(p)[: -len(s)] in by_stem
        }
        image_files = [p for p in image_files if p not in is_mask]
    # In a shared folder the bare name is the image itself, so only suffixed names count.
    endings = suffixes if same_folder else ("", *suffixes)

    names: dict[str, list[Path]] = {}
    for path in image_files:
        names.setdefault(_stem(path), []).append(path)
    clashes = {n: ps for n, ps in names.items() if len(ps) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise DataError(
            f"{image_dir}: images {', '.join(p.name for p in paths)} share the name "
            f"{name!r}; names must be unique (masks and predictions are matched by name), "
            f"so rename or remove one"
        )

    pairs: list[Pair] = []
    missing: list[Path] = []
    for path in image_files:
        candidates = [m for e in endings for m in by_stem.get(_stem(path) + e, [])]
        if len(candidates) > 1:
            raise DataError(
                f"{path}: several files could be its mask "
                f"({', '.join(str(c) for c in candidates)}); keep only one"
            )
        if candidates:
            pairs.append(Pair(path, candidates[0]))
        elif _npz_with_mask(path):
            pairs.append(Pair(path, path))
        elif require_masks:
            missing.append(path)
        else:
            pairs.append(Pair(path, None))
    if missing:
        where = mask_dir if mask_dir is not None else image_dir.parent / _MASK_FOLDERS[0]
        lines = []
        for path in missing[:10]:
            stem = _stem(path)
            options = [f"{stem}{e}.*" for e in endings[:4]]
            lines.append(f"  {path}: expected {where / options[0]} or {', '.join(options[1:])}")
        more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
        raise DataError(
            f"{len(missing)} of {len(image_files)} images have no mask:\n"
            + "\n".join(lines)
            + more
            + f"\nMask names may end in any of {', '.join(suffixes)}, with any supported "
            f"extension; put masks next to the images, in a masks/ folder beside images/, "
            f"or name the mask folder explicitly (or read images only with "
            f"require_masks=False)"
        )
    return sorted(pairs, key=lambda p: p.image.name)


def split_pairs(
    pairs: Sequence[_T], val_fraction: float = 0.2, seed: int = 0
) -> tuple[list[_T], list[_T]]:
    """Split items (pairs, or anything) into training and validation, reproducibly.

    ``round(val_fraction * n)`` items, at least 1 and at most ``n - 1``, go to
    validation, chosen by a permutation from ``numpy.random.default_rng(seed)``; both
    parts keep the input order. ``val_fraction=0`` keeps everything for training.

    A whole image cannot be split between the parts, so a folder with one image raises
    :class:`DataError` (unless ``val_fraction=0``): give a separate validation folder,
    add images, or train with ``val_fraction=0`` and validate on another part of the
    data (the bundled samples are split spatially by :meth:`attnunet.data.Sample.split`).

    Examples:
        >>> train, val = split_pairs(list("abcdefghij"), val_fraction=0.2, seed=0)
        >>> len(train), len(val), sorted(train + val) == list("abcdefghij")
        (8, 2, True)
    """
    items = list(pairs)
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if val_fraction == 0.0:
        return items, []
    if not items:
        raise DataError("no images to split; find_pairs(folder) lists a folder's pairs")
    if len(items) == 1:
        raise DataError(
            f"{getattr(items[0], 'image', items[0])}: only 1 image, so none can be held out "
            f"for validation; add images, give a separate validation folder "
            f"(--val-images/--val-masks), or pass val_fraction=0 (--val-fraction 0)"
        )
    order = np.random.default_rng(seed).permutation(len(items))
    n_val = min(len(items) - 1, max(1, round(val_fraction * len(items))))
    val = [items[i] for i in sorted(order[:n_val])]
    train = [items[i] for i in sorted(order[n_val:])]
    return train, val


# ----------------------------------------------------------------------------- dataset


@dataclass(frozen=True)
class FolderSummary:
    """What :meth:`SegmentationFolder.validate` found.

    Attributes:
        num_pairs: number of image/mask pairs read.
        spatial_dims: 2 or 3.
        channels: channels per image.
        min_shape: smallest size along each spatial axis over all images.
        max_shape: largest size along each spatial axis.
        labels: the label values present in the masks, sorted (empty without masks).
        foreground_fraction: fraction of mask voxels that are not 0 (``nan`` without masks).
    """

    num_pairs: int
    spatial_dims: int
    channels: int
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    labels: tuple[int, ...]
    foreground_fraction: float


class SegmentationFolder(Dataset[dict[str, Any]]):
    """A dataset of images and masks read from files.

    Item ``i`` is a dict with ``"image"``, a ``float32`` tensor ``(C, *spatial)``
    normalised per channel by :func:`normalise_image`; ``"mask"``, an ``int64`` label
    map ``(*spatial)`` (absent for pairs without a mask); and ``"name"``, the image's
    file name without extension. Files are read when an item is asked for, unless
    ``cache=True`` keeps every image after its first read (for data that fits in memory;
    each DataLoader worker then holds its own copy).

    With ``patch_size``, each item is a random patch: with probability
    ``foreground_fraction`` it contains a foreground voxel (``mask > 0``) drawn
    uniformly, at a uniformly random place within the patch; otherwise (and always for
    a mask without foreground) its corner is uniform over the image. Images smaller
    than the patch are padded at the end with zeros (label 0).
    ``transform(image, mask, generator)`` (such as the augmentations in
    :mod:`attnunet.data.transforms`) is applied last, to tensors.

    Randomness comes from ``generator``, or torch's global generator when it is ``None``
    (the right choice with DataLoader workers, which seed theirs differently; a
    generator is copied into every worker, so all workers would draw alike).

    Args:
        pairs: from :func:`find_pairs` (or built by hand).
        spatial_dims: 2 or 3, passed to :func:`read_image` and :func:`read_mask`.
        num_classes: when given, masks with labels ``>= num_classes`` are refused.
        patch_size: patch size, one int per spatial axis or one for all; ``None`` serves
            whole images (use batch size 1 when their sizes differ).
        foreground_fraction: probability that a patch is placed on foreground.
        samples_per_image: items per pair (``len`` is ``len(pairs) * samples_per_image``),
            to draw several patches per image in one epoch.
        transform: called as ``transform(image, mask, generator)``, returns
            ``(image, mask)``.
        cache: keep images and masks in memory once read.
        normalise: ``False`` serves intensities as stored.
        generator: source of randomness for patches and ``transform``.

    Examples:
        >>> import tempfile
        >>> from attnunet.data import write_mask
        >>> root = Path(tempfile.mkdtemp())
        >>> rng = np.random.default_rng(0)
        >>> for name in ("a", "b"):
        ...     np.save(root / f"{name}.npy", rng.random((40, 50)))
        ...     _ = write_mask(root / f"{name}_mask.png", rng.integers(0, 2, (40, 50)))
        >>> data = SegmentationFolder.from_folder(root, patch_size=32, spatial_dims=2)
        >>> item = data[0]
        >>> item["image"].shape, item["mask"].shape, item["mask"].dtype, item["name"]
        (torch.Size([1, 32, 32]), torch.Size([32, 32]), torch.int64, 'a')
        >>> data.validate().labels
        (0, 1)
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        spatial_dims: int | None = None,
        num_classes: int | None = None,
        patch_size: int | Sequence[int] | None = None,
        foreground_fraction: float = 0.5,
        samples_per_image: int = 1,
        transform: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None,
        cache: bool = False,
        normalise: bool = True,
        generator: torch.Generator | None = None,
    ) -> None:
        self.pairs = list(pairs)
        if not self.pairs:
            raise DataError("no image pairs given; find_pairs(folder) lists a folder's pairs")
        self.spatial_dims = _check_spatial_dims(spatial_dims)
        self.num_classes = num_classes
        if patch_size is not None:
            sizes = [patch_size] if isinstance(patch_size, int) else list(patch_size)
            if not sizes or any(int(s) < 1 for s in sizes):
                raise ValueError(f"patch_size must be positive, got {patch_size}")
        self.patch_size = patch_size
        if not 0.0 <= foreground_fraction <= 1.0:
            raise ValueError(f"foreground_fraction must lie in [0, 1], got {foreground_fraction}")
        self.foreground_fraction = foreground_fraction
        if samples_per_image < 1:
            raise ValueError(f"samples_per_image must be at least 1, got {samples_per_image}")
        self.samples_per_image = samples_per_image
        self.transform = transform
        self.cache = cache
        self.normalise = normalise
        self.generator = generator
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray | None]] = {}

    @classmethod
    def from_folder(
        cls,
        images: str | os.PathLike[str],
        masks: str | os.PathLike[str] | None = None,
        *,
        require_masks: bool = True,
        mask_suffixes: Sequence[str] = DEFAULT_MASK_SUFFIXES,
        **kwargs: Any,
    ) -> SegmentationFolder:
        """The dataset of the pairs :func:`find_pairs` finds; ``kwargs`` go to the class."""
        pairs = find_pairs(images, masks, require_masks=require_masks, mask_suffixes=mask_suffixes)
        return cls(pairs, **kwargs)

    def __len__(self) -> int:
        return len(self.pairs) * self.samples_per_image

    def _read_pair(self, pair: Pair) -> tuple[np.ndarray, np.ndarray | None]:
        """The raw image ``(C, *spatial)`` and its mask, checked to match."""
        image = read_image(pair.image, spatial_dims=self.spatial_dims)
        if pair.mask is None:
            return image, None
        mask = read_mask(pair.mask, spatial_dims=image.ndim - 1, num_classes=self.num_classes)
        if mask.shape != image.shape[1:]:
            raise DataError(
                f"{pair.mask}: mask size {mask.shape} differs from the size "
                f"{image.shape[1:]} of its image {pair.image}; a mask must match its image "
                f"pixel for pixel (image shape with channels: {image.shape})"
            )
        return image, mask

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Normalised image, mask and flat foreground indices (computed only for patches)."""
        if index in self._cache:
            return self._cache[index]
        image, mask = self._read_pair(self.pairs[index])
        if self.normalise:
            image = normalise_image(image)
        foreground = None
        if mask is not None and self.patch_size is not None:
            foreground = np.flatnonzero(mask > 0)
        entry = (image, mask, foreground)
        if self.cache:
            self._cache[index] = entry
        return entry

    def _patch_shape(self, spatial: tuple[int, ...], pair: Pair) -> tuple[int, ...]:
        assert self.patch_size is not None
        if isinstance(self.patch_size, int):
            return (self.patch_size,) * len(spatial)
        patch = tuple(int(p) for p in self.patch_size)
        if len(patch) != len(spatial):
            raise DataError(
                f"{pair.image}: patch_size {patch} has {len(patch)} entries but the image is "
                f"{len(spatial)}D {spatial}; give one size per spatial axis"
            )
        return patch

    def _corner(
        self, shape: tuple[int, ...], patch: tuple[int, ...], foreground: np.ndarray | None
    ) -> list[int]:
        g = self.generator
        on_foreground = float(torch.rand((), generator=g)) < self.foreground_fraction
        if on_foreground and foreground is not None and foreground.size:
            pick = int(torch.randint(foreground.size, (), generator=g))
            voxel = np.unravel_index(int(foreground[pick]), shape)
            corner = []
            for v, p, s in zip(voxel, patch, shape, strict=True):
                offset = int(torch.randint(p, (), generator=g))
                corner.append(min(max(int(v) - offset, 0), s - p))
            return corner
        return [
            int(torch.randint(s - p + 1, (), generator=g))
            for p, s in zip(patch, shape, strict=True)
        ]

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        pair_index = (index % len(self)) // self.samples_per_image
        pair = self.pairs[pair_index]
        image, mask, foreground = self._load(pair_index)
        if self.patch_size is not None:
            spatial = image.shape[1:]
            patch = self._patch_shape(spatial, pair)
            pad = [max(0, p - s) for p, s in zip(patch, spatial, strict=True)]
            if any(pad):
                image = np.pad(image, [(0, 0)] + [(0, p) for p in pad])
                mask = None if mask is None else np.pad(mask, [(0, p) for p in pad])
            shape = image.shape[1:]
            corner = self._corner(shape, patch, foreground)
            window = tuple(slice(c, c + p) for c, p in zip(corner, patch, strict=True))
            full_window = (slice(None), *window)
            image = image[full_window]
            mask = None if mask is None else mask[window]
        image_t = torch.from_numpy(np.array(image, dtype=np.float32))
        mask_t = None if mask is None else torch.from_numpy(np.array(mask, dtype=np.int64))
        if self.transform is not None:
            image_t, mask_t = self.transform(image_t, mask_t, self.generator)
        item: dict[str, Any] = {"image": image_t, "name": pair.name}
        if mask_t is not None:
            item["mask"] = mask_t
        return item

    def validate(self) -> FolderSummary:
        """Read every file once and check it; report all problems together.

        Checks each image and mask on its own (readable, a supported shape, valid
        labels below ``num_classes``), each mask against its image (same size), and
        the images against each other (same number of spatial dimensions and of
        channels). With ``cache=True`` the files read stay cached.

        Returns:
            A :class:`FolderSummary` of the data.

        Raises:
            DataError: on any problem; the message starts with the first problem and
                then lists every problem found, one per line.
        """
        problems: list[str] = []
        channels: dict[int, list[str]] = {}
        dims: dict[int, list[str]] = {}
        shapes: list[tuple[int, ...]] = []
        labels: set[int] = set()
        foreground = total = 0
        for index, pair in enumerate(self.pairs):
            try:
                image, mask = self._read_pair(pair)
            except (DataError, OSError) as error:
                problems.append(str(error))
                continue
            channels.setdefault(image.shape[0], []).append(pair.image.name)
            dims.setdefault(image.ndim - 1, []).append(pair.image.name)
            shapes.append(image.shape[1:])
            if mask is not None:
                labels.update(int(v) for v in np.unique(mask))
                foreground += int(np.count_nonzero(mask))
                total += mask.size
            if self.cache and index not in self._cache:
                normalised = normalise_image(image) if self.normalise else image
                fg = None if mask is None or self.patch_size is None else np.flatnonzero(mask > 0)
                self._cache[index] = (normalised, mask, fg)
        for what, groups in (("spatial dimensions", dims), ("channels", channels)):
            if len(groups) > 1:
                listed = "; ".join(
                    f"{k}: {', '.join(v[:3])}{', ...' if len(v) > 3 else ''}"
                    for k, v in sorted(groups.items())
                )
                problems.append(
                    f"the images differ in their number of {what} ({listed}); all images "
                    f"of a dataset must agree"
                )
        if problems:
            report = "\n".join(f"  - {p}" for p in problems)
            raise DataError(
                f"{problems[0].splitlines()[0]}\n\n{len(problems)} problem(s) in "
                f"{len(self.pairs)} image/mask pairs:\n{report}"
            )
        spatial = next(iter(dims))
        return FolderSummary(
            num_pairs=len(self.pairs),
            spatial_dims=spatial,
            channels=next(iter(channels)),
            min_shape=tuple(int(min(s[i] for s in shapes)) for i in range(spatial)),
            max_shape=tuple(int(max(s[i] for s in shapes)) for i in range(spatial)),
            labels=tuple(sorted(labels)),
            foreground_fraction=foreground / total if total else float("nan"),
        )
