"""What the commands share: the usage error and exit statuses, option types and the
option groups of several commands, reading a folder of images and masks, the recipe,
threads and devices, and loading a trained model.

Everything here is private to :mod:`attnunet.cli`; each command module imports what it
uses. The heavy parts of the library (the models, training, the study) are imported
inside the functions, so that ``attnunet --help`` stays quick.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, TypeAlias

import torch

EXIT_USAGE = 2
EXIT_FAILURE = 1
PRECISION_CHOICES = ("auto", "fp32", "bf16", "fp16")  # attnunet.training.PRECISIONS


class UsageError(Exception):
    """A problem with what the user asked for: exit status 2 with the message."""


# ------------------------------------------------------------------------ arguments


def _ints(text: str) -> tuple[int, ...]:
    """Positive integers from ``64,64`` or ``32x64x64`` (an argparse ``type``)."""
    try:
        values = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected integers like 64,64 or 32x64x64, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def _floats(text: str) -> tuple[float, ...]:
    """Positive numbers from ``1.0,0.5,0.5`` or ``1x0.5x0.5`` (an argparse ``type``)."""
    try:
        values = tuple(float(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers like 1.0,0.5,0.5, got {text!r}"
        ) from None
    if not values or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _names(text: str) -> list[str]:
    """The non-empty names of a comma-separated list (an argparse ``type``)."""
    return [n.strip() for n in text.split(",") if n.strip()]


def _model_arg(text: str) -> tuple[str, Any]:
    """``KEY=VALUE`` as a pair; the value is read as JSON when it parses, else kept as text."""
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def _add_recipe(p: argparse.ArgumentParser, epochs: int | None, steps: int | None) -> None:
    """The training-recipe options of compare and train, with their default epochs and steps."""
    g = p.add_argument_group("training recipe")
    g.add_argument(
        "--epochs",
        type=int,
        default=epochs,
        help=f"epochs (default: {epochs or '8 in 2D, 4 in 3D'})",
    )
    g.add_argument(
        "--steps-per-epoch",
        type=int,
        default=steps,
        help=f"optimisation steps per epoch (default: {steps or '25 in 2D, 12 in 3D'})",
    )
    g.add_argument(
        "--batch-size", type=int, default=None, help="patches per step (default: 8 in 2D, 2 in 3D)"
    )
    g.add_argument(
        "--patch-size",
        type=_ints,
        default=None,
        help="training patch, e.g. 64,64 or 32,64,64 (default: 64 per axis in 2D, 32,64,64 in 3D)",
    )
    g.add_argument(
        "--recipe",
        choices=("adam", "nnunet"),
        default="adam",
        help="optimiser: adam (constant learning rate) or nnunet (SGD, Nesterov momentum 0.99, "
        "polynomial decay, weight decay 3e-5, gradient clipping at 12) (default: %(default)s)",
    )
    g.add_argument(
        "--lr",
        type=float,
        default=None,
        help="(initial) learning rate (default: the recipe's: 2e-3 adam, 1e-2 nnunet)",
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        default=None,
        help="weight decay (default: the recipe's: 1e-5 adam, 3e-5 nnunet)",
    )
    g.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    g.add_argument(
        "--augment",
        choices=("none", "light", "standard"),
        default="standard",
        help="augmentation: flips, 90-degree rotations, noise, blur (default: %(default)s)",
    )
    _add_speed_options(p)


def _non_negative(text: str) -> int:
    """An argparse type: an int >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more, got {value}")
    return value


def _add_speed_options(p: argparse.ArgumentParser) -> None:
    """The options of compare and train that change speed and memory: device, threads,
    precision, channels-last, compile, checkpointing."""
    g = p.add_argument_group("speed")
    g.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present, else cpu), cpu, cuda, cuda:1, ... (default: %(default)s)",
    )
    g.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    g.add_argument(
        "--workers",
        type=_non_negative,
        default=None,
        help="background processes drawing the training patches; 0: in the main process "
        "(default: on a GPU the CPUs available minus one, at most 8; on the CPU 0, as the "
        "model step uses every core). The patches, and so the results, are the same for "
        "any value",
    )
    g.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default="auto",
        help="autocast: fp32, bf16 or fp16 (with a gradient scaler); auto: bf16 on a CUDA GPU "
        "that supports it, else fp32 (default: %(default)s)",
    )
    g.add_argument(
        "--channels-last",
        choices=("auto", "on", "off"),
        default="auto",
        help="channels-last weights; auto: on for attnunet's models (default: %(default)s)",
    )
    g.add_argument(
        "--compile", action="store_true", help="train through torch.compile (compiles first)"
    )
    g.add_argument(
        "--checkpointing",
        action="store_true",
        help="activation checkpointing: less memory (3D) for about one more forward pass",
    )


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    """The options evaluate and predict share: windowing, threads, device, progress."""
    p.add_argument(
        "--overlap",
        type=float,
        default=None,
        help="sliding-window overlap (default: the training value)",
    )
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument(
        "--device",
        default="auto",
        help="auto (CUDA when present, else cpu), cpu, cuda, ... (default: %(default)s)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISION_CHOICES,
        default=None,
        help="autocast of the model (default: auto, resolved for this device: bf16 on a CUDA "
        "GPU that supports it, else fp32, whatever the training used)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


# argparse's subparsers action; its class is private, so name it once here
_Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


# ----------------------------------------------------------------------------- data


def _split(volumes: list[Any], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    """The reproducible image-level split of :func:`attnunet.data.split_pairs`."""
    from attnunet.data import split_pairs

    if not 0.0 <= fraction < 1.0:
        raise UsageError(f"--val-fraction must lie in [0, 1), got {fraction}")
    if fraction > 0 and len(volumes) < 2:
        raise UsageError(
            f"only {len(volumes)} image found: cannot hold one out for validation; add images, "
            f"give --val-images/--val-masks, or pass --val-fraction 0"
        )
    return split_pairs(volumes, fraction, seed)


def _settings(args: argparse.Namespace, spatial_dims: int, num_classes: int, spacing: Any) -> Any:
    """The :class:`~attnunet.training.TrainSettings` of the recipe options."""
    from attnunet.training import TrainSettings

    patch = args.patch_size or ((64,) * spatial_dims if spatial_dims != 3 else (32, 64, 64))
    if len(patch) == 1:
        patch = patch * spatial_dims
    if len(patch) != spatial_dims:
        raise UsageError(
            f"--patch-size needs {spatial_dims} sizes for {spatial_dims}D data, got {patch}"
        )
    kwargs: dict[str, Any] = {
        "spatial_dims": spatial_dims,
        "num_classes": num_classes,
        "patch_size": patch,
        "batch_size": args.batch_size or (8 if spatial_dims < 3 else 2),
        "learning_rate": args.lr,
        "weight_decay": args.weight_decay,
        "seed": args.seed,
        "augment": args.augment,
        "spacing": spacing,
        "recipe": args.recipe,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "compile": args.compile,
        "checkpointing": args.checkpointing,
    }
    if args.epochs is not None:
        kwargs["epochs"] = args.epochs
    if args.steps_per_epoch is not None:
        kwargs["steps_per_epoch"] = args.steps_per_epoch
    try:
        return TrainSettings(**kwargs)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _threads(n: int | None) -> None:
    """Apply ``--threads`` (nothing when it was not given)."""
    if n is not None:
        if n < 1:
            raise UsageError(f"--threads must be >= 1, got {n}")
        torch.set_num_threads(n)


def _device(name: str) -> torch.device:
    """The torch device of ``--device`` (``auto``: CUDA when present, else the CPU), refused
    when unknown or not available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f"unknown --device {name!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "--device cuda was asked for but no CUDA GPU is available; use --device cpu"
        )
    return device


# -------------------------------------------------------------------- trained models


def _load_trained(
    path: Path, device: torch.device, overlap: float | None = None, precision: str | None = None
) -> tuple[torch.nn.Module, Any, Any]:
    """A model saved by ``train`` (its folder or its ``best/``), its recipe with the
    sliding-window ``overlap``, its ``precision`` resolved for ``device`` (``"auto"`` when
    not given), and its task
    (labels, preprocessing; for a model saved without one: labels 0..K-1 and the
    percentile normalisation). The model is channels-last where that is faster on
    ``device`` (``use_channels_last(..., "auto", ...)``), whatever the training chose."""
    from attnunet.models import from_pretrained
    from attnunet.training import Task, TrainSettings, legacy_task
    from attnunet.training.loop import set_layout, use_channels_last
    from attnunet.training.settings import resolve_precision

    folder = path / "best" if (path / "best" / "config.json").is_file() else path
    if not (folder / "config.json").is_file():
        raise UsageError(
            f"{path} holds no trained model: expected {path}/best/config.json or "
            f"{path}/config.json (a train --out folder or a save_pretrained folder)"
        )
    model = from_pretrained(folder, map_location=str(device))
    meta = json.loads((folder / "config.json").read_text(encoding="utf-8")).get("metadata") or {}
    if "settings" in meta:
        settings = TrainSettings.from_dict(meta["settings"])
    else:
        dims = int(getattr(model, "spatial_dims", 2))
        config = getattr(model, "config", {})
        settings = TrainSettings(
            spatial_dims=dims,
            num_classes=max(2, int(config.get("num_classes", 2))),
            patch_size=(64,) * dims if dims < 3 else (32, 64, 64),
        )
    if overlap is not None:
        settings.overlap = overlap
    # the training's precision was resolved for its device: resolve again for this one
    # (a model trained in bf16 on a GPU is evaluated in fp32 on a CPU, where bf16 and
    # fp16 run many times slower), unless --precision says otherwise
    settings.precision = resolve_precision(precision or "auto", device)
    # the layout changes the speed and the rounding only: chosen again for this device
    on = use_channels_last(model, "auto", settings.spatial_dims, device)
    set_layout(model, on, settings.spatial_dims)
    if "task" in meta:
        task = Task.from_dict(meta["task"])
    else:
        task = legacy_task(settings, int(getattr(model, "config", {}).get("in_channels", 1)))
    return model, settings, task
