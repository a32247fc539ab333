"""The model zoo."""

from attnunet.models.attention_unet import (
    OKTAY_PRESET,
    AttentionUNet,
    attention_unet_oktay,
    attention_unet_oktay_1024,
    attention_unet_oktay_conv_mapped,
    attention_unet_oktay_single,
)
from attnunet.models.base import SegmentationModel
from attnunet.models.raunet import RAUNET_PRESET, RAUNet, raunet_ni
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
from attnunet.models.unetpp import AttentionUNetPlusPlus, UNetPlusPlus

__all__ = [
    "RAUNET_PRESET",
    "RAUNet",
    "raunet_ni",
    "OKTAY_PRESET",
    "AttentionUNet",
    "AttentionUNetPlusPlus",
    "attention_unet_oktay",
    "attention_unet_oktay_1024",
    "attention_unet_oktay_conv_mapped",
    "attention_unet_oktay_single",
    "BLOCKS",
    "KRD_PRESET",
    "AgResUNet",
    "AgUNet",
    "ResUNet",
    "SegmentationModel",
    "UNet",
    "UNetPlusPlus",
    "UNetSkeleton",
    "ag_res_unet_krd",
    "ag_unet_krd",
    "build_block",
    "res_unet_krd",
    "unet_krd",
]
