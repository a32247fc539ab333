"""The variant study: train several models with one recipe and seed, score them alike.

This is what ``attnunet compare`` runs. It reproduces the knee-ultrasound study's design
(UNet, AgUNet, ResUNet, AgResUNet and RAUNet trained identically, reported as mean ± std
of IoU, Dice, HD95, ASSD and the one-piece fraction, plus parameters and time per step),
with Oktay's Attention U-Net added, on the bundled nuclei samples or on a user's folder.
"""

from __future__ import annotations

import csv
import json
import math
import platform
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from attnunet.training import METRICS, TrainSettings, Volume, jsonable, train

__all__ = [
    "STUDY_MODELS",
    "StudyData",
    "build_study_model",
    "format_class_table",
    "format_table",
    "prepare_output",
    "run_study",
    "sample_study_data",
    "tiles",
    "write_csv",
]

STUDY_MODELS = ("unet", "ag_unet", "res_unet", "ag_res_unet", "attention_unet", "raunet")
"""The models ``attnunet compare`` trains by default."""

STUDY_FILES = (
    "results.json",
    "results.csv",
    "per_image.csv",
    "curves.png",
    "attention",
    "models",
)
"""What a study writes into its output folder (files and folders)."""


@dataclass
class StudyData:
    """Training and validation volumes for a study, and what they are."""

    name: str
    train: list[Volume]
    val: list[Volume]
    spatial_dims: int
    in_channels: int
    num_classes: int
    spacing: tuple[float, ...] | None
    description: str
    ignore_index: int | None = None
    class_names: tuple[str, ...] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    unit: str = "mm"


def tiles(volume: Volume, size: Sequence[int]) -> list[Volume]:
    """Cut a volume into non-overlapping tiles of ``size`` (the last ones flush with the
    end, so every voxel is covered; tiles may then overlap a little)."""
    shape = volume.image.shape[1:]
    starts = []
    for s, t in zip(shape, size, strict=True):
        t = min(t, s)
        axis = list(range(0, s - t + 1, t))
        if axis[-1] != s - t:
            axis.append(s - t)
        starts.append([(a, t) for a in axis])
    out = []
    for index, corner in enumerate(np.ndindex(*[len(a) for a in starts])):
        window = tuple(
            slice(starts[d][c][0], starts[d][c][0] + starts[d][c][1]) for d, c in enumerate(corner)
        )
        mask = None if volume.mask is None else volume.mask[window]
        channels_and_window = (slice(None), *window)
        out.append(Volume(volume.image[channels_and_window], mask, f"{volume.name}#{index}"))
    return out


def sample_study_data(spatial_dims: int = 2) -> StudyData:
    """The bundled nuclei sample as a study: ``nuclei2d`` for 2D, ``nuclei3d`` for 3D.

    Training uses the sample's training part; its validation part is cut into tiles so
    that metrics come as mean ± std over several images (2D: four 128 x 128 tiles of the
    512 x 128 validation strip).
    """
    from attnunet.data import load_sample

    if spatial_dims not in (2, 3):
        raise ValueError(f"the bundled samples are 2D and 3D; got spatial_dims={spatial_dims}")
    name = "nuclei2d" if spatial_dims == 2 else "nuclei3d"
    sample = load_sample(name)
    train_part, val_part = sample.split()

    def volume(part: Any, label: str) -> Volume:
        return Volume(
            np.ascontiguousarray(part.image[None], dtype=np.float32),
            (np.asarray(part.labels) > 0).astype(np.int64),
            label,
        )

    val = volume(val_part, f"{name}[val]")
    tile = (128, 128) if spatial_dims == 2 else tuple(min(s, 64) for s in val.image.shape[1:])
    return StudyData(
        name=name,
        train=[volume(train_part, f"{name}[train]")],
        val=tiles(val, tile),
        spatial_dims=spatial_dims,
        in_channels=1,
        num_classes=2,
        spacing=tuple(sample.spacing),
        description=f"{name}: {sample.attribution}",
        unit="px" if spatial_dims == 2 else "µm",  # nuclei2d: pixels; nuclei3d: micrometres
    )


def build_study_model(
    name: str,
    spatial_dims: int,
    in_channels: int,
    num_classes: int,
    channels: Sequence[int] = (8, 16, 32, 64),
    pretrained: bool | str = False,
) -> nn.Module:
    """One study model: U-Nets get ``channels``; RAUNet keeps its ResNet34 encoder
    (ImageNet weights only with ``pretrained``, which needs them in the local cache)."""
    from attnunet.models import accepted_kwargs, create_model, model_info

    info = model_info(name)
    if spatial_dims not in info.spatial_dims:
        raise ValueError(f"{name} does not support spatial_dims={spatial_dims}")
    kwargs: dict[str, Any] = {
        "spatial_dims": spatial_dims,
        "in_channels": in_channels,
        "num_classes": num_classes,
    }
    accepted = accepted_kwargs(info.model_class) or []
    if "encoder" in accepted:
        kwargs["pretrained"] = pretrained if spatial_dims == 2 else False
    elif "channels" in accepted and not info.is_preset:
        kwargs["channels"] = tuple(channels)
    return create_model(name, **kwargs)


def prepare_output(out: Path, names: Sequence[str], overwrite: bool, hint: str = "") -> None:
    """Make ``out`` ready for a run that writes ``names``.

    Existing results are never replaced silently: without ``overwrite`` the first one
    found is named in a ``FileExistsError``; with it, only those entries are removed, never
    anything else in the folder.
    """
    existing = [out / n for n in names if (out / n).exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{existing[0]} already exists: choose another --out folder, or pass "
            f"--overwrite to replace this run's results (other files are left alone){hint}"
        )
    for path in existing:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def _attention_maps(model: nn.Module, volume: Volume) -> tuple[np.ndarray, list[np.ndarray]] | None:
    """The input (a 2D slice) and the model's spatial attention maps over it, or None for
    models without spatial gates."""
    method = getattr(model, "forward_with_attention", None)
    if method is None:
        return None
    device = next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(volume.image))[None].to(device)
    model.eval()
    with torch.inference_mode():
        _, maps = method(x)
    spatial = [m.float().cpu() for m in maps if m.dim() == x.dim() and max(m.shape[2:]) > 1]
    if not spatial:
        return None
    image = volume.image[0]
    slices: list[np.ndarray] = []
    for m in spatial:
        a = m[0].mean(0).numpy()  # average the gates of a multi-gate map
        if a.ndim == 3:  # 3D: the middle slice along the first axis
            a = a[a.shape[0] // 2]
        slices.append(a)
    if image.ndim == 3:
        image = image[image.shape[0] // 2]
    return image, slices


def run_study(
    models: Sequence[str],
    data: StudyData,
    settings: TrainSettings,
    out: Path,
    *,
    channels: Sequence[int] = (8, 16, 32, 64),
    pretrained: bool | str = False,
    save_models: bool = False,
    progress: bool = True,
    log: Any = None,
    device: torch.device | str = "cpu",
    workers: int | None = None,
) -> list[dict[str, Any]]:
    """Train and score every model of ``models`` on ``data`` with ``settings``.

    Writes ``results.json``, ``results.csv``, ``per_image.csv``, ``curves.png`` and one
    attention figure per gated model under ``out`` (``models/<name>/`` too with
    ``save_models``). Every model starts from the seed ``settings.seed``.
    ``results.json`` records the settings as the runs resolved them (precision,
    channels-last) and the device.

    Args:
        models: registry names of the models to train, in order.
        data: the training and validation volumes.
        settings: the training recipe, the same for every model.
        out: the output folder (see :func:`prepare_output`).
        channels: the widths of the U-Nets (RAUNet keeps its encoder's).
        pretrained: RAUNet's 2D encoder weights (see :func:`build_study_model`).
        save_models: also save each trained model with
            :func:`~attnunet.models.save_pretrained`.
        progress: show training progress.
        log: a callable taking one line per trained model (default: print it).
        device: where the models train: ``"cpu"``, ``"cuda"``, ``"auto"`` (CUDA when
            present), ...
        workers: background processes drawing the training patches (``None``: from the
            CPU count; see :func:`~attnunet.training.train`).

    Returns:
        One summary row per model: its name, parameters, seconds per step, training
        seconds, final loss, validation images, and each metric's mean and standard
        deviation (``<metric>_std``) over the validation images.
    """
    if log is None:
        log = _print_flushed
    rows: list[dict[str, Any]] = []
    per_image: list[dict[str, Any]] = []
    histories: dict[str, Any] = {}
    used: dict[str, Any] = {"settings": settings.to_dict(), "device": str(device)}
    for name in models:
        torch.manual_seed(settings.seed)
        model = build_study_model(
            name, data.spatial_dims, data.in_channels, data.num_classes, channels, pretrained
        )
        started = time.perf_counter()
        result = train(
            model,
            data.train,
            data.val,
            settings,
            None,
            device=device,
            progress=progress,
            label=name,
            workers=workers,
        )
        seconds = time.perf_counter() - started
        resolved = result.settings or settings
        used = {"settings": resolved.to_dict(), "device": result.device}
        row = _summary_row(name, model, result, seconds)
        rows.append(row)
        per_image += [{"model": name, **r} for r in result.val_rows]
        histories[name] = [asdict(h) for h in result.history]
        _attention_figure(name, model, data.val[0], out)
        if save_models:
            from attnunet.models import save_pretrained

            save_pretrained(
                model,
                out / "models" / name,
                overwrite=True,
                metadata={**data.metadata, **used},
            )
        log(
            f"{name}: Dice {row['dice']:.3f}, IoU {row['iou']:.3f}, HD95 {row['hd95']:.2f}, "
            f"ASSD {row['assd']:.2f} ({seconds:.0f} s)"
        )
    _write_results(out, data, used, channels, rows, per_image, histories)
    return rows


def _print_flushed(message: str) -> None:
    """The default log of :func:`run_study`: print at once."""
    print(message, flush=True)


def _summary_row(name: str, model: nn.Module, result: Any, seconds: float) -> dict[str, Any]:
    """One model's row: size, speed, final loss, and each metric's mean and standard
    deviation over the validation images (NaN values left out): the five means of
    :data:`~attnunet.training.METRICS`, then every per-class column (``dice_<class>``, ...)
    of multi-class data."""
    columns = list(METRICS) + [
        k
        for k, v in (result.val_rows[0].items() if result.val_rows else ())
        if k not in METRICS and k != "image" and isinstance(v, float)
    ]
    values: dict[str, list[float]] = {m: [r[m] for r in result.val_rows] for m in columns}
    row: dict[str, Any] = {
        "model": name,
        "parameters": sum(p.numel() for p in model.parameters()),
        "seconds_per_step": result.seconds_per_step,
        "train_seconds": seconds,
        "final_loss": result.history[-1].train_loss,
        "images": len(result.val_rows),
        "unit": result.val_rows[0].get("unit", "px") if result.val_rows else "px",
    }
    for metric, vals in values.items():
        finite = [v for v in vals if not math.isnan(v)]
        row[metric] = float(np.mean(finite)) if finite else math.nan
        row[f"{metric}_std"] = float(np.std(finite, ddof=1)) if len(finite) > 1 else math.nan
    return row


def _attention_figure(name: str, model: nn.Module, volume: Volume, out: Path) -> None:
    """Write ``attention/<name>.png``: the model's spatial attention maps over ``volume``
    (nothing for a model without spatial gates)."""
    maps = _attention_maps(model, volume)
    if maps is None:
        return
    from attnunet.study.plots import attention_figure

    image, slices = maps
    titles = ["input"] + [f"{name} gate {i + 1}" for i in range(len(slices))]
    attention_figure(image, slices, titles, out / "attention" / f"{name}.png")


def _write_results(
    out: Path,
    data: StudyData,
    used: dict[str, Any],
    channels: Sequence[int],
    rows: list[dict[str, Any]],
    per_image: list[dict[str, Any]],
    histories: dict[str, Any],
) -> None:
    """Write ``curves.png``, ``results.csv``, ``per_image.csv`` and ``results.json``
    (``used``: the resolved settings and the device)."""
    from attnunet.study.plots import line_chart

    line_chart(
        [
            ("training loss", {n: [h["train_loss"] for h in hs] for n, hs in histories.items()}),
            (
                "validation Dice",
                {n: [h["val"].get("dice", math.nan) for h in hs] for n, hs in histories.items()},
            ),
        ],
        out / "curves.png",
    )
    write_csv(out / "results.csv", rows)
    write_csv(out / "per_image.csv", per_image)
    report = {
        "data": data.description,
        "spatial_dims": data.spatial_dims,
        "train_images": [v.name for v in data.train],
        "val_images": [v.name for v in data.val],
        "settings": used["settings"],
        "channels": list(channels),
        "environment": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "machine": platform.machine(),
            "device": used["device"],
        },
        "results": rows,
        "history": histories,
    }
    (out / "results.json").write_text(
        json.dumps(jsonable(report), indent=2) + "\n", encoding="utf-8"
    )


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Write ``rows`` (dicts) as CSV with the union of their keys as columns."""
    if not rows:
        return
    fields = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def format_class_table(rows: Sequence[dict[str, Any]], metric: str = "dice") -> str:
    """Mean ± std of ``metric`` per class and model, for multi-class studies ("" when the
    rows have no per-class columns).

    Examples:
        >>> rows = [{"model": "unet", "dice_L1": 0.9, "dice_L1_std": 0.01,
        ...          "dice_L2": 0.7, "dice_L2_std": float("nan")}]
        >>> print(format_class_table(rows))
        Dice per class  L1             L2
        --------------  -------------  -----
        unet            0.900 ± 0.010  0.700
    """
    prefix = f"{metric}_"
    classes = [
        k[len(prefix) :]
        for k in (rows[0] if rows else {})
        if k.startswith(prefix) and not k.endswith("_std")
    ]
    if not classes:
        return ""

    def cell(row: dict[str, Any], key: str) -> str:
        mean, std = row[key], row.get(f"{key}_std", math.nan)
        if math.isnan(mean):
            return "n/a"
        return f"{mean:.3f}" + ("" if math.isnan(std) else f" ± {std:.3f}")

    header = [f"{_LABELS.get(metric, metric)} per class", *classes]
    body = [[r["model"], *(cell(r, prefix + c) for c in classes)] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)).rstrip() for b in body]
    return "\n".join(lines)


_LABELS = {"dice": "Dice", "iou": "IoU", "hd95": "HD95", "assd": "ASSD", "one_piece": "one-piece"}


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """The study table: mean ± std per metric, parameters and seconds per step."""

    def cell(row: dict[str, Any], metric: str, digits: int) -> str:
        mean, std = row[metric], row[f"{metric}_std"]
        if math.isnan(mean):
            return "n/a"
        return f"{mean:.{digits}f}" + ("" if math.isnan(std) else f" ± {std:.{digits}f}")

    header = ["model", "IoU", "Dice", "HD95", "ASSD", "one-piece", "parameters", "s/step"]
    body = [
        [
            r["model"],
            cell(r, "iou", 3),
            cell(r, "dice", 3),
            cell(r, "hd95", 2),
            cell(r, "assd", 2),
            cell(r, "one_piece", 2),
            f"{r['parameters']:,}",
            f"{r['seconds_per_step']:.3f}",
        ]
        for r in rows
    ]
    widths = [max(len(str(x)) for x in col) for col in zip(header, *body, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(lines)
