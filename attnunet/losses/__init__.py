"""Segmentation losses: cross-entropy, soft Dice, soft IoU, their combinations, and a
deep-supervision wrapper.

Every loss is a pure function over logits of shape ``(B, C, *spatial)`` (any number of
spatial axes) plus a thin :class:`torch.nn.Module` that stores the options and calls the
function, so the two forms always agree. Everything runs on the inputs' device as
whole-tensor operations and is differentiable with respect to the logits.

Targets come in two forms, accepted by every loss:

* a **label map** of integers (or bools): shape ``(B, *spatial)`` or ``(B, 1, *spatial)``,
  values in ``0..C-1`` (``0..1`` for a single-channel, binary output);
* a **dense** target of floats with the logits' shape ``(B, C, *spatial)``: one-hot,
  multi-hot (for sigmoid outputs) or probabilistic (soft labels), values in ``[0, 1]``.

Both are range-checked (label values in ``0..C-1``, dense values in ``[0, 1]``, never
NaN): a 0/255 mask or a class-index map passed as floats raises a ``ValueError`` that
names the range found, instead of giving a negative loss. The check reads the minimum
and maximum back together, one host synchronisation per call on a GPU.

``ignore_index`` (:func:`ce_loss`, :func:`bce_loss`, :func:`dice_loss`, :func:`iou_loss`,
:func:`dice_ce_loss` and their modules) names a label-map value, e.g. 255 or -100, whose
voxels count in no term: cross-entropy averages over the other voxels as
``F.cross_entropy(ignore_index=...)`` does, and Dice leaves them out of every sum.

The functions live in :mod:`attnunet.losses.functional`, the modules in
:mod:`attnunet.losses.modules`; both are re-exported here, the names to import. The package
depends on torch and the ground floor (:mod:`attnunet.layers`) only, so it can be imported
without the model zoo.

Examples:
    >>> import torch
    >>> logits = torch.tensor([[[[4.0, -4.0], [4.0, -4.0]]]])  # (B=1, C=1, H=2, W=2)
    >>> target = torch.tensor([[[1, 0], [1, 0]]])  # label map (B, H, W)
    >>> round(dice_loss(logits, target).item(), 4)  # sigmoid(4) = 0.982: 1 - 4.928 / 5
    0.0144
    >>> unsure = torch.tensor([[[1, 255], [1, 0]]])  # 255: not labelled, left out
    >>> # three voxels left: I = 2 * 0.982, P = 1.982, G = 2: 1 - 4.928 / 4.982
    >>> round(dice_loss(logits, unsure, ignore_index=255).item(), 4)
    0.0108
    >>> loss = DeepSupervisionLoss(DiceCELoss(), weights="exponential")
    >>> outputs = [torch.randn(2, 3, 8, 8), torch.randn(2, 3, 4, 4)]  # a model's DS list
    >>> loss(outputs, torch.randint(0, 3, (2, 8, 8))).shape
    torch.Size([])
"""

from attnunet.losses._checks import (
    Activation,
    DeepSupervisionWeights,
    NearestMode,
    Reduction,
    Weights,
)
from attnunet.losses.functional import (
    bce_loss,
    ce_loss,
    deep_supervision_loss,
    deep_supervision_weights,
    dice_ce_loss,
    dice_loss,
    iou_loss,
    raunet_loss,
    resize_nearest,
)
from attnunet.losses.modules import (
    DeepSupervisionLoss,
    DiceCELoss,
    DiceLoss,
    IoULoss,
    RAUNetLoss,
)

__all__ = [
    "Activation",
    "DeepSupervisionLoss",
    "DeepSupervisionWeights",
    "DiceCELoss",
    "DiceLoss",
    "IoULoss",
    "NearestMode",
    "RAUNetLoss",
    "Reduction",
    "Weights",
    "bce_loss",
    "ce_loss",
    "deep_supervision_loss",
    "deep_supervision_weights",
    "dice_ce_loss",
    "dice_loss",
    "iou_loss",
    "raunet_loss",
    "resize_nearest",
]
