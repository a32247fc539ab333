"""What a model is trained for, stored with it: the data's dimensions and channels, the
label values, and the preprocessing.

A :class:`Task` is computed once from the training cases (:meth:`Task.from_cases`: the
labels found in the masks or declared, the intensity statistics and the target spacing
of :class:`~attnunet.data.preprocessing.Preprocessing`), turns cases into the
:class:`~attnunet.training.Volume` objects that training and validation use
(:meth:`Task.volumes`: label values mapped to classes 0..K-1, intensities normalised,
voxels resampled), and is saved in the model's ``config.json`` so that prediction repeats
it exactly (:meth:`Task.predict`: the same normalisation and resampling, the prediction
taken back to the case's own grid and its label values).

Examples:
    >>> import numpy as np
    >>> from attnunet.data import LabelSet, Preprocessing
    >>> task = Task(2, 1, LabelSet((0, 21, 22)), Preprocessing(("zscore",), (None,), None))
    >>> task.num_classes, Task.from_dict(task.to_dict()) == task
    (3, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from attnunet.data import (
    Case,
    DataError,
    LabelSet,
    Preprocessing,
    resample_probabilities,
    schemes_for_channels,
)
from attnunet.training.prediction import predict_logits
from attnunet.training.settings import TrainSettings, Volume

__all__ = ["Task", "legacy_task"]


@dataclass(frozen=True)
class Task:
    """The data a model was trained on, as prediction needs to know it.

    Attributes:
        spatial_dims: 2 or 3.
        in_channels: image channels.
        labels: the label values (and names, and the ignore label) of the masks.
        preprocessing: the intensity normalisation and target spacing.
        channel_names: the channels' names (nnU-Net's ``channel_names``), if known.
    """

    spatial_dims: int
    in_channels: int
    labels: LabelSet
    preprocessing: Preprocessing
    channel_names: tuple[str, ...] | None = None

    @property
    def num_classes(self) -> int:
        """Classes including background (the model's outputs)."""
        return self.labels.num_classes

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, for a model's ``config.json``."""
        return {
            "spatial_dims": self.spatial_dims,
            "in_channels": self.in_channels,
            "labels": self.labels.to_dict(),
            "preprocessing": self.preprocessing.to_dict(),
            "channel_names": None if self.channel_names is None else list(self.channel_names),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Task:
        """The task :meth:`to_dict` wrote."""
        names = values.get("channel_names")
        return cls(
            spatial_dims=int(values["spatial_dims"]),
            in_channels=int(values["in_channels"]),
            labels=LabelSet.from_dict(values["labels"]),
            preprocessing=Preprocessing.from_dict(values["preprocessing"]),
            channel_names=None if names is None else tuple(names),
        )

    @classmethod
    def from_cases(
        cls,
        train: Sequence[Case],
        labelled: Sequence[Case] = (),
        *,
        labels: LabelSet | None = None,
        ignore: int | None = None,
        channel_names: Sequence[str] | None = None,
        normalisation: str | Sequence[str] = "auto",
        target_spacing: Any = "auto",
    ) -> Task:
        """The task of a training set.

        Args:
            train: the training cases (with masks): the preprocessing statistics come
                from them alone.
            labelled: further cases with masks (validation) whose labels count when the
                label set is discovered.
            labels: the declared label set (``dataset.json`` or a labels file); ``None``
                discovers it from the masks of ``train`` and ``labelled``.
            ignore: the ignore label when ``labels`` is discovered.
            channel_names: the channels' names; ``"CT"`` selects CT normalisation when
                ``normalisation="auto"``.
            normalisation: ``"auto"`` (CT for CT channels, else z-score per image), one
                scheme for every channel (``"ct"``, ``"zscore"``, ``"percentile"``,
                ``"none"``), or one per channel.
            target_spacing: ``"auto"``, ``None`` or one spacing per axis (see
                :meth:`~attnunet.data.preprocessing.Preprocessing.fingerprint`).
        """
        if not train:
            raise ValueError("no training cases")
        first = train[0]
        if labels is None:
            masks = [c.mask for c in (*train, *labelled) if c.mask is not None]
            labels = LabelSet.discover(masks, ignore=ignore)
        channels = int(first.image.shape[0])
        if normalisation == "auto":
            schemes = tuple(schemes_for_channels(channel_names, channels))
        elif isinstance(normalisation, str):
            schemes = (normalisation,) * channels
        elif len(normalisation) == channels:
            schemes = tuple(normalisation)
        else:
            raise ValueError(
                f"normalisation has {len(normalisation)} schemes ({', '.join(normalisation)}) "
                f"for images with {channels} channel(s); give one per channel, or one for all"
            )
        preprocessing = Preprocessing.fingerprint(
            [c.image for c in train],
            [None if c.mask is None else labels.encode(c.mask, c.pair.mask) for c in train],
            [c.spacing for c in train],
            schemes=schemes,
            target_spacing=target_spacing,
        )
        names = None if channel_names is None else tuple(channel_names)
        return cls(first.spatial_dims, channels, labels, preprocessing, names)

    def check(self, case: Case) -> None:
        """Refuse a case whose dimensions or channels differ from the model's.

        Raises:
            DataError: one line naming the file and what the model expects.
        """
        dims, channels = case.spatial_dims, int(case.image.shape[0])
        if (dims, channels) == (self.spatial_dims, self.in_channels):
            return
        if dims != self.spatial_dims:
            hint = f"use a model trained on {dims}D data, or give {self.spatial_dims}D images"
        elif self.in_channels == 1:
            hint = "give single-channel images (one file per case)"
        else:
            last = self.in_channels - 1
            hint = (
                f"give images with {self.in_channels} channels (an nnU-Net case has one file "
                f"per channel, _0000 to _{last:04d})"
            )
        raise DataError(
            f"{case.pair.image}: a {dims}D image with {channels} channel{_s(channels)} "
            f"{tuple(case.image.shape[1:])}, but the model takes {self.spatial_dims}D images "
            f"with {self.in_channels} channel{_s(self.in_channels)}; {hint}"
        )

    def grid_spacing(self, case: Case) -> tuple[float, ...] | None:
        """The voxel size of ``case`` as the model sees it: the target spacing when the
        preprocessing resamples, else the case's own (``None``: unknown)."""
        return self.preprocessing.spacing_after(case.spacing)

    def prepare(self, case: Case) -> np.ndarray:
        """The image of ``case`` normalised and resampled as in training.

        Raises:
            DataError: the case cannot be prepared (for example a model that resamples
                given a file without a voxel size), naming the file.
        """
        self.check(case)
        try:
            return self.preprocessing.prepare(case.image, case.spacing)
        except DataError as error:
            raise DataError(f"{case.pair.image}: {error}") from None
        except ValueError as error:
            raise DataError(
                f"{case.pair.image}: {error}; give the voxel size with --spacing"
            ) from None

    def volume(self, case: Case, name: str | None = None) -> Volume:
        """``case`` as training and validation use it: normalised, resampled to the
        target spacing, its mask's label values mapped to classes 0..K-1.

        When the preprocessing resamples, the volume lies on the target grid, and so
        training validation scores on that grid; :meth:`predict_classes` (``attnunet
        evaluate``) takes predictions back to each case's own grid first, so the two can
        differ a little.
        """
        image = self.prepare(case)
        mask = None
        if case.mask is not None:
            encoded = self.labels.encode(case.mask, case.pair.mask)
            mask = self.preprocessing.prepare_labels(encoded, case.spacing, image.shape[1:])
        return Volume(image.astype(np.float32), mask, name or case.name, self.grid_spacing(case))

    def volumes(self, cases: Sequence[Case], names: Sequence[str] | None = None) -> list[Volume]:
        """:meth:`volume` of every case (named ``names`` when given)."""
        if names is None:
            return [self.volume(c) for c in cases]
        return [self.volume(c, n) for c, n in zip(cases, names, strict=True)]

    def predict_classes(
        self,
        model: nn.Module,
        case: Case,
        settings: TrainSettings,
        device: torch.device | None = None,
    ) -> np.ndarray:
        """The class map ``(*S)`` (0..K-1) of ``case`` on its own voxel grid."""
        image = self.prepare(case)
        logits = predict_logits(model, image, settings, device)
        shape = tuple(case.image.shape[1:])
        if tuple(logits.shape[1:]) == shape:
            return logits.argmax(0).numpy()
        probabilities = torch.softmax(logits.float(), 0).numpy()
        return resample_probabilities(probabilities, shape).argmax(0)

    def predict(
        self,
        model: nn.Module,
        case: Case,
        settings: TrainSettings,
        device: torch.device | None = None,
    ) -> np.ndarray:
        """The label map of ``case`` on its own voxel grid, in the dataset's label values."""
        return self.labels.decode(self.predict_classes(model, case, settings, device))

    def encode(self, case: Case) -> np.ndarray:
        """The mask of ``case`` as classes 0..K-1 (and ``IGNORE_INDEX``) on its own grid.

        Raises:
            DataError: a label value the model does not know, naming the file.
        """
        assert case.mask is not None
        return self.labels.encode(case.mask, case.pair.mask)


def _s(count: int) -> str:
    """The plural ending for ``count``."""
    return "" if count == 1 else "s"


def legacy_task(settings: TrainSettings, in_channels: int) -> Task:
    """The task of a model saved before tasks were stored: labels 0..K-1, the percentile
    normalisation it was trained with, no resampling."""
    labels = LabelSet(tuple(range(settings.num_classes)))
    preprocessing = Preprocessing(("percentile",) * in_channels, (None,) * in_channels, None)
    return Task(settings.spatial_dims, in_channels, labels, preprocessing)
