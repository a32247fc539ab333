"""The training loop: epochs of patch steps, validation, the best model, checkpoints.

:func:`train` is the whole run. It is assembled from one step per stage, in the order
they run: placing the model (and joining ``torchrun``'s process group) with its speed
switches, resuming from a checkpoint, one epoch of optimisation steps, validation with
best-model keeping, and writing the checkpoint and the history. A resumed run draws the
same random numbers in the same order as an uninterrupted one and restores the optimiser,
the learning-rate schedule and the gradient scaler, so both end with the same weights.
:func:`resolve_settings` fixes what ``"auto"`` means for a model on a device.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from attnunet.layers import channels_last_format
from attnunet.losses import DeepSupervisionLoss, DiceCELoss
from attnunet.training import loader as batch_loader
from attnunet.training.distributed import _Dist, init_distributed
from attnunet.training.evaluation import METRICS, evaluate
from attnunet.training.loader import PatchLoader, default_workers
from attnunet.training.prediction import autocast_context
from attnunet.training.progress import Progress
from attnunet.training.sampling import PatchSampler
from attnunet.training.settings import (
    CHECKPOINT,
    TrainSettings,
    Volume,
    recipe_changes,
    resolve_precision,
)

__all__ = [
    "EpochRecord",
    "TrainResult",
    "jsonable",
    "resolve_device",
    "resolve_settings",
    "train",
    "use_channels_last",
]

# nnU-Net's recipe: SGD momentum, polynomial decay exponent, gradient-norm clip
_NNUNET_MOMENTUM = 0.99
_POLY_EXPONENT = 0.9
_NNUNET_CLIP = 12.0
# both recipes weight a deep-supervision list as nnU-Net: 1, 1/2, 1/4, ..., coarsest 0
_DS_WEIGHTS: dict[str, Literal["nnunet", "same", "exponential"]] = {
    "adam": "nnunet",
    "nnunet": "nnunet",
}


@dataclass
class EpochRecord:
    """What one epoch did: mean training loss, validation means, time per step, and the
    learning rate its steps used (NaN in records written before it was kept)."""

    epoch: int
    train_loss: float
    seconds_per_step: float
    val: dict[str, float] = field(default_factory=dict)
    learning_rate: float = math.nan


@dataclass
class TrainResult:
    """The outcome of :func:`train`; ``settings`` are the run's with ``"auto"`` resolved
    (:func:`resolve_settings`) and ``device`` is where it ran."""

    model: nn.Module
    history: list[EpochRecord]
    best_epoch: int
    best_dice: float
    seconds_per_step: float
    val_rows: list[dict[str, Any]]
    settings: TrainSettings | None = None
    device: str = "cpu"


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities (not valid JSON) replaced by None, recursively.

    Args:
        value: a number, string, ``None``, or dicts, lists and tuples of them.

    Returns:
        The same structure (tuples become lists) with every non-finite float ``None``.

    Examples:
        >>> jsonable({"dice": float("nan"), "sizes": (1.5, float("inf")), "name": "a"})
        {'dice': None, 'sizes': [1.5, None], 'name': 'a'}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def resolve_device(
    device: torch.device | str | None, model: nn.Module | None = None
) -> torch.device:
    """The device a run uses: ``"auto"`` is CUDA when a GPU is present, else the CPU;
    ``None`` is the model's device (the CPU without a model or parameters).

    Examples:
        >>> resolve_device("cpu")
        device(type='cpu')
        >>> resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
        True
    """
    if device is None:
        first = next(model.parameters(), None) if model is not None else None
        return first.device if first is not None else torch.device("cpu")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def use_channels_last(
    model: nn.Module, setting: str, spatial_dims: int, device: torch.device | str = "cpu"
) -> bool:
    """Whether a run on ``device`` puts ``model`` channels-last (weights and activations).

    ``"on"`` and ``"off"`` decide for 2D and 3D models (1D has no such layout). ``"auto"``
    leaves modules other than attnunet's models as they are. For attnunet's models it is
    on where that layout measured faster: on the CPU, for models whose norms are batch
    norm or none (``model.prefers_channels_last()``; instance and group norm measured slower
    channels-last), which is also what the model itself does in its default
    ``channels_last="auto"``; on CUDA for every attnunet model (cuDNN's channels-last
    kernels are the tensor-core path of bf16 and fp16; not yet measured here).

    Args:
        model: the model to train.
        setting: ``"auto"``, ``"on"`` or ``"off"`` (:attr:`TrainSettings.channels_last`).
        spatial_dims: the data's dimensions.
        device: where the run computes.

    Returns:
        True when the run converts the model.

    Examples:
        >>> from attnunet import UNet
        >>> use_channels_last(UNet(2, 1, 2, channels=(4, 8)), "auto", 2)
        True
        >>> use_channels_last(UNet(2, 1, 2, channels=(4, 8), norm="instance"), "auto", 2)
        False
        >>> use_channels_last(nn.Conv2d(1, 2, 3), "auto", 2)  # not an attnunet model
        False
        >>> use_channels_last(UNet(1, 1, 2, channels=(4, 8)), "on", 1)  # 1D: no such layout
        False
    """
    if spatial_dims not in (2, 3) or setting == "off":
        return False
    if setting == "on":
        return True
    fits = getattr(model, "prefers_channels_last", None)
    if not callable(fits):
        return False
    return torch.device(device).type == "cuda" or bool(fits())


def set_layout(model: nn.Module, channels_last: bool, spatial_dims: int) -> None:
    """Put ``model`` channels-last (weights, and an attnunet model's activations: its
    ``set_channels_last("on")``) or in the default layout (contiguous weights, and
    ``set_channels_last("off")``), as a run's resolved ``channels_last`` says. The model
    keeps that setting after the run (``set_channels_last("auto")`` gives the default
    back)."""
    switch = getattr(model, "set_channels_last", None)
    if callable(switch):
        switch("on" if channels_last else "off")
    if spatial_dims in (2, 3):
        layout = torch.contiguous_format
        if channels_last:
            layout = channels_last_format(spatial_dims + 2)
        model.to(memory_format=layout)


def resolve_settings(
    settings: TrainSettings, model: nn.Module, device: torch.device | str
) -> TrainSettings:
    """``settings`` with ``precision`` and ``channels_last`` resolved for ``model`` on
    ``device``: what a run records, so that resuming and predicting repeat it.

    Examples:
        >>> from attnunet import UNet
        >>> s = resolve_settings(TrainSettings(), UNet(2, 1, 2, channels=(4, 8)), "cpu")
        >>> s.precision, s.channels_last
        ('fp32', 'on')
    """
    return dataclasses.replace(
        settings,
        precision=resolve_precision(settings.precision, device),
        channels_last=(
            "on"
            if use_channels_last(model, settings.channels_last, settings.spatial_dims, device)
            else "off"
        ),
    )


# ------------------------------------------------------------------------ the parts


def _dice_key(dice: float) -> float:
    """Validation Dice for choosing the best epoch: NaN ranks below every number."""
    return -math.inf if math.isnan(dice) else dice


def _poly_lr(initial: float, epoch: int, epochs: int) -> float:
    """nnU-Net's polynomial decay: the learning rate of epoch ``epoch`` (1-based) of
    ``epochs``, ``initial * (1 - (epoch - 1) / epochs) ** 0.9`` (0 past the end)."""
    return initial * max(0.0, 1.0 - (epoch - 1) / epochs) ** _POLY_EXPONENT


def _make_optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Adam (``"adam"``) or nnU-Net's SGD with Nesterov momentum (``"nnunet"``)."""
    lr, decay = settings.learning_rate, settings.weight_decay
    assert lr is not None and decay is not None  # TrainSettings fills them in
    if settings.recipe == "nnunet":
        sgd = torch.optim.SGD(
            model.parameters(),
            lr=lr,
            momentum=_NNUNET_MOMENTUM,
            nesterov=True,
            weight_decay=decay,
        )
        for group in sgd.param_groups:  # the schedule's start, saved with the optimiser
            group["initial_lr"] = lr
        return sgd
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=decay)


def _apply_switches(model: nn.Module, settings: TrainSettings) -> None:
    """Channels-last weights and activation checkpointing, as the (resolved) settings ask."""
    set_layout(model, settings.channels_last == "on", settings.spatial_dims)
    if settings.checkpointing:
        switch = getattr(model, "set_checkpointing", None)
        if not callable(switch):
            raise ValueError(
                f"checkpointing=True needs a model with set_checkpointing() (every attnunet "
                f"model); {type(model).__name__} has none: train without checkpointing"
            )
        switch(True)


def _make_loss(settings: TrainSettings) -> nn.Module:
    """The recipe's Dice + cross-entropy loss on softmax probabilities."""
    return DiceCELoss(
        lambda_dice=settings.dice_weight,
        lambda_ce=settings.ce_weight,
        activation="softmax",
        include_background=False,
        ignore_index=settings.ignore_index,
    )


def _rng_state(device: torch.device) -> dict[str, Any]:
    """Torch's global random state (and the CUDA device's, which dropout draws from on a
    GPU), for a checkpoint. The batches need none: each is seeded by its step."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@dataclass
class _Run:
    """One training run's working parts and what it carries from epoch to epoch.

    The second group of fields is what a checkpoint restores on resuming.
    """

    model: nn.Module
    settings: TrainSettings
    device: torch.device
    ctx: _Dist
    out: Path | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    recipe: dict[str, Any]
    metadata: dict[str, Any] = field(default_factory=dict)
    history: list[EpochRecord] = field(default_factory=list)
    best_dice: float = -math.inf
    best_epoch: int = 0
    start_epoch: int = 1
    val_rows: list[dict[str, Any]] = field(default_factory=list)


def _start(
    model: nn.Module,
    settings: TrainSettings,
    out_dir: str | os.PathLike[str] | None,
    device: torch.device | str | None,
) -> _Run:
    """Join the process group, place the model with its speed switches, build the
    optimiser and the gradient scaler (on for fp16 only)."""
    device = resolve_device(device, model)
    ctx = init_distributed(device)
    if device.type == "cuda" and ctx.world > 1:
        device = torch.device("cuda", ctx.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)  # pinned copies and the loader's threads use it
    settings = resolve_settings(settings, model, device)
    model.to(device)
    _apply_switches(model, settings)
    out = Path(out_dir) if out_dir is not None else None
    optimizer = _make_optimizer(model, settings)
    scaler = torch.amp.GradScaler(device.type, enabled=settings.precision == "fp16")
    recipe = {k: v for k, v in settings.to_dict().items() if k != "epochs"}
    return _Run(model, settings, device, ctx, out, optimizer, scaler, recipe)


def _resume(run: _Run) -> None:
    """Continue ``run`` from its checkpoint: weights, optimiser (with the learning rate it
    reached), gradient scaler, random state, history.

    Raises:
        FileNotFoundError: no checkpoint (or no output folder).
        ValueError: the checkpoint was written with another recipe.
    """
    out, settings = run.out, run.settings
    if out is None or not (out / CHECKPOINT).is_file():
        raise FileNotFoundError(
            f"nothing to resume: {out / CHECKPOINT if out else 'no output folder'} does "
            f"not exist; start without --resume"
        )
    state = torch.load(out / CHECKPOINT, map_location=run.device, weights_only=False)
    saved = state.get("recipe")
    # a key missing from an older checkpoint counts as unchanged; an unknown one does not
    if not isinstance(saved, dict):
        raise ValueError(f"{out / CHECKPOINT} records no recipe: it cannot be resumed")
    unknown = sorted(set(saved) - set(run.recipe))
    changed = recipe_changes(saved, settings)
    if unknown or changed:
        what = (
            f"it records settings this version does not know ({', '.join(unknown)}): "
            f"resume with the attnunet that wrote it"
            if unknown
            else "; ".join(
                f"{k} was {saved.get(k, 'fp32')!r}, now {run.recipe.get(k)!r}" for k in changed
            )
        )
        raise ValueError(
            f"{out / CHECKPOINT} was written with another recipe: {what}. Resume with the "
            f"same settings (only the epochs and the speed switches channels_last, compile "
            f"and checkpointing may change)"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    if state.get("scaler"):
        run.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng"]["torch"])
    if run.device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], run.device)
    run.history = [EpochRecord(**h) for h in state["history"]]
    run.best_dice, run.best_epoch = state["best_dice"], state["best_epoch"]
    run.start_epoch = state["epoch"] + 1


@dataclass
class _Steps:
    """What an optimisation step uses besides the run: the module, patches, losses."""

    net: nn.Module
    sampler: PatchSampler
    loss: nn.Module
    deep_supervision_loss: nn.Module


def _steps(run: _Run, train_volumes: Sequence[Volume]) -> _Steps:
    """Wrap the model for DistributedDataParallel under ``torchrun``; build the patch
    sampler (with the recipe's augmentation) and the losses."""
    from attnunet.data.transforms import default_augmentation

    settings = run.settings
    net: nn.Module = run.model
    if run.ctx.world > 1:
        net = nn.parallel.DistributedDataParallel(
            run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None
        )
    if settings.compile:
        net = torch.compile(net)  # type: ignore[assignment]
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
    deep = DeepSupervisionLoss(base_loss, weights=_DS_WEIGHTS[settings.recipe])
    return _Steps(net, sampler, base_loss, deep)


def _train_epoch(
    run: _Run,
    steps: _Steps,
    batches: PatchLoader,
    epoch: int,
    bar: Progress,
    on_step: Callable[[int, int, float], None] | None,
) -> EpochRecord:
    """``steps_per_epoch`` optimisation steps on fresh patches, at the learning rate of the
    recipe's schedule for ``epoch``; the epoch's loss, step time and learning rate."""
    lr = _set_learning_rate(run, epoch)
    steps.net.train()
    losses, step_times = [], []
    for step in range(run.settings.steps_per_epoch):
        images, masks = next(batches)  # drawn ahead in the loader's workers
        copy = batches.pin_memory  # pinned batches copy asynchronously
        images = images.to(run.device, non_blocking=copy)
        masks = masks.to(run.device, non_blocking=copy)
        started = time.perf_counter()
        losses.append(_step(run, steps, images, masks))
        step_times.append(time.perf_counter() - started)
        bar.update(postfix=f"loss {losses[-1]:.3f}")
        if on_step is not None:
            on_step(epoch, step, losses[-1])
    bar.close()
    return EpochRecord(epoch, float(np.mean(losses)), float(np.median(step_times)), {}, lr)


def _set_learning_rate(run: _Run, epoch: int) -> float:
    """The learning rate of ``epoch`` into every parameter group (nnU-Net's polynomial
    decay, recomputed from the initial rate and the run's epochs; Adam's stays constant)."""
    if run.settings.recipe == "nnunet":
        for group in run.optimizer.param_groups:
            group["lr"] = _poly_lr(group["initial_lr"], epoch, run.settings.epochs)
    return float(run.optimizer.param_groups[0]["lr"])


def _step(run: _Run, steps: _Steps, images: torch.Tensor, masks: torch.Tensor) -> float:
    """One optimisation step under the run's autocast (and gradient scaler); its loss."""
    with autocast_context(run.settings.precision, run.device):
        output = steps.net(images)
        loss_fn = steps.deep_supervision_loss if isinstance(output, list | tuple) else steps.loss
        loss = loss_fn(output, masks)
    run.optimizer.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    if run.settings.recipe == "nnunet":
        run.scaler.unscale_(run.optimizer)
        nn.utils.clip_grad_norm_(run.model.parameters(), _NNUNET_CLIP)
    run.scaler.step(run.optimizer)
    run.scaler.update()
    value = float(loss.detach())
    if run.device.type == "cuda":  # the step's kernels are queued: time them whole
        torch.cuda.synchronize(run.device)
    return value


def _validate(run: _Run, val_volumes: Sequence[Volume], record: EpochRecord) -> None:
    """Score the validation volumes into ``record.val``; keep the model if it is the best."""
    run.val_rows, acc = evaluate(
        run.model, val_volumes, run.settings, run.device, class_names=run.settings.class_names
    )
    record.val = {name: s.mean for name, s in acc.compute().items()}  # type: ignore[misc]
    dice = record.val["dice"]
    # NaN (no validation image holds foreground: every class absent) never beats a
    # number, but the first validated epoch is kept so that a best model exists
    if run.best_epoch == 0 or _dice_key(dice) > _dice_key(run.best_dice):
        run.best_dice, run.best_epoch = dice, record.epoch
        if run.out is not None:
            _save_best(run)


def _save_best(run: _Run) -> None:
    """The best model so far to ``out/best/`` (``save_pretrained`` format)."""
    from attnunet.models import save_pretrained

    assert run.out is not None
    save_pretrained(
        run.model,
        run.out / "best",
        overwrite=True,
        metadata={
            **run.metadata,
            "epoch": run.best_epoch,
            "val_dice": run.best_dice,
            "settings": run.settings.to_dict(),
            "device": str(run.device),
        },
    )


def _report(label: str, record: EpochRecord) -> None:
    """One line per epoch on stderr: the loss and the validation means."""
    shown = ", ".join(f"{k} {v:.3f}" for k, v in record.val.items() if k in METRICS)
    print(
        f"{label} epoch {record.epoch}: loss {record.train_loss:.4f}"
        + (f", val {shown}" if shown else ""),
        file=sys.stderr,
    )


def _write(run: _Run, out: Path, epoch: int, model_name: str | None) -> None:
    """The checkpoint after ``epoch`` (written atomically) and ``history.json``."""
    history = [dataclasses.asdict(h) for h in run.history]
    _atomic_save(
        {
            "epoch": epoch,
            "model": run.model.state_dict(),
            "optimizer": run.optimizer.state_dict(),
            "scaler": run.scaler.state_dict(),
            "learning_rate": run.history[-1].learning_rate if run.history else math.nan,
            "rng": _rng_state(run.device),
            "history": history,
            "best_dice": run.best_dice,
            "best_epoch": run.best_epoch,
            "recipe": run.recipe,
            "device": str(run.device),
            "model_name": model_name,
            "world_size": run.ctx.world,
        },
        out / CHECKPOINT,
    )
    (out / "history.json").write_text(
        json.dumps(jsonable(history), indent=2) + "\n", encoding="utf-8"
    )


def _workers(workers: int | None, device: torch.device) -> int:
    """The loader's workers: as given, else from the CPU count on a GPU (shared by the
    node's processes under torchrun) and 0 on the CPU."""
    if workers is not None:
        return workers
    if device.type != "cuda":
        return 0
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1)  # torchrun: processes per node
    return default_workers() // max(1, local)


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
    metadata: Mapping[str, Any] | None = None,
    workers: int | None = None,
) -> TrainResult:
    """Train ``model`` on random patches of ``train_volumes`` with a fixed recipe.

    Every epoch runs ``settings.steps_per_epoch`` optimisation steps on Dice +
    cross-entropy (Adam, or nnU-Net's SGD with polynomial decay: ``settings.recipe``),
    then (on the main process) segments every validation volume whole by sliding-window
    inference and scores it. With ``out_dir``, a checkpoint (model, optimiser with its
    learning rate, gradient scaler, random state, history, the resolved recipe and the
    device) is written after every epoch to ``out_dir/checkpoints/last.pt``, the best
    model by validation Dice to ``out_dir/best/`` (``save_pretrained`` format), and the
    history to ``out_dir/history.json``; ``resume=True`` continues from the checkpoint
    and gives the same weights as an uninterrupted run.

    The speed switches of ``settings`` apply to the run: autocast to ``precision``
    (``"auto"``: bf16 on a CUDA device that supports it, else fp32) around the forward
    pass and the loss, with a gradient scaler for fp16; channels-last weights (the model
    is left in that layout: values are unchanged); ``torch.compile`` for the training
    steps (validation runs eagerly); the model's activation checkpointing.

    Training batches are drawn ahead of the steps by a
    :class:`~attnunet.training.PatchLoader` in ``workers`` background processes: batch
    ``k`` of the run (counted over all epochs) comes from a generator seeded with
    ``batch_seed(settings.seed, rank, k)``, so the batches, and the trained weights, do
    not depend on the number of workers, and a resumed run draws exactly the batches the
    uninterrupted one would.

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
        device: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when present), ... (default: the
            model's device).
        progress: draw progress bars on stderr.
        label: the progress bars' title.
        model_name: registry name recorded in the checkpoint (``last.pt``).
        on_step: called as ``on_step(epoch, step, loss)`` after every step.
        metadata: JSON values saved with the best model besides the epoch, the
            validation Dice and the settings (the CLI saves the task: labels and
            preprocessing).
        workers: background processes drawing the batches; 0 draws them in this
            process. ``None``: on a GPU, :func:`~attnunet.training.default_workers` (from
            the CPU count); on the CPU, 0, since the model step already uses every core
            and a worker would compete with it (the 2D study on 2 cores: 108 s with 0
            workers, 133 s with 1). The batches are the same for any value.

    Returns:
        :class:`TrainResult`; ``result.model`` is the trained model (not the best one),
        ``result.settings`` the settings with ``"auto"`` resolved.

    Raises:
        FileNotFoundError: ``resume`` without a checkpoint.
        ValueError: a checkpoint from another model or recipe; ``checkpointing`` for a
            model without ``set_checkpointing``.
    """
    run = _start(model, settings, out_dir, device)
    run.metadata = dict(metadata or {})
    if resume:
        _resume(run)
    steps = _steps(run, train_volumes)
    ctx, out, settings = run.ctx, run.out, run.settings
    per_epoch = settings.steps_per_epoch
    batches = PatchLoader(
        steps.sampler,
        seed=settings.seed,
        rank=ctx.rank,
        start_step=(run.start_epoch - 1) * per_epoch,
        total_steps=max(settings.epochs, run.start_epoch - 1) * per_epoch,
        workers=_workers(workers, run.device),
        pin_memory=run.device.type == "cuda",
        timeout=batch_loader.BATCH_TIMEOUT_S,  # read now: a user may have raised it
    )
    with batches:
        for epoch in range(run.start_epoch, settings.epochs + 1):
            title = f"{label} epoch {epoch}/{settings.epochs}"
            bar = Progress(per_epoch, title, progress and ctx.main)
            record = _train_epoch(run, steps, batches, epoch, bar, on_step)
            if ctx.main and val_volumes:
                _validate(run, val_volumes, record)
            run.history.append(record)
            if ctx.main and progress:
                _report(label, record)
            if ctx.main and out is not None:
                _write(run, out, epoch, model_name)
            if ctx.world > 1:
                dist.barrier()

    history = run.history
    per_step = float(np.median([h.seconds_per_step for h in history])) if history else math.nan
    return TrainResult(
        model,
        history,
        run.best_epoch,
        run.best_dice,
        per_step,
        run.val_rows,
        settings,
        str(run.device),
    )
