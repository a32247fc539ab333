"""A PyTorch dataset of image and mask files: :class:`SegmentationFolder`.

It serves the pairs of :func:`attnunet.data.find_pairs` as whole images or random
patches. Each pair is read as the command line reads it, with
:func:`attnunet.data.load_case` (channel files stacked, image, channel and mask geometry
compared); its label values are mapped to classes by an optional
:class:`~attnunet.data.LabelSet`, and its image normalised by an optional
:class:`~attnunet.data.Preprocessing` (CT, z-score, resampling to a target spacing) or
else by :func:`attnunet.data.normalise_image`. :meth:`~SegmentationFolder.validate`
checks a whole folder at once (:class:`FolderSummary`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from attnunet.data.cases import Case, load_case
from attnunet.data.labels import LabelSet
from attnunet.data.pairing import DEFAULT_MASK_SUFFIXES, Pair, find_pairs
from attnunet.data.preprocessing import Preprocessing
from attnunet.data.readers import DataError, _check_spatial_dims, normalise_image

__all__ = ["FolderSummary", "SegmentationFolder"]


@dataclass(frozen=True)
class FolderSummary:
    """What :meth:`SegmentationFolder.validate` found.

    Attributes:
        num_pairs: number of image/mask pairs read.
        spatial_dims: 2 or 3.
        channels: channels per image.
        min_shape: smallest size along each spatial axis over all images (as stored,
            before any resampling).
        max_shape: largest size along each spatial axis.
        labels: the label values present in the masks as written, sorted (empty without
            masks); with a :class:`~attnunet.data.LabelSet`, its ignore value included.
        foreground_fraction: fraction of mask voxels that are neither 0 nor the ignore
            value of the label set (``nan`` without masks).
    """

    num_pairs: int
    spatial_dims: int
    channels: int
    min_shape: tuple[int, ...]
    max_shape: tuple[int, ...]
    labels: tuple[int, ...]
    foreground_fraction: float


@dataclass
class _Entry:
    """One pair as served: the image, the class map, foreground indices and spacing."""

    image: np.ndarray
    mask: np.ndarray | None
    foreground: np.ndarray | None  # flat indices of mask > 0, only for patches
    spacing: tuple[float, ...] | None


@dataclass
class _Tally:
    """What :meth:`SegmentationFolder.validate` gathers over the cases."""

    channels: dict[int, list[str]]
    dims: dict[int, list[str]]
    shapes: list[tuple[int, ...]]
    labels: set[int]
    foreground: int = 0
    total: int = 0

    def add(self, case: Case, ignore: int | None) -> None:
        """Count one case."""
        name = case.pair.image.name
        self.channels.setdefault(int(case.image.shape[0]), []).append(name)
        self.dims.setdefault(case.spatial_dims, []).append(name)
        self.shapes.append(tuple(int(s) for s in case.image.shape[1:]))
        if case.mask is not None:
            self.labels.update(int(v) for v in np.unique(case.mask))
            inside = case.mask != 0
            if ignore is not None:
                inside &= case.mask != ignore
            self.foreground += int(np.count_nonzero(inside))
            self.total += case.mask.size

    def disagreements(self) -> list[str]:
        """A problem for each of dimensions and channels on which the images differ."""
        problems = []
        for what, groups in (("spatial dimensions", self.dims), ("channels", self.channels)):
            if len(groups) > 1:
                listed = "; ".join(
                    f"{k}: {', '.join(v[:3])}{', ...' if len(v) > 3 else ''}"
                    for k, v in sorted(groups.items())
                )
                problems.append(
                    f"the images differ in their number of {what} ({listed}); all images "
                    f"of a dataset must agree"
                )
        return problems

    def summary(self, num_pairs: int) -> FolderSummary:
        """The :class:`FolderSummary` of a tally without problems."""
        spatial = next(iter(self.dims))
        return FolderSummary(
            num_pairs=num_pairs,
            spatial_dims=spatial,
            channels=next(iter(self.channels)),
            min_shape=tuple(min(s[i] for s in self.shapes) for i in range(spatial)),
            max_shape=tuple(max(s[i] for s in self.shapes) for i in range(spatial)),
            labels=tuple(sorted(self.labels)),
            foreground_fraction=self.foreground / self.total if self.total else float("nan"),
        )


def _check_num_classes(mask: np.ndarray, path: Any, num_classes: int) -> None:
    """Refuse a mask holding a label ``>= num_classes``, naming the file."""
    if not mask.size or int(mask.max()) < num_classes:
        return
    values = np.unique(mask)
    shown = ", ".join(str(v) for v in values[:12]) + (", ..." if values.size > 12 else "")
    raise DataError(
        f"{path}: the mask holds label {int(values[-1])} but num_classes={num_classes} "
        f"allows 0 to {num_classes - 1} (values present: {shown}); raise num_classes, "
        f"give a LabelSet (labels=) that maps the dataset's label values to classes, or fix "
        f"the mask"
    )


class SegmentationFolder(Dataset[dict[str, Any]]):
    """A dataset of images and masks read from files.

    Item ``i`` is a dict with ``"image"``, a ``float32`` tensor ``(C, *spatial)``;
    ``"mask"``, an ``int64`` class map ``(*spatial)`` (absent for pairs without a mask);
    ``"name"``, the image's file name without extension (nnU-Net's case name); and
    ``"spacing"``, the voxel size of the image served, a tuple of floats in mm, present
    only when known (a file header that stores one, or the target spacing of
    ``preprocessing``; the key is left out rather than set to ``None``, which
    DataLoader's default collation cannot batch). Files are read when an item is asked
    for, unless ``cache=True`` keeps every image after its first read (for data that
    fits in memory; each DataLoader worker then holds its own copy).

    Each pair is read with :func:`~attnunet.data.load_case`, as the command line reads
    it: the channel files of an nnU-Net case are stacked, and an image whose channel
    files or mask lie on another voxel grid (size, spacing or affine) is refused, naming
    both files (``allow_mismatch=True`` serves it with a
    :class:`~attnunet.data.GeometryWarning`, when the sizes match).

    Masks: without ``labels``, the values as stored are the classes (a mask of only 0
    and 255 reads as 0 and 1), checked against ``num_classes`` when given. With
    ``labels``, the values as written (0, 21, 22, ...) become classes ``0..K-1`` and the
    ignore value becomes :data:`~attnunet.data.IGNORE_INDEX` (-1) through
    :meth:`LabelSet.encode <attnunet.data.LabelSet.encode>`; an unknown value is refused
    naming the file.

    Images: with ``preprocessing``, each is normalised per channel by its scheme and
    resampled to its target spacing with the case's header spacing
    (:meth:`Preprocessing.prepare <attnunet.data.Preprocessing.prepare>`), and its mask
    resampled along (:meth:`~attnunet.data.Preprocessing.prepare_labels`); ``normalise``
    is then not used. Otherwise each channel is normalised by :func:`normalise_image`
    (percentiles) unless ``normalise=False``.

    With ``patch_size``, each item is a random patch: with probability
    ``foreground_fraction`` it contains a foreground voxel (``mask > 0``: neither
    background nor ignored) drawn uniformly, at a uniformly random place within the
    patch; otherwise (and always for a mask without foreground) its corner is uniform
    over the image. Images smaller than the patch are padded at the end with zeros
    (class 0). ``transform(image, mask, generator)`` (such as the augmentations in
    :mod:`attnunet.data.transforms`) is applied last, to tensors (``"spacing"`` is the
    image's before it).

    Randomness comes from ``generator``, or torch's global generator when it is ``None``
    (the right choice with DataLoader workers, which seed theirs differently; a
    generator is copied into every worker, so all workers would draw alike).

    Args:
        pairs: from :func:`find_pairs` (or built by hand).
        spatial_dims: 2 or 3, passed to :func:`~attnunet.data.load_case`; ``None`` takes
            each mask's dimensions.
        num_classes: when given, masks with classes ``>= num_classes`` are refused; with
            ``labels`` it must be ``None`` (it is then ``labels.num_classes``) or equal it.
        patch_size: patch size, one int per spatial axis or one for all; ``None`` serves
            whole images (use batch size 1 when their sizes differ).
        foreground_fraction: probability that a patch is placed on foreground.
        samples_per_image: items per pair (``len`` is ``len(pairs) * samples_per_image``),
            to draw several patches per image in one epoch.
        transform: called as ``transform(image, mask, generator)``, returns
            ``(image, mask)``.
        cache: keep images and masks in memory once read (and prepared).
        normalise: ``False`` serves intensities as stored (without ``preprocessing``).
        generator: source of randomness for patches and ``transform``.
        labels: the dataset's label values, to map masks to classes (see above).
        preprocessing: normalisation per channel and target spacing, such as
            :meth:`Preprocessing.fingerprint <attnunet.data.Preprocessing.fingerprint>`
            of the training cases; replaces ``normalise``.
        allow_mismatch: serve images whose mask or channel files lie on another voxel
            grid (spacing, affine), with a warning, instead of refusing them.

    Raises:
        DataError: no pairs.
        ValueError: an invalid ``patch_size``, ``foreground_fraction`` or
            ``samples_per_image``, or a ``num_classes`` other than ``labels``'.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
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

        Label values as written, 255 ignored:

        >>> from attnunet.data import LabelSet
        >>> _ = write_mask(root / "a_mask.png", np.full((40, 50), 21), overwrite=True)
        >>> _ = write_mask(root / "b_mask.png", np.full((40, 50), 255), overwrite=True)
        >>> labels = LabelSet((0, 21), ignore=255)
        >>> data = SegmentationFolder.from_folder(root, labels=labels, spatial_dims=2)
        >>> data[0]["mask"].unique().tolist(), data[1]["mask"].unique().tolist()
        ([1], [-1])
        >>> data.validate().labels, data.num_classes
        ((21, 255), 2)
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
        labels: LabelSet | None = None,
        preprocessing: Preprocessing | None = None,
        allow_mismatch: bool = False,
    ) -> None:
        self.pairs = list(pairs)
        if not self.pairs:
            raise DataError("no image pairs given; find_pairs(folder) lists a folder's pairs")
        self.spatial_dims = _check_spatial_dims(spatial_dims)
        if labels is not None:
            if num_classes is not None and num_classes != labels.num_classes:
                raise ValueError(
                    f"num_classes={num_classes} but the label set has {labels.num_classes} "
                    f"classes (values {', '.join(map(str, labels.values))}); leave "
                    f"num_classes out when giving labels"
                )
            num_classes = labels.num_classes
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
        self.labels = labels
        self.preprocessing = preprocessing
        self.allow_mismatch = allow_mismatch
        self._cache: dict[int, _Entry] = {}

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

    def _read_case(self, pair: Pair) -> Case:
        """The case as stored (mask values as written), its files checked together."""
        case = load_case(
            pair,
            spatial_dims=self.spatial_dims,
            allow_mismatch=self.allow_mismatch,
            keep_values=self.labels is not None and self.labels.keeps_255,
        )
        if self.labels is None and self.num_classes is not None and case.mask is not None:
            _check_num_classes(case.mask, pair.mask, self.num_classes)
        return case

    def _prepare(self, case: Case) -> _Entry:
        """The case as served: normalised (and resampled), its mask as classes."""
        mask = case.mask
        if mask is not None and self.labels is not None:
            mask = self.labels.encode(mask, case.pair.mask)
        spacing = case.spacing
        if self.preprocessing is not None:
            try:
                image = self.preprocessing.prepare(case.image, spacing)
            except ValueError as error:  # DataError included
                raise DataError(f"{case.pair.image}: {error}") from None
            if mask is not None:
                mask = self.preprocessing.prepare_labels(mask, spacing, image.shape[1:])
            spacing = self.preprocessing.spacing_after(spacing)
        else:
            image = normalise_image(case.image) if self.normalise else case.image
        foreground = None
        if mask is not None and self.patch_size is not None:
            foreground = np.flatnonzero(mask > 0)
        return _Entry(image, mask, foreground, spacing)

    def _check(self, case: Case) -> None:
        """What :meth:`_prepare` would refuse, found without normalising or resampling."""
        if case.mask is not None and self.labels is not None:
            self.labels.encode(case.mask, case.pair.mask)
        prep = self.preprocessing
        if prep is None:
            return
        channels = int(case.image.shape[0])
        if channels != prep.in_channels:
            raise DataError(
                f"{case.pair.image}: an image with {channels} channel(s), but the "
                f"preprocessing was computed for {prep.in_channels}; give images with "
                f"{prep.in_channels} channel(s) or a preprocessing of these"
            )
        target = prep.target_spacing
        if target is None:
            return
        if case.spacing is None or len(case.spacing) != len(target):
            raise DataError(
                f"{case.pair.image}: the preprocessing resamples to spacing {target}, but "
                f"the file's voxel size is {case.spacing or 'unknown'}; give files that "
                f"store a voxel size with one value per spatial axis (NIfTI, NRRD, ...), "
                f"or a preprocessing without a target spacing"
            )

    def _load(self, index: int) -> _Entry:
        """The pair ``index`` as served (cached when ``cache``)."""
        if index in self._cache:
            return self._cache[index]
        entry = self._prepare(self._read_case(self.pairs[index]))
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
        entry = self._load(pair_index)
        image, mask = entry.image, entry.mask
        if self.patch_size is not None:
            spatial = image.shape[1:]
            patch = self._patch_shape(spatial, pair)
            pad = [max(0, p - s) for p, s in zip(patch, spatial, strict=True)]
            if any(pad):
                image = np.pad(image, [(0, 0)] + [(0, p) for p in pad])
                mask = None if mask is None else np.pad(mask, [(0, p) for p in pad])
            shape = image.shape[1:]
            corner = self._corner(shape, patch, entry.foreground)
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
        if entry.spacing is not None:
            item["spacing"] = tuple(float(s) for s in entry.spacing)
        return item

    def validate(self) -> FolderSummary:
        """Read every file once and check it; report all problems together.

        Checks each case on its own (readable files, a supported shape, channel files
        and mask on the image's voxel grid, classes below ``num_classes``, or with
        ``labels`` no unknown label value; with ``preprocessing``, the channels it was
        computed for and a voxel size when it resamples), and the images against each
        other (same number of spatial dimensions and of channels). With ``cache=True``
        the cases read stay cached, prepared as items serve them.

        Returns:
            A :class:`FolderSummary` of the data, its label values as written.

        Raises:
            DataError: on any problem; the message starts with the first problem and
                then lists every problem found, one per line (every file with an unknown
                label value, for instance).
        """
        problems: list[str] = []
        tally = _Tally({}, {}, [], set())
        ignore = None if self.labels is None else self.labels.ignore
        for index, pair in enumerate(self.pairs):
            try:
                case = self._read_case(pair)
                tally.add(case, ignore)
                if self.cache and index not in self._cache:
                    self._cache[index] = self._prepare(case)
                else:
                    self._check(case)
            except (DataError, OSError) as error:
                problems.append(str(error))
        problems += tally.disagreements()
        if problems:
            report = "\n".join(f"  - {p}" for p in problems)
            raise DataError(
                f"{problems[0].splitlines()[0]}\n\n{len(problems)} problem(s) in "
                f"{len(self.pairs)} image/mask pairs:\n{report}"
            )
        return tally.summary(len(self.pairs))
