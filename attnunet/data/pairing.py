"""Pairing image files with their mask files, and splitting pairs for validation.

:func:`find_pairs` finds the mask of every image in a folder by file name (in a mask
folder, or next to the image with a mask suffix such as ``_mask``); :func:`split_pairs`
holds some pairs out for validation, the same way every time for a given seed.

Two layouts from medical imaging are read as they are:

* **nnU-Net v2 raw datasets**: a folder holding ``dataset.json``, ``imagesTr/`` and
  ``labelsTr/`` (and often ``imagesTs/``). Image files are named
  ``<case>_<channel><file_ending>`` (``liver_001_0000.nii.gz``, ``liver_001_0001.nii.gz``
  for a two-channel case), labels ``<case><file_ending>``. Each case becomes one
  :class:`Pair` whose :attr:`Pair.images` lists its channel files in channel order;
  :func:`read_dataset_json` reads ``dataset.json`` into a :class:`NnUNetDataset`.
* **DICOM series**: a subfolder of an image folder that holds DICOM files is one image
  (the series), named by the subfolder.

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

import itertools
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

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

__all__ = [
    "DEFAULT_MASK_SUFFIXES",
    "NnUNetDataset",
    "Pair",
    "find_dataset_json",
    "find_pairs",
    "read_dataset_json",
    "split_pairs",
]

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

# nnU-Net's image folders, each with the label folder beside it
_NNUNET_FOLDERS = {"imagesTr": "labelsTr", "imagesTs": "labelsTs"}
_NNUNET_ALL_FOLDERS = ("imagesTr", "imagesTs", "labelsTr", "labelsTs")
_DATASET_JSON = "dataset.json"
_DEFAULT_FILE_ENDING = ".nii.gz"
_CHANNEL_NAME = re.compile(r"(.+)_([0-9]{4})")  # <case>_<XXXX>, without the file ending

_DICOM_MAGIC = b"DICM"  # at byte offset 128 of a DICOM Part 10 file
_DICOM_PROBE = 64  # files of a subfolder looked at to tell a DICOM series

_T = TypeVar("_T")


@dataclass(frozen=True)
class Pair:
    """An image and its mask file (``None`` when reading images only).

    An image is one file, a DICOM series folder, or (nnU-Net) one file per channel:
    then ``channels`` lists them in channel order and ``image`` is the first.

    Attributes:
        image: the image file (the first channel's file of a multi-file case; a DICOM
            series' folder).
        mask: the mask file, or ``None``.
        channels: every channel file of a multi-file case, in channel order; empty for
            an image in one file (or folder).
        case: the case's name where it is not the file name without extension: the
            nnU-Net case (``liver_001`` of ``liver_001_0000.nii.gz``), a DICOM series'
            folder name.

    Examples:
        >>> files = (Path("a_0000.nii.gz"), Path("a_0001.nii.gz"))
        >>> pair = Pair(files[0], None, files, case="a")
        >>> pair.name, [p.name for p in pair.images]
        ('a', ['a_0000.nii.gz', 'a_0001.nii.gz'])
        >>> Pair(Path("scan.nii.gz")).name, [p.name for p in Pair(Path("scan.nii.gz")).images]
        ('scan', ['scan.nii.gz'])
    """

    image: Path
    mask: Path | None = None
    channels: tuple[Path, ...] = ()
    case: str | None = None

    def __post_init__(self) -> None:
        if self.channels and self.channels[0] != self.image:
            raise ValueError(
                f"Pair: image {self.image} must be the first of channels "
                f"({', '.join(str(c) for c in self.channels)})"
            )

    @property
    def images(self) -> tuple[Path, ...]:
        """The image's files in channel order: ``channels``, or ``(image,)``."""
        return self.channels if self.channels else (self.image,)

    @property
    def name(self) -> str:
        """``case`` when set, else the image's file name without its extension.

        (``"case01"`` for ``case01.nii.gz``), the name predictions are saved under.
        """
        return self.case if self.case is not None else _stem(self.image)


# ----------------------------------------------------------------------------- nnU-Net


@dataclass(frozen=True)
class NnUNetDataset:
    """What an nnU-Net v2 ``dataset.json`` says about a raw dataset.

    Attributes:
        root: the dataset's folder (the one holding ``dataset.json`` and ``imagesTr/``).
        channel_names: the name of each input channel, in channel order (``("CT",)``,
            ``("T2", "ADC")``): channel ``i`` is the file ``<case>_{i:04d}<file_ending>``.
        labels: ``labels`` as written: class name to value (``{"background": 0,
            "tumour": 1}``), or to a list of values for nnU-Net's region labels.
        file_ending: the files' extension (``".nii.gz"``, ``".png"``, ...).
        name: the dataset's ``name``, if given.
    """

    root: Path
    channel_names: tuple[str, ...]
    labels: dict[str, Any] = field(hash=False)
    file_ending: str = _DEFAULT_FILE_ENDING
    name: str | None = None

    @property
    def num_channels(self) -> int:
        """The number of input channels (files per case)."""
        return len(self.channel_names)


def _json_object(file: Path) -> dict[str, Any]:
    """The JSON object in ``file``; a :class:`DataError` naming it when it is not one."""
    if not file.is_file():
        if file.exists():
            raise DataError(f"{file} is a folder; give the dataset.json file or its folder")
        raise FileNotFoundError(f"{file} does not exist")
    try:
        content = json.loads(file.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise DataError(f"{file}: not UTF-8 text ({error}); save it as UTF-8 JSON") from error
    except json.JSONDecodeError as error:
        raise DataError(
            f"{file}: not valid JSON ({error.msg} at line {error.lineno}, column "
            f"{error.colno}); fix it (a JSON validator shows where)"
        ) from error
    if not isinstance(content, dict):
        raise DataError(
            f"{file}: holds a JSON {type(content).__name__}, not an object; an nnU-Net "
            f'dataset.json is an object like {{"channel_names": {{"0": "CT"}}, '
            f'"labels": {{"background": 0, "tumour": 1}}, "file_ending": ".nii.gz"}}'
        )
    return content


def _channel_names(raw: Any, file: Path) -> tuple[str, ...]:
    """``channel_names`` (``{"0": "CT", "1": "T2"}``) as names in channel order."""
    example = '{"0": "CT", "1": "T2"}'
    if not isinstance(raw, dict) or not raw:
        raise DataError(
            f'{file}: "channel_names" must be an object from channel number to name, '
            f"like {example}; got {raw!r}"
        )
    try:
        order = sorted((int(key), str(value)) for key, value in raw.items())
    except ValueError:
        raise DataError(
            f'{file}: "channel_names" keys must be channel numbers "0", "1", ..., like '
            f"{example}; got {sorted(raw)}"
        ) from None
    if [index for index, _ in order] != list(range(len(order))):
        raise DataError(
            f'{file}: "channel_names" keys must number the channels 0 to {len(order) - 1} '
            f"without gaps or repeats, like {example}; got {list(raw)}"
        )
    return tuple(name for _, name in order)


def _missing_key(file: Path, key: str) -> DataError:
    return DataError(
        f'{file}: no "{key}" entry; an nnU-Net v2 dataset.json needs "channel_names" '
        f'(like {{"0": "CT"}}), "labels" (like {{"background": 0, "tumour": 1}}) and '
        f'"file_ending" (like ".nii.gz")'
    )


def _file_ending(raw: Any, file: Path) -> str:
    if not isinstance(raw, str) or not raw.startswith(".") or len(raw) < 2:
        raise DataError(
            f'{file}: "file_ending" must be a file extension such as ".nii.gz" or ".png"; '
            f"got {raw!r}"
        )
    return raw


def read_dataset_json(path: str | os.PathLike[str]) -> NnUNetDataset:
    """Read an nnU-Net v2 ``dataset.json``.

    ``channel_names`` (or nnU-Net v1's ``modality``) and ``labels`` are required;
    ``file_ending`` defaults to ``".nii.gz"``; ``name`` is optional; other entries
    (``numTraining``, ``description``, ...) are ignored.

    Args:
        path: the ``dataset.json`` file, or the dataset's folder holding it.

    Returns:
        The :class:`NnUNetDataset`, with ``root`` the folder holding the file.

    Raises:
        DataError: the file is not a JSON object, lacks ``channel_names`` or ``labels``,
            or holds a malformed entry; the message names the file and the entry.
        FileNotFoundError: there is no such file.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "dataset.json").write_text(
        ...     '{"channel_names": {"1": "ADC", "0": "T2"}, "labels": {"background": 0, '
        ...     '"prostate": 1}, "numTraining": 32, "file_ending": ".nii.gz"}'
        ... )
        >>> dataset = read_dataset_json(root)
        >>> dataset.channel_names, dataset.labels, dataset.file_ending, dataset.root == root
        (('T2', 'ADC'), {'background': 0, 'prostate': 1}, '.nii.gz', True)
    """
    file = Path(path)
    if file.is_dir():
        file = file / _DATASET_JSON
    content = _json_object(file)
    key = "channel_names" if "channel_names" in content else "modality"
    if key not in content:
        raise _missing_key(file, "channel_names")
    if "labels" not in content:
        raise _missing_key(file, "labels")
    labels = content["labels"]
    if not isinstance(labels, dict) or not labels:
        raise DataError(
            f'{file}: "labels" must be an object from class name to label value, like '
            f'{{"background": 0, "tumour": 1}}; got {labels!r}'
        )
    name = content.get("name")
    return NnUNetDataset(
        root=file.parent,
        channel_names=_channel_names(content[key], file),
        labels=dict(labels),
        file_ending=_file_ending(content.get("file_ending", _DEFAULT_FILE_ENDING), file),
        name=name if isinstance(name, str) else None,
    )


def find_dataset_json(images: str | os.PathLike[str]) -> Path | None:
    """The nnU-Net ``dataset.json`` that governs a folder, if there is one.

    That is ``dataset.json`` in the folder itself (a dataset's root), or in its parent
    when the folder is one of nnU-Net's ``imagesTr``, ``imagesTs``, ``labelsTr``,
    ``labelsTs``. For a file, the folder holding it is looked at.

    Args:
        images: a folder (or a file in it).

    Returns:
        The path of ``dataset.json``, or ``None``.

    Examples:
        >>> import tempfile
        >>> root = Path(tempfile.mkdtemp())
        >>> (root / "imagesTr").mkdir()
        >>> _ = (root / "dataset.json").write_text("{}")
        >>> find_dataset_json(root / "imagesTr") == find_dataset_json(root) == root / "dataset.json"
        True
        >>> find_dataset_json(root.parent) is None
        True
    """
    folder = Path(images)
    if folder.is_file():
        folder = folder.parent
    candidates = [folder / _DATASET_JSON]
    if folder.name in _NNUNET_ALL_FOLDERS:
        candidates.append(folder.parent / _DATASET_JSON)
    return next((c for c in candidates if c.is_file()), None)


def _split_name(file_name: str, file_ending: str) -> tuple[str, int] | None:
    """``(case, channel)`` of an nnU-Net image file name, ``None`` if not named so.

    ``_split_name("liver_3_0001.nii.gz", ".nii.gz")`` is ``("liver_3", 1)``.
    """
    if not file_name.endswith(file_ending):
        return None
    match = _CHANNEL_NAME.fullmatch(file_name[: len(file_name) - len(file_ending)])
    return (match[1], int(match[2])) if match else None


class _NnUNetSearch(NamedTuple):
    """Where :func:`find_pairs` looks for the cases of an nnU-Net raw dataset."""

    dataset: NnUNetDataset
    image_dir: Path  # imagesTr or imagesTs
    labels: Path  # the label folder, or (with one image given) its label file
    labels_given: bool  # the caller named ``labels`` (then it must exist)
    only: Path | None  # one image file given: only its case


def _nnunet_search(images: Path, masks: Path | None) -> _NnUNetSearch | None:
    """The nnU-Net folders for ``images``, or ``None`` when it is no nnU-Net dataset."""
    only = images if images.is_file() else None
    folder = images.parent if only is not None else images
    if only is None and (folder / _DATASET_JSON).is_file() and (folder / "imagesTr").is_dir():
        root, image_dir = folder, folder / "imagesTr"
    elif folder.name in _NNUNET_FOLDERS and (folder.parent / _DATASET_JSON).is_file():
        root, image_dir = folder.parent, folder
    else:
        return None
    labels = masks if masks is not None else root / _NNUNET_FOLDERS[image_dir.name]
    return _NnUNetSearch(read_dataset_json(root), image_dir, labels, masks is not None, only)


def _visible_files(folder: Path) -> list[Path]:
    """The files in ``folder`` that are not hidden, sorted by name."""
    if not folder.is_dir():
        if folder.exists():
            raise DataError(f"{folder} is a file; give a folder of images")
        raise FileNotFoundError(f"{folder} does not exist")
    return sorted(
        (p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _case_files(search: _NnUNetSearch) -> list[Path]:
    """The image files to group: all in the folder, or those of the one image given."""
    fe = search.dataset.file_ending
    files = _visible_files(search.image_dir)
    if search.only is None:
        return files
    parsed = _split_name(search.only.name, fe)
    if parsed is None:
        raise DataError(
            f"{search.only}: not named as nnU-Net names images, <case>_<channel>{fe} "
            f"with a 4-digit channel (<case>_0000{fe}), as {search.dataset.root} holds "
            f"an nnU-Net dataset.json"
        )
    return [p for p in files if (_split_name(p.name, fe) or ("",))[0] == parsed[0]]


def _group_channels(search: _NnUNetSearch, files: list[Path]) -> dict[str, dict[int, Path]]:
    """Channel files by case and channel; a :class:`DataError` for misnamed images.

    Files of other types (notes, the data files of ``.mhd``/``.nhdr`` headers) are
    skipped, as in other layouts.
    """
    fe = search.dataset.file_ending
    cases: dict[str, dict[int, Path]] = {}
    stray: list[Path] = []
    for path in files:
        parsed = _split_name(path.name, fe)
        if parsed is not None:
            cases.setdefault(parsed[0], {})[parsed[1]] = path
        elif _extension(path) in SUPPORTED_EXTENSIONS or path.name.endswith(fe):
            stray.append(path)  # other files (notes, a .mhd header's .raw data) are skipped
    if stray:
        names = ", ".join(p.name for p in stray[:10]) + (", ..." if len(stray) > 10 else "")
        raise DataError(
            f"{search.image_dir}: {len(stray)} {'file is' if len(stray) == 1 else 'files are'} "
            f"not named as nnU-Net names images, "
            f"<case>_<channel>{fe} with the channel as 4 digits (<case>_0000{fe} for the "
            f"first of {search.dataset.num_channels}): {names}. Rename or remove them "
            f"(the file ending {fe!r} comes from {search.dataset.root / _DATASET_JSON})"
        )
    return cases


def _channel_problem(case: str, found: dict[int, Path], dataset: NnUNetDataset) -> str | None:
    """What is wrong with one case's channel files, or ``None``."""
    fe = dataset.file_ending
    missing = [f"{case}_{i:04d}{fe}" for i in range(dataset.num_channels) if i not in found]
    extra = [found[i].name for i in sorted(found) if i >= dataset.num_channels]
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + (
        [f"extra {', '.join(extra)}"] if extra else []
    )
    return f"  {case}: {'; '.join(parts)}" if parts else None


def _nnunet_cases(search: _NnUNetSearch) -> dict[str, tuple[Path, ...]]:
    """Every case's channel files in channel order, checked against ``channel_names``."""
    dataset = search.dataset
    grouped = _group_channels(search, _case_files(search))
    if not grouped:
        raise DataError(
            f"{search.image_dir}: no image files; nnU-Net names them "
            f"<case>_0000{dataset.file_ending} (one file per channel)"
        )
    problems = [p for c, f in grouped.items() if (p := _channel_problem(c, f, dataset))]
    if problems:
        more = f"\n  ... and {len(problems) - 10} more" if len(problems) > 10 else ""
        channels = ", ".join(f"{i:04d} ({n})" for i, n in enumerate(dataset.channel_names))
        raise DataError(
            f"{search.image_dir}: {len(problems)} of {len(grouped)} cases do not have exactly "
            f"the {dataset.num_channels} channel files that {dataset.root / _DATASET_JSON} "
            f"names ({channels}):\n" + "\n".join(problems[:10]) + more
        )
    return {case: tuple(found[i] for i in sorted(found)) for case, found in grouped.items()}


def _nnunet_labels(search: _NnUNetSearch, cases: Sequence[str]) -> dict[str, Path]:
    """The label file of each case that has one."""
    fe = search.dataset.file_ending
    if search.labels.is_file():
        if search.only is None:
            raise DataError(f"{search.labels} is a file; give the folder of label files")
        _format(search.labels)
        return dict.fromkeys(cases, search.labels)
    if not search.labels.is_dir():
        if search.labels_given:
            raise FileNotFoundError(f"{search.labels} does not exist")
        return {}
    files = {p.name: p for p in _visible_files(search.labels)}
    return {case: files[case + fe] for case in cases if case + fe in files}


def _no_label_error(search: _NnUNetSearch, missing: list[str], num_cases: int) -> DataError:
    """The error for cases without a label file."""
    fe = search.dataset.file_ending
    hint = (
        f"Label files are named <case>{fe}; put them in {search.labels}, give the label "
        f"folder explicitly (--masks; masks= in Python), or read images only (attnunet "
        f"predict; require_masks=False in Python)"
    )
    if not search.labels.exists():
        return DataError(
            f"{search.labels} does not exist, so the {num_cases} cases of "
            f"{search.image_dir} have no labels. {hint}"
        )
    lines = [f"  {case}: expected {search.labels / (case + fe)}" for case in missing[:10]]
    more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
    return DataError(
        f"{len(missing)} of {num_cases} cases of {search.image_dir} have no label:\n"
        + "\n".join(lines)
        + more
        + f"\n{hint}"
    )


def _nnunet_pairs(search: _NnUNetSearch, require_masks: bool) -> list[Pair]:
    """The cases of an nnU-Net folder as pairs, sorted by case."""
    dataset = search.dataset
    if _extension(Path("x" + dataset.file_ending)) not in SUPPORTED_EXTENSIONS:
        raise DataError(
            f"{dataset.root / _DATASET_JSON}: file_ending {dataset.file_ending!r} is not a "
            f"supported file type ({_supported_list()}); convert the images and labels to "
            f"one of these"
        )
    cases = _nnunet_cases(search)
    labels = _nnunet_labels(search, list(cases))
    missing = sorted(case for case in cases if case not in labels)
    if require_masks and missing:
        raise _no_label_error(search, missing, len(cases))
    return [
        Pair(files[0], labels.get(case), files if len(files) > 1 else (), case)
        for case, files in sorted(cases.items())
    ]


# ----------------------------------------------------------------------------- DICOM series


def _is_dicom_file(path: Path) -> bool:
    """A ``.dcm`` file, or one with the DICOM ``DICM`` marker at byte 128."""
    if path.suffix.lower() == ".dcm":
        return True
    try:
        with path.open("rb") as file:
            head = file.read(132)
    except OSError:
        return False
    return head[128:132] == _DICOM_MAGIC


def _is_dicom_series(folder: Path) -> bool:
    """Whether ``folder`` holds DICOM files: one of its first files, by name, is one."""
    try:
        names = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError:
        return False
    files = (p for p in names if p.is_file())
    return any(_is_dicom_file(p) for p in itertools.islice(files, _DICOM_PROBE))


# ----------------------------------------------------------------------------- by name


def _key(path: Path) -> str:
    """The name images and masks are matched by: a file's name without extension, a
    DICOM series folder's name."""
    return path.name if path.is_dir() else _stem(path)


def _list_files(folder: Path, series: bool = False) -> list[Path]:
    """Supported files in ``folder`` (not recursive, no hidden files), sorted by name.

    With ``series``, DICOM series subfolders are listed too, as images.
    """
    if not folder.is_dir():
        if folder.exists():
            raise DataError(f"{folder} is a file; give a folder of images")
        raise FileNotFoundError(f"{folder} does not exist")
    visible = sorted(
        (p for p in folder.iterdir() if not p.name.startswith(".")), key=lambda p: p.name
    )
    entries = [p for p in visible if p.is_file()]
    files = [
        p
        for p in visible
        if (p.is_file() and _extension(p) in SUPPORTED_EXTENSIONS)
        or (series and p.is_dir() and _is_dicom_series(p))
    ]
    if not files:
        if entries:
            others = ", ".join(p.name for p in entries[:5]) + (", ..." if len(entries) > 5 else "")
            found = f"it holds {len(entries)} other files ({others})"
        else:
            found = "it is empty"
        series_hint = ", or subfolders of DICOM files (one series each)" if series else ""
        raise DataError(
            f"{folder}: no supported image files; {found}. Supported extensions: "
            f"{_supported_list()}{series_hint}"
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
        return _Search(image_dir, mask_dir, _list_files(image_dir, series=True), [images])
    image_dir, found_mask_dir = _layout(images, masks)
    folder_files = _list_files(image_dir, series=True)
    return _Search(image_dir, found_mask_dir, folder_files, folder_files)


def _by_name(files: list[Path]) -> dict[str, list[Path]]:
    """``files`` grouped by their name without extension, in the order given."""
    groups: dict[str, list[Path]] = {}
    for path in files:
        groups.setdefault(_key(path), []).append(path)
    return groups


def _without_masks(
    image_files: list[Path],
    folder_files: list[Path],
    by_name: dict[str, list[Path]],
    suffixes: tuple[str, ...],
) -> list[Path]:
    """``image_files`` less the masks of a folder shared by images and masks.

    A file is a mask when stripping a suffix leaves the name of another file there
    (a DICOM series folder is never a mask).
    """
    is_mask = {
        p
        for p in folder_files
        if p.is_file()
        and any(
            (k := _stem(p)).endswith(s) and len(k) > len(s) and k[: -len(s)] in by_name
            for s in suffixes
        )
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


def _image_pair(path: Path, mask: Path | None) -> Pair:
    """The pair of an image file or DICOM series folder (named by the folder)."""
    return Pair(path, mask, case=path.name if path.is_dir() else None)


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
        key = _key(path)
        candidates = [m for e in endings for m in masks_by_name.get(key + e, []) if not m.is_dir()]
        if len(candidates) > 1:
            raise DataError(
                f"{path}: several files could be its mask "
                f"({', '.join(str(c) for c in candidates)}); keep only one"
            )
        if candidates:
            pairs.append(_image_pair(path, candidates[0]))
        elif path.is_file() and _npz_with_mask(path):
            pairs.append(Pair(path, path))
        elif require_masks:
            missing.append(path)
        else:
            pairs.append(_image_pair(path, None))
    return pairs, missing


def _expected_mask(path: Path, where: Path, endings: tuple[str, ...]) -> str:
    """Which mask names were looked for (up to four), without a dangling "or"."""
    options = [f"{_key(path)}{e}.*" for e in endings[:4]]
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
        f"or name the mask folder explicitly (--masks; masks= in Python); to read images "
        f"only, use attnunet predict (require_masks=False in Python)"
    )


def _named_pairs(
    images: Path, masks: Path | None, require_masks: bool, suffixes: tuple[str, ...]
) -> list[Pair]:
    """:func:`find_pairs` for every layout but nnU-Net's: masks found by file name."""
    image_dir, mask_dir, folder_files, image_files = _search(images, masks)
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

    1. An nnU-Net v2 raw dataset: ``images`` holds ``dataset.json`` and ``imagesTr/``
       (images there, labels in ``labelsTr/``), or ``images`` is an ``imagesTr/`` or
       ``imagesTs/`` folder beside a ``dataset.json`` (labels in ``labelsTr/`` or
       ``labelsTs/``, which may be absent with ``require_masks=False``); ``masks``, when
       given, replaces the label folder. See below.
    2. ``masks`` given: images in ``images``, masks in ``masks``.
    3. ``images`` holds an ``images/`` subfolder: images there, masks in its ``masks/``
       (or ``labels/``) subfolder.
    4. ``images`` is itself named ``images`` and has a ``masks/`` (or ``labels/``)
       sibling: masks there.
    5. Otherwise images and masks share the folder; a file is a mask when its name is
       another file's name plus a mask suffix.

    A ``.npz`` image that holds both an ``image`` and a ``mask``/``labels`` array and has
    no separate mask file is its own mask. A subfolder of the image folder that holds
    DICOM files (``.dcm``, or the ``DICM`` marker at byte 128) is one image, the series,
    named by the subfolder (its mask is a file of that name). Only the folder's top level
    is read otherwise; hidden files and files of other types are skipped. ``images`` may
    also be one DICOM series folder (its mask, if any, the file ``masks``).

    **nnU-Net datasets** follow ``dataset.json`` (:func:`read_dataset_json`): every
    file in the image folder must be named ``<case>_<XXXX><file_ending>``, where
    ``XXXX`` is the channel as 4 digits, and every case must have exactly the channels of
    ``channel_names`` (``0000`` to ``N-1``); each case becomes one :class:`Pair` with
    ``case`` set, ``channels`` its files in channel order when there are several (read
    them with :attr:`Pair.images`), and ``mask`` the label file
    ``<case><file_ending>``. ``mask_suffixes`` does not apply. Given one image file of
    such a folder, the pair of its case is returned.

    Args:
        images: a folder (or a single image file).
        masks: the mask folder, if not found by the rules above (or, with a single image
            file, its mask file).
        require_masks: when ``False``, images without a mask get ``mask=None`` instead
            of an error (for prediction).
        mask_suffixes: name endings that mark masks.

    Returns:
        The pairs, sorted by image file name (nnU-Net: by case).

    Raises:
        DataError: no supported files, two images with the same name, a mask that
            matches in two ways, or (with ``require_masks``) images without masks; the
            message lists them with the mask names that were looked for. For nnU-Net
            datasets: a bad ``dataset.json``, files not named ``<case>_<XXXX><ending>``,
            cases with missing or extra channel files (listed per case), or cases without
            a label file.
        FileNotFoundError: when a folder does not exist.

    Examples:
        >>> import tempfile
        >>> from attnunet.data import write_mask
        >>> root = Path(tempfile.mkdtemp())
        >>> for name in ("b.png", "b_mask.png", "a.png", "a_mask.png"):
        ...     _ = write_mask(root / name, np.zeros((4, 4), np.uint8))
        >>> [(p.image.name, p.mask.name) for p in find_pairs(root)]
        [('a.png', 'a_mask.png'), ('b.png', 'b_mask.png')]

        An nnU-Net dataset with two channels per case:

        >>> root = Path(tempfile.mkdtemp())
        >>> _ = (root / "dataset.json").write_text(
        ...     '{"channel_names": {"0": "T2", "1": "ADC"}, "labels": {"background": 0, '
        ...     '"prostate": 1}, "file_ending": ".png"}'
        ... )
        >>> for name in ("imagesTr/p1_0000.png", "imagesTr/p1_0001.png", "labelsTr/p1.png"):
        ...     _ = write_mask(root / name, np.zeros((4, 4), np.uint8))
        >>> [(p.name, [f.name for f in p.images], p.mask.name) for p in find_pairs(root)]
        [('p1', ['p1_0000.png', 'p1_0001.png'], 'p1.png')]
    """
    images_path = Path(images)
    masks_path = None if masks is None else Path(masks)
    nnunet = _nnunet_search(images_path, masks_path)
    if nnunet is not None:
        return _nnunet_pairs(nnunet, require_masks)
    if images_path.is_file() and masks_path is not None and masks_path.is_file():
        _format(images_path)
        _format(masks_path)
        return [Pair(images_path, masks_path)]
    if images_path.is_dir() and _is_dicom_series(images_path):
        return [_one_series(images_path, masks_path, require_masks)]
    return _named_pairs(images_path, masks_path, require_masks, tuple(mask_suffixes))


def _one_series(folder: Path, mask: Path | None, require_masks: bool) -> Pair:
    """The pair of a DICOM series folder given itself as ``images``; its mask must be a
    file given as ``masks``."""
    if mask is not None and mask.is_file():
        _format(mask)
        return Pair(folder, mask, case=folder.name)
    if require_masks:
        raise DataError(
            f"{folder}: is one DICOM series; give its mask file with masks= (--masks), or "
            f"give the folder that holds the series folders and a masks/ folder"
        )
    return Pair(folder, None, case=folder.name)


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
