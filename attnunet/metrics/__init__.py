"""Segmentation metrics on NumPy arrays and torch tensors, batched, for any spatial_dims.

Overlap (:mod:`~attnunet.metrics.overlap`): Dice, IoU, mean IoU, precision, recall, pixel
accuracy and exact confusion counts, computed on the tensor's device.

Surface distances (:mod:`~attnunet.metrics.surface`): Hausdorff distance, HD95 in both
percentile conventions, ASSD and the surface-to-surface distance, with voxel spacing.

Topology and partitions (:mod:`~attnunet.metrics.components`,
:mod:`~attnunet.metrics.partition`): connected components, the fraction of one-piece
masks, and the ISBI 2012 scores V^rand and V^info in pixel and segment form.

:class:`~attnunet.metrics.accumulator.MetricAccumulator` gathers per-image values over an
epoch and reports mean ± standard deviation, as the source papers do.

This package depends on torch, NumPy and SciPy only; it never imports the model zoo.
See ``docs/metrics.md`` for every definition and convention.
"""

from attnunet.metrics.accumulator import MetricAccumulator, MetricSummary
from attnunet.metrics.components import label_components, num_components, one_piece_fraction
from attnunet.metrics.overlap import (
    ConfusionCounts,
    confusion_counts,
    dice_score,
    iou_score,
    mean_iou,
    pixel_accuracy,
    precision_score,
    recall_score,
)
from attnunet.metrics.partition import v_info, v_rand
from attnunet.metrics.surface import (
    SurfaceDistances,
    assd,
    hausdorff_distance,
    hd95,
    surface_distances,
    surface_metrics,
    surface_to_surface,
    surface_voxels,
)

__all__ = [
    "MetricAccumulator",
    "MetricSummary",
    "SurfaceDistances",
    "assd",
    "hausdorff_distance",
    "hd95",
    "surface_distances",
    "surface_metrics",
    "surface_to_surface",
    "surface_voxels",
    "ConfusionCounts",
    "confusion_counts",
    "dice_score",
    "iou_score",
    "label_components",
    "num_components",
    "one_piece_fraction",
    "v_info",
    "v_rand",
    "mean_iou",
    "pixel_accuracy",
    "precision_score",
    "recall_score",
]
