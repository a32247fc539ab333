"""Encoders for the encoder-decoder models: timm backbones (2D) and a ResNet for any dims.

Weights load offline first: from a local file (``.pth``/``.pt``/``.bin`` or
``.safetensors``, torchvision or timm key layout), or from timm's hub cache when
``pretrained=True``. Nothing here downloads when a file is given.
"""

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from attnunet.layers import NormSpec, check_spatial_dims, conv_type, get_norm, max_pool_type

__all__ = [
    "RESNET_LAYERS",
    "ResNetEncoder",
    "TimmEncoder",
    "adapt_input_channels",
    "inflate_state_dict",
    "load_weights_file",
]

RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
"""Blocks per stage of the ResNets :class:`ResNetEncoder` builds (BasicBlock variants)."""

TV_TAGS = {"resnet18": "resnet18.tv_in1k", "resnet34": "resnet34.tv_in1k"}
"""timm tags of torchvision's ImageNet weights (what RAUNet's reference code used)."""

_HEAD_PREFIXES = ("fc.", "classifier.", "head.", "head_drop.", "global_pool.")
_WRAPPER_PREFIXES = ("module.", "model.", "encoder.", "backbone.")


class _BasicBlock(nn.Module):
    """ResNet's basic block for any ``spatial_dims`` (torchvision's names and layout)."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, stride: int, norm: NormSpec) -> None:
        super().__init__()
        conv = conv_type(spatial_dims)
        self.conv1 = conv(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = get_norm(norm, spatial_dims, cout) or nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv(cout, cout, 3, padding=1, bias=False)
        self.bn2 = get_norm(norm, spatial_dims, cout) or nn.Identity()
        if stride != 1 or cin != cout:
            self.downsample: nn.Module = nn.Sequential(
                conv(cin, cout, 1, stride=stride, bias=False),
                get_norm(norm, spatial_dims, cout) or nn.Identity(),
            )
        else:
            self.downsample = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.downsample(x))


class ResNetEncoder(nn.Module):
    """A ResNet-18/34 feature extractor for any ``spatial_dims``.

    The stem is ``conv 7 (stride 2) -> norm -> ReLU -> max-pool 3 (stride 2)``, followed by
    four stages of basic blocks; module names follow torchvision's ``resnet34`` (``conv1``,
    ``bn1``, ``layer1.0.conv1``, ``layer2.0.downsample.0``, ...), so its 2D ImageNet
    weights load into the 2D encoder directly and into the 3D one after
    :func:`inflate_state_dict`.

    Args:
        spatial_dims: 1, 2 or 3.
        in_channels: input channels.
        layers: blocks per stage (``RESNET_LAYERS["resnet34"]`` by default).
        norm: norm spec (batch norm as in the original).

    Shape:
        input ``(B, in_channels, *S)``; returns four features at strides 4, 8, 16, 32 with
        ``feature_channels = [64, 128, 256, 512]`` channels.

    Example:
        >>> import torch
        >>> encoder = ResNetEncoder(3, 1).eval()
        >>> [tuple(f.shape) for f in encoder(torch.randn(1, 1, 32, 32, 32))]
        [(1, 64, 8, 8, 8), (1, 128, 4, 4, 4), (1, 256, 2, 2, 2), (1, 512, 1, 1, 1)]
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int = 3,
        layers: Sequence[int] = RESNET_LAYERS["resnet34"],
        norm: NormSpec = "batch",
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        self.spatial_dims = spatial_dims
        self.feature_channels = [64, 128, 256, 512]
        self.reductions = [4, 8, 16, 32]
        self.conv1 = conv_type(spatial_dims)(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = get_norm(norm, spatial_dims, 64) or nn.Identity()
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = max_pool_type(spatial_dims)(3, stride=2, padding=1)
        stages: list[nn.Sequential] = []
        cin = 64
        for index, (blocks, width) in enumerate(zip(layers, self.feature_channels, strict=True)):
            stage = []
            for b in range(blocks):
                stride = 2 if b == 0 and index > 0 else 1
                stage.append(_BasicBlock(spatial_dims, cin, width, stride, norm))
                cin = width
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        e1 = self.layer1(x)
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        return [e1, e2, e3, e4]


def _import_timm() -> Any:
    try:
        import timm
    except ImportError as error:  # pragma: no cover - timm is a dependency
        raise ImportError(
            "this encoder needs timm: pip install 'timm>=1.0.20' (with torchvision 0.29 and "
            "torch 2.14, see docs/installation.md)"
        ) from error
    return timm


class TimmEncoder(nn.Module):
    """A timm backbone returning the four features at strides 4, 8, 16 and 32.

    Built with ``timm.create_model(name, features_only=True, out_indices=(1, 2, 3, 4))``;
    the channel counts come from timm's ``feature_info``.

    Args:
        name: a timm model name (``"resnet34"``, ``"resnet50"``, ``"efficientnet_b0"``, ...).
        in_channels: input channels (timm adapts the first conv of pretrained weights).
        pretrained: ``False``, ``True`` (timm's weights for ``name``, from its hub cache),
            or a path to a weights file (see :func:`load_weights_file`).

    Raises:
        ValueError: if the backbone does not give four features at strides 4-32.
        RuntimeError: if pretrained weights are asked for but cannot be found offline
            (the message says how to provide a file).

    Example:
        >>> import torch
        >>> encoder = TimmEncoder("resnet18", in_channels=1)
        >>> encoder.feature_channels
        [64, 128, 256, 512]
    """

    def __init__(
        self, name: str, in_channels: int = 3, pretrained: bool | str | os.PathLike = False
    ) -> None:
        super().__init__()
        timm = _import_timm()
        if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
            raise ValueError(
                f"timm has no model {name!r}; choose a CNN from timm.list_models(), e.g. "
                f"'resnet34', 'resnet50', 'efficientnet_b0', 'convnext_tiny'"
            )
        use_hub = pretrained is True
        try:
            model = timm.create_model(
                name,
                pretrained=use_hub,
                features_only=True,
                out_indices=(1, 2, 3, 4),
                in_chans=in_channels,
            )
        except Exception as error:
            if use_hub:
                raise RuntimeError(_offline_help(name, error)) from error
            raise ValueError(
                f"timm cannot build {name!r} as a feature extractor with out_indices "
                f"(1, 2, 3, 4) ({type(error).__name__}: {error}); RAUNet needs a "
                f"convolutional backbone with features at strides 4, 8, 16 and 32"
            ) from error
        reductions = list(model.feature_info.reduction())
        if reductions != [4, 8, 16, 32]:
            raise ValueError(
                f"encoder {name!r} gives features at strides {reductions}; this decoder "
                f"needs strides [4, 8, 16, 32] (ResNets, EfficientNets, ConvNeXts, ... work)"
            )
        self.model = model
        self.name = name
        self.feature_channels = list(model.feature_info.channels())
        self.reductions = reductions
        if pretrained is not False and pretrained is not True:
            state = load_weights_file(pretrained)
            load_encoder_state(self.model, state, in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.model(x)


def _offline_help(name: str, error: Exception) -> str:
    return (
        f"could not load pretrained weights for {name!r} ({type(error).__name__}: {error}). "
        f"attnunet looks only in timm's Hugging Face cache when pretrained=True. On an "
        f"offline machine, copy a weights file over and pass its path instead, e.g. "
        f"pretrained='/data/weights/resnet34-b627a593.pth' (torchvision's file, from a "
        f"machine with network: torchvision.models.resnet34(weights='IMAGENET1K_V1'), then "
        f"torch.save(model.state_dict(), path)) or a timm .safetensors file; or fill the "
        f"cache on a machine with network (timm.create_model('{name}', pretrained=True)) "
        f"and copy ~/.cache/huggingface over (set HF_HUB_OFFLINE=1 to forbid downloads)."
    )


def load_weights_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.pth``/``.pt``/``.bin`` (PyTorch) or ``.safetensors``.

    Checkpoint dicts holding the weights under ``"state_dict"`` or ``"model"`` are
    unwrapped, and wrapper prefixes (``module.``, ``model.``, ``encoder.``, ``backbone.``)
    are removed.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is empty, corrupt, or holds no tensors.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"weights file {str(file)!r} does not exist: pass the path of a .pth or "
            f".safetensors file, or pretrained=False"
        )
    if file.stat().st_size == 0:
        raise ValueError(f"weights file {str(file)!r} is empty")
    try:
        if file.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(file))
        else:
            state = torch.load(str(file), map_location="cpu", weights_only=True)
    except Exception as error:
        raise ValueError(
            f"cannot read weights file {str(file)!r} ({type(error).__name__}: {error}); "
            f"expected a PyTorch state dict (.pth/.pt/.bin) or a .safetensors file"
        ) from error
    for key in ("state_dict", "model"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping) or not any(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise ValueError(f"weights file {str(file)!r} holds no state dict of tensors")
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
        cleaned[key] = value
    return cleaned


def adapt_input_channels(weight: torch.Tensor, in_channels: int) -> torch.Tensor:
    """Adapt a first-conv weight ``(out, c, *k)`` to ``in_channels`` inputs.

    One channel: the sum over the original channels (a grey image then gives the response
    an RGB image with equal channels would). More channels: the original channels are
    repeated cyclically and scaled by ``c / in_channels`` so the response keeps its scale.
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
    borders, where zero padding differs). Other tensors are copied unchanged.
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
    """Load ``state`` into ``encoder``: drop classifier heads, adapt the first conv to
    ``in_channels``, inflate 2D kernels for a 3D encoder, then load strictly.

    Raises:
        ValueError: when keys or shapes do not match, naming the first mismatches.
    """
    target = encoder.state_dict()
    kept = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
    kept = inflate_state_dict(kept, target)
    first = next(
        (k for k in ("conv1.weight", "conv_stem.weight", "stem.0.weight") if k in kept), None
    )
    if first is not None and first in target and kept[first].shape[1] != in_channels:
        kept[first] = adapt_input_channels(kept[first], in_channels)
    missing = sorted(set(target) - set(kept))
    unexpected = sorted(set(kept) - set(target))
    wrong = sorted(k for k in set(kept) & set(target) if kept[k].shape != target[k].shape)
    if missing or unexpected or wrong:
        raise ValueError(
            "the weights file does not fit this encoder: "
            f"{len(missing)} missing key(s) {missing[:3]}, {len(unexpected)} unexpected "
            f"key(s) {unexpected[:3]}, {len(wrong)} shape mismatch(es) {wrong[:3]}. "
            "Use a checkpoint of the same architecture (torchvision or timm layout)."
        )
    encoder.load_state_dict(kept)
