"""The base class every attnunet model shares: config, input checks, size policy."""

import os
from pathlib import Path
from typing import Any, Literal, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from attnunet.layers.shape import capturing, ceil_div, channels_last_format, crop_to
from attnunet.models import _hub
from attnunet.models._checkpointing import CheckpointSegment
from attnunet.models._config import accept_model_name, json_config

__all__ = [
    "CHANNELS_LAST_MODES",
    "SIZE_POLICIES",
    "SegmentationModel",
    "SizePolicy",
    "check_size_policy",
]

CHANNELS_LAST_MODES = ("auto", "on", "off")
"""What :meth:`SegmentationModel.set_channels_last` takes."""
_SLOW_CHANNELS_LAST_NORMS = (nn.modules.instancenorm._InstanceNorm, nn.GroupNorm)
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


def _autocast_active(x: torch.Tensor) -> bool:
    """Whether autocast is on for the device of ``x`` (then convolutions cast their
    inputs and weights to one dtype, so the input's own dtype does not matter)."""
    if not torch.jit.is_scripting():
        return torch.is_autocast_enabled(x.device.type)
    # TorchScript has no per-device query, and torch.is_autocast_cpu_enabled() crashes
    # a scripted process: ask a matrix product, which autocast runs in lower precision
    probe = torch.zeros(1, 1, dtype=torch.float32, device=x.device)
    return torch.mm(probe, probe).dtype != torch.float32


def _dtype_names(dtype: torch.dtype) -> tuple[str, str]:
    """The name of ``dtype`` (``"torch.float32"``; TorchScript would print a dtype as its
    number) and the tensor/module method that converts to it (``"float()"``)."""
    for known, name, method in (
        (torch.float32, "float32", "float()"),
        (torch.float64, "float64", "double()"),
        (torch.float16, "float16", "half()"),
        (torch.bfloat16, "bfloat16", "bfloat16()"),
        (torch.uint8, "uint8", ""),
        (torch.int8, "int8", ""),
        (torch.int16, "int16", ""),
        (torch.int32, "int32", ""),
        (torch.int64, "int64", ""),
        (torch.bool, "bool", ""),
    ):
        if dtype == known:
            full = "torch." + name
            return full, (method if method != "" else "to(" + full + ")")
    return str(dtype), "to(" + str(dtype) + ")"


def _dtype_mismatch(given: torch.dtype, expected: torch.dtype, floating: bool) -> str:
    """The message of the input dtype check (``floating``: whether ``given`` is a
    floating-point dtype): both dtypes and what would work."""
    given_name, given_cast = _dtype_names(given)
    expected_name, expected_cast = _dtype_names(expected)
    fixes = f"convert the input with x.{expected_cast}"
    if floating:
        fixes += f", or the model with model.{given_cast}, or run it under torch.autocast"
    return f"the input has dtype {given_name} but the model's weights are {expected_name}: {fixes}"


def _check_export_sizes(size: list[Any], size_policy: str, div: str) -> None:
    """Refuse what an exported graph cannot do: dynamic spatial sizes (symbolic sizes of
    ``torch.export``) under ``size_policy="resize"``, whose graph is right only for sizes
    that floor-halve like the export size at every level."""
    dynamic = [d for d, s in enumerate(size) if isinstance(s, torch.SymInt)]
    if dynamic and size_policy == "resize":
        raise ValueError(
            f"size_policy='resize' cannot be exported with dynamic spatial sizes (axes "
            f"{[d + 2 for d in dynamic]} are dynamic): the graph would be right only for "
            f"sizes that halve like the export size. Build the model with "
            f"size_policy='pad' (any size; pads to a multiple of {div} and crops back), "
            f"or keep the spatial axes static (the batch axis may stay dynamic)"
        )


def _divisor_text(divs: list[int]) -> str:
    """``16`` when every axis agrees, else ``[4, 16, 16]``."""
    if all(d == divs[0] for d in divs):
        return str(divs[0])
    return str(divs)


def _axes_text(divs: list[int]) -> str:
    """``every axis`` when every axis agrees, else ``each axis (in order)``."""
    if all(d == divs[0] for d in divs):
        return "every axis"
    return "each axis (in order)"


def _size_error(size: list[int], divs: list[int], depth: int) -> str:
    """The message of ``size_policy="error"`` for a size that is not a multiple of ``divs``."""
    lower = [max(divs[d], size[d] // divs[d] * divs[d]) for d in range(len(size))]
    upper = [ceil_div(size[d], divs[d]) * divs[d] for d in range(len(size))]
    nearby = f"{upper}" if upper == lower else f"{upper} or {lower}"
    if all(d == divs[0] for d in divs) and divs[0] == (1 << depth):
        what = f"2**depth = {divs[0]}"
    elif all(d == divs[0] for d in divs):
        what = f"the product of the strides, {divs[0]}"
    else:
        what = f"the product of the strides per axis, {divs}"
    return (
        f"spatial size {size} is not divisible by {what}; sizes that work nearby: {nearby}. "
        f"Or build the model with size_policy='pad' (pads and crops) or 'resize'"
    )


class SegmentationModel(nn.Module):
    """Base class: a model that remembers its constructor keywords and checks its inputs.

    ``model.config`` is a dict of constructor keywords in JSON types (tuples become lists),
    led by ``"model"``, the registry name of the model's class; it is JSON- and
    YAML-serialisable whenever the norm, activation, block and gate specs are names or
    ``(name, kwargs)`` pairs. ``create_model(**model.config)`` and
    ``type(model)(**model.config)`` rebuild the same architecture: every registered class
    accepts its own name as ``model=``.

    Subclasses set ``spatial_dims``, ``in_channels``, ``depth``, ``divisor`` (``2**depth``;
    with per-axis strides ``divisors`` holds the product of the strides per axis and
    ``divisor`` their least common multiple)
    and ``size_policy`` and call :meth:`_check_input`, :meth:`_prepare` and
    :meth:`_restore` around their network, which gives every model the same input errors
    and the same handling of sizes not divisible by ``2**depth`` (see
    ``docs/conventions.md``).

    ``model.set_checkpointing()`` turns on activation checkpointing (recomputation of each
    encoder stage and decoder level in backward, to train with less memory; see
    ``docs/training.md``); ``model.checkpointing`` tells whether it is on. It is a runtime
    setting, not part of ``config`` or of saved files.
    """

    __jit_ignored_attributes__ = ("_config", "_prefers_cl")
    __jit_unused_properties__ = (
        "config",
        "checkpointing",
        "channels_last",
        "deep_supervision",
        "ds_heads",
    )

    spatial_dims: int
    in_channels: int
    depth: int
    divisor: int
    divisors: list[int]
    size_policy: str
    _checkpointing: bool
    _channels_last: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        accept_model_name(cls)

    def __init__(self) -> None:
        super().__init__()
        self.divisors = []  # per axis; empty: `divisor` on every axis
        self._config: dict[str, Any] = {}
        self._checkpointing = False
        self._channels_last = "auto"
        self._prefers_cl: bool | None = None  # prefers_channels_last(), scanned once

    @property
    def config(self) -> dict[str, Any]:
        """A copy of the constructor keywords of this model in JSON types (lists, not
        tuples), led by ``"model"``: the registry name of exactly this class (absent for
        an unregistered class). ``create_model(**model.config)`` rebuilds the model."""
        return json_config(type(self), self._config)

    @property
    def checkpointing(self) -> bool:
        """Whether activation checkpointing is on (see :meth:`set_checkpointing`)."""
        return self._checkpointing

    def set_checkpointing(self: _Model, enabled: bool = True) -> _Model:
        """Turn activation checkpointing on (or off) and return the model itself.

        With it on, a training-mode forward pass with gradients enabled keeps only the
        inputs and outputs of each segment (every encoder stage, every decoder level with
        its up-sampling, gate and concatenation, every UNet++ node; RAUNet's encoder
        stages and decoder blocks) and backward recomputes the rest
        (``torch.utils.checkpoint``, non-reentrant): less activation memory for about one
        extra forward pass of compute. Losses and gradients are the same as without it,
        dropout included (the RNG state is replayed), and batch-norm running statistics
        are updated once per step, not again by the recomputation. Evaluation mode,
        ``torch.no_grad()``, ``torch.inference_mode()`` and TorchScript run the normal
        path. The setting is not part of :attr:`config` nor of saved weights.

        Examples:
            >>> from attnunet import UNet
            >>> model = UNet(3, 1, 2, channels=(4, 8, 16)).set_checkpointing()
            >>> model.checkpointing
            True
        """
        flag = bool(enabled)
        self._checkpointing = flag
        for module in self.modules():
            if isinstance(module, CheckpointSegment):
                module.checkpointing = flag
        return self

    @property
    def channels_last(self) -> str:
        """How the model lays out its activations: ``"auto"`` (the default), ``"on"`` or
        ``"off"``; see :meth:`set_channels_last`."""
        return getattr(self, "_channels_last", "auto")  # models pickled before it existed

    def set_channels_last(self: _Model, mode: "str | bool" = "on") -> _Model:
        """Choose the memory layout of the activations and return the model itself.

        The model takes and returns ordinary ``(B, C, *S)`` tensors whatever the mode;
        only the layout it computes in changes, and with it the float rounding.

        * ``"auto"`` (every model starts so): on the CPU, a 2D or 3D model whose
          normalisation layers are batch norm (or none) copies a contiguous float32,
          float16 or bfloat16 input to channels-last (``torch.channels_last`` /
          ``channels_last_3d``) before the first convolution, so every oneDNN
          convolution runs in its fast layout without reordering; the outputs of such a
          call come back contiguous. This made the 2D training step (batch 4, 256^2) of
          ``AgResUNet`` 1.38x faster on 2 CPU cores (``docs/performance.md``). Models
          with instance or group norm (:meth:`prefers_channels_last`), whose CPU
          kernels are slower channels-last, 1D models, float64 inputs, CUDA inputs and
          inputs already channels-last run as given.
        * ``"on"``: the same copy for any contiguous 2D/3D floating-point input on any
          device (no check of norms, dtype or device).
        * ``"off"``: the input's own layout (as PyTorch does: channels-last weights from
          :meth:`to_channels_last` still give channels-last activations).

        Nothing is converted under TorchScript, ``torch.jit.trace``, ``torch.export`` or
        while ``torch.compile`` traces (the compiler chooses layouts itself). The mode is
        a run-time setting, not part of :attr:`config` or of saved weights.

        Raises:
            ValueError: for a mode other than ``"auto"``, ``"on"``, ``"off"``, True or False.

        Examples:
            >>> from attnunet import UNet
            >>> model = UNet(2, 1, 2, channels=(4, 8, 16))
            >>> model.channels_last
            'auto'
            >>> model.set_channels_last("off").channels_last
            'off'
        """
        if isinstance(mode, bool):
            mode = "on" if mode else "off"
        if mode not in CHANNELS_LAST_MODES:
            raise ValueError(
                f"set_channels_last takes 'auto', 'on', 'off', True or False, got {mode!r}"
            )
        self._channels_last = mode
        self._prefers_cl = None  # scan the norms again at the next call
        return self

    def prefers_channels_last(self) -> bool:
        """Whether the model's layers run faster channels-last on the CPU: true for a 2D or
        3D model without instance or group norm layers (their CPU kernels measured 1.1-2x
        slower in that layout). ``"auto"`` of :meth:`set_channels_last` asks this once
        and keeps the answer; :meth:`set_channels_last` asks again (call it after
        replacing norm layers)."""
        return self.spatial_dims in (2, 3) and not any(
            isinstance(m, _SLOW_CHANNELS_LAST_NORMS) for m in self.modules()
        )

    @torch.jit.unused
    def _converts_layout(self, x: torch.Tensor) -> bool:
        """Whether the mode and ``x`` (device, dtype, dimensions) ask for channels-last."""
        mode = self.channels_last
        if mode == "off" or x.dim() not in (4, 5) or not x.is_floating_point():
            return False
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return False
        if mode == "on":
            return True
        if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            return False
        prefers = getattr(self, "_prefers_cl", None)
        if prefers is None:  # one scan of the modules, not one per call
            prefers = self._prefers_cl = self.prefers_channels_last()
        return prefers

    @torch.jit.unused
    def _layout_in(self, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """``x`` in the layout :meth:`set_channels_last` asks for, and whether it was
        copied for that."""
        if not self._converts_layout(x):
            return x, False
        layout = channels_last_format(x.dim())
        if x.is_contiguous(memory_format=layout) and not x.is_contiguous():
            return x, False  # channels-last already
        # clone, not contiguous(): a one-channel tensor is already "channels-last
        # contiguous" to PyTorch, so contiguous() would keep its strides, and the first
        # convolution would then choose the default layout for the whole network
        return x.clone(memory_format=layout), True

    def to_channels_last(self: _Model) -> _Model:
        """Store the weights channels-last (``torch.channels_last`` for 2D models,
        ``torch.channels_last_3d`` for 3D ones) and return the model itself.

        PyTorch's CPU (oneDNN) and cuDNN convolutions then produce channels-last
        activations even from an ordinary ``(B, C, *S)`` input, so the whole network runs
        in that layout; outputs have the usual shape and values (only their strides
        differ). On CPU this is the largest single speed-up for 2D models and for 3D
        models without linear up-sampling (``docs/performance.md`` has the figures). 1D
        models are returned unchanged.

        Examples:
            >>> from attnunet import UNet
            >>> model = UNet(2, 1, 2, channels=(4, 8, 16)).to_channels_last()
            >>> model.head.conv.weight.is_contiguous(memory_format=torch.channels_last)
            True
        """
        if self.spatial_dims in (2, 3):
            return self.to(memory_format=channels_last_format(self.spatial_dims + 2))
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        """Number of (trainable) parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def save_pretrained(self, directory: "str | os.PathLike[str]", **kwargs: Any) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory``; see
        :func:`attnunet.models.save_pretrained` (keywords ``overwrite``, ``metadata``)."""
        return _hub.save_pretrained(self, directory, **kwargs)

    @classmethod
    def from_pretrained(
        cls: type[_Model], directory: "str | os.PathLike[str]", **kwargs: Any
    ) -> _Model:
        """Load a model saved by :meth:`save_pretrained`, in eval mode, without network;
        see :func:`attnunet.models.from_pretrained`. Called on a subclass (``UNet``), the
        saved model must be an instance of it (else ``TypeError``); called on
        ``SegmentationModel``, any saved model loads."""
        model = _hub.from_pretrained(directory, expected_class=cls, **kwargs)
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
        dtype = self._weight_dtype()
        if dtype is not None and x.dtype != dtype:
            floating = x.is_floating_point()
            if not (floating and _autocast_active(x)):
                raise TypeError(_dtype_mismatch(x.dtype, dtype, floating))

    def _weight_dtype(self) -> torch.dtype | None:
        """The dtype of the model's weights, which inputs must have (outside autocast);
        ``None`` skips the check. Subclasses return the dtype of a weight they own
        (TorchScript cannot iterate ``self.parameters()``)."""
        return None

    def _axis_divisors(self, n: int) -> list[int]:
        """What each of the ``n`` spatial axes must be a multiple of."""
        if len(self.divisors) == n:
            return self.divisors
        return [self.divisor] * n

    def _prepare(self, x: torch.Tensor) -> tuple[torch.Tensor, list[int], bool]:
        """Apply the size policy and the layout (:meth:`set_channels_last`); return the
        (possibly padded) input, the original size and whether the input was copied to
        channels-last (then :meth:`_restore` hands the outputs back in the default layout)."""
        size = list(x.shape[2:])
        divs = self._axis_divisors(len(size))
        exporting = False
        if not torch.jit.is_scripting():
            exporting = capturing()
            if exporting:
                _check_export_sizes(size, self.size_policy, _divisor_text(divs))
        if self.size_policy == "pad":
            pad: list[int] = []
            for d in range(len(size) - 1, -1, -1):
                pad.append(0)
                # the padded size is then div * k to torch.export's symbolic shapes, and
                # every size below it simplifies (needed to export a dynamic 3D RAUNet)
                pad.append(ceil_div(size[d], divs[d]) * divs[d] - size[d])
            if exporting or max(pad) > 0:  # an exported graph pads at every size
                x = F.pad(x, pad)
        elif self.size_policy == "error":
            if any(size[d] % divs[d] != 0 for d in range(len(size))):
                raise ValueError(_size_error(size, divs, self.depth))
        elif any(size[d] < divs[d] for d in range(len(size))):
            raise ValueError(
                f"spatial size {size} is too small for depth {self.depth} with "
                f"size_policy='resize': {_axes_text(divs)} needs at least {_divisor_text(divs)} "
                f"voxels; "
                f"use size_policy='pad' (pads and crops back)"
            )
        converted = False
        if not torch.jit.is_scripting():
            x, converted = self._layout_in(x)
        return x, size, converted

    def _restore(
        self,
        tensors: list[torch.Tensor],
        size: list[int],
        prepared: torch.Tensor,
        converted: bool = False,
    ) -> list[torch.Tensor]:
        """Undo the padding of :meth:`_prepare` on outputs at any grid (1/f of the input).

        A tensor on a grid ``f`` times coarser than the padded input keeps its first
        ``ceil(size / f)`` voxels per axis (``f`` is exact, as the padded size is a multiple
        of it). Other policies return the tensors unchanged.
        """
        if self.size_policy != "pad":
            return [t.contiguous() for t in tensors] if converted else tensors
        exporting = False
        if not torch.jit.is_scripting():
            exporting = capturing()
        padded = list(prepared.shape[2:])
        restored: list[torch.Tensor] = []
        for t in tensors:
            keep: list[int] = []
            for d in range(len(size)):
                factor = padded[d] // t.shape[d + 2]
                keep.append(ceil_div(size[d], factor))
            t = crop_to(t, keep, always=exporting)
            restored.append(t.contiguous() if converted else t)  # copies only the crop
        return restored
