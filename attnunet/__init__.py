"""attnunet: attention and residual U-Nets for medical image segmentation, in 2D and 3D.

Every public name is imported on first use, so ``import attnunet.metrics`` or
``import attnunet.losses`` does not load the model zoo, and ``import attnunet`` is quick.

Examples:
    >>> import torch
    >>> from attnunet import AgResUNet, create_model
    >>> model = AgResUNet(spatial_dims=3, in_channels=1, num_classes=2, channels=(4, 8, 16))
    >>> logits, maps = model.forward_with_attention(torch.randn(1, 1, 10, 14, 18))
    >>> rebuilt = create_model("ag_res_unet", **model.config)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0.dev0"

# Public name -> the module that defines it. Resolved by ``__getattr__`` on first access.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(
        (
            "GATES",
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
            "build_gate",
        ),
        "attnunet.blocks",
    ),
    "ChannelLayerNorm": "attnunet.layers",
    **dict.fromkeys(
        (
            "KRD_PRESET",
            "OKTAY_PRESET",
            "RAUNET_PRESET",
            "AgResUNet",
            "AgUNet",
            "AttentionUNet",
            "AttentionUNetPlusPlus",
            "RAUNet",
            "ResUNet",
            "SegmentationModel",
            "UNet",
            "UNetPlusPlus",
            "UNetSkeleton",
            "ag_res_unet_krd",
            "ag_unet_krd",
            "attention_unet_oktay",
            "attention_unet_oktay_1024",
            "attention_unet_oktay_conv_mapped",
            "attention_unet_oktay_single",
            "raunet_ni",
            "res_unet_krd",
            "unet_krd",
            # the registry and saving
            "ModelInfo",
            "create_model",
            "from_pretrained",
            "list_models",
            "model_info",
            "register_model",
            "save_pretrained",
        ),
        "attnunet.models",
    ),
}

_LAZY_SUBMODULES = (
    "blocks",
    "cli",
    "data",
    "encoders",
    "inference",
    "layers",
    "losses",
    "metrics",
    "models",
    "study",
    "training",
)

__all__ = [*sorted(_EXPORTS), "__version__"]


def __getattr__(name: str) -> object:
    """Import a public name or submodule on first use."""
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"attnunet.{name}")
    raise AttributeError(f"module 'attnunet' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | set(_LAZY_SUBMODULES))


if TYPE_CHECKING:  # static analysers and IDEs see the names eagerly
    from attnunet.blocks import (  # noqa: F401
        GATES,
        AdditiveAttentionGate,
        AugmentedAttentionModule,
        ConvMappedAttentionGate,
        ConvNormAct,
        DoubleConv,
        Down,
        GridAttentionGate,
        GridGatingSignal,
        LinkNetDecoderBlock,
        MultiAttentionGate,
        ResidualBlock,
        SegmentationHead,
        SelfAttentionSkip,
        SkipGate,
        Up,
        build_gate,
    )
    from attnunet.layers import ChannelLayerNorm  # noqa: F401
    from attnunet.models import (  # noqa: F401
        KRD_PRESET,
        OKTAY_PRESET,
        RAUNET_PRESET,
        AgResUNet,
        AgUNet,
        AttentionUNet,
        AttentionUNetPlusPlus,
        ModelInfo,
        RAUNet,
        ResUNet,
        SegmentationModel,
        UNet,
        UNetPlusPlus,
        UNetSkeleton,
        ag_res_unet_krd,
        ag_unet_krd,
        attention_unet_oktay,
        attention_unet_oktay_1024,
        attention_unet_oktay_conv_mapped,
        attention_unet_oktay_single,
        create_model,
        from_pretrained,
        list_models,
        model_info,
        raunet_ni,
        register_model,
        res_unet_krd,
        save_pretrained,
        unet_krd,
    )
