"""The ground floor: dimension-agnostic layer factories and tensor-shape helpers.

:mod:`attnunet.layers.factories` turns a dimensionality and a small spec into a
``torch.nn`` layer (``conv_type(3)`` is ``Conv3d``; ``get_norm("batch", 2, 16)`` is a
``BatchNorm2d``); :mod:`attnunet.layers.shape` holds the resizing, padding and cropping
helpers that blocks and models share. Nothing here imports another attnunet package.
"""

from attnunet.layers.factories import (
    SUPPORTED_SPATIAL_DIMS,
    ActSpec,
    ChannelLayerNorm,
    InstanceNorm1d,
    InstanceNorm2d,
    InstanceNorm3d,
    NormSpec,
    avg_pool_type,
    check_spatial_dims,
    conv_transpose_type,
    conv_type,
    get_act,
    get_dropout,
    get_norm,
    has_hooks,
    max_pool_type,
    norm_has_affine,
    parse_spec,
    unknown_choice,
)
from attnunet.layers.shape import (
    capturing,
    ceil_div,
    channels_last_format,
    compact_axes,
    crop_to,
    interp_mode,
    keep_layout,
    match_size,
    per_axis,
    resize,
    upsample_x2,
)
from attnunet.layers.values import int_value, min_max

__all__ = [
    "SUPPORTED_SPATIAL_DIMS",
    "ActSpec",
    "ChannelLayerNorm",
    "InstanceNorm1d",
    "InstanceNorm2d",
    "InstanceNorm3d",
    "NormSpec",
    "avg_pool_type",
    "capturing",
    "ceil_div",
    "channels_last_format",
    "compact_axes",
    "check_spatial_dims",
    "conv_transpose_type",
    "conv_type",
    "crop_to",
    "get_act",
    "get_dropout",
    "get_norm",
    "has_hooks",
    "int_value",
    "interp_mode",
    "keep_layout",
    "match_size",
    "max_pool_type",
    "min_max",
    "norm_has_affine",
    "parse_spec",
    "per_axis",
    "resize",
    "unknown_choice",
    "upsample_x2",
]
