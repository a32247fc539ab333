"""The model zoo and its front door.

Importing this package registers every model; :func:`create_model` builds one by name,
:func:`list_models` and :func:`model_info` look the zoo up, :func:`register_model` adds a
user's own, and :func:`save_pretrained` / :func:`from_pretrained` write and read a model as
``config.json`` plus ``model.safetensors``. The registry, the factory, saving and
checkpointing are private modules of this package (``_registry``, ``_factory``, ``_hub``,
``_checkpointing``); use the names re-exported here.
"""

from attnunet.models._factory import accepted_kwargs, create_model
from attnunet.models._hub import (
    CONFIG_NAME,
    FORMAT,
    FORMAT_VERSION,
    WEIGHTS_NAME,
    from_pretrained,
    save_pretrained,
)
from attnunet.models._registry import (
    ModelInfo,
    list_models,
    model_info,
    register_model,
    unregister_model,
)
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
    "CONFIG_NAME",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "ModelInfo",
    "accepted_kwargs",
    "create_model",
    "from_pretrained",
    "list_models",
    "model_info",
    "register_model",
    "save_pretrained",
    "unregister_model",
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
