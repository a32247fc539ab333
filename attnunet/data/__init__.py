"""Data on disk and in memory: the bundled samples, reading and pairing image and mask
files, writing predictions, and augmentation.

* :mod:`attnunet.data.samples`: the sample images and volumes shipped with the package;
* :mod:`attnunet.data.readers`: reading images and masks (formats, channels, label values);
* :mod:`attnunet.data.pairing`: pairing images with masks by file name, validation splits;
* :mod:`attnunet.data.dataset`: :class:`SegmentationFolder`, a dataset of those files;
* :mod:`attnunet.data.writers`: writing label maps and predictions;
* :mod:`attnunet.data.transforms`: random flips, rotations, noise and blur on tensors.

Every public name of those modules is importable from here.

Examples:
    >>> from attnunet.data import load_sample
    >>> sample = load_sample("nuclei2d")
    >>> sample.image.shape, sample.image.dtype.name, sample.spacing
    ((512, 512), 'float32', (1.0, 1.0))
"""

from attnunet.data.dataset import FolderSummary, SegmentationFolder
from attnunet.data.labels import IGNORE_INDEX
from attnunet.data.pairing import DEFAULT_MASK_SUFFIXES, Pair, find_pairs, split_pairs
from attnunet.data.readers import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    SUPPORTED_EXTENSIONS,
    DataError,
    normalise_image,
    read_image,
    read_mask,
)
from attnunet.data.samples import Sample, available_samples, load_sample, random_crops
from attnunet.data.transforms import (
    Compose,
    RandomFlip,
    RandomGaussianBlur,
    RandomIntensityNoise,
    RandomIntensityScaleShift,
    RandomRot90,
    default_augmentation,
    gaussian_blur,
)
from attnunet.data.writers import write_mask, write_prediction

__all__ = [
    "HIGH_PERCENTILE",
    "IGNORE_INDEX",
    "LOW_PERCENTILE",
    "DEFAULT_MASK_SUFFIXES",
    "SUPPORTED_EXTENSIONS",
    "Compose",
    "DataError",
    "FolderSummary",
    "Pair",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomIntensityNoise",
    "RandomIntensityScaleShift",
    "RandomRot90",
    "Sample",
    "SegmentationFolder",
    "available_samples",
    "default_augmentation",
    "find_pairs",
    "gaussian_blur",
    "load_sample",
    "normalise_image",
    "random_crops",
    "read_image",
    "read_mask",
    "split_pairs",
    "write_mask",
    "write_prediction",
]
