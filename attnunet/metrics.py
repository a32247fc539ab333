"""Overlap metrics for label maps and masks: Dice and IoU (Jaccard).

Pure functions on tensors of shape ``(B, *spatial)``: label maps or boolean masks, not
logits or probabilities (threshold or ``argmax`` the model output first). Scores are
computed per image and per class, then averaged; everything runs on the inputs' device
as whole-tensor operations.

This module depends on torch only, so it can be imported without the model zoo.

Example:
    >>> import torch
    >>> logits = torch.tensor([[[2.0, -1.0], [0.5, -3.0]]])  # (B=1, H=2, W=2)
    >>> target = torch.tensor([[[1, 0], [0, 0]]])
    >>> dice_score(logits > 0, target)  # 2 * 1 / (2 + 1)
    tensor(0.6667)
"""

from __future__ import annotations

import math
from typing import Literal

import torch

__all__ = ["Reduction", "dice_score", "iou_score"]

Reduction = Literal["mean", "none"]
_REDUCTIONS = ("mean", "none")


def _overlap_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int | None,
    include_background: bool,
    reduction: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Validate the inputs and return ``(|P & T|, |P|, |T|)`` per image and class.

    Each is a float tensor of shape ``(B, K)``: ``K = 1`` for binary inputs, otherwise
    ``num_classes`` or ``num_classes - 1`` (without background).
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(
            f"reduction must be one of {', '.join(map(repr, _REDUCTIONS))}, got {reduction!r}"
        )
    if pred.shape != target.shape:
        raise ValueError(
            f"pred and target must have the same shape (B, *spatial), got {list(pred.shape)} "
            f"and {list(target.shape)}"
        )
    if pred.dim() < 2:
        raise ValueError(
            f"expected inputs of shape (B, *spatial) with at least one spatial axis, got "
            f"{list(pred.shape)}"
        )
    for label, t in (("pred", pred), ("target", target)):
        if t.is_floating_point() or t.is_complex():
            raise TypeError(
                f"{label} must be a label map (integer) or a mask (bool), got {t.dtype}: "
                f"threshold probabilities or logits first, e.g. (logits > 0) or "
                f"logits.argmax(1)"
            )
    batch = pred.shape[0]
    if num_classes is None:
        p = (pred != 0).reshape(batch, 1, -1)
        t = (target != 0).reshape(batch, 1, -1)
    else:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(
                f"num_classes must be an int >= 2 (background included), or None for binary "
                f"masks, got {num_classes!r}"
            )
        for label, t in (("pred", pred), ("target", target)):
            if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
                raise ValueError(
                    f"{label} holds labels outside 0..{num_classes - 1} "
                    f"(min {int(t.min())}, max {int(t.max())})"
                )
        first = 0 if include_background else 1
        classes = torch.arange(first, num_classes, device=pred.device).view(1, -1, 1)
        p = pred.reshape(batch, 1, -1) == classes
        t = target.reshape(batch, 1, -1) == classes
    # Count in int64 (exact for any size), then convert for the division.
    inter = (p & t).sum(-1).float()
    return inter, p.sum(-1).float(), t.sum(-1).float()


def _finish(
    numerator: torch.Tensor,
    denominator: torch.Tensor,
    empty_value: float,
    binary: bool,
    reduction: str,
) -> torch.Tensor:
    empty = denominator == 0
    score = numerator / denominator.masked_fill(empty, 1.0)
    score = score.masked_fill(empty, empty_value)
    if reduction == "none":
        return score[:, 0] if binary else score
    return score.nanmean() if math.isnan(empty_value) else score.mean()


def dice_score(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int | None = None,
    include_background: bool = False,
    empty_value: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Dice coefficient ``2 |P & T| / (|P| + |T|)`` per image and class, then averaged.

    Args:
        pred: predicted label map or mask, shape ``(B, *spatial)``, integer or bool.
        target: ground truth of the same shape and kind.
        num_classes: ``None`` (default) for binary inputs: every non-zero value is
            foreground (so instance label maps work as masks). Otherwise the number of
            classes ``C >= 2``, class 0 being background; labels must lie in ``0..C-1``.
        include_background: with ``num_classes``, also score class 0 (default ``False``:
            background usually dominates and inflates the average). Ignored for binary
            inputs, where only the foreground is scored.
        empty_value: the score of an image (and class) where both ``pred`` and ``target``
            are empty, so ``|P| + |T| = 0`` and the ratio is undefined. The default 1.0
            counts "correctly found nothing" as perfect; pass ``0.0`` to count it as a
            miss, or ``float("nan")`` to leave such pairs out of the ``"mean"``.
        reduction: ``"mean"`` (default) averages over images and classes into a scalar;
            ``"none"`` returns shape ``(B,)`` for binary inputs and ``(B, K)`` with
            ``K`` scored classes otherwise.

    Returns:
        A ``float32`` tensor on the inputs' device, in ``[0, 1]`` (or ``empty_value``).

    Raises:
        ValueError: shapes differ or have no spatial axis, ``num_classes < 2``, labels
            out of range, or an unknown ``reduction``.
        TypeError: floating-point inputs (probabilities must be thresholded first).

    Example:
        >>> pred = torch.tensor([[0, 1, 1, 2], [0, 0, 0, 0]])
        >>> target = torch.tensor([[0, 1, 2, 2], [0, 0, 0, 0]])
        >>> dice_score(pred, target, reduction="none")  # binary: image 2 is both-empty
        tensor([1., 1.])
        >>> dice_score(pred, target, num_classes=3, reduction="none")
        tensor([[0.6667, 0.6667],
                [1.0000, 1.0000]])
    """
    inter, p_sum, t_sum = _overlap_counts(pred, target, num_classes, include_background, reduction)
    return _finish(2.0 * inter, p_sum + t_sum, empty_value, num_classes is None, reduction)


def iou_score(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int | None = None,
    include_background: bool = False,
    empty_value: float = 1.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Intersection over union (Jaccard index) ``|P & T| / |P | T|`` per image and class,
    then averaged.

    It relates to Dice per image and class by ``IoU = D / (2 - D)``; averages of the two
    do not relate that simply.

    Args:
        pred: predicted label map or mask, shape ``(B, *spatial)``, integer or bool.
        target: ground truth of the same shape and kind.
        num_classes: ``None`` for binary inputs (non-zero is foreground) or the number of
            classes ``C >= 2`` (see :func:`dice_score`).
        include_background: with ``num_classes``, also score class 0 (default ``False``).
        empty_value: the score when both ``pred`` and ``target`` are empty (default 1.0;
            ``float("nan")`` leaves such pairs out of the ``"mean"``).
        reduction: ``"mean"`` (scalar) or ``"none"`` (``(B,)`` binary, ``(B, K)``
            otherwise).

    Returns:
        A ``float32`` tensor on the inputs' device, in ``[0, 1]`` (or ``empty_value``).

    Raises:
        ValueError: as :func:`dice_score`.
        TypeError: floating-point inputs.

    Example:
        >>> pred = torch.tensor([[[True, True], [False, False]]])
        >>> target = torch.tensor([[[True, False], [True, False]]])
        >>> iou_score(pred, target)  # 1 shared pixel / 3 in the union
        tensor(0.3333)
    """
    inter, p_sum, t_sum = _overlap_counts(pred, target, num_classes, include_background, reduction)
    return _finish(inter, p_sum + t_sum - inter, empty_value, num_classes is None, reduction)
