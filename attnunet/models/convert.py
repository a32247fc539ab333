"""Converters from other implementations' checkpoints to attnunet's state-dict layout."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import torch

__all__ = [
    "convert_agv_unet_state_dict",
    "convert_oktay_state_dict",
    "convert_plainconvunet_state_dict",
]

_DOUBLE = {"conv1": "conv1.conv", "bn1": "conv1.norm", "conv2": "conv2.conv", "bn2": "conv2.norm"}
_GATE = {"wx": "theta", "wg": "phi", "psi": "psi"}


def convert_agv_unet_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a checkpoint of the knee-ultrasound study's code (agv-unet) for attnunet.

    Works for its ``UNet``, ``ResUNet``, ``AgUNet`` and ``AgResUNet`` (the final
    ``models/`` versions, any root width): load the result into the matching preset, e.g.
    ``ag_res_unet_krd().load_state_dict(convert_agv_unet_state_dict(sd))``. Outputs then
    equal the original's (bit for bit in the test suite, in training and evaluation mode),
    except that attnunet returns logits where the original applied a sigmoid.

    Args:
        state_dict: the original model's ``state_dict()``.

    Returns:
        A new dict with attnunet keys and the same tensors.

    Raises:
        KeyError: for a key this converter does not recognise (the message names it).

    Examples:
        >>> sd = {"final.weight": torch.zeros(1, 16, 1, 1), "final.bias": torch.zeros(1)}
        >>> sorted(convert_agv_unet_state_dict(sd))
        ['head.conv.bias', 'head.conv.weight']
    """
    levels = {int(m.group(1)) for k in state_dict if (m := re.match(r"down(\d+)\.", k))}
    depth = max(levels) if levels else 4
    return {_agv_key(key, depth): value for key, value in state_dict.items()}


def _agv_key(key: str, depth: int) -> str:
    parts = key.split(".")
    head, leaf = parts[0], parts[-1]
    new: str | None = None
    if head == "final":
        new = f"head.conv.{leaf}"
    elif head == "btn_res_conv":
        new = f"encoder.stages.{depth}.block.shortcut.{leaf}"
    elif head == "bottleneck" and parts[1] in _DOUBLE:
        new = f"encoder.stages.{depth}.block.{_DOUBLE[parts[1]]}.{leaf}"
    elif m := re.fullmatch(r"(down|up|ag)(\d+)", head):
        kind, k = m.group(1), int(m.group(2))
        level = f"decoder.levels.{depth - k}"
        block = f"encoder.stages.{k - 1}.block" if kind == "down" else f"{level}.block"
        if kind == "ag" and parts[1] in _GATE:
            new = f"{level}.gate.{_GATE[parts[1]]}.{leaf}"
        elif kind == "up" and parts[1] == "up":
            new = f"{level}.up.op.{leaf}"
        elif kind != "ag" and parts[1] == "res_conv":
            new = f"{block}.shortcut.{leaf}"
        elif kind != "ag" and parts[1] == "double_conv" and parts[2] in _DOUBLE:
            new = f"{block}.{_DOUBLE[parts[2]]}.{leaf}"
    if new is None:
        raise KeyError(
            f"convert_agv_unet_state_dict does not recognise {key!r}: is this a "
            f"checkpoint of agv-unet's UNet, ResUNet, AgUNet or AgResUNet?"
        )
    return new


_OKTAY_CONV = {
    "conv1.0": "conv1.conv",
    "conv1.1": "conv1.norm",
    "conv2.0": "conv2.conv",
    "conv2.1": "conv2.norm",
}
_OKTAY_GATE = {
    "theta": "theta",
    "phi": "phi",
    "psi": "psi",
    "W.0": "output.conv",
    "W.1": "output.norm",
}


def convert_oktay_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename a checkpoint of Oktay's Attention-Gated-Networks CT models for attnunet.

    Works for ``unet_CT_multi_att_dsv_3D`` and ``unet_CT_single_att_dsv_3D`` (any feature
    scale and class count): load the result into :func:`~attnunet.attention_unet_oktay` or
    :func:`~attnunet.attention_unet_oktay_single` built with the same widths and classes.
    The fused output then equals the reference's (tested in training and evaluation mode).

    Args:
        state_dict: the reference model's ``state_dict()`` (for a checkpoint file of the
            reference code, its ``"state_dict"`` entry, without a ``module.`` prefix).

    Returns:
        A new dict with attnunet keys and the same tensors.

    Raises:
        KeyError: for a key this converter does not recognise (the message names it).

    Examples:
        >>> sd = {"final.weight": torch.zeros(2, 8, 1, 1, 1), "final.bias": torch.zeros(2)}
        >>> sorted(convert_oktay_state_dict(sd))
        ['fuse.conv.bias', 'fuse.conv.weight']
    """
    levels = {int(m.group(1)) for k in state_dict if (m := re.match(r"conv(\d+)\.", k))}
    depth = max(levels) if levels else 4
    return {_oktay_key(key, depth): value for key, value in state_dict.items()}


def _oktay_key(key: str, depth: int) -> str:
    for pattern, rename in _OKTAY_RULES:
        if m := re.fullmatch(pattern, key):
            return rename(m, depth)
    raise KeyError(
        f"convert_oktay_state_dict does not recognise {key!r}: is this a checkpoint of "
        f"unet_CT_multi_att_dsv_3D or unet_CT_single_att_dsv_3D?"
    )


def _oktay_encoder(m: re.Match[str], depth: int) -> str:
    return f"encoder.stages.{int(m.group(1)) - 1}.block.{_OKTAY_CONV[m.group(2)]}.{m.group(3)}"


def _oktay_center(m: re.Match[str], depth: int) -> str:
    return f"encoder.stages.{depth}.block.{_OKTAY_CONV[m.group(1)]}.{m.group(2)}"


def _oktay_gating(m: re.Match[str], depth: int) -> str:
    return f"gating_signal.{('conv', 'norm')[int(m.group(1))]}.{m.group(2)}"


def _oktay_gate(m: re.Match[str], depth: int) -> str:
    level, gate = depth - int(m.group(1)), int(m.group(2)) - 1
    return f"decoder.levels.{level}.gate.gates.{gate}.{_OKTAY_GATE[m.group(3)]}.{m.group(4)}"


def _oktay_merge(m: re.Match[str], depth: int) -> str:
    part = ("conv", "norm")[int(m.group(2))]
    return f"decoder.levels.{depth - int(m.group(1))}.gate.merge.{part}.{m.group(3)}"


def _oktay_decoder(m: re.Match[str], depth: int) -> str:
    level = depth - int(m.group(1))
    return f"decoder.levels.{level}.block.{_OKTAY_CONV[m.group(2)]}.{m.group(3)}"


def _oktay_aux_head(m: re.Match[str], depth: int) -> str:
    return f"aux_heads.{int(m.group(1)) - 2}.conv.{m.group(2)}"


def _oktay_head(m: re.Match[str], depth: int) -> str:
    return f"head.conv.{m.group(1)}"


def _oktay_fuse(m: re.Match[str], depth: int) -> str:
    return f"fuse.conv.{m.group(1)}"


# (pattern, rename): the first pattern that matches the whole key renames it
_OKTAY_RULES: tuple[tuple[str, Callable[[re.Match[str], int], str]], ...] = (
    (r"conv(\d+)\.(conv[12]\.[01])\.(\w+)", _oktay_encoder),
    (r"center\.(conv[12]\.[01])\.(\w+)", _oktay_center),
    (r"gating\.conv1\.([01])\.(\w+)", _oktay_gating),
    (r"attentionblock(\d+)\.gate_block_(\d+)\.(theta|phi|psi|W\.[01])\.(\w+)", _oktay_gate),
    (r"attentionblock(\d+)\.combine_gates\.([01])\.(\w+)", _oktay_merge),
    (r"up_concat(\d+)\.conv\.(conv[12]\.[01])\.(\w+)", _oktay_decoder),
    (r"dsv(\d+)\.dsv\.0\.(\w+)", _oktay_aux_head),
    (r"dsv1\.(\w+)", _oktay_head),
    (r"final\.(\w+)", _oktay_fuse),
)


def convert_plainconvunet_state_dict(state_dict: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """Convert nnU-Net's PlainConvUNet weights for attnunet's nnU-Net ``UNet``.

    Works for any PlainConvUNet of nnU-Net v2 (``dynamic_network_architectures``), 1D, 2D or
    3D, anisotropic strides and kernels, any norm: load the result into
    :class:`attnunet.integrations.nnunet.UNet` built from the same plans (the same
    ``arch_kwargs``, ``input_channels`` and ``num_classes``). Its outputs then equal
    PlainConvUNet's (to float rounding in the test suite, in training and evaluation mode,
    every deep-supervision output). Besides renaming, the input channels of each decoder
    stage's first convolution are reordered: PlainConvUNet concatenates ``[up, skip]``,
    attnunet ``[skip, up]``. PlainConvUNet's second names of the same tensors
    (``decoder.encoder.*``, ``*.all_modules.*``) are left out, and so are the ``module.``
    and ``_orig_mod.`` prefixes of DDP and ``torch.compile``.

    Args:
        state_dict: PlainConvUNet's ``state_dict()``, or a checkpoint of nnU-Net
            (``checkpoint_final.pth`` loaded with ``torch.load``), whose
            ``"network_weights"`` are then converted.

    Returns:
        A new dict with attnunet keys and the (reordered) tensors.

    Raises:
        KeyError: for a key this converter does not recognise (the message names it).

    Examples:
        >>> sd = {"decoder.transpconvs.0.weight": torch.zeros(8, 4, 2, 2),
        ...       "decoder.seg_layers.0.weight": torch.zeros(3, 4, 1, 1),
        ...       "decoder.stages.0.convs.0.conv.weight": torch.arange(8.0).view(1, 8, 1, 1)}
        >>> new = convert_plainconvunet_state_dict(sd)
        >>> print(*sorted(new), sep="\\n")
        decoder.levels.0.block.conv1.conv.weight
        decoder.levels.0.up.op.weight
        head.conv.weight
        >>> new["decoder.levels.0.block.conv1.conv.weight"].flatten().tolist()
        [4.0, 5.0, 6.0, 7.0, 0.0, 1.0, 2.0, 3.0]
    """
    weights = state_dict.get("network_weights", state_dict)
    weights = {re.sub(r"^((module|_orig_mod)\.)+", "", k): v for k, v in weights.items()}
    ups = {int(m.group(1)) for k in weights if (m := re.match(r"decoder\.transpconvs\.(\d+)\.", k))}
    levels = max(ups) + 1 if ups else 0
    converted: dict[str, torch.Tensor] = {}
    for key, value in weights.items():
        if key.startswith("decoder.encoder.") or ".all_modules." in key:
            continue  # the same tensors under PlainConvUNet's second names
        new = _plain_key(key, levels)
        if re.fullmatch(r"decoder\.levels\.\d+\.block\.conv1\.conv\.weight", new):
            half = value.shape[1] // 2  # [up, skip] -> [skip, up]: equal halves
            value = torch.cat([value[:, half:], value[:, :half]], dim=1)
        converted[new] = value
    return converted


def _plain_key(key: str, levels: int) -> str:
    for pattern, rename in _PLAIN_RULES:
        if m := re.fullmatch(pattern, key):
            return rename(m, levels)
    raise KeyError(
        f"convert_plainconvunet_state_dict does not recognise {key!r}: is this the state "
        f"dict of nnU-Net's PlainConvUNet (or an nnU-Net checkpoint of one)? Checkpoints of "
        f"attnunet's nnU-Net networks load as they are"
    )


def _plain_encoder(m: re.Match[str], levels: int) -> str:
    i, j, part, leaf = m.groups()
    return f"encoder.stages.{i}.block.conv{int(j) + 1}.{part}.{leaf}"


def _plain_decoder(m: re.Match[str], levels: int) -> str:
    s, j, part, leaf = m.groups()
    return f"decoder.levels.{s}.block.conv{int(j) + 1}.{part}.{leaf}"


def _plain_up(m: re.Match[str], levels: int) -> str:
    return f"decoder.levels.{m.group(1)}.up.op.{m.group(2)}"


def _plain_head(m: re.Match[str], levels: int) -> str:
    # seg_layers[s] follows decoder stage s (coarsest first); attnunet's head is the finest
    # and aux_heads[k] the (k + 1)-th coarser one
    s, leaf = int(m.group(1)), m.group(2)
    return f"head.conv.{leaf}" if s == levels - 1 else f"aux_heads.{levels - 2 - s}.conv.{leaf}"


# (pattern, rename): the first pattern that matches the whole key renames it
_PLAIN_RULES: tuple[tuple[str, Callable[[re.Match[str], int], str]], ...] = (
    (r"encoder\.stages\.(\d+)\.0\.convs\.(\d+)\.(conv|norm)\.(\w+)", _plain_encoder),
    (r"decoder\.stages\.(\d+)\.convs\.(\d+)\.(conv|norm)\.(\w+)", _plain_decoder),
    (r"decoder\.transpconvs\.(\d+)\.(\w+)", _plain_up),
    (r"decoder\.seg_layers\.(\d+)\.(\w+)", _plain_head),
)
