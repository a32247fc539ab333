"""Data on disk and in memory: the bundled samples, reading and pairing image and mask
files, writing predictions, and augmentation.

* :mod:`attnunet.data.samples`: the sample images and volumes shipped with the package;
* :mod:`attnunet.data.readers`: reading images and masks (formats, channels, label values),
  with their geometry;
* :mod:`attnunet.data.geometry`: :class:`Geometry`, a file's voxel size, affine and header;
* :mod:`attnunet.data.pairing`: pairing images with masks by file name (nnU-Net raw
  datasets and DICOM series too), validation splits;
* :mod:`attnunet.data.cases`: :class:`Case`, a case's channels, mask and geometry, read and
  checked together;
* :mod:`attnunet.data.labels`: :class:`LabelSet`, label values as written and classes 0..K-1;
* :mod:`attnunet.data.preprocessing`: :class:`Preprocessing`, intensity normalisation
  (CT, z-score, percentile) and resampling, computed once over a training set;
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

from attnunet.data.cases import (
    Case,
    GeometryWarning,
    data_fingerprint,
    fingerprint_changes,
    load_case,
    load_cases,
)
from attnunet.data.dataset import FolderSummary, SegmentationFolder
from attnunet.data.geometry import Geometry
from attnunet.data.labels import IGNORE_INDEX, LabelSet, label_counts
from attnunet.data.pairing import (
    DEFAULT_MASK_SUFFIXES,
    NnUNetDataset,
    Pair,
    find_dataset_json,
    find_pairs,
    read_dataset_json,
    split_pairs,
)
from attnunet.data.preprocessing import (
    NORMALISATION_SCHEMES,
    CTStats,
    Preprocessing,
    resample_image,
    resample_labels,
    resample_probabilities,
    resampled_shape,
    schemes_for_channels,
)
from attnunet.data.readers import (
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    SUPPORTED_EXTENSIONS,
    DataError,
    normalise_image,
    read_geometry,
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
from attnunet.data.writers import prediction_name, write_mask, write_prediction

__all__ = [
    "HIGH_PERCENTILE",
    "IGNORE_INDEX",
    "LOW_PERCENTILE",
    "DEFAULT_MASK_SUFFIXES",
    "NORMALISATION_SCHEMES",
    "SUPPORTED_EXTENSIONS",
    "CTStats",
    "Case",
    "Compose",
    "DataError",
    "FolderSummary",
    "Geometry",
    "GeometryWarning",
    "LabelSet",
    "NnUNetDataset",
    "Pair",
    "Preprocessing",
    "RandomFlip",
    "RandomGaussianBlur",
    "RandomIntensityNoise",
    "RandomIntensityScaleShift",
    "RandomRot90",
    "Sample",
    "SegmentationFolder",
    "available_samples",
    "data_fingerprint",
    "default_augmentation",
    "find_dataset_json",
    "find_pairs",
    "fingerprint_changes",
    "gaussian_blur",
    "label_counts",
    "load_case",
    "load_cases",
    "load_sample",
    "normalise_image",
    "prediction_name",
    "random_crops",
    "read_dataset_json",
    "read_geometry",
    "read_image",
    "read_mask",
    "resample_image",
    "resample_labels",
    "resample_probabilities",
    "resampled_shape",
    "schemes_for_channels",
    "split_pairs",
    "write_mask",
    "write_prediction",
]
