"""The former home of reading, pairing and writing: its names now live in
:mod:`attnunet.data.readers`, :mod:`attnunet.data.pairing`, :mod:`attnunet.data.dataset`
and :mod:`attnunet.data.writers`, and all of them in :mod:`attnunet.data`.

Kept so that ``from attnunet.data import io`` and ``io.find_pairs(...)`` keep working;
new code imports from :mod:`attnunet.data` (``from attnunet.data import find_pairs``).
"""

from attnunet.data import (
    DEFAULT_MASK_SUFFIXES,
    SUPPORTED_EXTENSIONS,
    DataError,
    FolderSummary,
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
    "write_mask",
    "write_prediction",
]
