"""Cases: an image (one file per channel, or one file) with its mask and its geometry.

:func:`load_case` reads a :class:`~attnunet.data.Pair` as a :class:`Case`: the stored
intensities ``(C, *spatial)``, the mask's label values as written, and the image's
:class:`~attnunet.data.geometry.Geometry` (spacing, affine, header), after checking
that the channel files and the mask lie on the same voxel grid. :func:`load_cases` reads
a list of pairs and checks that they agree with each other (spatial dimensions and
channels).
:func:`data_fingerprint` describes the cases (files, sizes, geometry) so that a resumed
run can refuse a changed data set (:func:`fingerprint_changes`).

The number of spatial dimensions comes from the files: a mask is a label map with one
axis per spatial dimension, so a case with a mask reads its mask first and its image
with the mask's dimensions (an ``(3, 64, 64)`` array is then three channels of a 2D
image when its mask is ``(64, 64)``). Without a mask, the reader's rules decide (NIfTI,
NRRD and multi-page TIFF volumes are 3D; PNG and JPEG are 2D).

Examples:
    >>> import tempfile
    >>> from pathlib import Path
    >>> from attnunet.data import Pair, write_mask
    >>> root = Path(tempfile.mkdtemp())
    >>> np.save(root / "a.npy", np.zeros((3, 8, 8), np.float32))
    >>> _ = write_mask(root / "a_mask.png", np.eye(8, dtype=np.uint8) * 21)
    >>> case = load_case(Pair(root / "a.npy", root / "a_mask.png"))
    >>> case.image.shape, case.spatial_dims, sorted(np.unique(case.mask).tolist())
    ((3, 8, 8), 2, [0, 21])
"""

from __future__ import annotations

import warnings
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnunet.data.geometry import Geometry
from attnunet.data.pairing import Pair
from attnunet.data.readers import DataError, read_image, read_mask
from attnunet.data.writers import prediction_name

__all__ = [
    "Case",
    "GeometryWarning",
    "data_fingerprint",
    "fingerprint_changes",
    "load_case",
    "load_cases",
]


class GeometryWarning(UserWarning):
    """An image and its mask (or two channel files) on different voxel grids, used anyway."""


@dataclass
class Case:
    """One case read from disk.

    Attributes:
        pair: the files it was read from.
        image: the stored intensities, ``float32`` ``(C, *spatial)``.
        mask: the label values as written (``int64`` ``(*spatial)``), or ``None``.
        geometry: the image's geometry (spacing, affine and header of its first file).
    """

    pair: Pair
    image: np.ndarray
    mask: np.ndarray | None
    geometry: Geometry

    @property
    def name(self) -> str:
        """The case's name (the image file's name without extension, or nnU-Net's case)."""
        return self.pair.name

    @property
    def spatial_dims(self) -> int:
        """2 or 3."""
        return self.image.ndim - 1

    @property
    def spacing(self) -> tuple[float, ...] | None:
        """The voxel size per spatial axis (mm), or ``None`` when the file has none."""
        return self.geometry.spacing

    @property
    def prediction_name(self) -> str:
        """The file name :func:`~attnunet.data.write_prediction` gives this case's
        prediction in the input's format (``spine_006.nii.gz`` for
        ``spine_006_0000.nii.gz``): the name of its rows in every table."""
        return prediction_name(self.pair.image, name=self.name)


def _differs(what: str, first: Path, second: Path, problem: str, allow: bool) -> None:
    """Refuse (or, with ``allow``, warn about) two files on different voxel grids."""
    message = (
        f"{second}: {problem} compared with {what} {first}; the two must lie on the same "
        f"voxel grid. Resample one onto the other"
    )
    if allow:
        warnings.warn(message + " (used anyway, as asked)", GeometryWarning, stacklevel=3)
        return
    raise DataError(
        message + ", or pass --allow-geometry-mismatch (allow_mismatch=True in Python) to "
        "use them as they are"
    )


def _read_channels(
    pair: Pair, spatial_dims: int | None, allow_mismatch: bool
) -> tuple[np.ndarray, Geometry]:
    """The channel files of ``pair`` stacked as ``(C, *spatial)``, with the first's geometry."""
    arrays, geometry = [], None
    for path in pair.images:
        array, found = read_image(path, spatial_dims, with_geometry=True)
        if geometry is None:
            geometry = found
        elif array.shape[1:] != arrays[0].shape[1:]:
            raise DataError(
                f"{path}: size {array.shape[1:]} differs from the case's first channel "
                f"{pair.images[0]} {arrays[0].shape[1:]}; every channel file of a case must "
                f"have the same size"
            )
        else:
            problem = geometry.mismatch(found)
            if problem is not None:
                _differs("the first channel", pair.images[0], path, problem, allow_mismatch)
        arrays.append(array)
    assert geometry is not None
    image = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
    return image, geometry


def load_case(
    pair: Pair,
    *,
    spatial_dims: int | None = None,
    allow_mismatch: bool = False,
    keep_values: bool = False,
) -> Case:
    """Read ``pair`` (every channel file, and the mask) with its geometry.

    Args:
        pair: from :func:`~attnunet.data.find_pairs`.
        spatial_dims: 2 or 3 to insist; ``None`` takes the mask's dimensions (or, without
            a mask, the image's by the reader's rules).
        allow_mismatch: use an image and mask whose geometries differ (spacing or affine
            beyond a small tolerance) with a :class:`GeometryWarning` instead of refusing
            them. Sizes must match either way.
        keep_values: keep a mask holding only 0 and 255 as it is (for 255 as the ignore
            label) instead of reading it as 0 and 1.

    Returns:
        The :class:`Case`.

    Raises:
        DataError: an unreadable file, a mask whose size differs from its image's, or
            (without ``allow_mismatch``) whose spacing or affine differ; both files are
            named.
    """
    mask = mask_geometry = None
    if pair.mask is not None:
        mask, mask_geometry = read_mask(
            pair.mask, spatial_dims, with_geometry=True, keep_values=keep_values
        )
        spatial_dims = mask.ndim
    image, geometry = _read_channels(pair, spatial_dims, allow_mismatch)
    if mask is not None and mask_geometry is not None:
        assert pair.mask is not None
        if mask.shape != image.shape[1:]:
            raise DataError(
                f"{pair.mask}: mask size {mask.shape} differs from the size "
                f"{image.shape[1:]} of its image {pair.image}; a mask must match its image "
                f"voxel for voxel"
            )
        problem = geometry.mismatch(mask_geometry)
        if problem is not None:
            _differs("its image", pair.image, pair.mask, problem, allow_mismatch)
    return Case(pair, image, mask, geometry)


def load_cases(
    pairs: Sequence[Pair],
    *,
    spatial_dims: int | None = None,
    allow_mismatch: bool = False,
    keep_values: bool = False,
) -> list[Case]:
    """Read every pair with :func:`load_case` and check that the cases agree.

    Raises:
        DataError: a problem with a file, or cases that differ in their number of
            spatial dimensions or of channels (the message lists examples of each).
    """
    cases = [
        load_case(
            p, spatial_dims=spatial_dims, allow_mismatch=allow_mismatch, keep_values=keep_values
        )
        for p in pairs
    ]
    for what, key in (
        ("spatial dimensions", lambda c: c.spatial_dims),
        ("channels", lambda c: c.image.shape[0]),
    ):
        groups: dict[int, list[str]] = {}
        for case in cases:
            groups.setdefault(int(key(case)), []).append(str(case.pair.image))
        if len(groups) > 1:
            listed = "; ".join(
                f"{k}: {', '.join(v[:2])}{', ...' if len(v) > 2 else ''}"
                for k, v in sorted(groups.items())
            )
            raise DataError(
                f"the images differ in their number of {what} ({listed}); all cases of a "
                f"data set must agree (pass --spatial-dims to read them one way)"
            )
    return cases


def data_fingerprint(cases: Sequence[Case]) -> list[dict[str, Any]]:
    """A JSON-ready description of each case: name, files, shape, channels, geometry and a
    checksum of its image and mask values.

    A resumed run compares it with the record of the interrupted run
    (:func:`fingerprint_changes`), so training never continues on other data.
    """
    return [
        {
            "name": case.name,
            "files": [p.name for p in case.pair.images],
            "mask": None if case.pair.mask is None else case.pair.mask.name,
            "channels": int(case.image.shape[0]),
            **case.geometry.to_dict(),
            "image_crc32": _checksum(case.image),
            "mask_crc32": None if case.mask is None else _checksum(case.mask),
        }
        for case in cases
    ]


def _checksum(array: np.ndarray) -> str:
    """A CRC-32 of the array's values (the same data read again gives the same one)."""
    return f"{zlib.crc32(np.ascontiguousarray(array).tobytes()):08x}"


def fingerprint_changes(
    saved: Sequence[dict[str, Any]], now: Sequence[dict[str, Any]]
) -> list[str]:
    """What differs between two :func:`data_fingerprint` records, in words (empty: none).

    Only what both records hold is compared, so a record written by an earlier version
    (without checksums, say) still compares on the rest.

    Examples:
        >>> a = [{"name": "c1", "shape": [4, 4]}, {"name": "c2", "shape": [4, 4]}]
        >>> b = [{"name": "c1", "shape": [4, 5]}, {"name": "c3", "shape": [4, 4]}]
        >>> fingerprint_changes(a, b)
        ['case c2 is gone', 'case c3 is new', 'c1: shape was [4, 4], now [4, 5]']
    """
    old = {c["name"]: c for c in saved}
    new = {c["name"]: c for c in now}
    changes = [f"case {n} is gone" for n in old if n not in new]
    changes += [f"case {n} is new" for n in new if n not in old]
    for name, case in new.items():
        before = old.get(name)
        if before is None:
            continue
        for key in sorted(set(before) & set(case)):  # a key not recorded then is not compared
            if before[key] != case[key]:
                changes.append(f"{name}: {key} was {before.get(key)}, now {case.get(key)}")
    return changes
