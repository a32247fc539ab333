"""attnunet: attention and residual U-Nets for medical image segmentation, in 2D and 3D.

Example:
    >>> import torch
    >>> from attnunet import AgResUNet, create_model
    >>> model = AgResUNet(spatial_dims=3, in_channels=1, num_classes=2, channels=(4, 8, 16))
    >>> logits, maps = model.forward_with_attention(torch.randn(1, 1, 10, 14, 18))
    >>> rebuilt = create_model("ag_res_unet", **model.config)
"""

from attnunet.blocks import (
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
    Up,
    build_gate,
)
from attnunet.layers import ChannelLayerNorm
from attnunet.models import (
    KRD_PRESET,
    OKTAY_PRESET,
    RAUNET_PRESET,
    AgResUNet,
    AgUNet,
    AttentionUNet,
    AttentionUNetPlusPlus,
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
    raunet_ni,
    res_unet_krd,
    unet_krd,
)
from attnunet.registry import ModelInfo, create_model, list_models, model_info, register_model

__version__ = "0.1.0.dev0"

_LAZY_SUBMODULES = ("convert", "data", "encoders", "losses", "metrics")


def __getattr__(name: str) -> object:
    """Import ``attnunet.data``, ``attnunet.metrics`` and ``attnunet.convert`` on first use,
    so ``import attnunet`` stays light."""
    if name in _LAZY_SUBMODULES:
        import importlib

        return importlib.import_module(f"attnunet.{name}")
    raise AttributeError(f"module 'attnunet' has no attribute {name!r}")


__all__ = [
    "GATES",
    "RAUNET_PRESET",
    "AugmentedAttentionModule",
    "LinkNetDecoderBlock",
    "RAUNet",
    "raunet_ni",
    "KRD_PRESET",
    "OKTAY_PRESET",
    "AdditiveAttentionGate",
    "AttentionUNet",
    "ConvMappedAttentionGate",
    "GridGatingSignal",
    "MultiAttentionGate",
    "SelfAttentionSkip",
    "attention_unet_oktay",
    "attention_unet_oktay_1024",
    "attention_unet_oktay_conv_mapped",
    "attention_unet_oktay_single",
    "AgResUNet",
    "AgUNet",
    "AttentionUNetPlusPlus",
    "ChannelLayerNorm",
    "ConvNormAct",
    "DoubleConv",
    "Down",
    "GridAttentionGate",
    "ModelInfo",
    "ResUNet",
    "ResidualBlock",
    "SegmentationHead",
    "SegmentationModel",
    "UNet",
    "UNetPlusPlus",
    "UNetSkeleton",
    "Up",
    "__version__",
    "ag_res_unet_krd",
    "ag_unet_krd",
    "build_gate",
    "create_model",
    "list_models",
    "model_info",
    "register_model",
    "res_unet_krd",
    "unet_krd",
]
