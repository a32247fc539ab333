"""Writing label maps: :func:`write_mask` and :func:`write_prediction`.

The extension of the file picks the format (PNG, TIFF, ``.npy`` or NIfTI); labels are
stored in the smallest unsigned integer type that holds them, and an existing file is
replaced only when asked. :func:`attnunet.data.read_mask` reads the files back.

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
from typing import Any

import numpy as np
import torch

from attnunet.data.readers import DataError, _extension, _optional, _stem

__all__ = ["write_mask", "write_prediction"]

_WRITE_EXTENSIONS = (".png", ".tif", ".tiff", ".npy", ".nii", ".nii.gz")


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


def _write_nifti(handle: Any, labels: np.ndarray, gzipped: bool, path: Path) -> None:
    import gzip

    nibabel = _optional("nibabel")
    if nibabel is None:
        raise DataError(f"{path}: writing NIfTI files needs nibabel: pip install nibabel")
    data = nibabel.Nifti1Image(labels, np.eye(4)).to_bytes()
    handle.write(gzip.compress(data) if gzipped else data)


def write_mask(
    path: str | os.PathLike[str], mask: np.ndarray | torch.Tensor, *, overwrite: bool = False
) -> Path:
    """Write a label map, refusing to replace an existing file unless ``overwrite``.

    The extension picks the format: ``.png`` (2D only), ``.tif``/``.tiff`` (2D, or 3D as
    one page per slice), ``.npy``, or ``.nii``/``.nii.gz`` (needs nibabel; identity
    affine). Labels are stored as ``uint8`` when they are all below 256, else ``uint16``
    (PNG's limit), else ``uint32``. Missing parent folders are created. Reading the file
    back with :func:`read_mask` gives the same labels, except that a mask holding only
    0 and 255 (or 0 and 65535) reads back as 0 and 1.

    Args:
        path: the file to write.
        mask: integer or bool labels, shape ``(*spatial)``, NumPy or torch.
        overwrite: replace ``path`` if it exists.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        FileExistsError: when ``path`` exists and ``overwrite`` is false.
        ValueError: for non-integer or negative labels, or a shape the format cannot
            hold (:class:`DataError` for an extension that cannot be written).
    """
    path = Path(path)
    ext = _extension(path)
    if ext not in _WRITE_EXTENSIONS:
        raise DataError(
            f"{path}: cannot write masks as {ext or 'a file without extension'}; use one of "
            f"{', '.join(_WRITE_EXTENSIONS)}"
        )
    labels = _as_labels(mask)
    if labels.ndim not in (2, 3):
        raise ValueError(f"{path}: a mask must be 2D or 3D, got shape {labels.shape}")
    if ext == ".png" and labels.ndim != 2:
        raise DataError(f"{path}: PNG holds 2D images; write 3D masks as .tif, .npy or .nii.gz")
    if ext == ".png" and labels.dtype == np.uint32:
        raise DataError(f"{path}: labels above 65535 do not fit in PNG; use .tif or .npy")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle = open(path, "w+b" if overwrite else "x+b")  # noqa: SIM115
    except FileExistsError:
        raise FileExistsError(
            f"{path} already exists; pass overwrite=True (--overwrite) to replace it, or "
            f"write somewhere else"
        ) from None
    try:
        with handle:
            if ext == ".png":
                from PIL import Image

                Image.fromarray(labels).save(handle, format="PNG")
            elif ext in (".tif", ".tiff"):
                _write_tiff(handle, labels)
            elif ext == ".npy":
                np.save(handle, labels)
            else:
                _write_nifti(handle, labels, ext == ".nii.gz", path)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path


def write_prediction(
    out_dir: str | os.PathLike[str],
    image_path: str | os.PathLike[str],
    labels: np.ndarray | torch.Tensor,
    *,
    fmt: str = "auto",
    overwrite: bool = False,
) -> Path:
    """Write the label map predicted for ``image_path`` into ``out_dir``, named after it.

    The file is ``out_dir / (image name without extension + "." + fmt)``; ``fmt="auto"``
    writes PNG for 2D and TIFF for 3D labels. See :func:`write_mask` for formats and the
    overwrite rule.

    Examples:
        >>> import tempfile
        >>> out = Path(tempfile.mkdtemp())
        >>> write_prediction(out, "scans/case01.nii.gz", np.zeros((4, 5, 6), np.int64)).name
        'case01.tif'
    """
    ext = fmt.lower().lstrip(".")
    if ext == "auto":
        ext = "png" if np.ndim(labels) == 2 else "tif"
    target = Path(out_dir) / f"{_stem(Path(image_path))}.{ext}"
    return write_mask(target, labels, overwrite=overwrite)
