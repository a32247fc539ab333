"""attnunet's own ResNet-18/34 encoder for any ``spatial_dims``, with torchvision's names."""

from collections.abc import Sequence

import torch
from torch import nn

from attnunet.layers import NormSpec, check_spatial_dims, conv_type, get_norm, max_pool_type

__all__ = ["RESNET_LAYERS", "ResNetEncoder"]

RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
"""Blocks per stage of the ResNets :class:`ResNetEncoder` builds (BasicBlock variants)."""


class _BasicBlock(nn.Module):
    """ResNet's basic block for any ``spatial_dims`` (torchvision's names and layout)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, stride: int, norm: NormSpec) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = get_norm(norm, spatial_dims, cout) or nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False)
        self.bn2 = get_norm(norm, spatial_dims, cout) or nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample: nn.Module = nn.Sequential(
                conv(cin, cout, 1, stride=stride, bias=False),
                get_norm(norm, spatial_dims, cout) or nn.Identity(),
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNetEncoder(nn.Module):
    """A ResNet-18/34 feature extractor for any ``spatial_dims``.

    The stem is ``conv 7 (stride 2) -> norm -> ReLU -> max-pool 3 (stride 2)``, followed by
    four stages of basic blocks; module names follow torchvision's ``resnet34`` (``conv1``,
    ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...), so its 2D ImageNet
    weights load into the 2D encoder directly and into the 3D one after
    :func:`~attnunet.encoders.inflate_state_dict`.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        layers: blocks per stage (``RESNET_LAYERS["resnet34"]`` by default).
        norm: norm spec (batch norm as in the original).

    Shape:
        input ``(B, in_channels, *S)``; returns four features at strides 4, 8, 16, 32 with
        ``feature_channels = [64, 128, 256, 512]`` channels.

    Examples:
        >>> import torch
        >>> encoder = ResNetEncoder(3, 1).eval()
        >>> [tuple(f.shape) for f in encoder(torch.randn(1, 1, 32, 32, 32))]
        [(1, 64, 8, 8, 8), (1, 128, 4, 4, 4), (1, 256, 2, 2, 2), (1, 512, 1, 1, 1)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 3,
        layers: Sequence[int] = RESNET_LAYERS["resnet34"],
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.spatial_dims = spatial_dims
        self.feature_channels = [64, 128, 256, 512]
        self.reductions = [4, 8, 16, 32]
        self.conv1 = conv_type(spatial_dims)(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = get_norm(norm, spatial_dims, 64) or nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = max_pool_type(spatial_dims)(3, stride=2, padding=1)
        stages: list[nn.Sequential] = []
        cin = 64
        for index, (blocks, width) in enumerate(zip(layers, self.feature_channels, strict=True)):
            stage = []
            for b in range(blocks):
                stride = 2 if b == 0 and index > 0 else 1
                stage.append(_BasicBlock(spatial_dims, cin, width, stride, norm))
                cin = width
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1 -> bn1 -> relu -> maxpool``: the input at stride 4, before ``layer1``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        e1 = self.layer1(self.stem(x))
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        return [e1, e2, e3, e4]
