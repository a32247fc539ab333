"""The base class every attnunet model shares: config, input checks, size policy."""

import copy
import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from attnunet._shape import crop_to

__all__ = ["SIZE_POLICIES", "SegmentationModel", "SizePolicy", "check_size_policy"]

SizePolicy = Literal["pad", "resize", "error"]
SIZE_POLICIES = ("pad", "resize", "error")
_Model = TypeVar("_Model", bound="SegmentationModel")


def check_size_policy(size_policy: str) -> str:
    """Validate a ``size_policy`` value and return it.

    Raises:
        ValueError: for anything but ``"pad"``, ``"resize"`` or ``"error"``.
    """
    if size_policy not in SIZE_POLICIES:
        raise ValueError(
            f"size_policy must be one of {', '.join(map(repr, SIZE_POLICIES))}, got {size_policy!r}"
        )
    return size_policy


class SegmentationModel(nn.Module):
    """Base class: a model that remembers its constructor keywords and checks its inputs.

    ``model.config`` is a dict of constructor keywords (JSON-serialisable whenever the
    norm, activation, block and gate specs are strings or ``(name, kwargs)`` pairs), so
    ``type(model)(**model.config)`` and ``create_model(name, **model.config)`` rebuild
    the same architecture.

    Subclasses set ``spatial_dims``, ``in_channels``, ``depth``, ``divisor`` (``2**depth``)
    and ``size_policy`` and call :meth:`_check_input`, :meth:`_prepare` and
    :meth:`_restore` around their network, which gives every model the same input errors
    and the same handling of sizes not divisible by ``2**depth`` (see
    ``docs/conventions.md``).
    """

    __jit_ignored_attributes__ = ("_config",)
    __jit_unused_properties__ = ("config",)

    spatial_dims: int
    in_channels: int
    depth: int
    divisor: int
    size_policy: str

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the constructor keywords of this model."""
        return copy.deepcopy(self._config)

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def save_pretrained(self, directory: "str | os.PathLike[str]", **kwargs: Any) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``; see
        :func:`attnunet.hub.save_pretrained` (keywords ``overwrite``, ``metadata``)."""
        from attnunet.hub import save_pretrained

        return save_pretrained(self, directory, **kwargs)

    @classmethod
    def from_pretrained(
        cls: type[_Model], directory: "str | os.PathLike[str]", **kwargs: Any
    ) -> _Model:
        """Load a model saved by :meth:`save_pretrained`, in eval mode, without network;
        see :func:`attnunet.hub.from_pretrained`. Called on a subclass (``UNet``), the
        saved model must be an instance of it (else ``TypeError``); called on
        ``SegmentationModel``, any saved model loads."""
        from attnunet.hub import from_pretrained

        model = from_pretrained(directory, expected_class=cls, **kwargs)
        assert isinstance(model, cls)
        return model

    # ------------------------------------------------------------------ input handling
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2:
            layout = ["(B, C, L)", "(B, C, H, W)", "(B, C, D, H, W)"][self.spatial_dims - 1]
            raise ValueError(
                f"expected a {self.spatial_dims + 2}D input {layout} for spatial_dims="
                f"{self.spatial_dims}, got shape {list(x.shape)}"
            )
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"expected {self.in_channels} input channel(s) (dim 1), got shape "
                f"{list(x.shape)}: build the model with in_channels={x.shape[1]} or fix "
                f"the channel axis of the input"
            )

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
        """Apply the size policy; return the (possibly padded) input and the original size."""
        size = list(x.shape[2:])
        div = self.divisor
        if self.size_policy == "pad":
            pad: list[int] = []
            for d in range(len(size) - 1, -1, -1):
                pad.append(0)
                pad.append((div - size[d] % div) % div)
            if max(pad) > 0:
                x = F.pad(x, pad)
        elif self.size_policy == "error":
            if any(s % div != 0 for s in size):
                lower = [max(div, s // div * div) for s in size]
                upper = [-(-s // div) * div for s in size]
                raise ValueError(
                    f"spatial size {size} is not divisible by 2**depth = {div}; sizes that "
                    f"work nearby: {upper} or {lower}. Or build the model with "
                    f"size_policy='pad' (pads and crops) or 'resize'"
                )
        elif any(s < div for s in size):
            raise ValueError(
                f"spatial size {size} is too small for depth {self.depth} with "
                f"size_policy='resize': every axis needs at least {div} voxels; use "
                f"size_policy='pad' (pads and crops back)"
            )
        return x, size

    def _restore(
        self, tensors: list[torch.Tensor], size: list[int], prepared: torch.Tensor
    ) -> list[torch.Tensor]:
        """Undo the padding of :meth:`_prepare` on outputs at any grid (1/f of the input).

        A tensor on a grid ``f`` times coarser than the padded input keeps its first
        ``ceil(size / f)`` voxels per axis (``f`` is exact, as the padded size is a multiple
        of it). Other policies return the tensors unchanged.
        """
        if self.size_policy != "pad":
            return tensors
        padded = list(prepared.shape[2:])
        restored: list[torch.Tensor] = []
        for t in tensors:
            keep: list[int] = []
            for d in range(len(size)):
                factor = padded[d] // t.shape[d + 2]
                keep.append(-(-size[d] // factor))
            restored.append(crop_to(t, keep))
        return restored
