"""A PyTorch dataset of image and mask files: :class:`SegmentationFolder`.

It serves the pairs of :func:`attnunet.data.find_pairs` as whole images or random
patches, normalised by :func:`attnunet.data.normalise_image`, and its
:meth:`~SegmentationFolder.validate` checks a whole folder at once
(:class:`FolderSummary`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from attnunet.data.pairing import DEFAULT_MASK_SUFFIXES, Pair, find_pairs
from attnunet.data.readers import (
    DataError,
    _check_spatial_dims,
    normalise_image,
    read_image,
    read_mask,
)

__all__ = ["FolderSummary", "SegmentationFolder"]


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
        """The raw image ``(C, *spatial)`` (the channel files of a multi-file case
        stacked) and its mask, checked to match."""
        channels = [read_image(path, spatial_dims=self.spatial_dims) for path in pair.images]
        for path, channel in zip(pair.images[1:], channels[1:], strict=True):
            if channel.shape[1:] != channels[0].shape[1:]:
                raise DataError(
                    f"{path}: size {channel.shape[1:]} differs from the case's first channel "
                    f"{pair.images[0]} {channels[0].shape[1:]}; every channel file of a case "
                    f"must have the same size"
                )
        image = channels[0] if len(channels) == 1 else np.concatenate(channels)
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
