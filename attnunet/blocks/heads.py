"""Segmentation heads."""

import torch
from torch import nn

from attnunet.layers import conv_type

__all__ = ["SegmentationHead"]


class SegmentationHead(nn.Module):
    """A convolution (1x1 by default, with bias) mapping features to class logits.

    The head returns logits: apply ``sigmoid`` (``num_classes == 1``) or ``softmax``
    (``num_classes > 1``) yourself, or use a loss that takes logits.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: feature channels.
        num_classes: output channels; 1 for a binary mask.
        kernel_size: odd kernel size (1 by default).

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``.

    Examples:
        >>> SegmentationHead(2, 16, 3)(torch.randn(1, 16, 8, 9)).shape
        torch.Size([1, 3, 8, 9])
    """

    def __init__(
        self, spatial_dims: int, in_channels: int, num_classes: int, kernel_size: int = 1
    ) -> None:
        super().__init__()
        if kernel_size % 2 == 0:
            raise ValueError(f"head kernel_size must be odd, got {kernel_size}")
        self.conv = conv_type(spatial_dims)(
            in_channels, num_classes, kernel_size, padding=kernel_size // 2
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
