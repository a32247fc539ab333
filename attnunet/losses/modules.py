"""The losses as :class:`torch.nn.Module`: each stores the options of its function in
:mod:`attnunet.losses.functional` (checked when it is built) and calls it, so the two
forms always agree. Class weights are buffers: they follow ``.to()`` and the state dict."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar, Literal

import torch
from torch import nn

from attnunet.losses._checks import (
    _ACTIVATIONS,
    _NEAREST_MODES,
    _REDUCTIONS,
    Activation,
    DeepSupervisionWeights,
    NearestMode,
    Reduction,
    Weights,
    _check_choice,
    _check_ignore_index,
    _check_number,
    _check_smoothing,
    _ds_weights,
    _weights_buffer,
)
from attnunet.losses.functional import (
    deep_supervision_loss,
    dice_ce_loss,
    dice_loss,
    iou_loss,
    raunet_loss,
)

__all__ = ["DeepSupervisionLoss", "DiceCELoss", "DiceLoss", "IoULoss", "RAUNetLoss"]


class _OverlapLoss(nn.Module):
    """Stores the options shared by the overlap losses; subclasses name the function."""

    class_weights: torch.Tensor | None
    _loss: ClassVar[Callable[..., torch.Tensor]]

    def __init__(
        self,
        *,
        activation: Activation = "auto",
        include_background: bool = True,
        squared: bool = False,
        smooth_nr: float = 1.0,
        smooth_dr: float = 1.0,
        class_weights: Weights = None,
        batch: bool = False,
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
    ) -> None:
        super().__init__()
        _check_choice("activation", activation, _ACTIVATIONS)
        _check_choice("reduction", reduction, _REDUCTIONS)
        _check_smoothing(smooth_nr, smooth_dr)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.activation: Activation = activation
        self.include_background = bool(include_background)
        self.squared = bool(squared)
        self.smooth_nr = float(smooth_nr)
        self.smooth_dr = float(smooth_dr)
        self.batch = bool(batch)
        self.reduction: Reduction = reduction
        self.register_buffer("class_weights", _weights_buffer(class_weights))

    def _options(self) -> dict[str, object]:
        return {
            "activation": self.activation,
            "include_background": self.include_background,
            "squared": self.squared,
            "smooth_nr": self.smooth_nr,
            "smooth_dr": self.smooth_dr,
            "batch": self.batch,
            "reduction": self.reduction,
            "ignore_index": self.ignore_index,
        }

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self._options().items())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The loss function with the stored options."""
        loss = type(self)._loss
        return loss(logits, target, class_weights=self.class_weights, **self._options())


class DiceLoss(_OverlapLoss):
    """Soft Dice loss as a module: stores the options of :func:`dice_loss` and calls it.

    ``class_weights`` is registered as a (float32) buffer, so it follows ``.to()`` and is
    saved in the state dict; it is cast to the logits' dtype at each call.

    Args:
        activation: ``"auto"`` (default), ``"sigmoid"``, ``"softmax"`` or ``None``.
        include_background: score channel 0 too (default ``True``).
        squared: squared-denominator (Sorensen / V-Net) form (default ``False``).
        smooth_nr: numerator smoothing (default 1.0).
        smooth_dr: denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel, or ``None``.
        batch: batch Dice (default ``False``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        ignore_index: a label value whose voxels are left out, or ``None`` (default).

    Shape:
        As :func:`dice_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = DiceLoss(include_background=False, class_weights=[0.0, 1.0, 2.0])
        >>> logits = torch.randn(2, 3, 8, 8, 8, requires_grad=True)
        >>> value = loss(logits, torch.randint(0, 3, (2, 8, 8, 8)))
        >>> value.backward()
        >>> logits.grad.shape
        torch.Size([2, 3, 8, 8, 8])
    """

    _loss = staticmethod(dice_loss)


class IoULoss(_OverlapLoss):
    """Soft IoU (Jaccard) loss as a module: stores the options of :func:`iou_loss`.

    Args:
        activation: ``"auto"`` (default), ``"sigmoid"``, ``"softmax"`` or ``None``.
        include_background: score channel 0 too (default ``True``).
        squared: squared terms in ``P`` and ``G`` (default ``False``).
        smooth_nr: numerator smoothing (default 1.0).
        smooth_dr: denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel (a buffer), or ``None``.
        batch: pool the sums over the batch (default ``False``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"``.
        ignore_index: a label value whose voxels are left out, or ``None`` (default).

    Shape:
        As :func:`dice_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = IoULoss(activation=None)
        >>> probs = torch.tensor([[[0.5, 1.0, 0.0, 0.5]]])
        >>> loss(probs, torch.tensor([[1, 1, 0, 0]]))
        tensor(0.2857)
    """

    _loss = staticmethod(iou_loss)


class DiceCELoss(_OverlapLoss):
    """Dice + cross-entropy as a module: stores the options of :func:`dice_ce_loss`.

    Args:
        lambda_dice: weight of the Dice term (default 1.0).
        lambda_ce: weight of the cross-entropy term (default 1.0).
        activation: ``"auto"`` (default), ``"sigmoid"`` or ``"softmax"``.
        include_background: whether the Dice term scores channel 0 (default ``True``).
        squared: squared Dice denominator (default ``False``).
        smooth_nr: Dice numerator smoothing (default 1.0).
        smooth_dr: Dice denominator smoothing (default 1.0, ``> 0``).
        class_weights: one number per logits channel (a buffer), used by both terms.
        batch: batch Dice (default ``False``).
        reduction: ``"mean"`` (default), ``"sum"`` or ``"none"`` (per image).
        ignore_index: a label value whose voxels count in neither term, or ``None``
            (default).

    Shape:
        As :func:`dice_ce_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = DiceCELoss(lambda_ce=0.5, class_weights=[0.5, 1.0, 1.5])
        >>> loss(torch.randn(2, 3, 16, 16), torch.randint(0, 3, (2, 1, 16, 16))).shape
        torch.Size([])
        >>> labels = torch.randint(0, 3, (2, 16, 16))
        >>> labels[:, :4] = 255  # unlabelled rows
        >>> DiceCELoss(ignore_index=255)(torch.randn(2, 3, 16, 16), labels).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        activation: Literal["auto", "sigmoid", "softmax"] = "auto",
        include_background: bool = True,
        squared: bool = False,
        smooth_nr: float = 1.0,
        smooth_dr: float = 1.0,
        class_weights: Weights = None,
        batch: bool = False,
        reduction: Reduction = "mean",
        ignore_index: int | None = None,
    ) -> None:
        if activation is None:
            raise ValueError("DiceCELoss needs logits: activation must not be None")
        super().__init__(
            activation=activation,
            include_background=include_background,
            squared=squared,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
            class_weights=class_weights,
            batch=batch,
            reduction=reduction,
            ignore_index=ignore_index,
        )
        self.lambda_dice = _check_number("lambda_dice", lambda_dice, low=0.0, strict=False)
        self.lambda_ce = _check_number("lambda_ce", lambda_ce, low=0.0, strict=False)
        if batch and reduction != "mean":
            raise ValueError(f"reduction={reduction!r} needs batch=False")

    def _options(self) -> dict[str, object]:
        return {"lambda_dice": self.lambda_dice, "lambda_ce": self.lambda_ce, **super()._options()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`dice_ce_loss` with the stored options."""
        activation = self.activation
        assert activation is not None
        return dice_ce_loss(
            logits,
            target,
            lambda_dice=self.lambda_dice,
            lambda_ce=self.lambda_ce,
            activation=activation,
            include_background=self.include_background,
            squared=self.squared,
            smooth_nr=self.smooth_nr,
            smooth_dr=self.smooth_dr,
            class_weights=self.class_weights,
            batch=self.batch,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
        )


class RAUNetLoss(nn.Module):
    """RAUNet's CE + log-Dice loss as a module: stores the options of
    :func:`raunet_loss`. The defaults reproduce the reference (``w = 0.2``,
    ``eps = 1e-15``, batch-wise sums over every class).

    Args:
        dice_weight: ``w`` in ``[0, 1]`` (default 0.2).
        smooth: ``eps`` (default 1e-15, ``> 0``).
        include_background: sum the log-Dice over channel 0 too (default ``True``).
        batch: pool the Dice sums over the batch (default ``True``).
        reduction: ``"mean"`` (default); ``"sum"``/``"none"`` need ``batch=False``.

    Shape:
        As :func:`raunet_loss`.

    Raises:
        ValueError: invalid options (at construction) or inputs (at call).

    Examples:
        >>> import torch
        >>> loss = RAUNetLoss()
        >>> loss(torch.randn(2, 4, 32, 32), torch.randint(0, 4, (2, 32, 32))).shape
        torch.Size([])
    """

    def __init__(
        self,
        *,
        dice_weight: float = 0.2,
        smooth: float = 1e-15,
        include_background: bool = True,
        batch: bool = True,
        reduction: Reduction = "mean",
    ) -> None:
        super().__init__()
        _check_choice("reduction", reduction, _REDUCTIONS)
        self.dice_weight = _check_number("dice_weight", dice_weight, low=0.0, strict=False)
        if self.dice_weight > 1:
            raise ValueError(f"dice_weight must lie in [0, 1], got {dice_weight!r}")
        self.smooth = _check_number("smooth", smooth, low=0.0, strict=True)
        if batch and reduction != "mean":
            raise ValueError(f"reduction={reduction!r} needs batch=False")
        self.include_background = bool(include_background)
        self.batch = bool(batch)
        self.reduction: Reduction = reduction

    def extra_repr(self) -> str:
        return (
            f"dice_weight={self.dice_weight}, smooth={self.smooth}, "
            f"include_background={self.include_background}, batch={self.batch}, "
            f"reduction={self.reduction!r}"
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:func:`raunet_loss` with the stored options."""
        return raunet_loss(
            logits,
            target,
            dice_weight=self.dice_weight,
            smooth=self.smooth,
            include_background=self.include_background,
            batch=self.batch,
            reduction=self.reduction,
        )


class DeepSupervisionLoss(nn.Module):
    """Score a model's deep-supervision list with one loss and per-output weights.

    See :func:`deep_supervision_loss` for the order convention (index 0 = full
    resolution, the model's list order), the nearest-neighbour target resizing and the
    weight schemes. A module ``loss`` is registered as a submodule (its buffers follow
    ``.to()``). Only ``loss`` is positional; ``weights`` and ``mode`` are keywords, as
    every option of the other loss modules is.

    Args:
        loss: any callable ``loss(logits, target) -> scalar``.
        weights: ``"nnunet"`` (default: ``1, 1/2, 1/4, ...`` with the coarsest output at
            0, normalised), ``"same"``, ``"exponential"`` (``1, 1/2, 1/4, ...``
            normalised), or one non-negative number per output (used as given).
        mode: ``"nearest-exact"`` (default) or ``"nearest"`` target resizing.

    Shape:
        ``outputs``: a list of ``(B, C, *S_k)`` (or one tensor); ``target`` at full
        resolution. Output: whatever the loss returns (a scalar).

    Raises:
        ValueError: unknown scheme or mode, invalid explicit weights (at construction);
            see :func:`deep_supervision_loss` (at call).

    Examples:
        >>> import torch
        >>> from attnunet.losses import DeepSupervisionLoss, DiceCELoss
        >>> ds = DeepSupervisionLoss(DiceCELoss(), weights=[0.5, 0.3, 0.2])
        >>> outputs = [torch.randn(2, 3, 16, 16), torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]
        >>> ds(outputs, torch.randint(0, 3, (2, 16, 16))).shape
        torch.Size([])
    """

    def __init__(
        self,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *,
        weights: DeepSupervisionWeights = "nnunet",
        mode: NearestMode = "nearest-exact",
    ) -> None:
        super().__init__()
        if not callable(loss):
            raise TypeError(f"loss must be callable, got {type(loss).__name__}")
        _check_choice("mode", mode, _NEAREST_MODES)
        self.loss = loss
        self.weights = _ds_weights(weights)
        self.mode: NearestMode = mode

    def extra_repr(self) -> str:
        return f"weights={self.weights!r}, mode={self.mode!r}"

    def forward(
        self, outputs: torch.Tensor | Sequence[torch.Tensor], target: torch.Tensor
    ) -> torch.Tensor:
        """:func:`deep_supervision_loss` with the stored loss, weights and mode."""
        weights: DeepSupervisionWeights = (
            self.weights if isinstance(self.weights, str) else list(self.weights)
        )
        return deep_supervision_loss(self.loss, outputs, target, weights=weights, mode=self.mode)
