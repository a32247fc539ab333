"""Converters from other implementations' checkpoints to attnunet's state-dict layout."""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch

__all__ = ["convert_agv_unet_state_dict"]

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

    Example:
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
