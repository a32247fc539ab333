"""Composable building blocks, each written once for any ``spatial_dims``."""

from attnunet.blocks.aam import AugmentedAttentionModule, LinkNetDecoderBlock
from attnunet.blocks.conv import ConvNormAct, DoubleConv, ResidualBlock, check_channels, conv_parts
from attnunet.blocks.gates import (
    GATES,
    GATINGS,
    AdditiveAttentionGate,
    ConvMappedAttentionGate,
    GridAttentionGate,
    GridGatingSignal,
    MultiAttentionGate,
    SelfAttentionSkip,
    SkipGate,
    build_gate,
    build_skip_gate,
)
from attnunet.blocks.heads import SegmentationHead
from attnunet.blocks.sampling import Down, Up, Upsample2x

__all__ = [
    "GATES",
    "GATINGS",
    "AdditiveAttentionGate",
    "AugmentedAttentionModule",
    "ConvMappedAttentionGate",
    "ConvNormAct",
    "DoubleConv",
    "Down",
    "GridAttentionGate",
    "GridGatingSignal",
    "LinkNetDecoderBlock",
    "MultiAttentionGate",
    "ResidualBlock",
    "SegmentationHead",
    "SelfAttentionSkip",
    "SkipGate",
    "Up",
    "Upsample2x",
    "build_gate",
    "build_skip_gate",
    "check_channels",
    "conv_parts",
]
