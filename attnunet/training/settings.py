"""The training recipe and the data it runs on.

* :class:`TrainSettings`: the recipe (patch size, batch, epochs, optimiser, augmentation,
  validation), JSON-serialisable so a run records exactly how it was trained.
* :func:`recipe_changes`: which settings differ from a saved recipe (resuming needs the
  same recipe; only the number of epochs and the speed switches may change).
* :func:`resolve_precision`: what ``precision="auto"`` means on a device.
* :data:`RECIPES`: the optimiser recipes and their default learning rate and weight decay.
* :class:`Volume`: one image ``(C, *S)`` with its label map ``(*S)``.
* :data:`CHECKPOINT`: where a run keeps its latest checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

__all__ = [
    "CHECKPOINT",
    "PRECISIONS",
    "RECIPES",
    "SPEED_SWITCHES",
    "TrainSettings",
    "Volume",
    "recipe_changes",
    "resolve_precision",
]

CHECKPOINT = "checkpoints/last.pt"
"""Where :func:`train` keeps its latest checkpoint, relative to the output folder."""

RECIPES: dict[str, dict[str, float]] = {
    "adam": {"learning_rate": 2e-3, "weight_decay": 1e-5},
    "nnunet": {"learning_rate": 1e-2, "weight_decay": 3e-5},
}
"""The optimiser recipes and the learning rate and weight decay each uses when the settings
leave them ``None``. ``"adam"``: Adam at a constant learning rate. ``"nnunet"``: nnU-Net's
SGD with Nesterov momentum 0.99, polynomial decay of the learning rate per epoch
(exponent 0.9) and gradients clipped to norm 12."""

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""The values of :attr:`TrainSettings.precision`."""

SPEED_SWITCHES = ("channels_last", "compile", "checkpointing")
"""Settings that change how fast a run goes, not what it computes (beyond rounding): a
resumed run may change them, and :func:`recipe_changes` leaves them out."""


@dataclass
class TrainSettings:
    """A training recipe. Every field has a default that suits the bundled samples.

    Attributes:
        spatial_dims: 2 or 3 (1 works too).
        num_classes: classes including background (2 for foreground/background).
        patch_size: training patch, one size per spatial axis (also the sliding-window
            size at validation).
        batch_size: patches per step (per process under DDP).
        epochs: number of epochs.
        steps_per_epoch: optimisation steps per epoch.
        learning_rate: the optimiser's (initial) learning rate (``None``: the recipe's,
            see :data:`RECIPES`: 2e-3 for ``"adam"``, 1e-2 for ``"nnunet"``).
        weight_decay: the optimiser's weight decay (``None``: the recipe's, 1e-5 for
            ``"adam"``, 3e-5 for ``"nnunet"``).
        seed: seeds the model's initialisation and every random draw of the run.
        augment: ``"none"``, ``"light"`` or ``"standard"`` (flips, 90-degree rotations,
            intensity noise, blur; see :mod:`attnunet.data.transforms`).
        foreground_fraction: probability that a patch is centred on a foreground voxel.
        overlap: sliding-window overlap at validation and prediction.
        blend: ``"gaussian"`` or ``"constant"`` sliding-window blending.
        dice_weight: weight of the soft Dice term of the Dice + cross-entropy loss.
        ce_weight: weight of the cross-entropy term.
        spacing: voxel size for the surface metrics, overriding each volume's own
            (``None``: each volume's :attr:`Volume.spacing`, else 1 per axis).
        ignore_index: the class index of voxels left out of the loss and the metrics
            (:data:`attnunet.data.IGNORE_INDEX` when the data has an ignore label), or
            ``None``.
        class_names: a name per class, background first, for the per-class columns of
            the validation metrics (``None``: the class indices).
        spacing_unit: the unit of ``spacing`` for the ``unit`` column of the metrics
            (``"mm"``; the bundled 3D sample's is ``"µm"``, the 2D sample's ``"px"``); a
            volume's own spacing, from a file header, is always in mm.
        hd95_convention: how HD95 combines its two directions: ``"max"`` (the larger
            directed 95th percentile, MONAI's convention) or ``"pooled"`` (the 95th
            percentile of both directions' distances together, MedPy's ``hd95``).
        recipe: ``"adam"`` (Adam, constant learning rate) or ``"nnunet"`` (nnU-Net's SGD
            with Nesterov momentum 0.99, polynomial decay ``lr0 * (1 - e / epochs) ** 0.9``
            at the start of epoch ``e + 1``, gradient norm clipped to 12). Both weight a
            deep-supervision list as nnU-Net does (halving per scale, the coarsest 0).
        precision: ``"fp32"``, ``"bf16"`` or ``"fp16"`` (autocast around the forward
            pass and the loss; fp16 with a gradient scaler), or ``"auto"``: bf16 on a CUDA
            device that supports it, else fp32 (:func:`resolve_precision`). Validation
            and prediction run under the same autocast.
        channels_last: ``"on"``, ``"off"`` or ``"auto"``: store a 2D or 3D model's
            weights channels-last for the run (``"auto"``: for attnunet's models, which
            measured faster that way on CPU and GPU; ``"off"`` for other modules).
        compile: train through ``torch.compile(model)``.
        checkpointing: turn on the model's activation checkpointing
            (``model.set_checkpointing()``: less memory for about one more forward pass).
    """

    spatial_dims: int = 2
    num_classes: int = 2
    patch_size: tuple[int, ...] = (64, 64)
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 25
    learning_rate: float | None = None
    weight_decay: float | None = None
    seed: int = 0
    augment: str = "standard"
    foreground_fraction: float = 0.5
    overlap: float = 0.25
    blend: str = "gaussian"
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    spacing: tuple[float, ...] | None = None
    ignore_index: int | None = None
    class_names: tuple[str, ...] | None = None
    spacing_unit: str = "mm"
    hd95_convention: Literal["max", "pooled"] = "max"
    recipe: str = "adam"
    precision: str = "auto"
    channels_last: str = "auto"
    compile: bool = False
    checkpointing: bool = False

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
        self._resolve_recipe()
        if self.class_names is not None:
            self.class_names = tuple(str(n) for n in self.class_names)
        if self.spacing is not None:
            self.spacing = tuple(float(s) for s in self.spacing)
        checks = [
            (
                self.spatial_dims in (1, 2, 3),
                f"spatial_dims must be 1, 2 or 3, got {self.spatial_dims}",
            ),
            (
                self.num_classes >= 2,
                f"num_classes counts background and must be >= 2, got {self.num_classes}",
            ),
            (
                len(self.patch_size) == self.spatial_dims and min(self.patch_size) >= 1,
                f"patch_size needs {self.spatial_dims} positive sizes, got {self.patch_size}",
            ),
            (self.batch_size >= 1, f"batch_size must be >= 1, got {self.batch_size}"),
            (self.epochs >= 1, f"epochs must be >= 1, got {self.epochs}"),
            (
                self.steps_per_epoch >= 1,
                f"steps_per_epoch must be >= 1, got {self.steps_per_epoch}",
            ),
            (
                self.learning_rate is not None and self.learning_rate > 0,
                f"learning_rate must be > 0, got {self.learning_rate}",
            ),
            (
                self.weight_decay is not None and self.weight_decay >= 0,
                f"weight_decay must be >= 0, got {self.weight_decay}",
            ),
            (
                self.augment in ("none", "light", "standard"),
                f"augment must be 'none', 'light' or 'standard', got {self.augment!r}",
            ),
            (
                0.0 <= self.foreground_fraction <= 1.0,
                f"foreground_fraction must lie in [0, 1], got {self.foreground_fraction}",
            ),
            (0.0 <= self.overlap < 1.0, f"overlap must lie in [0, 1), got {self.overlap}"),
            (
                self.blend in ("gaussian", "constant"),
                f"blend must be 'gaussian' or 'constant', got {self.blend!r}",
            ),
            (
                self.spacing is None or len(self.spacing) == self.spatial_dims,
                f"spacing needs {self.spatial_dims} values, got {self.spacing}",
            ),
            (
                self.hd95_convention in ("max", "pooled"),
                f"hd95_convention must be 'max' or 'pooled', got {self.hd95_convention!r}",
            ),
            (
                self.class_names is None or len(self.class_names) == self.num_classes,
                f"class_names needs {self.num_classes} names, got {self.class_names}",
            ),
            *self._switch_checks(),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def _resolve_recipe(self) -> None:
        """Check the recipe's name; fill a learning rate or weight decay left ``None``."""
        if self.recipe not in RECIPES:
            raise ValueError(f"recipe must be one of {sorted(RECIPES)}, got {self.recipe!r}")
        defaults = RECIPES[self.recipe]
        if self.learning_rate is None:
            self.learning_rate = defaults["learning_rate"]
        if self.weight_decay is None:
            self.weight_decay = defaults["weight_decay"]

    def _switch_checks(self) -> list[tuple[bool, str]]:
        """The checks of the precision and the speed switches."""
        return [
            (
                self.precision in PRECISIONS,
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
            ),
            (
                self.channels_last in ("auto", "on", "off"),
                f"channels_last must be 'auto', 'on' or 'off', got {self.channels_last!r}",
            ),
            (
                isinstance(self.compile, bool) and isinstance(self.checkpointing, bool),
                f"compile and checkpointing must be bools, got {self.compile!r} and "
                f"{self.checkpointing!r}",
            ),
        ]

    def to_dict(self) -> dict[str, Any]:
        """The settings as a JSON-ready dict (sizes and spacing as lists)."""
        out = dataclasses.asdict(self)
        out["patch_size"] = list(self.patch_size)
        out["spacing"] = None if self.spacing is None else list(self.spacing)
        out["class_names"] = None if self.class_names is None else list(self.class_names)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        """Settings from a dict such as :meth:`to_dict` writes.

        Raises:
            ValueError: an unknown key or an invalid value.
        """
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def recipe_changes(saved: Mapping[str, Any] | None, settings: TrainSettings) -> list[str]:
    """The settings, other than ``epochs`` and the :data:`SPEED_SWITCHES`, whose saved value
    differs from ``settings``.

    Resuming a run is only exact with the recipe it started with; only the number of
    epochs may change, and the speed switches (channels-last, compile, checkpointing),
    which change the arithmetic only by rounding. The precision is part of the recipe:
    compare resolved values (:func:`resolve_precision`), as :func:`train` records them. A
    key missing from ``saved`` counts as unchanged (so older records with fewer settings
    still compare), and ``saved=None`` means nothing was recorded.

    Args:
        saved: a recipe as written by :meth:`TrainSettings.to_dict` (``epochs`` may be in
            it or not), or ``None``.
        settings: the recipe of the run about to resume.

    Returns:
        The names of the changed settings, sorted; empty when the recipes agree.

    Examples:
        >>> now = TrainSettings(batch_size=4, seed=1)
        >>> saved = {**now.to_dict(), "batch_size": 8, "seed": 2, "epochs": 99}
        >>> recipe_changes(saved, now)
        ['batch_size', 'seed']
        >>> recipe_changes({"batch_size": 4}, now)  # missing keys count as unchanged
        []
        >>> recipe_changes(None, now)
        []
        >>> recipe_changes({**now.to_dict(), "compile": True, "precision": "bf16"}, now)
        ['precision']
        >>> old = {k: v for k, v in now.to_dict().items() if k != "precision"}
        >>> recipe_changes(old, TrainSettings(batch_size=4, seed=1, precision="bf16"))
        ['precision']
    """
    now = settings.to_dict()
    recorded = dict(saved) if saved is not None else {}
    if recorded and "precision" not in recorded and now.get("precision") != "auto":
        recorded["precision"] = "fp32"  # a record from before precision existed: fp32
    skipped = ("epochs", *SPEED_SWITCHES)
    return sorted(k for k in now if k not in skipped and recorded.get(k, now[k]) != now[k])


def resolve_precision(precision: str, device: Any) -> str:
    """The precision a run uses on ``device``: ``"auto"`` becomes ``"bf16"`` on a CUDA
    device that supports bfloat16 and ``"fp32"`` elsewhere; other values stay as asked
    (bf16 and fp16 autocast work on the CPU too, when asked for explicitly).

    Args:
        precision: one of :data:`PRECISIONS`.
        device: a ``torch.device`` or its name (``"cpu"``, ``"cuda:1"``).

    Returns:
        ``"fp32"``, ``"bf16"`` or ``"fp16"``.

    Raises:
        ValueError: an unknown precision.

    Examples:
        >>> resolve_precision("auto", "cpu")
        'fp32'
        >>> resolve_precision("bf16", "cpu")
        'bf16'
    """

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "fp32"


@dataclass
class Volume:
    """One image with its label map, held in memory.

    Attributes:
        image: ``float32`` array ``(C, *S)``.
        mask: ``int64`` label map ``(*S)`` (``None`` for prediction-only data), classes
            ``0..K-1``; voxels to leave out of the loss and the metrics hold
            :data:`attnunet.data.IGNORE_INDEX` (-1).
        name: a name for tables and file names.
        spacing: the voxel size per spatial axis in mm, from the file's header (``None``:
            unknown, distances are then in voxels).
    """

    image: np.ndarray
    mask: np.ndarray | None
    name: str
    spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.mask is not None and self.mask.shape != self.image.shape[1:]:
            raise ValueError(
                f"{self.name}: mask shape {self.mask.shape} differs from image shape "
                f"{self.image.shape[1:]} (image is (C, *spatial))"
            )
