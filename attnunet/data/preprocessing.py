"""Preprocessing computed once over the training set: intensity normalisation per channel
and resampling to one voxel spacing (nnU-Net's dataset fingerprint, done simply).

Normalisation schemes, one per image channel (:data:`NORMALISATION_SCHEMES`):

================  ===========================================================================
``"ct"``          clip to the 0.5 and 99.5 percentiles of the training foreground voxels of
                  that channel, then subtract their mean and divide by their standard
                  deviation: one mapping for every case (nnU-Net's ``CTNormalization``)
``"zscore"``      per image: ``(x - mean) / max(std, 1e-8)`` over the whole image
                  (nnU-Net's default)
``"percentile"``  per image: the 1 and 99.8 percentiles to 0 and 1, clipped
                  (:func:`~attnunet.data.normalise_image`, attnunet's earlier default)
``"none"``        the intensities as stored, as ``float32``
================  ===========================================================================

:func:`schemes_for_channels` chooses them from nnU-Net's ``channel_names`` (``"CT"`` gives
``"ct"``). :meth:`Preprocessing.fingerprint` computes the CT statistics and the target
spacing from the training cases; :meth:`Preprocessing.prepare` then normalises and
resamples each case, and :meth:`Preprocessing.prepare_labels` brings its mask along.

Resampling uses :mod:`scipy.ndimage` with pixel-centre alignment (``grid_mode=True``, as
scikit-image's ``resize``) and edge values repeated beyond the border: images with cubic
splines (clipped to each channel's range), label maps through their one-hot maps (linear
interpolation of each label's indicator, then the label of the largest), probabilities
linearly.

Differences from nnU-Net:
    * CT statistics pool every foreground voxel of the training cases (at most
      ``max_voxels_per_case`` of a case, drawn at random), where nnU-Net draws the same
      number of voxels from each case, with replacement;
    * no cropping to the non-zero region, no ``use_mask_for_norm`` z-scoring inside it;
    * the target spacing is the median spacing, without nnU-Net's special case for very
      anisotropic data, and every axis is resampled alike (nnU-Net resamples the coarse
      axis of anisotropic data separately, with nearest-neighbour interpolation).

Examples:
    >>> images = [np.arange(16.0).reshape(1, 4, 4), np.arange(16.0).reshape(1, 4, 4) + 4]
    >>> masks = [np.eye(4, dtype=int), np.eye(4, dtype=int)]
    >>> prep = Preprocessing.fingerprint(images, masks, [None, None], schemes=("ct",))
    >>> prep.ct_stats[0].mean, prep.target_spacing
    (9.5, None)
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from attnunet.data.labels import _value_counts
from attnunet.data.readers import DataError, normalise_image

__all__ = [
    "NORMALISATION_SCHEMES",
    "CTStats",
    "Preprocessing",
    "resample_image",
    "resample_labels",
    "resample_probabilities",
    "resampled_shape",
    "schemes_for_channels",
]

NORMALISATION_SCHEMES: tuple[str, ...] = ("ct", "zscore", "percentile", "none")
"""The per-channel intensity normalisations of :class:`Preprocessing`."""

CT_PERCENTILES = (0.5, 99.5)
_SPACING_RTOL = 1e-3
_EPS = 1e-8


# ----------------------------------------------------------------------------- schemes


def schemes_for_channels(
    channel_names: Sequence[str] | Mapping[Any, str] | None,
    n_channels: int,
    default: str = "zscore",
) -> tuple[str, ...]:
    """Normalisation schemes from channel names, as nnU-Net's ``channel_names``.

    ``"CT"`` (any case) gives ``"ct"``, nnU-Net's ``"noNorm"`` gives ``"none"``, and every
    other name (``"T2"``, ``"ADC"``, ``"zscore"``) gives ``default``.

    Args:
        channel_names: a name per channel, or nnU-Net's mapping ``{"0": "CT"}`` (ordered
            by channel number), or ``None`` (``default`` for every channel).
        n_channels: the number of image channels.
        default: the scheme of channels not named ``CT``; one of
            :data:`NORMALISATION_SCHEMES`.

    Returns:
        One scheme per channel.

    Raises:
        DataError: a number of names other than ``n_channels``.
        ValueError: an unknown ``default``.

    Examples:
        >>> schemes_for_channels({"0": "CT", "1": "PET"}, 2)
        ('ct', 'zscore')
        >>> schemes_for_channels(None, 1, default="percentile")
        ('percentile',)
    """
    _check_scheme(default)
    if channel_names is None:
        return (default,) * n_channels
    if isinstance(channel_names, Mapping):
        items = sorted(channel_names.items(), key=lambda kv: int(kv[0]))
        names = [str(name) for _, name in items]
    else:
        names = [str(name) for name in channel_names]
    if len(names) != n_channels:
        raise DataError(
            f"{len(names)} channel names ({', '.join(names)}) for images with {n_channels} "
            f"channels; give one name per channel"
        )
    special = {"ct": "ct", "nonorm": "none"}
    return tuple(special.get(name.strip().lower(), default) for name in names)


def _check_scheme(scheme: str) -> str:
    if scheme not in NORMALISATION_SCHEMES:
        raise ValueError(
            f"unknown normalisation scheme {scheme!r}; choose one of "
            f"{', '.join(NORMALISATION_SCHEMES)}"
        )
    return scheme


# ----------------------------------------------------------------------------- CT stats


@dataclass(frozen=True)
class CTStats:
    """The intensity statistics of one channel's training foreground, for ``"ct"``.

    Args:
        low: the 0.5 percentile (the lower clip).
        high: the 99.5 percentile (the upper clip).
        mean: the mean of the foreground voxels (before clipping).
        std: their standard deviation (before clipping).

    Examples:
        >>> CTStats(-100.0, 300.0, 40.0, 80.0).to_dict()
        {'low': -100.0, 'high': 300.0, 'mean': 40.0, 'std': 80.0}
    """

    low: float
    high: float
    mean: float
    std: float

    def __post_init__(self) -> None:
        values = [float(getattr(self, k)) for k in ("low", "high", "mean", "std")]
        if not all(math.isfinite(v) for v in values) or values[0] > values[1] or values[3] < 0:
            raise ValueError(f"CT statistics need finite low <= high and std >= 0, got {self}")
        for key, value in zip(("low", "high", "mean", "std"), values, strict=True):
            object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, float]:
        """The statistics as JSON-ready data."""
        return {"low": self.low, "high": self.high, "mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CTStats:
        """The statistics stored by :meth:`to_dict`."""
        return cls(float(data["low"]), float(data["high"]), float(data["mean"]), float(data["std"]))

    @classmethod
    def of(cls, voxels: np.ndarray) -> CTStats:
        """The statistics of a 1D array of foreground intensities.

        Examples:
            >>> CTStats.of(np.arange(201.0))
            CTStats(low=1.0, high=199.0, mean=100.0, std=58.02298395176403)
        """
        voxels = np.asarray(voxels, np.float64).ravel()
        low, high = np.percentile(voxels, CT_PERCENTILES)
        return cls(float(low), float(high), float(voxels.mean()), float(voxels.std()))


# ----------------------------------------------------------------------------- Preprocessing


@dataclass(frozen=True)
class Preprocessing:
    """A dataset's normalisation per channel and its target spacing, stored with a model.

    Args:
        schemes: one of :data:`NORMALISATION_SCHEMES` per image channel.
        ct_stats: per channel, the :class:`CTStats` of a ``"ct"`` channel and ``None``
            for the others; ``()`` means ``None`` for every channel.
        target_spacing: the voxel spacing every case is resampled to, or ``None`` for
            no resampling.

    Raises:
        ValueError: an unknown scheme, a ``"ct"`` channel without statistics, statistics
            for another scheme, lengths that differ, or a spacing that is not positive.

    Examples:
        >>> prep = Preprocessing(("zscore",))
        >>> out = prep.normalise(np.array([[1.0, 2.0, 3.0]]))
        >>> out.astype(float).round(4).tolist(), out.dtype.name
        ([[-1.2247, 0.0, 1.2247]], 'float32')
    """

    schemes: tuple[str, ...]
    ct_stats: tuple[CTStats | None, ...] = ()
    target_spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        schemes = tuple(_check_scheme(str(s)) for s in self.schemes)
        if not schemes:
            raise ValueError("give one normalisation scheme per image channel")
        stats = tuple(self.ct_stats) or (None,) * len(schemes)
        if len(stats) != len(schemes):
            raise ValueError(f"{len(stats)} CT statistics for {len(schemes)} channels")
        for channel, (scheme, stat) in enumerate(zip(schemes, stats, strict=True)):
            if (scheme == "ct") != (stat is not None):
                raise ValueError(
                    f"channel {channel} ({scheme}): CT statistics go with the 'ct' scheme "
                    f"and only with it; compute them with Preprocessing.fingerprint"
                )
        spacing = self.target_spacing
        if spacing is not None:
            spacing = tuple(float(s) for s in spacing)
            if not spacing or not all(math.isfinite(s) and s > 0 for s in spacing):
                raise ValueError(f"target_spacing must be positive numbers, got {spacing}")
        object.__setattr__(self, "schemes", schemes)
        object.__setattr__(self, "ct_stats", stats)
        object.__setattr__(self, "target_spacing", spacing)

    @property
    def in_channels(self) -> int:
        """The number of image channels."""
        return len(self.schemes)

    # --------------------------------------------------------------------- storage

    def to_dict(self) -> dict[str, Any]:
        """The preprocessing as JSON-ready data (for :meth:`from_dict`).

        Examples:
            >>> Preprocessing(("none",), target_spacing=(2, 1, 1)).to_dict()
            {'schemes': ['none'], 'ct_stats': [None], 'target_spacing': [2.0, 1.0, 1.0]}
        """
        return {
            "schemes": list(self.schemes),
            "ct_stats": [None if s is None else s.to_dict() for s in self.ct_stats],
            "target_spacing": None if self.target_spacing is None else list(self.target_spacing),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing stored by :meth:`to_dict`.

        Examples:
            >>> prep = Preprocessing(("ct",), (CTStats(-1.0, 1.0, 0.0, 0.5),))
            >>> Preprocessing.from_dict(prep.to_dict()) == prep
            True
        """
        stats = data.get("ct_stats") or ()
        spacing = data.get("target_spacing")
        return cls(
            tuple(data["schemes"]),
            tuple(None if s is None else CTStats.from_dict(s) for s in stats),
            None if spacing is None else tuple(spacing),
        )

    def describe(self) -> str:
        """One line for a training log.

        Examples:
            >>> prep = Preprocessing(("ct",), (CTStats(-100, 300, 40, 80),), (2, 1, 1))
            >>> print(prep.describe())
            channel 0 ct (clip -100 to 300, mean 40, std 80); spacing 2 x 1 x 1 (others resampled)
        """
        parts = []
        for channel, (scheme, stat) in enumerate(zip(self.schemes, self.ct_stats, strict=True)):
            text = f"channel {channel} {scheme}"
            if stat is not None:
                text += (
                    f" (clip {stat.low:.4g} to {stat.high:.4g}, mean {stat.mean:.4g}, "
                    f"std {stat.std:.4g})"
                )
            parts.append(text)
        if self.target_spacing is None:
            spacing = "no resampling"
        else:
            size = " x ".join(f"{s:.4g}" for s in self.target_spacing)
            spacing = f"spacing {size} (others resampled)"
        return f"{', '.join(parts)}; {spacing}"

    # --------------------------------------------------------------------- applying

    def spacing_after(self, spacing: Sequence[float] | None) -> tuple[float, ...] | None:
        """The voxel size of a prepared image: the target spacing when this preprocessing
        resamples, else ``spacing`` itself (``None``: unknown).

        Examples:
            >>> Preprocessing(("none",), target_spacing=(2, 1, 1)).spacing_after((3, 1, 1))
            (2.0, 1.0, 1.0)
            >>> Preprocessing(("none",)).spacing_after((3, 1, 1))
            (3, 1, 1)
        """
        if self.target_spacing is None:
            return None if spacing is None else tuple(spacing)
        return tuple(float(s) for s in self.target_spacing)

    def normalise(self, image: Any) -> np.ndarray:
        """Normalise each channel of ``image`` ``(C, *S)`` by its scheme, as ``float32``.

        Raises:
            DataError: an image whose number of channels is not :attr:`in_channels`.
        """
        image = np.asarray(image)
        if image.ndim < 2 or image.shape[0] != self.in_channels:
            raise DataError(
                f"an image of shape {image.shape} does not have the {self.in_channels} "
                f"channel(s) (C, *spatial) this preprocessing was computed for"
            )
        return np.stack(
            [
                _normalise_channel(channel, scheme, stat)
                for channel, scheme, stat in zip(image, self.schemes, self.ct_stats, strict=True)
            ]
        )

    def prepare(self, image: Any, spacing: Sequence[float] | None) -> np.ndarray:
        """Normalise ``image`` ``(C, *S)``, then resample it to :attr:`target_spacing`.

        Args:
            image: the case's image as read.
            spacing: its voxel spacing (``None``: unknown; allowed only without a target
                spacing).

        Returns:
            A ``float32`` image ``(C, *S')``, ``S' = resampled_shape(S, spacing,
            target_spacing)`` (``S`` itself when there is no target spacing).

        Raises:
            DataError: a wrong number of channels, or an unknown or mismatched spacing
                when there is a target spacing.
        """
        out = self.normalise(image)
        shape = self._new_shape(out.shape[1:], spacing)
        return out if shape == out.shape[1:] else resample_image(out, shape)

    def prepare_labels(
        self, labels: Any, spacing: Sequence[float] | None, shape: Sequence[int] | None = None
    ) -> np.ndarray:
        """Resample a label map along with :meth:`prepare` of its image.

        Args:
            labels: the case's label map ``(*S)`` (label values or class indices;
                ``IGNORE_INDEX`` stays ``IGNORE_INDEX``).
            spacing: its voxel spacing.
            shape: the spatial shape to resample to (the prepared image's); by default
                the one :meth:`prepare` computes from ``spacing``.

        Returns:
            An ``int64`` label map of that shape (``labels`` itself, as ``int64``, when
            nothing is resampled).

        Raises:
            DataError: an unknown or mismatched spacing when there is a target spacing.
        """
        labels = np.asarray(labels)
        if shape is None:
            new_shape = self._new_shape(labels.shape, spacing)
        else:
            new_shape = tuple(int(n) for n in shape)
        if new_shape == labels.shape:
            return labels.astype(np.int64, copy=False)
        return resample_labels(labels, new_shape)

    def _new_shape(
        self, shape: tuple[int, ...], spacing: Sequence[float] | None
    ) -> tuple[int, ...]:
        if self.target_spacing is None:
            return tuple(shape)
        if spacing is None:
            raise DataError(
                f"this preprocessing resamples to spacing {self.target_spacing}, so every "
                f"image needs its voxel spacing; read it from a file that stores one "
                f"(NIfTI, for instance)"
            )
        if np.allclose(spacing, self.target_spacing, rtol=_SPACING_RTOL, atol=0.0):
            return tuple(shape)  # the target spacing already (header rounding aside)
        return resampled_shape(shape, spacing, self.target_spacing)

    # --------------------------------------------------------------------- fingerprint

    @classmethod
    def fingerprint(
        cls,
        images: Iterable[Any],
        masks: Iterable[Any],
        spacings: Iterable[Sequence[float] | None],
        *,
        schemes: str | Sequence[str],
        target_spacing: Literal["auto"] | Sequence[float] | None = "auto",
        ignore: int | None = None,
        max_voxels_per_case: int = 1_000_000,
        seed: int = 0,
    ) -> Preprocessing:
        """The preprocessing of a training set, computed once over its cases.

        CT statistics (for ``"ct"`` channels) come from the foreground voxels of every
        training image: mask ``> 0``, without ``ignore`` voxels. ``target_spacing="auto"``
        is ``None`` (no resampling) for 2D data or when a spacing is unknown; else the
        median spacing per axis, nnU-Net's default target (when every training case has
        one spacing, that spacing: the training cases are then not resampled, and a case
        at another spacing is, as nnU-Net does).

        Args:
            images: the training images, ``(C, *S)`` each (read once, in step with the
                other two).
            masks: their label maps ``(*S)``, label values or class indices.
            spacings: their voxel spacings (``None``: unknown).
            schemes: one scheme per channel, or one for all channels.
            target_spacing: ``"auto"``, a spacing to use as given, or ``None`` (no
                resampling).
            ignore: the ignore label value in ``masks``, left out of the foreground.
            max_voxels_per_case: at most this many foreground voxels of a case enter the
                CT statistics (drawn at random, without replacement, when it has more).
            seed: the seed of that draw.

        Returns:
            The preprocessing.

        Raises:
            DataError: no cases, cases that differ in channels or dimensions, a mask whose
                shape is not its image's, no foreground voxels for a ``"ct"`` channel, or
                a given ``target_spacing`` of the wrong length.
        """
        collected = _collect(images, masks, spacings, schemes, ignore, max_voxels_per_case, seed)
        stats = tuple(
            None if voxels is None else CTStats.of(voxels) for voxels in collected.foreground
        )
        spacing = _choose_target(target_spacing, collected.spacings, collected.spatial_dims)
        return cls(collected.schemes, stats, spacing)


def _normalise_channel(channel: np.ndarray, scheme: str, stat: CTStats | None) -> np.ndarray:
    """One channel normalised by ``scheme``, as ``float32``."""
    x = np.asarray(channel, np.float32)
    if scheme == "ct":
        assert stat is not None
        out = np.clip(x, np.float32(stat.low), np.float32(stat.high))
        out -= np.float32(stat.mean)
        out /= np.float32(max(stat.std, _EPS))
        return out
    if scheme == "zscore":
        mean = float(x.mean(dtype=np.float64))
        std = float(x.std(dtype=np.float64))
        return ((x - np.float32(mean)) / np.float32(max(std, _EPS))).astype(np.float32)
    if scheme == "percentile":
        return normalise_image(x[None])[0]
    return x


# ----------------------------------------------------------------------------- fingerprint


@dataclass
class _Collected:
    schemes: tuple[str, ...]
    foreground: list[np.ndarray | None]
    spacings: list[tuple[float, ...] | None]
    spatial_dims: int


def _collect(
    images: Iterable[Any],
    masks: Iterable[Any],
    spacings: Iterable[Sequence[float] | None],
    schemes: str | Sequence[str],
    ignore: int | None,
    max_voxels: int,
    seed: int,
) -> _Collected:
    """One pass over the cases: their spacings and the CT channels' foreground voxels."""
    rng = np.random.default_rng(seed)
    chunks: list[list[np.ndarray]] = []
    found: list[tuple[float, ...] | None] = []
    resolved: tuple[str, ...] = ()
    ndim = 0
    for case, (image, mask, spacing) in enumerate(_cases(images, masks, spacings)):
        image = np.asarray(image)
        if case == 0:
            ndim = image.ndim
            resolved = _resolve_schemes(schemes, image.shape[0] if ndim else 0)
            chunks = [[] for _ in resolved]
        _check_case(case, image, mask, ndim, len(resolved))
        found.append(None if spacing is None else tuple(float(s) for s in spacing))
        ct = [c for c, s in enumerate(resolved) if s == "ct"]
        if ct:
            for c, voxels in zip(
                ct, _foreground(image, ct, mask, ignore, max_voxels, rng), strict=True
            ):
                chunks[c].append(voxels)
    if not found:
        raise DataError("no training cases to compute the preprocessing from")
    foreground: list[np.ndarray | None] = []
    for channel, scheme in enumerate(resolved):
        if scheme != "ct":
            foreground.append(None)
            continue
        voxels = np.concatenate(chunks[channel])
        if voxels.size == 0:
            raise DataError(
                f"channel {channel} uses CT normalisation, but the training masks hold no "
                f"foreground voxels (mask > 0) to compute its statistics from; check the "
                f"masks, or use the 'zscore' scheme"
            )
        foreground.append(voxels)
    return _Collected(resolved, foreground, found, ndim - 1)


def _cases(
    images: Iterable[Any], masks: Iterable[Any], spacings: Iterable[Sequence[float] | None]
) -> Iterator[tuple[Any, Any, Sequence[float] | None]]:
    """The cases in step; a DataError when the three differ in number."""
    iterator = zip(images, masks, spacings, strict=True)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except ValueError as error:
            if not str(error).startswith("zip()"):
                raise
            raise DataError(
                f"the training images, masks and spacings differ in number ({error}); give "
                f"one mask and one spacing (or None) per image"
            ) from None
        yield item


def _resolve_schemes(schemes: str | Sequence[str], channels: int) -> tuple[str, ...]:
    resolved = (schemes,) * channels if isinstance(schemes, str) else tuple(schemes)
    for scheme in resolved:
        _check_scheme(scheme)
    if len(resolved) != channels:
        raise DataError(
            f"{len(resolved)} normalisation schemes for images with {channels} channels; "
            f"give one per channel"
        )
    return resolved


def _check_case(case: int, image: np.ndarray, mask: Any, ndim: int, channels: int) -> None:
    if image.ndim not in (3, 4) or image.ndim != ndim or image.shape[0] != channels:
        raise DataError(
            f"training case {case}: an image of shape {image.shape}; every image must be "
            f"(C, *spatial) with the {channels} channel(s) and {ndim - 1} spatial axes of "
            f"the first case"
        )
    shape = np.shape(mask)
    if shape != image.shape[1:]:
        raise DataError(
            f"training case {case}: its mask has shape {shape} and its image {image.shape} "
            f"(C, *spatial); the mask must cover the image voxel for voxel"
        )


def _foreground(
    image: np.ndarray,
    channels: list[int],
    mask: Any,
    ignore: int | None,
    max_voxels: int,
    rng: np.random.Generator,
) -> list[np.ndarray]:
    """The foreground voxels of ``channels`` of ``image``, at most ``max_voxels`` each."""
    mask = np.asarray(mask)
    inside = mask > 0
    if ignore is not None:
        inside &= mask != ignore
    where = np.flatnonzero(inside)
    if where.size > max_voxels:
        where = np.sort(rng.choice(where, size=max_voxels, replace=False))
    return [image[c].reshape(-1)[where].astype(np.float64) for c in channels]


def _choose_target(
    target: Literal["auto"] | Sequence[float] | None,
    spacings: list[tuple[float, ...] | None],
    spatial_dims: int,
) -> tuple[float, ...] | None:
    if target is None:
        return None
    if isinstance(target, str):
        if target != "auto":
            raise ValueError(f"target_spacing must be 'auto', a spacing or None, got {target!r}")
        return _auto_target(spacings, spatial_dims)
    given = tuple(float(s) for s in target)
    if len(given) != spatial_dims:
        raise DataError(
            f"target_spacing {given} has {len(given)} values; the images have "
            f"{spatial_dims} spatial axes"
        )
    return given


def _auto_target(
    spacings: list[tuple[float, ...] | None], spatial_dims: int
) -> tuple[float, ...] | None:
    """nnU-Net's default target: the median spacing per axis, or ``None`` (see fingerprint)."""
    if spatial_dims != 3 or any(s is None for s in spacings):
        return None
    table = np.asarray(spacings, np.float64)
    if table.ndim != 2 or table.shape[1] != spatial_dims:
        raise DataError(
            f"the spacings must have one value per spatial axis ({spatial_dims}), got "
            f"{sorted({len(s or ()) for s in spacings})} values"
        )
    if np.allclose(table, table[0], rtol=_SPACING_RTOL, atol=0.0):
        return tuple(float(s) for s in table[0])
    return tuple(float(s) for s in np.median(table, axis=0))


# ----------------------------------------------------------------------------- resampling


def resampled_shape(
    shape: Sequence[int], spacing: Sequence[float], target_spacing: Sequence[float]
) -> tuple[int, ...]:
    """The shape that covers the same extent at ``target_spacing``.

    Each axis is ``round(shape * spacing / target_spacing)``, at least 1.

    Raises:
        DataError: lengths that differ, or a spacing that is not positive.

    Examples:
        >>> resampled_shape((10, 64, 64), (2.5, 0.7, 0.7), (1.25, 1.0, 1.0))
        (20, 45, 45)
    """
    if not len(shape) == len(spacing) == len(target_spacing):
        raise DataError(
            f"a spatial shape {tuple(shape)} with spacing {tuple(spacing)} cannot be "
            f"resampled to spacing {tuple(target_spacing)}: they need one value per axis"
        )
    if not all(s > 0 for s in (*spacing, *target_spacing)):
        raise DataError(
            f"spacings must be positive, got {tuple(spacing)} and {tuple(target_spacing)}"
        )
    return tuple(
        max(1, round(n * s / t)) for n, s, t in zip(shape, spacing, target_spacing, strict=True)
    )


def _zoom(array: np.ndarray, new_shape: tuple[int, ...], order: int) -> np.ndarray:
    """``array`` (float32) interpolated to ``new_shape``, pixel centres aligned."""
    factors = [n / o for n, o in zip(new_shape, array.shape, strict=True)]
    out = ndimage.zoom(array, factors, order=order, mode="nearest", grid_mode=True)
    if out.shape != new_shape:  # never seen: zoom rounds shape * (new / shape)
        raise RuntimeError(f"zoom gave shape {out.shape} for {new_shape}")
    return out


def _check_new_shape(new_shape: Sequence[int], ndim: int) -> tuple[int, ...]:
    shape = tuple(int(n) for n in new_shape)
    if len(shape) != ndim or min(shape, default=0) < 1:
        raise ValueError(f"new_shape must have {ndim} positive sizes, got {tuple(new_shape)}")
    return shape


def resample_image(image: Any, new_shape: Sequence[int], order: int = 3) -> np.ndarray:
    """Resample each channel of ``image`` ``(C, *S)`` to ``new_shape``.

    Spline interpolation of ``order`` with pixel centres aligned and edge values
    repeated (scikit-image's ``resize`` with ``mode="edge"``, ``anti_aliasing=False``);
    each channel is clipped to its own range, so cubic splines add no overshoot.

    Args:
        image: the image ``(C, *S)``.
        new_shape: the spatial shape ``S'``.
        order: the spline order, 0 to 5.

    Returns:
        A ``float32`` image ``(C, *S')``.

    Examples:
        >>> resample_image(np.array([[[0.0, 1.0], [2.0, 3.0]]]), (4, 4), order=1)[0, 0].tolist()
        [0.0, 0.25, 0.75, 1.0]
    """
    image = np.asarray(image, np.float32)
    shape = _check_new_shape(new_shape, image.ndim - 1)
    out = np.empty((image.shape[0], *shape), np.float32)
    for c, channel in enumerate(image):
        out[c] = _zoom(channel, shape, order)
        if order > 1 and channel.size:
            np.clip(out[c], channel.min(), channel.max(), out=out[c])
    return out


def resample_labels(labels: Any, new_shape: Sequence[int]) -> np.ndarray:
    """Resample a label map to ``new_shape`` through its one-hot maps.

    Each value's indicator is interpolated linearly (pixel centres aligned, edges
    repeated) and each voxel takes the value whose indicator is largest; ties go to the
    larger value, so that a voxel half inside an object (a common tie when the size
    halves) joins the object rather than the background, as in nnU-Net's resampling of
    segmentations. ``IGNORE_INDEX`` (or any other value) is one value among the others,
    so ignored voxels stay ignored.

    Args:
        labels: an integer label map ``(*S)``.
        new_shape: the spatial shape ``S'``.

    Returns:
        An ``int64`` label map ``(*S')`` holding only values of ``labels``.

    Examples:
        >>> resample_labels(np.array([[0, 2], [-1, 2]]), (4, 4)).tolist()
        [[0, 0, 2, 2], [0, 0, 2, 2], [-1, -1, 2, 2], [-1, -1, 2, 2]]
    """
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != np.bool_:
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    shape = _check_new_shape(new_shape, labels.ndim)
    values = sorted(_value_counts(labels.astype(np.int64, copy=False)))
    out = np.full(shape, values[0] if values else 0, np.int64)
    if len(values) < 2:
        return out
    best = np.full(shape, -np.inf, np.float32)
    for value in values:
        indicator = _zoom((labels == value).astype(np.float32), shape, order=1)
        larger = indicator >= best
        out[larger] = value
        np.maximum(best, indicator, out=best)
    return out


def resample_probabilities(probs: Any, new_shape: Sequence[int]) -> np.ndarray:
    """Resample class probabilities (or logits) ``(K, *S)`` to ``new_shape`` linearly.

    Used to take a prediction back to a case's own grid before the argmax.

    Args:
        probs: the probabilities ``(K, *S)``.
        new_shape: the spatial shape ``S'``.

    Returns:
        A ``float32`` array ``(K, *S')``; probabilities that summed to 1 still do (up to
        rounding), as linear interpolation takes convex combinations.

    Examples:
        >>> p = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])
        >>> resample_probabilities(p, (1, 4))[1].tolist()
        [[0.0, 0.25, 0.75, 1.0]]
    """
    return resample_image(probs, new_shape, order=1)
