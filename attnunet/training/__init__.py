"""Training and evaluation behind the ``attnunet`` command: patches, loop, checkpoints.

Everything here works for 2D and 3D and for any model of the zoo. The command-line tool
(:mod:`attnunet.cli`) is a thin layer over these functions, so a script can use them too:

* :class:`TrainSettings`: the recipe (patch size, batch, epochs, optimiser, augmentation,
  validation), JSON-serialisable so a run records exactly how it was trained.
* :class:`Volume`: one image ``(C, *S)`` with its label map ``(*S)``.
* :class:`PatchSampler`: random, foreground-biased, augmented training patches drawn from
  one ``torch.Generator``, so a seeded run (and a resumed one) repeats exactly.
* :func:`train`: the loop, with validation by sliding-window inference every epoch, best-
  metric tracking, a checkpoint after every epoch (``--resume`` continues from it) and
  DistributedDataParallel when started by ``torchrun``.
* :func:`evaluate` and :func:`predict`: per-image metrics and label maps for whole images
  of any size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from scipy import ndimage
from torch import nn

from attnunet.losses import DeepSupervisionLoss, DiceCELoss
from attnunet.metrics import MetricAccumulator, dice_score, iou_score, surface_metrics
from attnunet.training.calibration import batchnorm_layers, recalibrate_batchnorm

__all__ = [
    "CHECKPOINT",
    "batchnorm_layers",
    "recalibrate_batchnorm",
    "EpochRecord",
    "PatchSampler",
    "Progress",
    "TrainResult",
    "TrainSettings",
    "Volume",
    "evaluate",
    "init_distributed",
    "object_one_piece_fraction",
    "predict",
    "recipe_changes",
    "train",
]

CHECKPOINT = "checkpoints/last.pt"
"""Where :func:`train` keeps its latest checkpoint, relative to the output folder."""


# --------------------------------------------------------------------------- settings


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
        learning_rate: Adam's learning rate.
        weight_decay: Adam's weight decay.
        seed: seeds the model's initialisation and every random draw of the run.
        augment: ``"none"``, ``"light"`` or ``"standard"`` (flips, 90-degree rotations,
            intensity noise, blur; see :mod:`attnunet.data.transforms`).
        foreground_fraction: probability that a patch is centred on a foreground voxel.
        overlap: sliding-window overlap at validation and prediction.
        blend: ``"gaussian"`` or ``"constant"`` sliding-window blending.
        dice_weight: weight of the soft Dice term of the Dice + cross-entropy loss.
        ce_weight: weight of the cross-entropy term.
        spacing: voxel size for the surface metrics (``None``: 1 per axis).
    """

    spatial_dims: int = 2
    num_classes: int = 2
    patch_size: tuple[int, ...] = (64, 64)
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 25
    learning_rate: float = 2e-3
    weight_decay: float = 1e-5
    seed: int = 0
    augment: str = "standard"
    foreground_fraction: float = 0.5
    overlap: float = 0.25
    blend: str = "gaussian"
    dice_weight: float = 1.0
    ce_weight: float = 1.0
    spacing: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        self.patch_size = tuple(int(p) for p in self.patch_size)
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
            (self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}"),
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
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["patch_size"] = list(self.patch_size)
        out["spacing"] = None if self.spacing is None else list(self.spacing)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; known: {sorted(known)}")
        return cls(**values)


def recipe_changes(saved: Mapping[str, Any] | None, settings: TrainSettings) -> list[str]:
    """The settings, other than ``epochs``, whose saved value differs from ``settings``.

    Resuming a run is only exact with the recipe it started with; only the number of
    epochs may change. A key missing from ``saved`` counts as unchanged (so older records
    with fewer settings still compare), and ``saved=None`` means nothing was recorded.

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
    """
    now = settings.to_dict()
    recorded = saved if saved is not None else {}
    return sorted(k for k in now if k != "epochs" and recorded.get(k, now[k]) != now[k])


# ---------------------------------------------------------------------------- volumes


@dataclass
class Volume:
    """One image with its label map, held in memory.

    Attributes:
        image: ``float32`` array ``(C, *S)``.
        mask: ``int64`` label map ``(*S)`` (``None`` for prediction-only data).
        name: a name for tables and file names.
    """

    image: np.ndarray
    mask: np.ndarray | None
    name: str

    def __post_init__(self) -> None:
        if self.mask is not None and self.mask.shape != self.image.shape[1:]:
            raise ValueError(
                f"{self.name}: mask shape {self.mask.shape} differs from image shape "
                f"{self.image.shape[1:]} (image is (C, *spatial))"
            )


class PatchSampler:
    """Random training patches from a list of volumes, drawn from one generator.

    A volume is chosen in proportion to its number of voxels; with probability
    ``foreground_fraction`` the patch is centred on a random foreground voxel, otherwise
    anywhere. Volumes smaller than the patch are zero-padded (label 0). ``transform``
    (an augmentation from :mod:`attnunet.data.transforms`) is applied to every patch.
    """

    def __init__(
        self,
        volumes: Sequence[Volume],
        patch_size: Sequence[int],
        batch_size: int,
        foreground_fraction: float = 0.5,
        transform: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None,
    ) -> None:
        if not volumes:
            raise ValueError("no training volumes")
        self.patch = tuple(int(p) for p in patch_size)
        self.batch_size = batch_size
        self.foreground_fraction = foreground_fraction
        self.transform = transform
        self.images: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.foreground: list[np.ndarray] = []
        for v in volumes:
            if v.mask is None:
                raise ValueError(f"{v.name}: training needs a mask")
            pad = [max(0, p - s) for p, s in zip(self.patch, v.mask.shape, strict=True)]
            image = np.pad(v.image, [(0, 0)] + [(0, p) for p in pad])
            mask = np.pad(v.mask, [(0, p) for p in pad])
            self.images.append(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))
            self.masks.append(torch.from_numpy(np.ascontiguousarray(mask, dtype=np.int64)))
            self.foreground.append(np.flatnonzero(mask > 0))
        sizes = torch.tensor([float(m.numel()) for m in self.masks])
        self.weights = sizes / sizes.sum()

    def sample(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One batch: images ``(B, C, *patch)`` and label maps ``(B, *patch)``."""
        images, masks = [], []
        for _ in range(self.batch_size):
            index = int(torch.multinomial(self.weights, 1, generator=generator))
            image, mask, fg = self.images[index], self.masks[index], self.foreground[index]
            shape = mask.shape
            if fg.size and float(torch.rand((), generator=generator)) < self.foreground_fraction:
                flat = int(fg[int(torch.randint(fg.size, (), generator=generator))])
                centre = np.unravel_index(flat, shape)
                start = [
                    min(max(0, int(c) - p // 2), s - p)
                    for c, p, s in zip(centre, self.patch, shape, strict=True)
                ]
            else:
                start = [
                    int(torch.randint(s - p + 1, (), generator=generator))
                    for p, s in zip(self.patch, shape, strict=True)
                ]
            window = tuple(slice(a, a + p) for a, p in zip(start, self.patch, strict=True))
            channels_and_window = (slice(None), *window)
            x, y = image[channels_and_window], mask[window]
            if self.transform is not None:
                x, transformed = self.transform(x, y, generator=generator)
                y = y if transformed is None else transformed
            images.append(x)
            masks.append(y)
        return torch.stack(images), torch.stack(masks)


# --------------------------------------------------------------------------- progress


class Progress:
    """A dependency-free progress bar on stderr.

    On a terminal it redraws one line; otherwise (logs, CI) it prints a line at every
    tenth of the way, so logs stay short. ``enabled=False`` silences it.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True) -> None:
        self.total, self.desc, self.enabled = max(1, total), desc, enabled
        self.done = 0
        self.start = time.perf_counter()
        self.tty = sys.stderr.isatty()
        self._last_tenth = -1
        self.postfix = ""

    def update(self, n: int = 1, postfix: str = "") -> None:
        self.done += n
        self.postfix = postfix or self.postfix
        if not self.enabled:
            return
        fraction = min(1.0, self.done / self.total)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        bar = "#" * int(20 * fraction)
        line = (
            f"{self.desc} [{bar:<20}] {self.done}/{self.total} "
            f"{elapsed:5.1f}s<{eta:5.1f}s {self.postfix}"
        )
        if self.tty:
            sys.stderr.write("\r" + line[:150])
            sys.stderr.flush()
        elif int(10 * fraction) > self._last_tenth:
            self._last_tenth = int(10 * fraction)
            print(line, file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()


# ------------------------------------------------------------------------- distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> _Dist:
    """Join the process group when started by ``torchrun`` (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return _Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


# ----------------------------------------------------------------------------- metrics


def object_one_piece_fraction(
    pred: np.ndarray, target: np.ndarray, margin: int = 2, connectivity: int = 1
) -> float:
    """Fraction of target objects whose prediction is exactly one piece.

    For each connected component of ``target > 0``, the prediction inside the object's
    footprint (the object dilated by ``margin`` voxels) must form exactly one connected
    component; a missed object (nothing predicted there) is not one piece. For images with
    a single object this is the knee study's per-image one-piece check; for images with
    many objects (nuclei) it asks the same question object by object.

    Returns:
        The fraction in ``[0, 1]``, or NaN when the target has no object.
    """
    structure = ndimage.generate_binary_structure(target.ndim, connectivity)
    objects, count = ndimage.label(target > 0, structure)
    if count == 0:
        return math.nan
    fg = pred > 0
    whole = 0
    for index, box in enumerate(ndimage.find_objects(objects), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(0, s.start - margin), min(n, s.stop + margin))
            for s, n in zip(box, target.shape, strict=True)
        )
        footprint = ndimage.binary_dilation(objects[grown] == index, iterations=margin)
        _, pieces = ndimage.label(fg[grown] & footprint, structure)
        whole += pieces == 1
    return whole / count


def _metric_row(pred: np.ndarray, target: np.ndarray, settings: TrainSettings) -> dict[str, float]:
    """Every metric of the study for one image (foreground classes averaged)."""
    p, t = torch.from_numpy(pred)[None], torch.from_numpy(target)[None]
    k = settings.num_classes
    binary = k == 2
    kw: dict[str, Any] = {"spatial_dims": settings.spatial_dims}
    if not binary:
        kw["num_classes"] = k
    # One distance measurement serves both surface metrics. A surface distance to an empty
    # mask is unbounded: such images are left out of the mean (NaN) and show up in Dice.
    surface = surface_metrics(
        p.numpy(),
        t.numpy(),
        ("hd95", "assd"),
        spacing=settings.spacing,
        empty_pred=math.nan,
        empty_target=math.nan,
        **kw,
    )
    return {
        "dice": float(dice_score(p, t, **kw)),
        "iou": float(iou_score(p, t, **kw)),
        "hd95": float(surface["hd95"]),
        "assd": float(surface["assd"]),
        "one_piece": object_one_piece_fraction(pred, target),
    }


METRICS = ("dice", "iou", "hd95", "assd", "one_piece")


# -------------------------------------------------------------------------- inference


def _main_output(out: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
    return out if isinstance(out, torch.Tensor) else out[0]


def predict_logits(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    settings: TrainSettings,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Logits ``(num_classes, *S)`` for one image ``(C, *S)`` of any size, by sliding-window
    inference with the training patch size (on the CPU)."""
    from attnunet.inference import sliding_window_inference

    device = device or next(model.parameters()).device
    x = torch.as_tensor(np.ascontiguousarray(image), dtype=torch.float32)[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = sliding_window_inference(
                x,
                lambda batch: _main_output(model(batch)),
                settings.patch_size,
                overlap=settings.overlap,
                blend=settings.blend,
                output_device=torch.device("cpu"),
            )
    finally:
        model.train(was_training)
    return logits[0]


def predict(
    model: nn.Module,
    image: np.ndarray | torch.Tensor,
    settings: TrainSettings,
    device: torch.device | None = None,
) -> np.ndarray:
    """Label map ``(*S)`` (``int64``) for one image ``(C, *S)``."""
    return predict_logits(model, image, settings, device).argmax(0).numpy()


def evaluate(
    model: nn.Module,
    volumes: Sequence[Volume],
    settings: TrainSettings,
    device: torch.device | None = None,
    progress: bool = False,
) -> tuple[list[dict[str, Any]], MetricAccumulator]:
    """Per-image metrics (Dice, IoU, HD95, ASSD, object one-piece fraction) and their
    accumulator (mean ± std) for volumes with masks."""
    rows: list[dict[str, Any]] = []
    acc = MetricAccumulator()
    bar = Progress(len(volumes), "evaluate", progress)
    for v in volumes:
        if v.mask is None:
            raise ValueError(f"{v.name}: evaluation needs a mask")
        pred = predict(model, v.image, settings, device)
        row = _metric_row(pred, v.mask, settings)
        for name, value in row.items():
            acc.add(name, [value])
        rows.append({"image": v.name, **row})
        bar.update()
    bar.close()
    return rows, acc


# ----------------------------------------------------------------------------- training


def _dice_key(dice: float) -> float:
    """Validation Dice for choosing the best epoch: NaN ranks below every number."""
    return -math.inf if math.isnan(dice) else dice


@dataclass
class EpochRecord:
    """What one epoch did: mean training loss, validation means, time per step."""

    epoch: int
    train_loss: float
    seconds_per_step: float
    val: dict[str, float] = field(default_factory=dict)


@dataclass
class TrainResult:
    """The outcome of :func:`train`."""

    model: nn.Module
    history: list[EpochRecord]
    best_epoch: int
    best_dice: float
    seconds_per_step: float
    val_rows: list[dict[str, Any]]


def _make_loss(settings: TrainSettings) -> nn.Module:
    return DiceCELoss(
        lambda_dice=settings.dice_weight,
        lambda_ce=settings.ce_weight,
        activation="softmax",
        include_background=False,
    )


def _rng_state(generator: torch.Generator) -> dict[str, Any]:
    return {"generator": generator.get_state(), "torch": torch.get_rng_state()}


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities (not valid JSON) replaced by None, recursively."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def _atomic_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def train(
    model: nn.Module,
    train_volumes: Sequence[Volume],
    val_volumes: Sequence[Volume],
    settings: TrainSettings,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    resume: bool = False,
    device: torch.device | str | None = None,
    progress: bool = True,
    label: str = "train",
    model_name: str | None = None,
    on_step: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` on random patches of ``train_volumes`` with a fixed recipe.

    Every epoch runs ``settings.steps_per_epoch`` Adam steps on Dice + cross-entropy,
    then (on the main process) segments every validation volume whole by sliding-window
    inference and scores it. With ``out_dir``, a checkpoint (model, optimiser, random
    state, history) is written after every epoch to ``out_dir/checkpoints/last.pt``, the
    best model by validation Dice to ``out_dir/best/`` (``save_pretrained`` format), and
    the history to ``out_dir/history.json``; ``resume=True`` continues from the
    checkpoint and gives the same weights as an uninterrupted run.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
    DistributedDataParallel (gloo on the CPU, nccl on GPUs); each process draws its own
    patches and only rank 0 validates and writes files.

    Args:
        model: any model of the zoo (or module returning logits or a deep-supervision list).
        train_volumes: training data.
        val_volumes: validation data (may be empty: then no best-model tracking).
        settings: the recipe.
        out_dir: where checkpoints go (``None``: nothing is written).
        resume: continue from ``out_dir/checkpoints/last.pt``.
        device: ``"cpu"``, ``"cuda"``, ... (default: the model's device).
        progress: draw progress bars on stderr.
        label: the progress bars' title.
        model_name: registry name recorded with the best model.
        on_step: called as ``on_step(epoch, step, loss)`` after every step.

    Returns:
        :class:`TrainResult`; ``result.model`` is the trained model (not the best one).

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint.
        ValueError: a checkpoint from another model or recipe.
    """
    from attnunet.data.transforms import default_augmentation

    device = torch.device(device) if device is not None else next(model.parameters()).device
    ctx = init_distributed(device)
    if device.type == "cuda" and ctx.world > 1:
        device = torch.device("cuda", ctx.local_rank)
    model.to(device)
    out = Path(out_dir) if out_dir is not None else None
    generator = torch.Generator().manual_seed(settings.seed + 1000 * ctx.rank)
    optimizer = torch.optim.Adam(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    history: list[EpochRecord] = []
    best_dice, best_epoch, start_epoch = -math.inf, 0, 1
    val_rows: list[dict[str, Any]] = []
    recipe = {k: v for k, v in settings.to_dict().items() if k != "epochs"}

    if resume:
        if out is None or not (out / CHECKPOINT).is_file():
            raise FileNotFoundError(
                f"nothing to resume: {out / CHECKPOINT if out else 'no output folder'} does "
                f"not exist; start without --resume"
            )
        state = torch.load(out / CHECKPOINT, map_location=device, weights_only=False)
        saved = state.get("recipe")
        if (
            not isinstance(saved, dict)
            or saved.keys() != recipe.keys()
            or recipe_changes(saved, settings)
        ):
            raise ValueError(
                f"{out / CHECKPOINT} was written with another recipe; resume with the same "
                f"settings (only --epochs may change). Saved: {state.get('recipe')}"
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if ctx.rank == 0:
            generator.set_state(state["rng"]["generator"])
        else:  # the checkpoint holds rank 0's stream: give the others fresh, distinct ones
            generator.manual_seed(settings.seed + 1000 * ctx.rank + 7919 * state["epoch"])
        torch.set_rng_state(state["rng"]["torch"])
        history = [EpochRecord(**h) for h in state["history"]]
        best_dice, best_epoch = state["best_dice"], state["best_epoch"]
        start_epoch = state["epoch"] + 1

    net: nn.Module = model
    if ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    augment = (
        None
        if settings.augment == "none"
        else default_augmentation(settings.spatial_dims, strength=settings.augment)
    )
    sampler = PatchSampler(
        train_volumes,
        settings.patch_size,
        settings.batch_size,
        settings.foreground_fraction,
        augment,
    )
    base_loss = _make_loss(settings)
    ds_loss = DeepSupervisionLoss(base_loss)

    for epoch in range(start_epoch, settings.epochs + 1):
        net.train()
        bar = Progress(
            settings.steps_per_epoch,
            f"{label} epoch {epoch}/{settings.epochs}",
            progress and ctx.main,
        )
        losses, step_times = [], []
        for step in range(settings.steps_per_epoch):
            images, masks = sampler.sample(generator)
            images, masks = images.to(device), masks.to(device)
            started = time.perf_counter()
            output = net(images)
            loss_fn = ds_loss if isinstance(output, list | tuple) else base_loss
            loss = loss_fn(output, masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step_times.append(time.perf_counter() - started)
            losses.append(float(loss.detach()))
            bar.update(postfix=f"loss {losses[-1]:.3f}")
            if on_step is not None:
                on_step(epoch, step, losses[-1])
        bar.close()
        record = EpochRecord(epoch, float(np.mean(losses)), float(np.median(step_times)))
        if ctx.main and val_volumes:
            val_rows, acc = evaluate(model, val_volumes, settings, device)
            record.val = {name: s.mean for name, s in acc.compute().items()}  # type: ignore[misc]
            dice = record.val["dice"]
            # NaN (no validation image holds foreground: every class absent) never beats a
            # number, but the first validated epoch is kept so that a best model exists
            if best_epoch == 0 or _dice_key(dice) > _dice_key(best_dice):
                best_dice, best_epoch = dice, epoch
                if out is not None:
                    from attnunet.models import save_pretrained

                    save_pretrained(
                        model,
                        out / "best",
                        overwrite=True,
                        metadata={
                            "epoch": epoch,
                            "val_dice": best_dice,
                            "settings": settings.to_dict(),
                        },
                    )
        history.append(record)
        if ctx.main and progress:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in record.val.items())
            print(
                f"{label} epoch {epoch}: loss {record.train_loss:.4f}"
                + (f", val {shown}" if shown else ""),
                file=sys.stderr,
            )
        if ctx.main and out is not None:
            _atomic_save(
                {
                    "epoch": epoch,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(generator),
                    "history": [dataclasses.asdict(h) for h in history],
                    "best_dice": best_dice,
                    "best_epoch": best_epoch,
                    "recipe": recipe,
                    "model_name": model_name,
                    "world_size": ctx.world,
                },
                out / CHECKPOINT,
            )
            (out / "history.json").write_text(
                json.dumps(jsonable([dataclasses.asdict(h) for h in history]), indent=2) + "\n",
                encoding="utf-8",
            )
        if ctx.world > 1:
            dist.barrier()

    per_step = float(np.median([h.seconds_per_step for h in history])) if history else math.nan
    return TrainResult(model, history, best_epoch, best_dice, per_step, val_rows)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Temporarily set torch's intra-op thread count (``None``: leave it)."""
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
