"""Converters from other implementations' checkpoints to attnunet's state-dict layout."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

__all__ = ["convert_agv_unet_state_dict", "convert_oktay_state_dict"]

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
