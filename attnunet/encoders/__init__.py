"""Encoders for the encoder-decoder models: timm backbones (2D) and a ResNet for any dims.

Weights load offline first: from a local file (``.pth``/``.pt``/``.bin`` or
``.safetensors``, torchvision or timm key layout), or from timm's hub cache when
``pretrained=True``. Nothing here downloads when a file is given.
"""

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from attnunet.layers import NormSpec, check_spatial_dims, conv_type, get_norm, max_pool_type

__all__ = [
    "RESNET_LAYERS",
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

RESNET_LAYERS = {"resnet18": (2, 2, 2, 2), "resnet34": (3, 4, 6, 3)}
"""Blocks per stage of the ResNets :class:`ResNetEncoder` builds (BasicBlock variants)."""

TV_TAGS = {"resnet18": "resnet18.tv_in1k", "resnet34": "resnet34.tv_in1k"}
"""timm tags of torchvision's ImageNet weights (what RAUNet's reference code used)."""

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

    Examples:
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

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """``conv1 -> bn1 -> relu -> maxpool``: the input at stride 4, before ``layer1``."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        e1 = self.layer1(self.stem(x))
        e2 = self.layer2(e1)
        e3 = self.layer3(e2)
        e4 = self.layer4(e3)
        return [e1, e2, e3, e4]


Pretrained = bool | Literal["download"] | str | os.PathLike
"""``False``; ``True`` (timm's Hugging Face cache only, never the network);
``"download"`` (timm's normal loading, which downloads into the cache when it can); or the
path of a weights file."""


@contextlib.contextmanager
def hub_cache_only() -> Iterator[None]:
    """Make timm's Hugging Face loading read the local cache only, for the block's duration.

    Without this, a machine without network retries the Hub for about a minute before
    failing; with it, a missing cache fails at once.
    """
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - a timm dependency
        yield
        return
    previous = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = previous


def import_timm() -> Any:
    """``import timm`` with an install hint when it is missing."""
    try:
        import timm
    except ImportError as error:  # pragma: no cover - timm is a dependency
        raise ImportError(
            "this encoder needs timm: pip install 'timm>=1.0.20' (with torchvision 0.29 and "
            "torch 2.14, see docs/installation.md)"
        ) from error
    return timm


class TimmEncoder(nn.Module):
    """A timm backbone returning four features at strides 4, 8, 16 and 32.

    Built with ``timm.create_model(name, features_only=True)``; of the features timm
    offers, the last one at each of the strides 4, 8, 16 and 32 is kept (so ResNets with
    five levels and ConvNeXts with four both work), and the channel counts come from
    timm's ``feature_info``.

    Args:
        name: a timm model name (``"resnet34"``, ``"resnet50"``, ``"efficientnet_b0"``,
            ``"convnext_tiny"``, ...), optionally with a pretrained tag
            (``"resnet34.tv_in1k"``).
        in_channels: input channels (timm adapts the first conv of pretrained weights).
        pretrained: ``False``; ``True`` (weights from timm's Hugging Face cache only: no
            network is touched, and a missing cache is an error that says what to do);
            ``"download"`` (timm's usual loading, which downloads when it can); or a path
            to a weights file (see :func:`load_weights_file`).

    Raises:
        ValueError: if the backbone does not give features at strides 4, 8, 16 and 32.
        RuntimeError: if cached weights are asked for but missing (the message says how to
            provide a file).

    Examples:
        >>> encoder = TimmEncoder("resnet18", in_channels=1)
        >>> encoder.feature_channels, encoder.indices
        ([64, 128, 256, 512], [1, 2, 3, 4])
    """

    def __init__(self, name: str, in_channels: int = 3, pretrained: Pretrained = False) -> None:
        super().__init__()
        timm = import_timm()
        if name not in timm.list_models() and name.split(".")[0] not in timm.list_models():
            raise ValueError(
                f"timm has no model {name!r}; choose a CNN from timm.list_models(), e.g. "
                f"'resnet34', 'resnet50', 'efficientnet_b0', 'convnext_tiny'"
            )
        from_hub = pretrained is True or pretrained == "download"
        cache_only = hub_cache_only() if pretrained is True else contextlib.nullcontext()
        try:
            with cache_only:
                model = timm.create_model(
                    name, pretrained=from_hub, features_only=True, in_chans=in_channels
                )
        except Exception as error:
            if from_hub:
                download = pretrained == "download"
                raise RuntimeError(offline_help(name, error, download)) from error
            raise ValueError(
                f"timm cannot build {name!r} as a feature extractor ({type(error).__name__}: "
                f"{error}); RAUNet needs a convolutional backbone with features at strides "
                f"4, 8, 16 and 32"
            ) from error
        reductions = list(model.feature_info.reduction())
        indices = []
        for stride in (4, 8, 16, 32):
            matches = [i for i, r in enumerate(reductions) if r == stride]
            if not matches:
                raise ValueError(
                    f"encoder {name!r} gives features at strides {reductions}; this decoder "
                    f"needs strides 4, 8, 16 and 32 (ResNets, EfficientNets, ConvNeXts, ... "
                    f"work; vision transformers do not)"
                )
            indices.append(matches[-1])
        channels = list(model.feature_info.channels())
        self.model = model
        self.name = name
        self.indices: list[int] = indices
        self.feature_channels = [channels[i] for i in indices]
        self.reductions = [4, 8, 16, 32]
        if not isinstance(pretrained, bool) and pretrained != "download":
            state = load_weights_file(pretrained)
            load_encoder_state(self.model, state, in_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = self.model(x)
        return [features[i] for i in self.indices]


def offline_help(name: str, error: Exception, download: bool = False) -> str:
    """Advice for pretrained encoder weights that could not be loaded offline."""
    how = (
        "pretrained='download' could not fetch them (no network?). "
        if download
        else "pretrained=True reads only timm's Hugging Face cache and never the network. "
    )
    return (
        f"could not load pretrained weights for {name!r} ({type(error).__name__}: {error}). "
        f"{how}"
        f"Either pass the path of a weights file, e.g. "
        f"pretrained='/data/weights/resnet34-tv.pth' (on a machine with network: "
        f"torch.save(torchvision.models.resnet34(weights='IMAGENET1K_V1').state_dict(), "
        f"'resnet34-tv.pth'), or a timm .safetensors file), or fill the cache: "
        f"pretrained='download' on a machine with network, then copy ~/.cache/huggingface "
        f"over. See docs/encoders.md."
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
        stripped = True
        while stripped:  # "module.encoder.model.conv1.weight" -> "conv1.weight"
            stripped = False
            for prefix in _WRAPPER_PREFIXES:
                if key.startswith(prefix):
                    key, stripped = key[len(prefix) :], True
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
    borders, where zero padding differs). Other tensors are copied unchanged. Only 2D to
    3D is supported.
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
    """Load ``state`` into ``encoder``: adapt the first conv to ``in_channels``, inflate 2D
    kernels for a 3D encoder, ignore keys the encoder does not have (classifier heads and
    layers a feature extractor drops), then require every encoder key with its shape.

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
