"""nnU-Net's ``arch_kwargs`` (PlainConvUNet's constructor keywords) as attnunet keywords.

nnU-Net v2 plans describe the network of each configuration in an ``architecture`` block::

    "architecture": {
        "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "arch_kwargs": {"n_stages": 6, "features_per_stage": [32, 64, ...],
                        "conv_op": "torch.nn.modules.conv.Conv3d",
                        "kernel_sizes": [[1, 3, 3], ...], "strides": [[1, 1, 1], [1, 2, 2], ...],
                        "n_conv_per_stage": [2, ...], "n_conv_per_stage_decoder": [2, ...],
                        "conv_bias": true,
                        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                        "norm_op_kwargs": {"eps": 1e-05, "affine": true},
                        "dropout_op": null, "dropout_op_kwargs": null,
                        "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": true}},
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]
    }

:func:`plans_to_kwargs` maps these values, written once, to the keywords of attnunet's
U-Nets, and raises :class:`PlansError` for a value attnunet cannot honour. It imports only
torch: the classes may be given as torch classes (what nnU-Net passes after importing
them) or as the dotted names of the plans file.
"""

from __future__ import annotations

import pydoc
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

__all__ = ["PLAINCONVUNET_KEYS", "PlansError", "plans_to_kwargs"]

PLAINCONVUNET_KEYS = (
    "n_stages",
    "features_per_stage",
    "conv_op",
    "kernel_sizes",
    "strides",
    "n_conv_per_stage",
    "n_conv_per_stage_decoder",
    "conv_bias",
    "norm_op",
    "norm_op_kwargs",
    "dropout_op",
    "dropout_op_kwargs",
    "nonlin",
    "nonlin_kwargs",
    "nonlin_first",
)
"""The ``arch_kwargs`` keys of PlainConvUNet plans, all of which attnunet's classes accept."""

_CONVS: dict[type[nn.Module], int] = {nn.Conv1d: 1, nn.Conv2d: 2, nn.Conv3d: 3}
_NORMS: dict[type[nn.Module], tuple[str, int]] = {
    nn.InstanceNorm1d: ("instance", 1),
    nn.InstanceNorm2d: ("instance", 2),
    nn.InstanceNorm3d: ("instance", 3),
    nn.BatchNorm1d: ("batch", 1),
    nn.BatchNorm2d: ("batch", 2),
    nn.BatchNorm3d: ("batch", 3),
}
_ACTS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.PReLU: "prelu",
    nn.ELU: "elu",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
}


class PlansError(ValueError):
    """A value of nnU-Net plans that an attnunet network cannot honour.

    The message names the ``arch_kwargs`` key, the value, why it cannot be honoured and
    what would work.
    """


def _dotted_name(value: Any) -> Any:
    """A class as its dotted name (``torch.nn.modules.conv.Conv2d``), the form of a plans
    file; any other value unchanged."""
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    return value


def _fail(key: str, value: Any, why: str) -> PlansError:
    shown = _dotted_name(value)
    return PlansError(f"nnU-Net plans: architecture.arch_kwargs.{key}={shown!r}: {why}")


def _located(key: str, value: Any) -> Any:
    """A class from the plans: the class itself, or its dotted name (as in a plans file)."""
    if value is None or isinstance(value, type):
        return value
    if isinstance(value, str):
        found = pydoc.locate(value)
        if isinstance(found, type):
            return found
    raise _fail(key, value, "is not a class nor the dotted name of an importable class")


def _int(key: str, value: Any, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _fail(key, value, f"must be an int >= {low}")
    return value


def _per_stage(key: str, value: Any, n_stages: int, decoder: bool = False) -> list[Any]:
    """An int for every entry, or a list of one entry per (decoder) stage."""
    n = n_stages - 1 if decoder else n_stages
    if isinstance(value, int) and not isinstance(value, bool):
        return [value] * n
    if not isinstance(value, Sequence) or isinstance(value, str):
        raise _fail(key, value, f"must be an int or a list of {n} entries (one per stage)")
    if len(value) != n:
        # the two keys disagree: name both, since either may be the wrong one
        stages = (
            f"n_stages={n_stages} makes {n} decoder stages" if decoder else f"n_stages={n_stages}"
        )
        fix = f"n_stages={len(value) + 1 if decoder else len(value)}, or {n} entries"
        raise PlansError(
            f"nnU-Net plans: architecture.arch_kwargs.{key} has {len(value)} entries, but "
            f"{stages}: they must agree (one entry per stage): {fix}"
        )
    return list(value)


def _axes(key: str, value: Any, dims: int) -> list[int]:
    """One positive int per spatial axis."""
    items = [value] * dims if isinstance(value, int) and not isinstance(value, bool) else value
    if (
        not isinstance(items, Sequence)
        or isinstance(items, str)
        or len(items) != dims
        or any(isinstance(a, bool) or not isinstance(a, int) or a < 1 for a in items)
    ):
        raise _fail(key, value, f"each entry must be a positive int or {dims} positive ints")
    return list(items)


def _spatial_dims(conv_op: Any) -> int:
    conv = _located("conv_op", conv_op)
    if conv not in _CONVS:
        raise _fail(
            "conv_op",
            conv_op,
            "attnunet builds plain convolutions only: use torch.nn.Conv1d, Conv2d or Conv3d",
        )
    return _CONVS[conv]


def _convs(key: str, value: Any, count: Any, low: int) -> int:
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise _fail(key, value, "each count must be a positive int")
    if count < low:
        raise _fail(
            key,
            value,
            "a residual block needs at least two convolutions: use counts >= 2, or a "
            "double-convolution family (UNet, AgUNet), which takes any count",
        )
    return count


def _geometry(arch: Mapping[str, Any], dims: int, residual: bool) -> dict[str, Any]:
    """Widths, kernels, strides and convolution counts."""
    n = _int("n_stages", arch["n_stages"], 2)
    channels = [
        _int("features_per_stage", c)
        for c in _per_stage("features_per_stage", arch["features_per_stage"], n)
    ]
    kernels = [
        _axes("kernel_sizes", k, dims) for k in _per_stage("kernel_sizes", arch["kernel_sizes"], n)
    ]
    if any(k % 2 == 0 for kernel in kernels for k in kernel):
        raise _fail(
            "kernel_sizes",
            arch["kernel_sizes"],
            "attnunet pads by kernel // 2 on each side, which keeps the size of odd kernels "
            "only: use odd kernels (nnU-Net's planners always do)",
        )
    strides = [_axes("strides", s, dims) for s in _per_stage("strides", arch["strides"], n)]
    if any(s != 1 for s in strides[0]):
        raise _fail(
            "strides",
            arch["strides"],
            "the first stage must keep the input resolution (stride 1 on every axis, as in "
            "every plan nnU-Net's planners write), because its output is the finest skip",
        )
    low = 2 if residual else 1
    convs = [
        _convs("n_conv_per_stage", arch["n_conv_per_stage"], c, low)
        for c in _per_stage("n_conv_per_stage", arch["n_conv_per_stage"], n)
    ]
    decoder = [
        _convs("n_conv_per_stage_decoder", arch["n_conv_per_stage_decoder"], c, low)
        for c in _per_stage(
            "n_conv_per_stage_decoder", arch["n_conv_per_stage_decoder"], n, decoder=True
        )
    ]
    return {
        "spatial_dims": dims,
        "channels": channels,
        "kernel_size": kernels,
        "strides": strides,
        "convs_per_stage": convs,
        # nnU-Net lists the decoder stages in the order they run (next to the bottleneck
        # first); attnunet lists decoder levels finest first
        "decoder_convs_per_stage": decoder[::-1],
    }


def _norm(arch: Mapping[str, Any], dims: int) -> Any:
    norm = _located("norm_op", arch.get("norm_op"))
    kwargs = dict(arch.get("norm_op_kwargs") or {})
    if norm is None:
        return None
    if norm not in _NORMS or _NORMS[norm][1] != dims:
        raise _fail(
            "norm_op",
            arch.get("norm_op"),
            f"attnunet maps only the instance and batch norms of the convolutions' dimension "
            f"(torch.nn.InstanceNorm{dims}d, torch.nn.BatchNorm{dims}d) or null",
        )
    name = _NORMS[norm][0]
    if name == "instance":
        kwargs.setdefault("affine", False)  # torch's default, which attnunet's differs from
    return (name, kwargs)


def _act(arch: Mapping[str, Any]) -> Any:
    nonlin = _located("nonlin", arch.get("nonlin"))
    if nonlin is None:
        return None
    if nonlin not in _ACTS:
        names = ", ".join(f"torch.nn.{c.__name__}" for c in _ACTS)
        raise _fail("nonlin", arch.get("nonlin"), f"attnunet maps {names} or null")
    # in-place is a memory choice, not part of the function: attnunet decides it per layer
    kwargs = {k: v for k, v in (arch.get("nonlin_kwargs") or {}).items() if k != "inplace"}
    return (_ACTS[nonlin], kwargs)


def _check_dropout(arch: Mapping[str, Any]) -> None:
    dropout = _located("dropout_op", arch.get("dropout_op"))
    p = float((arch.get("dropout_op_kwargs") or {}).get("p", 0.5))
    if dropout is not None and p > 0:
        raise _fail(
            "dropout_op",
            arch.get("dropout_op"),
            f"nnU-Net drops out after every convolution (p={p}), attnunet after each "
            f"down-sampling and concatenation, a different regulariser that this mapping "
            f"will not pass off as the same: set dropout_op to null (as nnU-Net's planners "
            f"do), or build an attnunet model with dropout= yourself",
        )


def plans_to_kwargs(arch_kwargs: Mapping[str, Any], *, residual: bool = False) -> dict[str, Any]:
    """Map PlainConvUNet's ``arch_kwargs`` to the keywords of attnunet's U-Nets.

    The result holds ``spatial_dims``, ``channels``, ``kernel_size``, ``strides``,
    ``convs_per_stage``, ``decoder_convs_per_stage`` (reversed: nnU-Net lists it from the
    bottleneck up, attnunet finest first), ``norm``, ``act``, ``conv_bias=True``,
    ``down="strided"`` and ``up="transpose"``: the layout of PlainConvUNet.

    Args:
        arch_kwargs: PlainConvUNet's keywords (see :data:`PLAINCONVUNET_KEYS`); class
            values as torch classes or dotted names.
        residual: the network has residual blocks, which need at least two convolutions
            per stage.

    Returns:
        The attnunet keywords.

    Raises:
        PlansError: a value attnunet cannot honour: a missing key, a conv that is not
            ``ConvNd``, an even kernel, a first stride other than 1, ``conv_bias=False``
            (the transposed convolutions of attnunet always carry a bias, PlainConvUNet's
            follow ``conv_bias``), a norm other than instance or batch norm, an
            unsupported activation, a dropout op with ``p > 0``, ``nonlin_first=True``, or
            fewer than two convolutions per stage with ``residual``.

    Examples:
        >>> import torch
        >>> kw = plans_to_kwargs({
        ...     "n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": torch.nn.Conv2d,
        ...     "kernel_sizes": 3, "strides": [1, 2, [2, 1]], "n_conv_per_stage": 2,
        ...     "n_conv_per_stage_decoder": [1, 2], "conv_bias": True,
        ...     "norm_op": "torch.nn.InstanceNorm2d", "norm_op_kwargs": {"affine": True},
        ...     "nonlin": torch.nn.LeakyReLU, "nonlin_kwargs": {"inplace": True}})
        >>> kw["strides"], kw["decoder_convs_per_stage"], kw["norm"], kw["act"]
        ([[1, 1], [2, 2], [2, 1]], [2, 1], ('instance', {'affine': True}), ('leaky_relu', {}))
    """
    missing = [k for k in PLAINCONVUNET_KEYS[:7] if k not in arch_kwargs]
    if missing:
        raise PlansError(
            f"nnU-Net plans: architecture.arch_kwargs lacks {', '.join(missing)}: attnunet's "
            f"networks take PlainConvUNet's arch_kwargs (plans of nnU-Net's default planner)"
        )
    dims = _spatial_dims(arch_kwargs["conv_op"])
    kwargs = _geometry(arch_kwargs, dims, residual)
    if arch_kwargs.get("conv_bias", False) is not True:
        raise _fail(
            "conv_bias",
            arch_kwargs.get("conv_bias", False),
            "attnunet's transposed convolutions always carry a bias, PlainConvUNet's follow "
            "conv_bias, so the networks would differ: use conv_bias true (nnU-Net's planners do)",
        )
    if arch_kwargs.get("nonlin_first", False):
        raise _fail(
            "nonlin_first",
            True,
            "attnunet's units are conv -> norm -> activation only: use false (the default)",
        )
    _check_dropout(arch_kwargs)
    kwargs.update(
        norm=_norm(arch_kwargs, dims),
        act=_act(arch_kwargs),
        conv_bias=True,
        down="strided",
        up="transpose",
    )
    return kwargs
