"""Composable building blocks, each written once for any ``spatial_dims``."""

from attnunet.blocks.conv import ConvNormAct, DoubleConv, ResidualBlock
from attnunet.blocks.gates import GATES, GridAttentionGate, build_gate
from attnunet.blocks.heads import SegmentationHead
from attnunet.blocks.sampling import Down, Up

__all__ = [
    "GATES",
    "ConvNormAct",
    "DoubleConv",
    "Down",
    "GridAttentionGate",
    "ResidualBlock",
    "SegmentationHead",
    "Up",
    "build_gate",
]
