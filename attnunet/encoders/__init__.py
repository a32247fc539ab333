"""Encoders for the encoder-decoder models: timm backbones (2D) and a ResNet for any dims.

Weights load offline first: from a local file (``.pth``/``.pt``/``.bin`` or
``.safetensors``, torchvision or timm key layout), or from timm's hub cache when
``pretrained=True``. Nothing here downloads when a file is given.

The names are defined in three modules and imported from here:
:mod:`attnunet.encoders.resnet` (``ResNetEncoder``, ``RESNET_LAYERS``),
:mod:`attnunet.encoders.timm_encoder` (``TimmEncoder`` and timm's cache and hub helpers)
and :mod:`attnunet.encoders.weights` (reading weights files and fitting them to an
encoder).
"""

from attnunet.encoders.resnet import RESNET_LAYERS, ResNetEncoder
from attnunet.encoders.timm_encoder import (
    TV_TAGS,
    Pretrained,
    TimmEncoder,
    hub_cache_only,
    import_timm,
    offline_help,
)
from attnunet.encoders.weights import (
    adapt_input_channels,
    inflate_state_dict,
    load_encoder_state,
    load_weights_file,
)

__all__ = [
    "RESNET_LAYERS",
    "TV_TAGS",
    "Pretrained",
    "ResNetEncoder",
    "TimmEncoder",
    "adapt_input_channels",
    "hub_cache_only",
    "import_timm",
    "inflate_state_dict",
    "load_encoder_state",
    "load_weights_file",
    "offline_help",
]
