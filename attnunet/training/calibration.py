"""Batch-norm recalibration: recompute running statistics after training.

A :class:`~torch.nn.BatchNorm2d` normalises with the statistics of the current batch in
train mode and with its running estimates in eval mode. When those estimates are poor
(batches of one or two images, a momentum that lets the last few batches dominate, data
whose intensity drifts between patients), a model that looks good in train mode predicts
much worse in eval mode. The knee-ultrasound study met exactly this.

:func:`recalibrate_batchnorm` replaces the running statistics of every batch-norm layer
by the exact mean and unbiased variance of that layer's inputs over a pass through your
data, with the rest of the network as it is at inference.

Examples:
    >>> import torch
    >>> from attnunet import UNet
    >>> model = UNet(2, 1, 1, channels=(4, 8))
    >>> data = [torch.randn(2, 1, 16, 16) for _ in range(3)]
    >>> recalibrate_batchnorm(model, data)
    3
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]


def batchnorm_layers(model: nn.Module) -> list[tuple[str, _BatchNorm]]:
    """The ``(name, module)`` pairs of the batch-norm layers with running statistics
    (``BatchNorm1d/2d/3d``, ``SyncBatchNorm`` and subclasses; layers built with
    ``track_running_stats=False`` always use batch statistics and are left out)."""
    return [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, _BatchNorm)
        and module.track_running_stats
        and module.running_mean is not None
        and module.running_var is not None
    ]


@dataclass
class _Moments:
    """Pooled per-channel count, mean and sum of squared deviations (Chan et al.)."""

    count: int = 0
    mean: torch.Tensor | None = None
    m2: torch.Tensor | None = None

    def add(self, x: torch.Tensor) -> None:
        dims = [0, *range(2, x.dim())]
        n = x.numel() // x.shape[1]
        var, mean = torch.var_mean(x.detach().float(), dim=dims, correction=0)
        mean, m2 = mean.double(), var.double() * n
        if self.mean is None or self.m2 is None:
            self.count, self.mean, self.m2 = n, mean, m2
            return
        total = self.count + n
        delta = mean - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2 + delta * delta * (self.count * n / total)
        self.count = total


def _input_of(batch: Any) -> torch.Tensor:
    """The input tensor of a batch: the batch itself, its first element, or ``"image"``."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, Mapping):
        if "image" not in batch:
            raise ValueError(
                f"a dict batch needs its input under 'image'; got keys {sorted(map(str, batch))}. "
                f"Pass forward=lambda model, batch: model(batch['your_key'])"
            )
        return _input_of(batch["image"])
    if isinstance(batch, (tuple, list)) and batch:
        return _input_of(batch[0])
    raise TypeError(
        f"cannot find the input in a batch of type {type(batch).__name__}: give tensors, "
        f"(input, target, ...) tuples, dicts with an 'image' key, or a forward= callable"
    )


def _to_device(batch: Any, device: torch.device | None) -> Any:
    """``batch`` with its tensors (also inside dicts, tuples, lists) on ``device``."""
    if device is None:
        return batch
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {key: _to_device(value, device) for key, value in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _model_device(model: nn.Module) -> torch.device | None:
    """The device of the model's first parameter or buffer (``None``: it has neither)."""
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        return tensor.device
    return None


def _check_num_batches(num_batches: int | None) -> None:
    """Raise ValueError unless ``num_batches`` is ``None`` or a positive int."""
    if num_batches is not None and (
        isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1
    ):
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")


_Statistics = tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, float | None]


@dataclass
class _Snapshot:
    """What the pass changes and puts back: every module's mode and, per batch-norm
    layer, its running mean and variance, ``num_batches_tracked`` and momentum."""

    layers: list[tuple[str, _BatchNorm]]
    modes: dict[nn.Module, bool]
    statistics: list[_Statistics]

    @classmethod
    def take(cls, model: nn.Module, layers: list[tuple[str, _BatchNorm]]) -> _Snapshot:
        """The modes of ``model``'s modules and the state of its batch-norm ``layers``."""
        modes = {module: module.training for module in model.modules()}
        statistics = [
            (
                bn.running_mean.clone(),  # type: ignore[union-attr]
                bn.running_var.clone(),  # type: ignore[union-attr]
                None if bn.num_batches_tracked is None else bn.num_batches_tracked.clone(),
                bn.momentum,
            )
            for _, bn in layers
        ]
        return cls(layers, modes, statistics)

    def restore_statistics(self, index: int) -> None:
        """Put layer ``index``'s running statistics back as they were."""
        bn = self.layers[index][1]
        mean, var, tracked, _ = self.statistics[index]
        bn.running_mean.copy_(mean)  # type: ignore[union-attr]
        bn.running_var.copy_(var)  # type: ignore[union-attr]
        if tracked is not None and bn.num_batches_tracked is not None:
            bn.num_batches_tracked.copy_(tracked)

    def restore(self, statistics: bool) -> None:
        """Put back the momenta and modes, and the statistics too if ``statistics``."""
        for index, (_, bn) in enumerate(self.layers):
            if statistics:
                self.restore_statistics(index)
            bn.momentum = self.statistics[index][3]
        for module, training in self.modes.items():
            module.training = training


def _collector(accumulator: _Moments) -> Callable[[nn.Module, tuple[Any, ...]], None]:
    """A forward pre-hook adding a layer's input to ``accumulator``."""

    def pre_forward(_: nn.Module, inputs: tuple[Any, ...]) -> None:
        accumulator.add(inputs[0])

    return pre_forward


def _calibration_mode(model: nn.Module, layers: list[tuple[str, _BatchNorm]]) -> None:
    """Everything in eval mode but the batch-norm layers: reset, cumulative, training."""
    model.eval()
    for _, bn in layers:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()


def _run_batches(
    model: nn.Module,
    batches: Iterable[Any],
    num_batches: int | None,
    device: torch.device | None,
    forward: Callable[[nn.Module, Any], Any] | None,
) -> int:
    """Run the model on (at most ``num_batches`` of) ``batches``; the number run.

    Raises:
        ValueError: ``batches`` is empty.
    """
    used = 0
    source = batches if num_batches is None else itertools.islice(batches, num_batches)
    with torch.no_grad():
        for batch in source:
            batch = _to_device(batch, device)
            if forward is not None:
                forward(model, batch)
            else:
                model(_input_of(batch))
            used += 1
    if used == 0:
        raise ValueError("recalibrate_batchnorm got no batches: `batches` is empty")
    return used


def _install_statistics(snapshot: _Snapshot, moments: list[_Moments]) -> list[str]:
    """Each layer's pooled mean and unbiased variance become its running statistics; a
    layer the pass never reached gets its previous ones back. The unreached layers."""
    unreached = []
    with torch.no_grad():
        for index, ((name, bn), acc) in enumerate(zip(snapshot.layers, moments, strict=True)):
            if acc.mean is None or acc.m2 is None:
                snapshot.restore_statistics(index)
                unreached.append(name)
                continue
            bn.running_mean.copy_(acc.mean)  # type: ignore[union-attr]
            bn.running_var.copy_(acc.m2 / max(acc.count - 1, 1))  # type: ignore[union-attr]
    return unreached


def recalibrate_batchnorm(
    model: nn.Module,
    batches: Iterable[Any],
    *,
    num_batches: int | None = None,
    device: str | torch.device | None = None,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> int:
    """Recompute the running mean and variance of every batch-norm layer from ``batches``.

    The pass runs under :func:`torch.no_grad` with **only the batch-norm layers in train
    mode** and every other module in eval mode, then puts each module back in the mode
    it had. Each batch-norm layer therefore normalises with batch statistics, as in
    training, while dropout is off and the model takes its inference path (for example a
    deep-supervision model returns only its final output), so the statistics describe
    the inputs the layers will see at inference. Running the whole model in train mode
    would collect them under dropout, whose extra variance is absent at inference (the
    "variance shift" between dropout and batch norm).

    Each layer's ``running_mean`` and ``running_var`` become the exact per-channel mean
    and unbiased variance of all its inputs in the pass, pooled over every batch and
    voxel (PyTorch's own ``momentum=None`` cumulative average averages per-batch
    variances instead, which leaves out how batch means differ and gives a short last
    batch the weight of a full one). ``momentum`` is ``None`` during the pass and
    restored afterwards; ``num_batches_tracked`` counts the batches seen.

    Args:
        model: any module; attnunet models and others alike.
        batches: an iterable of input tensors, of ``(input, target, ...)`` tuples or
            lists, or of dicts with the input under ``"image"`` (a ``DataLoader`` works).
        num_batches: use at most this many batches (default: all).
        device: the device for the batches' tensors (default: the model's device). The
            model is not moved.
        forward: ``forward(model, batch)`` to run the model on a batch yourself (the
            batch's tensors are on ``device`` already); the default calls
            ``model(input)``.

    Returns:
        The number of batches used; 0, with a warning, for a model without batch-norm
        layers that track running statistics (there is nothing to recalibrate).

    Raises:
        ValueError: ``num_batches`` below 1, or ``batches`` is empty. On any error the
            model's statistics, momenta and modes are left as they were.

    Warns:
        UserWarning: for batch-norm layers the pass never reached; they keep their
            previous statistics.

    Note:
        In distributed training, each process pools only its own batches (also for
        ``SyncBatchNorm``): recalibrate on one process and broadcast the buffers, or
        give every process the same batches.
    """
    _check_num_batches(num_batches)
    layers = batchnorm_layers(model)
    if not layers:
        warnings.warn(
            f"recalibrate_batchnorm: {type(model).__name__} has no batch-norm layer with "
            f"running statistics (instance, group or layer norm use none), so there is "
            f"nothing to recalibrate; no batch was used",
            stacklevel=2,
        )
        return 0
    target = torch.device(device) if device is not None else _model_device(model)

    snapshot = _Snapshot.take(model, layers)
    moments = [_Moments() for _ in layers]
    handles = [
        bn.register_forward_pre_hook(_collector(m))
        for (_, bn), m in zip(layers, moments, strict=True)
    ]
    finished = False
    try:
        _calibration_mode(model, layers)
        used = _run_batches(model, batches, num_batches, target, forward)
        unreached = _install_statistics(snapshot, moments)
        if unreached:
            shown = ", ".join(unreached[:5]) + (" ..." if len(unreached) > 5 else "")
            warnings.warn(
                f"recalibrate_batchnorm: {len(unreached)} batch-norm layer(s) got no input "
                f"in the pass and keep their previous statistics: {shown}",
                stacklevel=2,
            )
        finished = True
    finally:
        for handle in handles:
            handle.remove()
        snapshot.restore(statistics=not finished)
    return used
