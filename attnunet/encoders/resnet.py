"""attnunet's own ResNet-18/34 encoder for any ``spatial_dims``, with torchvision's names."""

import math
from collections.abc import Sequence

import torch
from torch import nn

from attnunet.layers import (
    NormSpec,
    check_spatial_dims,
    compact_axes,
    conv_type,
    get_norm,
    max_pool_type,
    per_axis,
)

__all__ = ["RESNET_LAYERS", "ResNetEncoder", "resnet_strides"]

RESNET_STEPS = ("the stem convolution", "the max-pool", "layer2", "layer3", "layer4")
"""The five down-sampling steps of a ResNet, in order: what ``strides[i]`` applies to."""

RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
"""Blocks per stage of the ResNets :class:`ResNetEncoder` builds (BasicBlock variants)."""


def resnet_strides(
    strides: Sequence[int | Sequence[int]] | None, spatial_dims: int
) -> list[tuple[int, ...]]:
    """The five strides of a ResNet's down-sampling steps, one positive int per axis each.

    The steps are, in order, the stem convolution, the stem max-pool and the first blocks
    of ``layer2``, ``layer3`` and ``layer4`` (:data:`RESNET_STEPS`); each entry is an int
    (every axis) or one int per spatial axis. ``None`` is ResNet's own: 2 everywhere.

    Raises:
        ValueError: not five entries, or an entry that is not a positive int or one per axis.

    Examples:
        >>> resnet_strides([(1, 2, 2), (1, 2, 2), 2, 2, 2], 3)[:3]
        [(1, 2, 2), (1, 2, 2), (2, 2, 2)]
    """
    if strides is None:
        return [(2,) * spatial_dims] * len(RESNET_STEPS)
    items = [strides] if isinstance(strides, int) else list(strides)
    if len(items) != len(RESNET_STEPS):
        raise ValueError(
            f"strides must give {len(RESNET_STEPS)} entries, one per down-sampling step "
            f"({', '.join(RESNET_STEPS)}), each an int or one int per axis, e.g. "
            f"[[1, 2, 2], [1, 2, 2], 2, 2, 2]; got {strides!r}"
        )
    return [
        per_axis(s if isinstance(s, int) else tuple(s), spatial_dims, f"strides[{i}] ({step})")
        for i, (s, step) in enumerate(zip(items, RESNET_STEPS, strict=True))
    ]


class _BasicBlock(nn.Module):
    """ResNet's basic block for any ``spatial_dims`` (torchvision's names and layout)."""

    def __init__(
        self,
        spatial_dims: int,
        cin: int,
        cout: int,
        stride: int | tuple[int, ...],
        norm: NormSpec,
    ) -> None:
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

    ``strides`` makes the encoder anisotropic: one stride (an int or one per axis) for each
    of the five down-sampling steps (:data:`RESNET_STEPS`: the stem convolution, the
    max-pool, and the first block of ``layer2``, ``layer3`` and ``layer4`` with its 1x1
    shortcut). The kernels stay ResNet's (7 in the stem, 3 in the max-pool and the blocks,
    with "same" padding), so a stride of 1 keeps an axis's size, and the weights (and
    their shapes) are those of the isotropic encoder: pretrained weights load the same way.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        layers: blocks per stage (``RESNET_LAYERS["resnet34"]`` by default).
        norm: norm spec (batch norm as in the original).
        strides: five strides, each an int or one positive int per axis (see above);
            ``None`` (default) is 2 on every axis at every step, ResNet's own.

    Shape:
        input ``(B, in_channels, *S)``; returns four features ``e1..e4`` with
        ``feature_channels = [64, 128, 256, 512]`` channels, at strides 4, 8, 16, 32 by
        default. Along axis ``d``, ``e1`` is reduced by ``strides[0][d] * strides[1][d]``
        and each later feature by one more step (``axis_reductions``), every step taking
        a size ``n`` to ``ceil(n / stride)``. ``reductions`` holds, per feature, the least
        common multiple of its per-axis reductions.

    Raises:
        ValueError: bad ``strides`` (see :func:`resnet_strides`).

    Examples:
        >>> import torch
        >>> encoder = ResNetEncoder(3, 1).eval()
        >>> [tuple(f.shape) for f in encoder(torch.randn(1, 1, 32, 32, 32))]
        [(1, 64, 8, 8, 8), (1, 128, 4, 4, 4), (1, 256, 2, 2, 2), (1, 512, 1, 1, 1)]
        >>> flat = ResNetEncoder(3, 1, (1, 1, 1, 1), strides=[(1, 2, 2), (1, 2, 2), 2, 2, 2])
        >>> flat.axis_reductions
        [[1, 4, 4], [2, 8, 8], [4, 16, 16], [8, 32, 32]]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 3,
        layers: Sequence[int] = RESNET_LAYERS["resnet34"],
        norm: NormSpec = "batch",
        strides: Sequence[int | Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        steps = resnet_strides(strides, spatial_dims)
        self.spatial_dims = spatial_dims
        self.strides = steps
        self.feature_channels = [64, 128, 256, 512]
        totals = [math.prod(axes) for axes in zip(*steps[:2], strict=True)]
        self.axis_reductions = [list(totals)]
        for axes in steps[2:]:
            totals = [t * a for t, a in zip(totals, axes, strict=True)]
            self.axis_reductions.append(list(totals))
        self.reductions = [math.lcm(*r) for r in self.axis_reductions]
        conv = conv_type(spatial_dims)
        self.conv1 = conv(in_channels, 64, 7, stride=compact_axes(steps[0]), padding=3, bias=False)
        self.bn1 = get_norm(norm, spatial_dims, 64) or nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = max_pool_type(spatial_dims)(3, stride=compact_axes(steps[1]), padding=1)
        stages: list[nn.Sequential] = []
        cin = 64
        for index, (blocks, width) in enumerate(zip(layers, self.feature_channels, strict=True)):
            stage = []
            for b in range(blocks):
                stride = compact_axes(steps[index + 1]) if b == 0 and index > 0 else 1
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
