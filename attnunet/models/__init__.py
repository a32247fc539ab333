"""The model zoo."""

from attnunet.models.base import SegmentationModel
from attnunet.models.unet import (
    BLOCKS,
    KRD_PRESET,
    AgResUNet,
    AgUNet,
    ResUNet,
    UNet,
    UNetSkeleton,
    ag_res_unet_krd,
    ag_unet_krd,
    build_block,
    res_unet_krd,
    unet_krd,
)

__all__ = [
    "BLOCKS",
    "KRD_PRESET",
    "AgResUNet",
    "AgUNet",
    "ResUNet",
    "SegmentationModel",
    "UNet",
    "UNetSkeleton",
    "ag_res_unet_krd",
    "ag_unet_krd",
    "build_block",
    "res_unet_krd",
    "unet_krd",
]
