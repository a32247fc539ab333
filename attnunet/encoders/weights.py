"""Weights for the encoders: read a weights file, and fit a state dict to an encoder.

A file's state dict is unwrapped from a checkpoint dict and loses wrapper prefixes
(:func:`load_weights_file`); :func:`load_encoder_state` then adapts the first
convolution to the input channels (:func:`adapt_input_channels`), inflates 2D kernels
for a 3D encoder (:func:`inflate_state_dict`) and loads the keys the encoder has.
"""

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "adapt_input_channels",
    "inflate_state_dict",
    "load_encoder_state",
    "load_weights_file",
]

_WRAPPER_PREFIXES = ("module.", "model.", "encoder.", "backbone.")
_CHECKPOINT_KEYS = ("state_dict", "model")


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (PyTorch) or ``.safetensors``.

    Checkpoint dicts holding the weights under ``"state_dict"`` or ``"model"`` are
    unwrapped, and wrapper prefixes (``module.``, ``model.``, ``encoder.``, ``backbone.``)
    are removed.

    Args:
        path: the weights file. ``.safetensors`` files are read with safetensors, any
            other with ``torch.load(..., weights_only=True)`` on the CPU.

    Returns:
        The state dict, with the wrapper prefixes removed from its keys.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, corrupt, or holds no tensors.
    """
    file = Path(path)
    _check_weights_file(file)
    state = _unwrap_checkpoint(_read_weights(file))
    if not isinstance(state, Mapping) or not any(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"weights file {str(file)!r} holds no state dict of tensors")
    return {_strip_wrapper_prefixes(key): value for key, value in state.items()}


def _check_weights_file(file: Path) -> None:
    """Refuse a missing or empty weights file."""
    if not file.is_file():
        raise FileNotFoundError(
            f"weights file {str(file)!r} does not exist: pass the path of a .pth or "
            f".safetensors file, or pretrained=False"
        )
    if file.stat().st_size == 0:
        raise ValueError(f"weights file {str(file)!r} is empty")


def _read_weights(file: Path) -> Any:
    """What the file holds: safetensors' dict, or what ``torch.load`` reads (tensors only)."""
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(file))
        return torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"cannot read weights file {str(file)!r} ({type(error).__name__}: {error}); "
            f"expected a PyTorch state dict (.pth/.pt/.bin) or a .safetensors file"
        ) from error


def _unwrap_checkpoint(state: Any) -> Any:
    """The mapping under ``"state_dict"``, then under ``"model"``, where there is one."""
    for key in _CHECKPOINT_KEYS:
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    return state


def _strip_wrapper_prefixes(key: str) -> str:
    """``key`` without its wrapper prefixes, in any order and number.

    ``"module.encoder.model.conv1.weight"`` becomes ``"conv1.weight"``.
    """
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-conv weight ``(out, c, *k)`` to ``in_channels`` inputs.

    One channel: the sum over the original channels (a grey image then gives the response
    an RGB image with equal channels would). More channels: the original channels are
    repeated cyclically and scaled by ``c / in_channels`` so the response keeps its scale.

    Args:
        weight: the first convolution's kernel, ``(out, c, *k)``.
        in_channels: the input channels wanted.

    Returns:
        A kernel ``(out, in_channels, *k)`` (``weight`` itself when the count is already
        right).
    """
    c = weight.shape[1]
    if in_channels == c:
        return weight
    if in_channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-in_channels // c)
    tiled = weight.repeat(1, repeats, *[1] * (weight.dim() - 2))[:, :in_channels]
    return tiled * (c / in_channels)


def inflate_state_dict(
    state: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Inflate 2D conv kernels to the 3D (or 1D) shapes of ``target`` (I3D-style).

    A 2D kernel ``(o, i, kh, kw)`` becomes ``(o, i, kd, kh, kw)`` by repeating it ``kd``
    times along depth and dividing by ``kd``: on a volume that is constant along depth, the
    inflated convolution gives the 2D response on every slice (away from the depth
    borders, where zero padding differs). Other tensors are copied unchanged. Only 2D to
    3D is supported.

    Args:
        state: the state dict to inflate.
        target: the state dict (or any mapping of tensors) whose shapes to inflate to;
            keys missing from it are copied unchanged.

    Returns:
        A new dict with the same keys.
    """
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        shape = target[key].shape if key in target else None
        if shape is not None and value.dim() == 4 and len(shape) == 5:
            depth = shape[2]
            value = value.unsqueeze(2).repeat(1, 1, depth, 1, 1) / depth
        out[key] = value
    return out


def load_encoder_state(
    encoder: nn.Module, state: Mapping[str, torch.Tensor], in_channels: int
) -> None:
    """Load ``state`` into ``encoder``, fitting it first.

    The first conv is adapted to ``in_channels`` (:func:`adapt_input_channels`), 2D
    kernels are inflated for a 3D encoder (:func:`inflate_state_dict`), keys the encoder
    does not have (classifier heads and layers a feature extractor drops) are ignored,
    and then every encoder key is required with its shape.

    Args:
        encoder: the encoder to load into (:class:`~attnunet.encoders.ResNetEncoder`, or
            a timm feature extractor such as :class:`~attnunet.encoders.TimmEncoder`'s
            ``model``).
        state: the weights, e.g. from :func:`load_weights_file`.
        in_channels: the encoder's input channels.

    Raises:
        ValueError: when encoder keys are missing from the file or shapes differ (the
            message names the first ones), or for 2D weights and a 1D encoder.
    """
    target = encoder.state_dict()
    kept = {k: v for k, v in state.items() if k in target}
    first = next((k for k, v in target.items() if v.dim() >= 3), None)
    if first is not None and first in kept and target[first].dim() == 3 and kept[first].dim() == 4:
        raise ValueError(
            "these are 2D weights and the encoder is 1D: 2D kernels can be inflated to 3D "
            "(spatial_dims=3) but not reduced to 1D; use pretrained=False for 1D"
        )
    kept = inflate_state_dict(kept, target)
    if first is not None and first in kept and kept[first].shape[1] != in_channels:
        kept[first] = adapt_input_channels(kept[first], in_channels)
    missing = [k for k in target if k not in kept]
    wrong = [k for k in kept if kept[k].shape != target[k].shape]
    if missing or wrong:
        raise ValueError(
            "the weights file does not fit this encoder: "
            f"{len(missing)} of its {len(target)} keys missing {missing[:3]}, "
            f"{len(wrong)} shape mismatch(es) {wrong[:3]}. Use a checkpoint of the same "
            "architecture (torchvision or timm layout)."
        )
    encoder.load_state_dict(kept)
