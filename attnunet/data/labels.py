"""Label values as the user wrote them, and the class indices a model predicts.

A dataset's masks hold label values such as 0, 21, 22, 23 (vertebrae L1 to L3) or 255
(voxels nobody annotated). A model predicts classes 0..K-1. A :class:`LabelSet` holds the
label values (always starting with 0, the background), their optional names and an
optional *ignore* value, and maps one to the other: :meth:`LabelSet.encode` turns a mask
into class indices (the ignore value becomes :data:`IGNORE_INDEX`) and
:meth:`LabelSet.decode` turns predicted indices back into label values for writing.

A label set comes from the training masks (:meth:`LabelSet.discover`), from an nnU-Net v2
``dataset.json`` (:meth:`LabelSet.from_dataset_json`) or from a labels file
(:meth:`LabelSet.from_file`), and is stored with a model as :meth:`LabelSet.to_dict`.

Examples:
    >>> labels = LabelSet((0, 21, 22), names=("background", "L1", "L2"), ignore=255)
    >>> mask = np.array([[0, 21], [22, 255]])
    >>> labels.encode(mask).tolist()
    [[0, 1], [2, -1]]
    >>> labels.decode(np.array([[0, 1], [2, 2]])).tolist()
    [[0, 21], [22, 22]]
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnunet.data.readers import DataError

__all__ = ["IGNORE_INDEX", "LabelSet", "label_counts"]

IGNORE_INDEX = -1
"""The class index of voxels that count in neither the loss nor the metrics (the ignore
label, such as 255, after :meth:`LabelSet.encode`)."""

_IGNORE_NAME = "ignore"
_LUT_LIMIT = 1 << 20  # largest mask value for which encode and counts use a lookup table
_MAX_LISTED = 10


# ----------------------------------------------------------------------------- helpers


def _as_int(value: Any, what: str) -> int:
    """``value`` as an ``int``; whole floats are accepted, anything else raises DataError."""
    if isinstance(value, bool):
        raise DataError(f"{what}: {value!r} is not an integer label value")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
        return int(value)
    raise DataError(f"{what}: {value!r} is not an integer label value (write 0, 1, 2, ...)")


def _listing(values: Iterable[int]) -> str:
    """``values`` as ``"1, 2, 3"``, at most :data:`_MAX_LISTED` of them then ``", ..."``."""
    values = list(values)
    text = ", ".join(str(v) for v in values[:_MAX_LISTED])
    return text + (f", ... ({len(values)} in all)" if len(values) > _MAX_LISTED else "")


def _integer_array(mask: Any, where: str) -> np.ndarray:
    """``mask`` as an integer array; whole-valued floats are converted, fractions refused."""
    array = np.asarray(mask)
    if array.dtype == np.bool_:
        return array.view(np.uint8)
    if np.issubdtype(array.dtype, np.integer):
        return array
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or (array != np.round(array)).any():
            raise DataError(
                f"{where}holds non-integer or non-finite values; label values must be whole "
                f"numbers (0 = background)"
            )
        return array.astype(np.int64)
    raise DataError(f"{where}holds {array.dtype} data; a mask holds integer label values")


def _value_counts(array: np.ndarray) -> dict[int, int]:
    """Voxels per value of an integer array, fast when its value range is small."""
    if array.size == 0:
        return {}
    low, high = int(array.min()), int(array.max())
    if high - low < _LUT_LIMIT:
        offset = low if low < 0 or high >= _LUT_LIMIT else 0
        flat = array.ravel()
        if offset or not np.can_cast(flat.dtype, np.intp):
            flat = flat.astype(np.int64) - offset
        counts = np.bincount(flat, minlength=high - offset + 1)
        present = np.flatnonzero(counts)
        return {int(v) + offset: int(counts[v]) for v in present}
    values, counts = np.unique(array, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


def _column_name(name: str) -> str:
    """``name`` lower-case with spaces and characters unsafe in CSV headers as ``_``."""
    return re.sub(r"[^0-9a-z_.\-]", "_", name.strip().lower().replace(" ", "_"))


# ----------------------------------------------------------------------------- LabelSet


@dataclass(frozen=True)
class LabelSet:
    """The label values of a dataset, their names, and the ignore value.

    The values are kept sorted (names follow them); value ``values[i]`` is class ``i`` of
    a model, so the background, value 0, is always class 0.

    Args:
        values: the label values, distinct integers >= 0 that include 0 (background);
            given in any order, stored sorted.
        names: one name per value (in the order of ``values`` as given), or ``None``.
        ignore: the value of voxels that count in neither loss nor metrics (such as
            255), or ``None``; not one of ``values``.

    Raises:
        DataError: no value 0, a repeated value or name, a negative or non-integer
            value, names that do not match the values, or an ignore value among them.

    Examples:
        >>> labels = LabelSet((0, 2, 1))
        >>> labels.values, labels.num_classes, labels.class_names
        ((0, 1, 2), 3, ('background', '1', '2'))
        >>> LabelSet((0, 7), names=("Background", "Left Lung")).column_names
        ('background', 'left_lung')
    """

    values: tuple[int, ...]
    names: tuple[str, ...] | None = None
    ignore: int | None = None

    def __post_init__(self) -> None:
        values = [_as_int(v, "label values") for v in self.values]
        names = None if self.names is None else [str(n) for n in self.names]
        ignore = None if self.ignore is None else _as_int(self.ignore, "the ignore value")
        _check_values(values, names, ignore)
        order = sorted(range(len(values)), key=values.__getitem__)
        object.__setattr__(self, "values", tuple(values[i] for i in order))
        if names is not None:
            object.__setattr__(self, "names", tuple(names[i] for i in order))
        object.__setattr__(self, "ignore", ignore)

    # --------------------------------------------------------------------- views

    @property
    def num_classes(self) -> int:
        """The number of classes a model predicts (the number of values)."""
        return len(self.values)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The names, or the values as text with ``"background"`` for 0 when unnamed."""
        if self.names is not None:
            return self.names
        return tuple("background" if v == 0 else str(v) for v in self.values)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Short names safe for CSV headers: the name (lower-case, ``_`` for spaces and
        unsafe characters) when named, else the value as text."""
        if self.names is None:
            return tuple(str(v) for v in self.values)
        return tuple(
            _column_name(n) or str(v) for n, v in zip(self.names, self.values, strict=True)
        )

    @property
    def keeps_255(self) -> bool:
        """Whether 255 (or 65535) is a label value or the ignore value, so that a mask
        holding only 0 and 255 is read as written (``read_mask(..., keep_values=True)``),
        not as a binary 0/1 mask.

        Examples:
            >>> LabelSet((0, 1)).keeps_255, LabelSet((0, 1), ignore=255).keeps_255
            (False, True)
        """
        return bool({255, 65535} & {*self.values, self.ignore})

    # --------------------------------------------------------------------- mapping

    def encode(self, mask: Any, path: str | os.PathLike[str] | None = None) -> np.ndarray:
        """Map a mask's label values to class indices ``0..K-1`` (ignore: ``IGNORE_INDEX``).

        Args:
            mask: an integer (or boolean, or whole-valued float) array of label values.
            path: the file the mask came from, named in errors.

        Returns:
            An ``int64`` array of the mask's shape.

        Raises:
            DataError: the mask holds values that are neither a label value nor the
                ignore value; the message lists them (up to 10) and the known ones.

        Examples:
            >>> LabelSet((0, 21, 22, 23)).encode(np.array([0, 23, 21, 0], np.uint8)).tolist()
            [0, 3, 1, 0]
        """
        where = f"{path}: the mask " if path is not None else "the mask "
        array = _integer_array(mask, where)
        if array.size == 0:
            return np.zeros(array.shape, np.int64)
        low, high = int(array.min()), int(array.max())
        known = self._known()
        if low >= 0 and max(high, known[-1]) < _LUT_LIMIT:
            table = np.full(max(high, known[-1]) + 1, -2, np.int64)
            table[list(self.values)] = np.arange(self.num_classes)
            if self.ignore is not None:
                table[self.ignore] = IGNORE_INDEX
            out = table[array]
            unknown = out == -2
        else:
            out, unknown = self._encode_searchsorted(array, known)
        if unknown.any():
            self._raise_unknown(np.unique(array[unknown]).tolist(), where)
        return out

    def _known(self) -> list[int]:
        """The label values and the ignore value, sorted."""
        extra = [] if self.ignore is None else [self.ignore]
        return sorted([*self.values, *extra])

    def _encode_searchsorted(
        self, array: np.ndarray, known: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``encode`` for masks whose values are too large for a lookup table."""
        keys = np.asarray(known, np.int64)
        codes = np.asarray(
            [IGNORE_INDEX if k == self.ignore else self.values.index(k) for k in known],
            np.int64,
        )
        position = np.clip(np.searchsorted(keys, array), 0, len(keys) - 1)
        return codes[position], keys[position] != array

    def _raise_unknown(self, unknown: list[int], where: str) -> None:
        ignore = f"; ignore value: {self.ignore}" if self.ignore is not None else ""
        plural = "s" if len(unknown) > 1 else ""
        raise DataError(
            f"{where}holds label value{plural} {_listing(unknown)} that the label set does "
            f"not know (label values: {_listing(self.values)}{ignore}). Declare every "
            f'label value in dataset.json\'s "labels" or in a labels file, or train on '
            f"masks that hold these values so they are found"
        )

    def decode(self, indices: Any) -> np.ndarray:
        """Map class indices ``0..K-1`` back to label values.

        Args:
            indices: an integer array of class indices (a prediction's argmax).

        Returns:
            The label values, in the smallest unsigned dtype that holds the largest
            (``uint8`` up to 255, then ``uint16``, ``uint32``, ``uint64``).

        Raises:
            ValueError: an index outside ``0..K-1`` (``IGNORE_INDEX`` included: a
                prediction never ignores a voxel).

        Examples:
            >>> out = LabelSet((0, 21, 300)).decode(np.array([2, 0, 1]))
            >>> out.tolist(), out.dtype.name
            ([300, 0, 21], 'uint16')
        """
        array = np.asarray(indices)
        if array.dtype == np.bool_:
            array = array.astype(np.intp)
        if not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"class indices must be integers, got {array.dtype}")
        if array.size and (int(array.min()) < 0 or int(array.max()) >= self.num_classes):
            bad = np.unique(array[(array < 0) | (array >= self.num_classes)]).tolist()
            raise ValueError(
                f"class indices must lie in 0..{self.num_classes - 1}, found "
                f"{_listing(bad)}; IGNORE_INDEX ({IGNORE_INDEX}) marks ignored voxels of "
                f"a target and has no label value to decode to"
            )
        dtype = np.min_scalar_type(self.values[-1])
        return np.asarray(self.values, dtype)[array]

    # --------------------------------------------------------------------- storage

    def to_dict(self) -> dict[str, Any]:
        """The label set as JSON-ready data (for :meth:`from_dict`).

        Examples:
            >>> LabelSet((0, 5), ignore=255).to_dict()
            {'values': [0, 5], 'names': None, 'ignore': 255}
        """
        names = None if self.names is None else list(self.names)
        return {"values": list(self.values), "names": names, "ignore": self.ignore}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelSet:
        """The label set stored by :meth:`to_dict`.

        Raises:
            DataError: the data lacks ``values`` or holds other keys, or is invalid.

        Examples:
            >>> labels = LabelSet((0, 5), names=("bg", "cell"))
            >>> LabelSet.from_dict(labels.to_dict()) == labels
            True
        """
        if not isinstance(data, Mapping) or "values" not in data:
            raise DataError(f"a stored label set needs a 'values' list, got {data!r}")
        extra = set(data) - {"values", "names", "ignore"}
        if extra:
            raise DataError(f"a stored label set has unknown keys {sorted(extra)}")
        names = data.get("names")
        return cls(
            tuple(data["values"]),
            None if names is None else tuple(names),
            data.get("ignore"),
        )

    # --------------------------------------------------------------------- constructors

    @classmethod
    def discover(
        cls,
        masks: Iterable[Any],
        *,
        ignore: int | None = None,
        names: Mapping[int, str] | None = None,
    ) -> LabelSet:
        """The label set of the values found in ``masks`` (plus 0, and minus ``ignore``).

        Args:
            masks: the training masks (integer arrays of label values).
            ignore: the ignore value, if the masks use one.
            names: names of some or all values; values named here are included even when
                no mask holds them. Unnamed values are named by their value (``0``:
                ``"background"``).

        Returns:
            The label set.

        Raises:
            DataError: a negative label value in a mask.

        Examples:
            >>> masks = [np.array([[0, 22], [21, 255]]), np.array([[105, 0]])]
            >>> LabelSet.discover(masks, ignore=255).values
            (0, 21, 22, 105)
        """
        found = set(label_counts(masks)) | {0} | {_as_int(v, "names") for v in names or {}}
        negative = sorted(v for v in found if v < 0)
        if negative:
            raise DataError(
                f"the masks hold negative label values {_listing(negative)}; label values "
                f"must be whole numbers >= 0"
            )
        values = tuple(sorted(found - ({ignore} if ignore is not None else set())))
        if names is None:
            return cls(values, None, ignore)
        named = {_as_int(k, "names"): str(v) for k, v in names.items()}
        default = {0: "background"}
        return cls(values, tuple(named.get(v, default.get(v, str(v))) for v in values), ignore)

    @classmethod
    def from_dataset_json(
        cls, path_or_dict: str | os.PathLike[str] | Mapping[str, Any]
    ) -> LabelSet:
        """The label set of an nnU-Net v2 ``dataset.json`` (its ``labels`` mapping).

        ``labels`` maps names to values, ``{"background": 0, "liver": 1}``, and may hold
        an ``"ignore"`` entry, the ignore value (as nnU-Net's ignore label). The older
        value-to-name form of the Medical Segmentation Decathlon (``{"0": "background"}``)
        is read too.

        Args:
            path_or_dict: the file, or its content already read.

        Returns:
            The label set, named as in the file.

        Raises:
            DataError: no ``labels`` entry, region-based labels (lists of values, which
                attnunet does not train), repeated or non-integer values, or no value 0.

        Examples:
            >>> dataset = {"labels": {"background": 0, "liver": 1, "ignore": 2}}
            >>> labels = LabelSet.from_dataset_json(dataset)
            >>> labels.values, labels.names, labels.ignore
            ((0, 1), ('background', 'liver'), 2)
        """
        source = "dataset.json"
        if isinstance(path_or_dict, Mapping):
            data: Any = path_or_dict
        else:
            source = str(path_or_dict)
            data = _read_json(Path(path_or_dict))
        if not isinstance(data, Mapping) or not isinstance(data.get("labels"), Mapping):
            raise DataError(
                f'{source}: has no "labels" mapping; nnU-Net\'s dataset.json declares '
                f'labels as "labels": {{"background": 0, "liver": 1}}'
            )
        if data.get("regions_class_order") is not None:
            raise DataError(_region_message(source))
        return _from_mapping(data["labels"], source)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> LabelSet:
        """The label set of a labels file.

        Accepted files:

        * JSON mapping names to values (nnU-Net style), ``{"background": 0, "L1": 21}``;
        * JSON mapping values to names, ``{"0": "background", "21": "L1"}``;
        * JSON with a ``labels`` entry holding either (a ``dataset.json``);
        * text with one ``value name`` per line, ``#`` starting a comment.

        In every form the name ``ignore`` declares the ignore value.

        Args:
            path: the file (``.json`` is read as JSON, anything else as text).

        Returns:
            The label set, named as in the file.

        Raises:
            DataError: an unreadable file, a line that is not ``value name``, repeated
                or non-integer values, or no value 0.
            FileNotFoundError: when ``path`` does not exist.

        Examples:
            >>> import tempfile
            >>> path = Path(tempfile.mkdtemp()) / "labels.txt"
            >>> _ = path.write_text("0 background\\n21 L1  # first lumbar\\n255 ignore\\n")
            >>> labels = LabelSet.from_file(path)
            >>> labels.values, labels.names, labels.ignore
            ((0, 21), ('background', 'L1'), 255)
        """
        path = Path(path)
        if path.suffix.lower() == ".json":
            data = _read_json(path)
            if isinstance(data, Mapping) and isinstance(data.get("labels"), Mapping):
                return cls.from_dataset_json(path)
            return _from_mapping(data, str(path))
        return _from_text(path)

    # --------------------------------------------------------------------- logging

    def describe(self, counts: Mapping[int, int] | None = None) -> str:
        """A few lines listing the classes (value, name, voxel count) for a log.

        Args:
            counts: voxels per label value (:func:`label_counts`), or ``None``.

        Examples:
            >>> labels = LabelSet((0, 21), names=("background", "L1"), ignore=255)
            >>> print(labels.describe({0: 1000, 21: 50, 255: 7}))
            2 classes (label value -> class):
              class 0: value   0 background 1,000 voxels
              class 1: value  21 L1            50 voxels
              ignored: value 255 ignore         7 voxels
        """
        rows = [
            (f"class {i}", value, name)
            for i, (value, name) in enumerate(zip(self.values, self.class_names, strict=True))
        ]
        if self.ignore is not None:
            rows.append(("ignored", self.ignore, _IGNORE_NAME))
        width_key = max(len(r[0]) for r in rows)
        width_value = max(len(str(r[1])) for r in rows)
        width_name = max(len(r[2]) for r in rows)
        counted = [f"{counts.get(r[1], 0):,}" for r in rows] if counts is not None else []
        width_count = max((len(c) for c in counted), default=0)
        lines = [f"{self.num_classes} classes (label value -> class):"]
        for i, (key, value, name) in enumerate(rows):
            line = f"  {key:<{width_key}}: value {value:>{width_value}} {name:<{width_name}}"
            if counts is not None:
                line += f" {counted[i]:>{width_count}} voxels"
            lines.append(line.rstrip())
        return "\n".join(lines)


def _check_values(values: list[int], names: list[str] | None, ignore: int | None) -> None:
    """The checks of :class:`LabelSet`; raises DataError with what would work."""
    if len(set(values)) != len(values):
        repeated = sorted({v for v in values if values.count(v) > 1})
        raise DataError(f"label values must be distinct; {_listing(repeated)} repeated")
    if any(v < 0 for v in values):
        raise DataError(f"label values must be >= 0, got {_listing(sorted(values))}")
    if 0 not in values:
        raise DataError(
            f"the label values {_listing(sorted(values))} have no 0: value 0 is the "
            f'background (class 0) and must be declared, e.g. "background": 0'
        )
    if names is not None:
        if len(names) != len(values):
            raise DataError(f"{len(names)} names for {len(values)} label values; give one each")
        if any(not n.strip() for n in names):
            raise DataError("label names must not be empty")
        folded = [_column_name(n) for n in names]
        if len(set(folded)) != len(folded):
            clashing = sorted(
                {n for n, f in zip(names, folded, strict=True) if folded.count(f) > 1}
            )
            raise DataError(
                f"label names must be distinct (ignoring case, spaces and punctuation); "
                f"{', '.join(map(repr, clashing))} collide"
            )
    if ignore is not None and (ignore < 0 or ignore in values):
        raise DataError(
            f"the ignore value {ignore} must be >= 0 and not one of the label values "
            f"{_listing(sorted(values))}"
        )


# ----------------------------------------------------------------------------- files


def _read_json(path: Path) -> Any:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: is not valid JSON ({error}); fix the file") from error


def _region_message(source: str) -> str:
    return (
        f"{source}: declares region-based labels (lists of values, or "
        f"regions_class_order); attnunet does not train region-based (overlapping) labels: "
        f'give each label one value, e.g. "liver": 1'
    )


def _from_mapping(mapping: Any, source: str) -> LabelSet:
    """A label set from ``{name: value}`` or ``{value: name}``; ``ignore`` names the ignore."""
    if not isinstance(mapping, Mapping) or not mapping:
        raise DataError(
            f'{source}: expected a mapping of names to label values, {{"background": 0, '
            f'"liver": 1}}, or of values to names, {{"0": "background", "1": "liver"}}'
        )
    value_to_name = all(isinstance(v, str) for v in mapping.values())
    pairs = (
        [(str(name), key) for key, name in mapping.items()]
        if value_to_name
        else [(str(key), value) for key, value in mapping.items()]
    )
    entries: list[tuple[str, int]] = []
    for name, raw in pairs:
        if isinstance(raw, (list, tuple)):
            if len(raw) != 1:
                raise DataError(_region_message(source))
            raw = raw[0]
        entries.append((name, _as_int(raw, f"{source}: label {name!r}")))
    return _from_entries(entries, source)


def _from_entries(entries: list[tuple[str, int]], source: str) -> LabelSet:
    """A label set from ``(name, value)`` pairs, the one named ``ignore`` as ignore."""
    ignore = [v for n, v in entries if n.strip().lower() == _IGNORE_NAME]
    if len(ignore) > 1:
        raise DataError(f"{source}: declares the ignore label {len(ignore)} times; give one")
    labels = [(n, v) for n, v in entries if n.strip().lower() != _IGNORE_NAME]
    seen: dict[int, str] = {}
    for name, value in labels:
        if value in seen:
            raise DataError(
                f"{source}: labels {seen[value]!r} and {name!r} have the same value {value}; "
                f"give each label its own value"
            )
        seen[value] = name
    try:
        return LabelSet(
            tuple(v for _, v in labels),
            tuple(n for n, _ in labels),
            ignore[0] if ignore else None,
        )
    except DataError as error:
        raise DataError(f"{source}: {error}") from None


def _from_text(path: Path) -> LabelSet:
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: is not a text file ({error})") from error
    entries: list[tuple[str, int]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"[+-]?\d+", parts[0]):
            raise DataError(
                f"{path}: line {number} ({raw.strip()!r}) is not 'value name'; write one "
                f"label per line, e.g. '21 L1' ('#' starts a comment)"
            )
        entries.append((parts[1].strip(), int(parts[0])))
    if not entries:
        raise DataError(f"{path}: declares no labels; write one 'value name' per line")
    return _from_entries(entries, str(path))


# ----------------------------------------------------------------------------- counts


def label_counts(masks: Iterable[Any]) -> dict[int, int]:
    """Voxels per label value over ``masks``, sorted by value.

    Args:
        masks: integer arrays of label values (boolean arrays count as 0 and 1).

    Returns:
        ``{value: voxels}`` for every value present.

    Examples:
        >>> label_counts([np.array([[0, 21], [21, 255]]), np.array([0, 0])])
        {0: 3, 21: 2, 255: 1}
    """
    total: dict[int, int] = {}
    for mask in masks:
        for value, count in _value_counts(_integer_array(mask, "a mask ")).items():
            total[value] = total.get(value, 0) + count
    return dict(sorted(total.items()))
