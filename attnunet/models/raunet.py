"""RAUNet: a ResNet encoder, LinkNet decoder blocks and augmented attention skip fusion."""

import contextlib
import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Final

import torch
from torch import nn

from attnunet.blocks.aam import AugmentedAttentionModule, LinkNetDecoderBlock, check_factor_two
from attnunet.blocks.conv import check_channels
from attnunet.encoders import (
    RESNET_LAYERS,
    TV_TAGS,
    Pretrained,
    ResNetEncoder,
    TimmEncoder,
    hub_cache_only,
    import_timm,
    load_encoder_state,
    load_weights_file,
    offline_help,
)
from attnunet.encoders.resnet import RESNET_STEPS, resnet_strides
from attnunet.layers import (
    ActSpec,
    NormSpec,
    check_spatial_dims,
    compact_axes,
    conv_transpose_type,
    conv_type,
    parse_spec,
)
from attnunet.layers.shape import match_size
from attnunet.models._attention import AttentionMaps, Output
from attnunet.models._checkpointing import (
    CheckpointSegment,
    checkpoint_active,
    run_checkpointed,
)
from attnunet.models._factory import build_preset
from attnunet.models._registry import register_model
from attnunet.models._stages import capture_config
from attnunet.models.base import (
    SegmentationModel,
    SizePolicy,
    check_size_policy,
)

__all__ = ["RAUNET_PRESET", "RAUNet", "raunet_ni"]

NI_PAPER = (
    "Ni et al., RAUNet: Residual Attention U-Net for Semantic Segmentation of Cataract "
    "Surgical Instruments, ICONIP 2019, arXiv:1909.10360"
)


class NativeEncoder(CheckpointSegment):
    """attnunet's own :class:`~attnunet.encoders.ResNetEncoder` under the same ``model``
    attribute as :class:`~attnunet.encoders.TimmEncoder`, so state-dict keys read
    ``encoder.model.layer1...`` in 2D and 3D alike.

    With activation checkpointing on, its segments are ``stem + layer1``, ``layer2``,
    ``layer3`` and ``layer4``."""

    def __init__(self, model: ResNetEncoder) -> None:
        super().__init__()
        self.model = model
        self.feature_channels = list(model.feature_channels)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self._checkpoint_now():
            return self._checkpointed(x)
        return self.model(x)

    @torch.jit.unused
    def _checkpointed(self, x: torch.Tensor) -> list[torch.Tensor]:
        m = self.model

        def stem_and_layer1(t: torch.Tensor) -> Any:
            return m.layer1(m.stem(t))

        e1 = run_checkpointed((m.bn1, m.layer1), stem_and_layer1, x)
        e2 = run_checkpointed((m.layer2,), m.layer2, e1)
        e3 = run_checkpointed((m.layer3,), m.layer3, e2)
        e4 = run_checkpointed((m.layer4,), m.layer4, e3)
        return [e1, e2, e3, e4]


def _block_and_fusion(
    block: nn.Module, fusion: AugmentedAttentionModule, x: torch.Tensor, skip: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return fusion.attend(match_size(block(x), list(skip.shape[2:])), skip)


class RAUNetDecoder(CheckpointSegment):
    """``blocks[0..3]`` (LinkNet blocks, coarse to fine) and ``fusions[0..2]`` (AAMs).

    With activation checkpointing on, each block with the fusion that follows it is one
    segment (the last block alone)."""

    if TYPE_CHECKING:  # what the nn.ModuleList holds; TorchScript never sees this
        fusions: Sequence[AugmentedAttentionModule]

    def __init__(self, blocks: list[nn.Module], fusions: list[AugmentedAttentionModule]) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.add_module("fusions", nn.ModuleList(fusions))  # typed above

    def forward(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        if self._checkpoint_now():
            return self._checkpointed(features)
        x = features[3]
        weights: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            for j, fusion in enumerate(self.fusions):
                if j == i:
                    skip = features[2 - i]
                    x, w = fusion.attend(match_size(x, list(skip.shape[2:])), skip)
                    weights.append(w)
        return x, weights

    @torch.jit.unused
    def _checkpointed(
        self, features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = features[3]
        weights: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            if i < len(self.fusions):
                fusion = self.fusions[i]
                run = functools.partial(_block_and_fusion, block, fusion)
                x, w = run_checkpointed((block, fusion), run, x, features[2 - i])
                weights.append(w)
            else:
                x = run_checkpointed((block,), block, x)
        return x, weights


class RAUNetHead(nn.Module):
    """``ConvT(k3, s2) -> ReLU -> Conv(k3) -> ReLU -> Conv(k2, p1)``: back to full size.

    A size ``n`` becomes ``2n + 1``, ``2n - 1`` and ``2n``. Along an axis with ``stride``
    1 the three layers are ``ConvT(k2, s1)``, ``Conv(k3, p1)`` and ``Conv(k2, p0)``
    instead (``n + 1``, ``n + 1``, ``n``): the size is kept exactly and each output voxel
    still sees the input voxels symmetrically around it, as with stride 2.
    """

    def __init__(
        self,
        spatial_dims: int,
        in_channels: int,
        mid: int,
        num_classes: int,
        stride: int | Sequence[int] = 2,
    ) -> None:
        super().__init__()
        strides = check_factor_two(stride, spatial_dims)
        conv = conv_type(spatial_dims)
        kernel = compact_axes([3 if s == 2 else 2 for s in strides])
        transposed = conv_transpose_type(spatial_dims)
        self.deconv = transposed(in_channels, mid, kernel, stride=compact_axes(strides))
        self.conv = conv(mid, mid, 3, padding=compact_axes([2 - s for s in strides]))
        self.classifier = conv(mid, num_classes, 2, padding=compact_axes([s - 1 for s in strides]))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.relu(self.conv(self.relu(self.deconv(x)))))


@register_model(
    "raunet",
    spatial_dims=(1, 2, 3),
    paper=NI_PAPER,
    description="RAUNet: ResNet encoder, LinkNet decoder, augmented attention modules",
)
class RAUNet(AttentionMaps, SegmentationModel):
    """RAUNet (Ni et al., ICONIP 2019) in 2D with any timm encoder, and in 3D.

    Layout (``c1..c4`` the encoder's feature channels at strides 4, 8, 16, 32; ResNet34:
    64, 128, 256, 512)::

        encoder              e1, e2, e3, e4 = features at strides 4, 8, 16, 32
        decoder.blocks[0]    LinkNet(c4 -> c3)(e4)        -> d4;  b4 = fusions[0](d4, e3)
        decoder.blocks[1]    LinkNet(c3 -> c2)(b4)        -> d3;  b3 = fusions[1](d3, e2)
        decoder.blocks[2]    LinkNet(c2 -> c1)(b3)        -> d2;  b2 = fusions[2](d2, e1)
        decoder.blocks[3]    LinkNet(c1 -> c1)(b2)        -> d1   (stride 2)
        head                 ConvT(c1 -> 32, k3, s2) -> ReLU -> Conv(k3) -> ReLU
                             -> Conv(32 -> num_classes, k2, p1)   (full resolution)

    with :class:`~attnunet.blocks.AugmentedAttentionModule` fusions. In 2D the encoder is
    any timm CNN with features at strides 4-32 (``encoder="resnet34"`` by default, as in
    the paper); in 1D and 3D it is attnunet's :class:`~attnunet.encoders.ResNetEncoder`
    (``"resnet34"`` or ``"resnet18"``), whose 2D ImageNet weights are inflated along depth
    when ``pretrained`` is set.

    Args:
        spatial_dims: 2 (any timm encoder) or 3 (native ResNet18/34; 1 also works).
        in_channels: input channels; pretrained first convs are adapted (summed over RGB for
            one channel).
        num_classes: output channels (logits).
        encoder: encoder name.
        pretrained: ``False``; ``True`` for ImageNet weights from timm's Hugging Face cache
            only (ResNet18/34: torchvision's weights, timm tag ``resnet34.tv_in1k``, as in
            the paper), never touching the network; ``"download"`` to let timm download
            them when the cache lacks them; or a path to a weights file (``.pth``/``.pt``/
            ``.bin``/``.safetensors``, torchvision or timm layout). 3D encoders get the 2D
            weights inflated along depth; 1D encoders take no pretrained weights.
        norm: norm spec of the decoder and the AAMs' full-resolution path.
        pool_norm: norm spec after the AAMs' global pooling: ``"layer"`` (default; works at
            batch size 1) or ``"batch"`` (the reference, which fails to train on one image).
        act: activation spec of decoder and AAMs.
        head_channels: width of the head (32).
        size_policy: ``"pad"`` (default; pads to a multiple of 32 and crops back),
            ``"resize"`` or ``"error"`` (see ``docs/conventions.md``).
        strides: anisotropic steps, 1D and 3D only: five strides, each 1 or 2 on every
            axis or one per axis (e.g. ``[[1, 2, 2], [1, 2, 2], 2, 2, 2]``), for the stem
            convolution, the max-pool, ``layer2``, ``layer3`` and ``layer4``; the decoder
            undoes each with the same factor (``decoder.blocks[0..3]`` layer4 to the
            max-pool, the head the stem convolution), and ``model.divisors`` is their
            product per axis (the size policy pads each axis to it). ``None`` (default) is
            2 everywhere; kernels and weight shapes stay ResNet's, except the transposed
            kernels along stride-1 axes (3 instead of 4 in the LinkNet blocks, 2 instead
            of 3 in the head).

    Shape:
        ``(B, in_channels, *S)`` -> ``(B, num_classes, *S)``, any ``S``.

    Raises:
        ValueError: an encoder that cannot serve, a bad configuration or input, strides
            other than 1 or 2, or strides other than 2 in 2D (timm encoders have fixed
            strides).
        RuntimeError: ``pretrained=True`` without cached weights (the message says what to
            do on an offline machine).
        FileNotFoundError: ``pretrained`` names a missing file.

    Activation checkpointing (:meth:`~attnunet.models.base.SegmentationModel.set_checkpointing`)
    recomputes the native encoder stage by stage (``stem + layer1``, ``layer2``, ``layer3``,
    ``layer4``) and each decoder block with its AAM; a timm encoder is recomputed as one
    segment. timm's own ``set_grad_checkpointing`` is not used: its recomputation would
    update the encoder's batch-norm running statistics a second time each step.

    Differences from the paper's code:
        logits instead of ``log_softmax``; any input size instead of multiples of 32; the
        AAM's post-pooling norm is selectable (``"layer"`` by default, see above); 3D and
        other encoders exist here only.

    Examples:
        >>> import torch
        >>> model = RAUNet(2, in_channels=1, num_classes=2)
        >>> model(torch.randn(1, 1, 70, 90)).shape
        torch.Size([1, 2, 70, 90])
        >>> flat = RAUNet(3, 1, 2, encoder="resnet18", strides=[(1, 2, 2), (1, 2, 2), 2, 2, 2])
        >>> flat.divisors, flat.divisor
        ([8, 32, 32], 32)
    """

    whole_encoder_segment: Final[bool]

    def __init__(
        self,
        spatial_dims: int = 2,
        in_channels: int = 3,
        num_classes: int = 1,
        encoder: str = "resnet34",
        pretrained: Pretrained = False,
        *,
        norm: NormSpec = "batch",
        pool_norm: NormSpec = "layer",
        act: ActSpec = "relu",
        head_channels: int = 32,
        size_policy: SizePolicy = "pad",
        strides: Sequence[int | Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        check_spatial_dims(spatial_dims)
        check_size_policy(size_policy)
        if parse_spec(pool_norm, "norm")[0] == "instance":
            raise ValueError(
                "pool_norm='instance' normalises a single pooled value per channel and "
                "image, so it can never train: use 'layer' (default), 'group', 'batch' or None"
            )
        check_channels(in_channels=in_channels, num_classes=num_classes)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.num_classes = num_classes
        steps = self._check_strides(strides, spatial_dims)
        self.depth = 5
        self.divisors = [math.prod(axes) for axes in zip(*steps, strict=True)]
        self.divisor = math.lcm(*self.divisors)
        self.size_policy = size_policy
        native = None if strides is None else steps
        self.encoder = self._build_encoder(spatial_dims, in_channels, encoder, pretrained, native)
        # a timm encoder is checkpointed as one segment (see set_checkpointing)
        self.whole_encoder_segment = not isinstance(self.encoder, NativeEncoder)
        channels: list[int] = list(self.encoder.feature_channels)  # type: ignore[arg-type]
        c1, c2, c3, c4 = channels

        def aam(c: int) -> AugmentedAttentionModule:
            return AugmentedAttentionModule(spatial_dims, c, c, norm, pool_norm, act)

        self.decoder = RAUNetDecoder(
            [
                # each block undoes one encoder step: layer4, layer3, layer2, the max-pool
                LinkNetDecoderBlock(spatial_dims, c4, c3, norm, act, stride=steps[4]),
                LinkNetDecoderBlock(spatial_dims, c3, c2, norm, act, stride=steps[3]),
                LinkNetDecoderBlock(spatial_dims, c2, c1, norm, act, stride=steps[2]),
                LinkNetDecoderBlock(spatial_dims, c1, c1, norm, act, stride=steps[1]),
            ],
            [aam(c3), aam(c2), aam(c1)],
        )
        # the head undoes the stem convolution
        self.head = RAUNetHead(spatial_dims, c1, head_channels, num_classes, steps[0])
        # weights are in the state dict: a rebuilt model never downloads them again
        self._config = capture_config(
            RAUNet.__init__,
            locals(),
            pretrained=False,
            strides=None if strides is None else [compact_axes(axes) for axes in steps],
        )

    @staticmethod
    def _check_strides(
        strides: Sequence[int | Sequence[int]] | None, spatial_dims: int
    ) -> list[tuple[int, ...]]:
        """The five steps' strides per axis (each 1 or 2); only a native encoder takes others
        than 2."""
        steps = resnet_strides(strides, spatial_dims)
        for i, (axes, step) in enumerate(zip(steps, RESNET_STEPS, strict=True)):
            check_factor_two(axes, spatial_dims, f"strides[{i}] ({step})")
        if spatial_dims == 2 and any(axes != (2, 2) for axes in steps):
            raise ValueError(
                f"strides={strides!r}: a 2D RAUNet's timm encoder has fixed strides (2 at "
                f"every step); per-step strides need attnunet's own ResNet encoder, which a "
                f"3D (or 1D) RAUNet uses, e.g. RAUNet(3, strides=[[1, 2, 2], [1, 2, 2], 2, 2, "
                f"2])"
            )
        return steps

    @staticmethod
    def _build_encoder(
        spatial_dims: int,
        in_channels: int,
        name: str,
        pretrained: Pretrained,
        strides: list[tuple[int, ...]] | None,
    ) -> nn.Module:
        from_hub = pretrained is True or pretrained == "download"
        if spatial_dims == 2:
            hub_name = TV_TAGS.get(name, name) if from_hub else name
            return TimmEncoder(hub_name, in_channels, pretrained)
        if name not in RESNET_LAYERS:
            raise ValueError(
                f"a {spatial_dims}D RAUNet has a native ResNet encoder: choose encoder= "
                f"{' or '.join(map(repr, RESNET_LAYERS))}, got {name!r} (any timm encoder "
                f"works in 2D)"
            )
        encoder = NativeEncoder(
            ResNetEncoder(spatial_dims, in_channels, RESNET_LAYERS[name], strides=strides)
        )
        if from_hub:
            timm = import_timm()
            tag = TV_TAGS[name]
            cache_only = hub_cache_only() if pretrained is True else contextlib.nullcontext()
            try:
                with cache_only:
                    state = timm.create_model(tag, pretrained=True).state_dict()
            except Exception as error:
                download = pretrained == "download"
                raise RuntimeError(offline_help(tag, error, download)) from error
            load_encoder_state(encoder.model, state, in_channels)
        elif not isinstance(pretrained, bool):
            load_encoder_state(encoder.model, load_weights_file(pretrained), in_channels)
        return encoder

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.whole_encoder_segment and checkpoint_active(self._checkpointing, self.training):
            return self._encode_checkpointed(x)
        return self.encoder(x)

    @torch.jit.unused
    def _encode_checkpointed(self, x: torch.Tensor) -> list[torch.Tensor]:
        return run_checkpointed((self.encoder,), self.encoder, x)

    def _weight_dtype(self) -> torch.dtype | None:
        return self.head.classifier.weight.dtype  # type: ignore[return-value]

    def _run(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        self._check_input(x)
        prepared, size, converted = self._prepare(x)
        features = self._encode(prepared)
        decoded, weights = self.decoder(features)
        logits = match_size(self.head(decoded), list(prepared.shape[2:]))
        return self._restore([logits], size, prepared, converted)[0], weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, num_classes, *S)``."""
        return self._run(x)[0]

    def _attention_run(self, x: torch.Tensor) -> tuple[Output, list[torch.Tensor]]:
        """``(logits, weights)``: the AAMs' channel weights, coarsest first, each of shape
        ``(B, C, 1, ...)`` (RAUNet's attention is over channels, not space)."""
        logits, weights = self._run(x)
        return logits, weights


RAUNET_PRESET: dict[str, Any] = {
    "spatial_dims": 2,
    "in_channels": 3,
    "num_classes": 1,
    "encoder": "resnet34",
    "pool_norm": "batch",
}
"""The reference configuration: RGB input, ResNet34 encoder, batch norm after pooling."""


@register_model(
    "raunet_ni",
    model_class=RAUNet,
    spatial_dims=(1, 2, 3),
    paper=NI_PAPER,
    description="RAUNet as released by Ni et al. (ResNet34, RGB, BN after pooling)",
    defaults=RAUNET_PRESET,
)
def raunet_ni(**overrides: Any) -> RAUNet:
    """RAUNet as in the reference code (:data:`RAUNET_PRESET`): 22,143,265 parameters with
    one class, as the reference. Pass ``pretrained=True`` or a path for ImageNet weights.

    The reference is 2D; ``spatial_dims=3`` (or 1) builds the same configuration on
    attnunet's native ResNet34, so the registry lists 1D, 2D and 3D, as for every preset.

    Examples:
        >>> raunet_ni().num_parameters()
        22143265
    """
    return build_preset("raunet_ni", overrides)
