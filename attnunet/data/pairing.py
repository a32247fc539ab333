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
from typing import NamedTuple, TypeVar

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


class _Search(NamedTuple):
    """Where :func:`find_pairs` looks for images and masks."""

    image_dir: Path
    mask_dir: Path | None  # None: there is no mask folder
    folder_files: list[Path]  # the supported files of image_dir
    image_files: list[Path]  # the images to pair: folder_files, or the one image given


def _search(images: Path, masks: Path | None) -> _Search:
    """The folders and files to pair for ``images`` (a folder, or one image file)."""
    if images.is_file():
        _format(images)
        image_dir = images.parent
        mask_dir = image_dir if masks is None else masks
        return _Search(image_dir, mask_dir, _list_files(image_dir), [images])
    image_dir, found_mask_dir = _layout(images, masks)
    folder_files = _list_files(image_dir)
    return _Search(image_dir, found_mask_dir, folder_files, folder_files)


def _by_name(files: list[Path]) -> dict[str, list[Path]]:
    """``files`` grouped by their name without extension, in the order given."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(_stem(path), []).append(path)
    return groups


def _without_masks(
    image_files: list[Path],
    folder_files: list[Path],
    by_name: dict[str, list[Path]],
    suffixes: tuple[str, ...],
) -> list[Path]:
    """``image_files`` less the masks of a folder shared by images and masks.

    A file is a mask when stripping a suffix leaves the name of another file there.
    """
    is_mask = {
        p
        for p in folder_files
        for s in suffixes
        if _stem(p).endswith(s) and len(_stem(p)) > len(s) and _stem(p)[: -len(s)] in by_name
    }
    return [p for p in image_files if p not in is_mask]


def _check_unique_names(image_dir: Path, image_files: list[Path]) -> None:
    """Refuse two images with the same name without extension (``a.png`` and ``a.tif``)."""
    clashes = {n: ps for n, ps in _by_name(image_files).items() if len(ps) > 1}
    if clashes:
        name, paths = next(iter(clashes.items()))
        raise DataError(
            f"{image_dir}: images {', '.join(p.name for p in paths)} share the name "
            f"{name!r}; names must be unique (masks and predictions are matched by name), "
            f"so rename or remove one"
        )


def _match(
    image_files: list[Path],
    masks_by_name: dict[str, list[Path]],
    endings: tuple[str, ...],
    require_masks: bool,
) -> tuple[list[Pair], list[Path]]:
    """The pairs found, and (with ``require_masks``) the images left without a mask.

    The mask of an image is the file named as the image plus one of ``endings``, else
    the image itself when it is a ``.npz`` holding a mask array too.
    """
    pairs: list[Pair] = []
    missing: list[Path] = []
    for path in image_files:
        candidates = [m for e in endings for m in masks_by_name.get(_stem(path) + e, [])]
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
    return pairs, missing


def _expected_mask(path: Path, where: Path, endings: tuple[str, ...]) -> str:
    """Which mask names were looked for (up to four), without a dangling "or"."""
    options = [f"{_stem(path)}{e}.*" for e in endings[:4]]
    if not options:
        return f"no mask name to look for in {where}"
    rest = f" or {', '.join(options[1:])}" if len(options) > 1 else ""
    return f"expected {where / options[0]}{rest}"


def _no_mask_error(
    missing: list[Path],
    num_images: int,
    where: Path,
    endings: tuple[str, ...],
    suffixes: tuple[str, ...],
) -> DataError:
    """The error for images without a mask: the first ten, with the names looked for."""
    lines = [f"  {path}: {_expected_mask(path, where, endings)}" for path in missing[:10]]
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    endings_hint = (
        f"Mask names may end in any of {', '.join(suffixes)}"
        if suffixes
        else "mask_suffixes is empty, so a mask in the images' folder cannot be told from "
        "an image (pass mask_suffixes=('_mask',) or similar)"
    )
    return DataError(
        f"{len(missing)} of {num_images} images have no mask:\n"
        + "\n".join(lines)
        + more
        + f"\n{endings_hint}, with any supported "
        f"extension; put masks next to the images, in a masks/ folder beside images/, "
        f"or name the mask folder explicitly (or read images only with "
        f"require_masks=False)"
    )


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
    if images_path.is_file() and masks_path is not None and masks_path.is_file():
        _format(images_path)
        _format(masks_path)
        return [Pair(images_path, masks_path)]
    image_dir, mask_dir, folder_files, image_files = _search(images_path, masks_path)
    suffixes = tuple(mask_suffixes)
    endings: tuple[str, ...]
    if mask_dir is not None and mask_dir.resolve() == image_dir.resolve():
        masks_by_name = _by_name(folder_files)
        image_files = _without_masks(image_files, folder_files, masks_by_name, suffixes)
        # In a shared folder the bare name is the image itself, so only suffixed names count.
        endings = suffixes
    else:
        masks_by_name = _by_name([] if mask_dir is None else _list_files(mask_dir))
        endings = ("", *suffixes)
    _check_unique_names(image_dir, image_files)
    pairs, missing = _match(image_files, masks_by_name, endings, require_masks)
    if missing:
        where = mask_dir if mask_dir is not None else image_dir.parent / _MASK_FOLDERS[0]
        raise _no_mask_error(missing, len(image_files), where, endings, suffixes)
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
