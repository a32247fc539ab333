"""Pairing image files with their mask files, and splitting pairs for validation.

:func:`find_pairs` finds the mask of every image in a folder by file name (in a mask
folder, or next to the image with a mask suffix such as ``_mask``); :func:`split_pairs`
holds some pairs out for validation, the same way every time for a given seed.

Examples:
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("images", "masks"):
    ...     (root / name).mkdir()
    ...     np.save(root / name / "case01.npy", np.zeros((4, 4), np.uint8))
    >>> [(p.name, p.image.parent.name, p.mask.parent.name) for p in find_pairs(root)]
    [('case01', 'images', 'masks')]
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np

from attnunet.data.readers import (
    SUPPORTED_EXTENSIONS,
    DataError,
    _extension,
    _format,
    _npz_with_mask,
    _stem,
    _supported_list,
)

__all__ = ["DEFAULT_MASK_SUFFIXES", "Pair", "find_pairs", "split_pairs"]

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

_IMAGE_FOLDERS = ("images",)
_MASK_FOLDERS = ("masks", "labels")

_T = TypeVar("_T")


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
    files = [p for p in entries if _extension(p) in SUPPORTED_EXTENSIONS]
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
