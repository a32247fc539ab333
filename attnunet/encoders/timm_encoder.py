"""timm backbones as encoders, and loading their pretrained weights offline.

:class:`TimmEncoder` wraps ``timm.create_model(name, features_only=True)``. Its weights
come from a file, from timm's Hugging Face cache (``pretrained=True``, the Hub forced
offline by :func:`hub_cache_only`) or from timm's usual loading
(``pretrained="download"``); :func:`offline_help` says what to do when they are missing.
"""

import contextlib
import os
from collections.abc import Iterator
from typing import Any, Literal

import torch
from torch import nn

from attnunet.encoders.weights import load_encoder_state, load_weights_file

__all__ = [
    "TV_TAGS",
    "Pretrained",
    "TimmEncoder",
    "hub_cache_only",
    "import_timm",
    "offline_help",
]

TV_TAGS = {"resnet18": "resnet18.tv_in1k", "resnet34": "resnet34.tv_in1k"}
"""timm tags of torchvision's ImageNet weights (what RAUNet's reference code used)."""

Pretrained = bool | Literal["download"] | str | os.PathLike
"""``False``; ``True`` (timm's Hugging Face cache only, never the network);
``"download"`` (timm's normal loading, which downloads into the cache when it can); or the
path of a weights file."""


@contextlib.contextmanager
def hub_cache_only() -> Iterator[None]:
    """Make timm's Hugging Face loading read the local cache only, for the block's duration.

    Without this, a machine without network retries the Hub for about a minute before
    failing; with it, a missing cache fails at once. Without ``huggingface_hub`` it does
    nothing.

    Examples:
        >>> with hub_cache_only():
        ...     pass  # timm.create_model(..., pretrained=True) reads the cache only here
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
    """``import timm`` with an install hint when it is missing.

    Returns:
        The ``timm`` module.

    Raises:
        ImportError: timm is not installed (the message says how to install it).
    """
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
    """Advice for pretrained encoder weights that could not be loaded offline.

    Args:
        name: the encoder (timm model) name.
        error: what loading the weights raised.
        download: whether ``pretrained="download"`` was asked for (else ``True``).

    Returns:
        The message: what failed, and how to provide a weights file or fill the cache.
    """
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
