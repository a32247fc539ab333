"""attnunet's U-Nets inside nnU-Net v2, with no glue code.

Name a class of this package as ``network_class_name`` in nnU-Net plans (or let
:func:`write_plans` / ``attnunet nnunet-plans`` write such plans next to the original) and
nnU-Net plans, trains, validates and predicts with it as with its own PlainConvUNet: the
classes take PlainConvUNet's ``arch_kwargs`` unchanged, return its outputs in its order
and shapes, follow its trainer's deep-supervision switch and initialise like it.

Importing this package needs only torch; nnU-Net itself (``pip install
"attnunet[nnunet]"``) is needed to plan, train and predict. See ``docs/integrations.md``.
"""

from attnunet.integrations.nnunet.arch import PLAINCONVUNET_KEYS, PlansError, plans_to_kwargs
from attnunet.integrations.nnunet.networks import (
    AgResUNet,
    AgUNet,
    AttentionUNet,
    AttentionUNetPlusPlus,
    ResUNet,
    UNet,
    UNetPlusPlus,
    he_initialize,
)
from attnunet.integrations.nnunet.plans import (
    FAMILIES,
    PLAIN_CONV_UNET,
    network_class_name,
    rewrite_plans,
    write_plans,
)

__all__ = [
    "FAMILIES",
    "PLAINCONVUNET_KEYS",
    "PLAIN_CONV_UNET",
    "AgResUNet",
    "AgUNet",
    "AttentionUNet",
    "AttentionUNetPlusPlus",
    "PlansError",
    "ResUNet",
    "UNet",
    "UNetPlusPlus",
    "he_initialize",
    "network_class_name",
    "plans_to_kwargs",
    "rewrite_plans",
    "write_plans",
]
