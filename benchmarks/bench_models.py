"""Speed, FLOPs and memory of attnunet's U-Nets against MONAI's, in one run.

Workloads (channels ``(16, 32, 64, 128, 256)``, one input channel, two classes):

* ``W1``: a 2D training step (forward, Dice + CE loss, backward, Adam step), batch 4,
  input ``1 x 256 x 256``;
* ``W2``: a 3D training step, batch 1, input ``1 x 96^3``, plus the peak memory of the
  step (see "Peak memory" below);
* ``W3``: inference (``eval()`` and ``torch.inference_mode()``): a 2D image of
  ``512 x 512`` (batch 1), and a ``160 x 160 x 96`` volume by sliding windows of ``96^3``
  (overlap 0.25, constant blending, 4 windows per batch).

Models: attnunet's ``AttentionUNet`` (Oktay's layout with its defaults: two grid gates
per skip merged by a 1x1 conv, gates on all skips but the finest, gating signal,
parameter-free linear up-sampling, batch norm, single output without deep supervision),
``AgUNet`` (one grid gate per skip, transposed-conv up-sampling) and ``UNet``; MONAI's
``AttentionUnet`` (strides 2, batch norm, one same-resolution gate per skip) and MONAI's
``UNet`` with ``num_res_units=2`` (strided residual units with two convolutions each, the
setting of MONAI's tutorials and the closest to a double-convolution stage; instance norm
and PReLU, MONAI's defaults). Every model is trained with :class:`attnunet.losses.DiceCELoss`
and windowed with :func:`attnunet.inference.sliding_window_inference`, so the loss and the
windowing cost the same for all.

Measurements:

* parameters;
* FLOPs counted by :class:`torch.utils.flop_counter.FlopCounterMode` on one step
  (forward + backward for training, forward for inference). It counts convolutions and
  matrix products (multiply and add = 2 FLOPs); element-wise work, norms, pooling and
  interpolation are not counted, so "achieved GFLOP/s" is a lower bound of the work done;
* each model runs under several *settings* (``--settings``; default ``eager``, ``cl`` and
  ``cl+bf16``): ``eager`` is the model as shipped (float32, default memory layout, no
  compile); the levers are ``cl`` (channels-last), ``bf16`` (autocast), ``ckpt``
  (activation checkpointing, attnunet only) and ``compile`` (``torch.compile``), joined by
  ``+``. FLOPs are counted once per model (eager) and credited to all its settings;
* the median time of ``--repeats`` steps (default 5 in 2D, 3 in 3D), after ``--warmup``
  untimed steps (default 1; it also compiles). The (model, setting) pairs take turns within
  each repeat, starting from a different one each time, so load on the machine affects
  all alike;
* with ``--isolate``, each (model, setting) pair is timed in a fresh process instead
  (the same script, a private flag; ``--rounds`` processes per pair, default 3, each
  running the warm-up and ``--repeats`` timed steps, the pairs taking turns as above).
  In one long process a model inherits the C allocator's state from the models before it:
  memory they freed can stay mapped, so its tensors reuse it instead of faulting fresh
  pages in. A user's training process holds one model, as each child does. Each child
  reports the process, threads, device, warm-up and repeats it ran with, and the parent
  refuses one that differs from what it asked for or repeats a process. Every row also
  gives the median number of minor page faults of its steps (``minor_faults_per_step``,
  from ``getrusage``), and the JSON's ``machine`` the C library, the transparent huge page
  mode and the allocator's environment variables (``MALLOC_*``, ``LD_PRELOAD``, ...),
  which decide how many faults there are; ``started_utc`` is the run's start;
* achieved GFLOP/s and the fraction of a matrix-multiply peak measured in the same run
  (median time of a float32 ``torch.mm`` of two ``n x n`` matrices, ``2 n^3`` FLOPs,
  before and after the workloads; the higher is used; the JSON also gives bf16 rows their
  fraction of a bfloat16 ``torch.mm``). On CUDA, cuDNN convolutions may
  use TF32 (PyTorch's default) while the float32 matmul does not, so the fraction can
  exceed 1 there;
* ratios to MONAI's ``AttentionUnet``: the row's GFLOP/s divided by those of MONAI's
  ``AttentionUnet`` as shipped (``eager``), and by those of MONAI's ``AttentionUnet`` under
  the same setting (JSON: ``gflops_vs_monai_attention_unet``,
  ``gflops_vs_monai_same_setting``; also ``speed_vs_monai_attention_unet``, a time ratio,
  and ``speed_vs_own_eager``, each lever's effect on the model itself).

Peak memory (``W2``, settings ``--memory-settings``, default ``eager`` and ``ckpt``, which
are timed too): on CPU, each model runs its training steps in a fresh subprocess
(the same script, with a private flag). The child builds the model, optimizer, loss and
data and runs one warm-up step, which creates Adam's state and the convolution library's
caches. Then, after a ``gc.collect()``, it resets the kernel's peak-RSS counter (writing
``5`` to ``/proc/self/clear_refs`` resets ``VmHWM``) and reads its resident set size
(``VmRSS``) as the baseline: what a training run holds between steps (weights, optimizer
state, data, imports). It runs ``--memory-steps`` steps and reports
``VmHWM - baseline`` as ``peak_memory_mib``: the most memory a step adds, activations,
gradients and scratch space. The warm-up step is measured too, from before it
(``cold_peak_memory_mib``: the first step of a run, with the optimizer state it creates).
The children run with glibc's ``MALLOC_MMAP_THRESHOLD_`` fixed at 1 MiB, so freed
tensors leave the resident set at once and it follows live memory (see :func:`child_env`).
The children run after
the timing, one at a time unless ``--memory-jobs`` says otherwise (a peak RSS is per
process, so running them side by side changes their speed, not their result). Where
``clear_refs`` cannot be written it falls back on ``ru_maxrss``, which is only right when
the steps exceed every earlier peak of the process (true here: the steps use gigabytes).
In one long process the counters mislead: ``ru_maxrss`` never goes down, and memory that
earlier models freed can stay mapped by the C allocator, so a later step reuses it without
raising the peak. On CUDA it is ``torch.cuda.max_memory_allocated()`` minus the memory allocated
before the steps, in the main process (the caching allocator's own counters).

Usage::

    python benchmarks/bench_models.py                   # everything (several minutes on CPU)
    python benchmarks/bench_models.py --workloads W1,W3 --repeats 3
    python benchmarks/bench_models.py --smoke --json smoke.json   # seconds: tiny sizes
    python benchmarks/bench_models.py --workloads W1 --isolate    # one process per model
    python benchmarks/bench_models.py --device cuda --models attention_unet,monai_attention_unet

MONAI comes with ``pip install -e ".[test]"``; without it the MONAI rows are skipped.
"""

from __future__ import annotations

import argparse
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

try:
    import resource
except ImportError:  # Windows: no getrusage, and no /proc either
    resource = None  # type: ignore[assignment]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attnunet
from attnunet.inference import sliding_window_inference
from attnunet.layers import channels_last_format
from attnunet.losses import DiceCELoss

CHANNELS: tuple[int, ...] = (16, 32, 64, 128, 256)
SMOKE_CHANNELS: tuple[int, ...] = (4, 8, 16)
NUM_CLASSES = 2
MONAI_RES_UNITS = 2
REFERENCE = "monai_attention_unet"  # the model every ratio is taken against
PLAIN = "nnunet_plain_conv_unet"  # the twin of "unet_nnunet_config"
MEMORY_CHILD_FLAG = "--_memory-child"
TIME_CHILD_FLAG = "--_time-child"


# ---------------------------------------------------------------------------- models
@dataclass(frozen=True)
class ModelSpec:
    key: str
    label: str
    library: str
    build: Callable[[int, Sequence[int]], nn.Module]


def _strides(channels: Sequence[int]) -> tuple[int, ...]:
    return (2,) * (len(channels) - 1)


def _monai_attention_unet(spatial_dims: int, channels: Sequence[int]) -> nn.Module:
    from monai.networks.nets import AttentionUnet  # imported on use: it takes seconds

    return AttentionUnet(
        spatial_dims, 1, NUM_CLASSES, channels=channels, strides=_strides(channels)
    )


def _monai_unet(spatial_dims: int, channels: Sequence[int]) -> nn.Module:
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims,
        1,
        NUM_CLASSES,
        channels=channels,
        strides=_strides(channels),
        num_res_units=MONAI_RES_UNITS,
    )


def nnunet_arch_kwargs(spatial_dims: int, channels: Sequence[int]) -> dict[str, Any]:
    """PlainConvUNet's keywords as nnU-Net's planner writes them (3x3 kernels, stride 2 per
    stage, two convolutions per stage in encoder and decoder, conv bias, affine instance
    norm, leaky ReLU), for ``channels`` with no deep supervision."""
    stages = len(channels)
    return {
        "n_stages": stages,
        "features_per_stage": list(channels),
        "conv_op": (nn.Conv2d, nn.Conv3d)[spatial_dims - 2],
        "kernel_sizes": 3,
        "strides": [1] + [2] * (stages - 1),
        "n_conv_per_stage": 2,
        "n_conv_per_stage_decoder": [2] * (stages - 1),
        "conv_bias": True,
        "norm_op": (nn.InstanceNorm2d, nn.InstanceNorm3d)[spatial_dims - 2],
        "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "nonlin": nn.LeakyReLU,
        "nonlin_kwargs": {"inplace": True},
    }


def _attnunet_unet_nnunet_config(spatial_dims: int, channels: Sequence[int]) -> nn.Module:
    """attnunet's UNet configured as PlainConvUNet (the nnU-Net integration's mapping)."""
    from attnunet.integrations.nnunet import plans_to_kwargs

    kwargs = plans_to_kwargs(nnunet_arch_kwargs(spatial_dims, channels))
    return attnunet.UNet(in_channels=1, num_classes=NUM_CLASSES, **kwargs)


def _plain_conv_unet(spatial_dims: int, channels: Sequence[int]) -> nn.Module:
    """nnU-Net's PlainConvUNet with :func:`nnunet_arch_kwargs`."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    return PlainConvUNet(
        input_channels=1,
        num_classes=NUM_CLASSES,
        deep_supervision=False,
        **nnunet_arch_kwargs(spatial_dims, channels),
    )


def model_specs() -> list[ModelSpec]:
    """Every model to compare; MONAI's only when MONAI imports."""
    specs = [
        ModelSpec(
            "attention_unet",
            "attnunet AttentionUNet",
            "attnunet",
            lambda d, ch: attnunet.AttentionUNet(d, 1, NUM_CLASSES, channels=ch),
        ),
        ModelSpec(
            "ag_unet",
            "attnunet AgUNet",
            "attnunet",
            lambda d, ch: attnunet.AgUNet(d, 1, NUM_CLASSES, channels=ch),
        ),
        ModelSpec(
            "unet",
            "attnunet UNet",
            "attnunet",
            lambda d, ch: attnunet.UNet(d, 1, NUM_CLASSES, channels=ch),
        ),
    ]
    specs += [
        ModelSpec(
            "ag_res_unet",
            "attnunet AgResUNet",
            "attnunet",
            lambda d, ch: attnunet.AgResUNet(d, 1, NUM_CLASSES, channels=ch),
        ),
        ModelSpec(
            "unet_nnunet_config",
            "attnunet UNet (PlainConvUNet's config)",
            "attnunet",
            _attnunet_unet_nnunet_config,
        ),
    ]
    if importlib.util.find_spec("dynamic_network_architectures") is None:
        print("nnU-Net is not installed: PlainConvUNet is skipped", file=sys.stderr)
    else:
        specs.append(ModelSpec(PLAIN, "nnU-Net PlainConvUNet", "nnunet", _plain_conv_unet))
    if importlib.util.find_spec("monai") is None:
        print("MONAI is not installed: its models are skipped", file=sys.stderr)
        return specs
    specs += [
        ModelSpec(REFERENCE, "MONAI AttentionUnet", "monai", _monai_attention_unet),
        ModelSpec("monai_unet", f"MONAI UNet (res units {MONAI_RES_UNITS})", "monai", _monai_unet),
    ]
    return specs


# ---------------------------------------------------------------------------- settings
LEVERS = ("nchw", "cl", "bf16", "ckpt", "compile")
"""Settings are ``"eager"`` or levers joined by ``+`` (``"cl+bf16"``):

* ``nchw``: an attnunet model with its activations in the input's layout
  (``model.set_channels_last("off")``), as attnunet's models ran before they chose
  channels-last on the CPU themselves (attnunet models only);
* ``cl``: channels-last weights and input (``torch.channels_last`` / ``channels_last_3d``);
* ``bf16``: the forward pass under ``torch.autocast(dtype=torch.bfloat16)`` (the loss is
  computed in float32 on the float32 cast of the logits);
* ``ckpt``: activation checkpointing (``model.set_checkpointing()``; attnunet models only);
* ``compile``: ``torch.compile(model)`` (inductor), compiled during the warm-up step.

``eager`` is float32, an input in the default memory layout, no compile: the model as
shipped (for attnunet's models, that includes their own ``channels_last="auto"``)."""
DEFAULT_SETTINGS = ("eager", "cl", "cl+bf16")
MEMORY_SETTINGS = ("eager", "ckpt")


def parse_setting(text: str) -> str:
    """The canonical name of a setting (levers in :data:`LEVERS` order), or an error."""
    text = text.strip().lower()
    if text in ("eager", ""):
        return "eager"
    tokens = {t.strip() for t in text.split("+") if t.strip()}
    unknown = tokens - set(LEVERS)
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown lever(s) {sorted(unknown)} in setting {text!r}: use 'eager' or levers "
            f"{', '.join(LEVERS)} joined by '+', e.g. 'cl+bf16'"
        )
    return "+".join(lever for lever in LEVERS if lever in tokens)


def parse_settings(text: str) -> list[str]:
    settings = [parse_setting(t) for t in text.split(",") if t.strip()]
    if not settings:
        raise argparse.ArgumentTypeError("give at least one setting, e.g. eager,cl")
    return list(dict.fromkeys(settings))


def levers(setting: str) -> set[str]:
    return set() if setting == "eager" else set(setting.split("+"))


def applies(spec: ModelSpec, setting: str) -> bool:
    """Whether ``spec`` can run ``setting`` (only attnunet models have the checkpointing and
    layout switches; ``nchw`` and ``cl`` exclude each other)."""
    chosen = levers(setting)
    if {"nchw", "cl"} <= chosen:
        return False
    return not chosen & {"ckpt", "nchw"} or spec.library == "attnunet"


# ---------------------------------------------------------------------------- workloads
@dataclass(frozen=True)
class Workload:
    key: str  # W1, W2, W3
    name: str  # unique row label
    kind: str  # "train", "infer" or "sliding"
    spatial_dims: int
    batch: int
    size: tuple[int, ...]
    channels: tuple[int, ...]
    repeats: int
    roi: int = 0
    sw_batch_size: int = 4


def workloads(smoke: bool) -> list[Workload]:
    """The workloads in running order; ``smoke`` shrinks them to seconds."""
    if smoke:
        ch, s2, s3, i2, vol, roi = SMOKE_CHANNELS, 32, 16, 64, (24, 24, 16), 16
        r2 = r3 = 1
    else:
        ch, s2, s3, i2, vol, roi = CHANNELS, 256, 96, 512, (160, 160, 96), 96
        r2, r3 = 5, 3
    return [
        Workload("W1", "W1 train 2D", "train", 2, 4, (s2, s2), ch, r2),
        Workload("W2", "W2 train 3D", "train", 3, 1, (s3, s3, s3), ch, r3),
        Workload("W3", "W3 infer 2D", "infer", 2, 1, (i2, i2), ch, r2),
        Workload("W3", "W3 infer 3D sliding", "sliding", 3, 1, vol, ch, r3, roi=roi),
    ]


def allow_recompiles(limit: int = 256) -> None:
    """Raise dynamo's per-function recompile limit (8 by default) to ``limit``.

    All attnunet models share one ``forward`` code object, so each compiled model (and
    each new input shape, such as a sliding window's last, smaller batch) adds an entry
    to that function's cache. Past the limit dynamo silently runs the function in eager
    mode, and the later ``compile`` rows of a run would time eager code.
    """
    config = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit", "accumulated_recompile_limit"):
        if hasattr(config, name):
            setattr(config, name, max(int(getattr(config, name)), limit))


def apply_layout_levers(model: nn.Module, x: torch.Tensor, setting: str) -> torch.Tensor:
    """Apply the ``cl``, ``nchw`` and ``ckpt`` levers of ``setting`` to ``model``; return
    the input ``x`` in the layout the setting asks for."""
    lever_set = levers(setting)
    if "cl" in lever_set:
        layout = channels_last_format(x.dim())
        model.to(memory_format=layout)
        x = x.contiguous(memory_format=layout)
    if "nchw" in lever_set:
        model.set_channels_last("off")  # type: ignore[operator]
    if "ckpt" in lever_set:
        model.set_checkpointing(True)  # type: ignore[operator]
    return x


def make_step(
    model: nn.Module, wl: Workload, device: torch.device, setting: str = "eager"
) -> Callable[[], None]:
    """One step of ``wl`` for ``model`` (moved to ``device``) under ``setting``, as a call
    without arguments."""
    model.to(device)
    lever_set = levers(setting)
    gen = torch.Generator().manual_seed(0)
    x = apply_layout_levers(model, torch.randn(wl.batch, 1, *wl.size, generator=gen), setting)
    x = x.to(device)
    net: Callable[[torch.Tensor], Any] = model
    if "compile" in lever_set:
        allow_recompiles()
        net = torch.compile(model)

    def autocast() -> Any:
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled="bf16" in lever_set)

    if wl.kind == "train":
        model.train()
        target = torch.randint(0, NUM_CLASSES, (wl.batch, 1, *wl.size), generator=gen).to(device)
        loss_fn = DiceCELoss()
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

        def train_step() -> None:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                logits = net(x)
            loss = loss_fn(logits.float(), target)
            loss.backward()
            optimizer.step()

        return train_step
    model.eval()
    if wl.kind == "infer":

        def infer_step() -> None:
            with torch.inference_mode(), autocast():
                net(x)

        return infer_step

    def sliding_step() -> None:
        with torch.inference_mode(), autocast():
            sliding_window_inference(
                x,
                net,
                wl.roi,
                overlap=0.25,
                blend="constant",
                sw_batch_size=wl.sw_batch_size,
            )

    return sliding_step


# ---------------------------------------------------------------------------- measuring
def count_flops(fn: Callable[[], Any]) -> int:
    """FLOPs of the convolutions and matrix products ``fn()`` runs (FlopCounterMode)."""
    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


def _synchronizer(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def timed(fn: Callable[[], Any], sync: Callable[[], None]) -> float:
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def minor_faults() -> int | None:
    """The process's minor page faults so far (``None`` without ``getrusage``)."""
    if resource is None:
        return None
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_minflt)


def timed_with_faults(fn: Callable[[], Any], sync: Callable[[], None]) -> tuple[float, int | None]:
    """Time ``fn()`` and count the minor page faults the process took meanwhile.

    A minor fault is the first touch of a page the process has mapped but the kernel has
    not yet backed: memory the C allocator took afresh from the system (often memory it
    had handed back when a tensor was freed); the kernel zeroes each page.

    Args:
        fn: The step.
        sync: Waits for the device (see :func:`timed`).

    Returns:
        The seconds and the faults (``None`` without ``getrusage``).
    """
    before = minor_faults()
    seconds = timed(fn, sync)
    after = minor_faults()
    return seconds, None if before is None or after is None else after - before


def matmul_peak(
    device: torch.device, n: int, repeats: int, dtype: torch.dtype = torch.float32
) -> dict[str, float]:
    """Median time and GFLOP/s of an ``n x n`` by ``n x n`` ``torch.mm`` in ``dtype``."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(n, n, generator=gen).to(device, dtype)
    b = torch.randn(n, n, generator=gen).to(device, dtype)
    sync = _synchronizer(device)
    for _ in range(2):
        torch.mm(a, b)
    seconds = statistics.median(timed(lambda: torch.mm(a, b), sync) for _ in range(repeats))
    return {"n": n, "seconds": seconds, "gflops": 2 * n**3 / seconds / 1e9}


def _rss_kib(field: str) -> int | None:
    """A ``VmRSS``/``VmHWM`` line of ``/proc/self/status`` in KiB, or None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_above_mib(peak_kib: int, base_kib: int) -> float:
    """How far a peak resident size rose above a baseline, in MiB, never below 0.

    The kernel raises its high-water mark lazily (not on every page it frees), so when the
    steps allocate next to nothing, ``VmHWM`` can read a few KiB below a ``VmRSS`` taken
    just after the reset; such a reading means "no rise" and is reported as 0."""
    return max(0.0, (peak_kib - base_kib) / 1024)


def _maxrss_kib() -> int:
    """``ru_maxrss`` in KiB (macOS reports bytes, Linux KiB)."""
    if resource is None:
        raise RuntimeError("no way to read the peak memory here: use --no-memory")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def child_memory(
    model_key: str, wl_name: str, setting: str, smoke: bool, steps: int
) -> dict[str, Any]:
    """Runs in a fresh process: the CPU peak memory of ``steps`` steps (see module docs)."""
    spec = next(s for s in model_specs() if s.key == model_key)
    wl = next(w for w in workloads(smoke) if w.name == wl_name)
    torch.manual_seed(0)
    model = spec.build(wl.spatial_dims, wl.channels)
    step = make_step(model, wl, torch.device("cpu"), setting)
    # Each baseline is read after the peak counter's reset, so a peak cannot fall below it.
    gc.collect()
    cold_reset = _reset_peak_rss()
    cold_base = _rss_kib("VmRSS")
    step()  # warm-up: creates the optimizer state and the convolution library's caches
    cold_peak = _rss_kib("VmHWM") if cold_reset else None
    gc.collect()
    reset = _reset_peak_rss()
    base = _rss_kib("VmRSS")
    if base is not None and reset:
        method = "VmHWM after clear_refs"
    elif base is not None:
        method = "ru_maxrss"  # right when the steps exceed every earlier peak
    else:  # no /proc: how far the steps raise the lifetime peak (a lower bound)
        base, method = _maxrss_kib(), "ru_maxrss increase"
    for _ in range(steps):
        step()
    peak = _rss_kib("VmHWM") if method.startswith("VmHWM") else _maxrss_kib()
    assert peak is not None
    result: dict[str, Any] = {
        "peak_mib": peak_above_mib(peak, base),
        "baseline_mib": base / 1024,
        "method": method,
    }
    if cold_peak is not None and cold_base is not None:
        result["cold_peak_mib"] = peak_above_mib(cold_peak, cold_base)
    return result


def child_env() -> dict[str, str]:
    """The environment of a memory child: glibc's mmap threshold fixed at 1 MiB.

    By default glibc raises its mmap threshold each time a large block is freed, after
    which tensors come from the heap and freed ones stay resident, so the peak RSS then
    depends on fragmentation and on what ran before. A fixed threshold (which also turns
    the adaptation off) serves every tensor of 1 MiB or more by ``mmap`` and returns it to
    the system when freed, so RSS follows live memory. It applies to every model alike."""
    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "1048576"}


def run_json_child(cmd: list[str], label: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run the child command ``cmd`` and return the JSON object it prints last.

    Args:
        cmd: The command (a benchmark script with its private child flag).
        label: What the child measures, for messages.
        env: The child's environment (``None``: this process's).

    Returns:
        The JSON object the child printed last.

    Raises:
        RuntimeError: The child failed (its exit status, command and the end of its
            stderr are in the message) or printed no JSON object.
    """
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(
            f"{label} failed with exit status {done.returncode} (a negative status is the "
            f"signal that killed it, -9 the out-of-memory killer's); command: "
            f"{shlex.join(cmd)}\n{done.stderr[-4000:]}"
        )
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        result = None
    if not isinstance(result, dict):
        raise RuntimeError(
            f"{label} printed no JSON object as its last line; command: {shlex.join(cmd)}\n"
            f"stdout: {done.stdout[-2000:]!r}"
        )
    return result


def run_child(
    flag: str,
    what: str,
    spec: ModelSpec,
    wl: Workload,
    setting: str,
    options: list[str],
    smoke: bool,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run this script as a child for one (model, workload, setting) pair under the
    private ``flag`` (:data:`MEMORY_CHILD_FLAG`, :data:`TIME_CHILD_FLAG`) with
    ``options``; ``what`` it measures ("memory", "timing") names it in messages. Returns
    and raises as :func:`run_json_child`."""
    cmd = [sys.executable, str(Path(__file__).resolve()), flag, f"{spec.key}:{wl.name}:{setting}"]
    cmd += options + (["--smoke"] if smoke else [])
    return run_json_child(cmd, f"{what} child for {spec.label} / {wl.name} / {setting}", env)


def memory_in_subprocess(
    spec: ModelSpec, wl: Workload, setting: str, smoke: bool, threads: int, steps: int
) -> dict[str, Any]:
    """:func:`child_memory` of one pair in a child process, with glibc's mmap threshold
    fixed (:func:`child_env`); see :func:`run_child` for the errors."""
    options = ["--threads", str(threads), "--memory-steps", str(steps)]
    return run_child(MEMORY_CHILD_FLAG, "memory", spec, wl, setting, options, smoke, child_env())


def memory_cuda(step: Callable[[], None], device: torch.device, steps: int) -> dict[str, Any]:
    """The same measure as the CPU children's, from the caching allocator's counters: the
    peak a step adds to what is allocated between steps (after a warm-up step)."""
    step()  # warm-up: the optimizer state exists from here on
    torch.cuda.synchronize(device)
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    for _ in range(steps):
        step()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {
        "peak_mib": (peak - base) / 2**20,
        "baseline_mib": base / 2**20,
        "method": "torch.cuda.max_memory_allocated",
    }


# ---------------------------------------------------------------------------- running
@dataclass(frozen=True)
class Options:
    """What a run measures and how, from the command line (see :func:`build_parser`)."""

    device: torch.device
    threads: int
    smoke: bool
    settings: tuple[str, ...]
    repeats: int | None  # None: the workload's default
    warmup: int | None  # None: 1
    memory: bool
    memory_settings: tuple[str, ...]
    memory_steps: int
    memory_jobs: int
    isolate: bool = False
    rounds: int = 3


Key = tuple[str, str]  # (model key, setting)


def measure_memory(
    wl: Workload,
    specs: list[ModelSpec],
    steps: dict[Key, Callable[[], None]],
    opt: Options,
) -> dict[Key, dict[str, Any]]:
    """Peak memory of each model's step under each memory setting: a subprocess each on
    CPU, in process on CUDA (settings the timing did not run are skipped there)."""
    pairs = [(s, st) for st in opt.memory_settings for s in specs if applies(s, st)]
    if opt.device.type == "cuda":
        return {
            (s.key, st): memory_cuda(steps[(s.key, st)], opt.device, opt.memory_steps)
            for s, st in pairs
            if (s.key, st) in steps
        }
    with ThreadPoolExecutor(max_workers=max(1, opt.memory_jobs)) as pool:
        futures = {
            (s.key, st): pool.submit(
                memory_in_subprocess, s, wl, st, opt.smoke, opt.threads, opt.memory_steps
            )
            for s, st in pairs
        }
        return {key: future.result() for key, future in futures.items()}


def _repeats(wl: Workload, opt: Options) -> int:
    """Timed steps per pair on ``wl``: ``--repeats``, else the workload's default."""
    return opt.repeats or wl.repeats


def _warmup(opt: Options) -> int:
    """Untimed steps per pair before the timed ones: ``--warmup``, else 1."""
    return 1 if opt.warmup is None else opt.warmup


def _measures_memory(wl: Workload, opt: Options) -> bool:
    """Whether the peak memory is measured on ``wl`` (only ``W2``, unless ``--no-memory``)."""
    return opt.memory and wl.key == "W2"


def _row(wl: Workload, spec: ModelSpec, setting: str, params: int, opt: Options) -> dict[str, Any]:
    """The row of a (model, setting) pair on ``wl`` before it is measured."""
    return {
        "workload": wl.key,
        "name": wl.name,
        "model": spec.label,
        "model_key": spec.key,
        "library": spec.library,
        "setting": setting,
        "params": params,
        "repeats": _repeats(wl, opt),
        "warmup": _warmup(opt),
    }


def workload_settings(wl: Workload, opt: Options) -> list[str]:
    """The settings timed on ``wl``: ``--settings``, then on ``W2`` the memory settings
    that are not among them (so that their rows carry both time and memory)."""
    settings = list(opt.settings)
    if _measures_memory(wl, opt):
        settings += [st for st in opt.memory_settings if st not in settings]
    return settings


def _params_and_flops(
    spec: ModelSpec, wl: Workload, device: torch.device, sync: Callable[[], None]
) -> tuple[int, int]:
    """The parameter count of ``spec``'s model and the FLOPs of one eager float32 step of
    ``wl``, counted on a probe model built for the purpose and dropped afterwards."""
    torch.manual_seed(0)
    probe = spec.build(wl.spatial_dims, wl.channels)
    params = sum(p.numel() for p in probe.parameters())
    sync()
    return params, count_flops(make_step(probe, wl, device))


def prepare_rows(
    wl: Workload, specs: list[ModelSpec], settings: list[str], opt: Options
) -> dict[Key, dict[str, Any]]:
    """The row so far (parameters and FLOPs) of every (model key, setting) pair whose
    setting applies to the model, in table order: model by model, each under its
    settings. FLOPs are counted on a probe model per model, dropped afterwards (and its
    CUDA memory handed back, so that later models and timing children have the card)."""
    sync = _synchronizer(opt.device)
    rows: dict[Key, dict[str, Any]] = {}
    for spec in specs:
        params, flops = _params_and_flops(spec, wl, opt.device, sync)
        if opt.device.type == "cuda":
            gc.collect()  # a probe in a reference cycle (MONAI's) is freed only here
            torch.cuda.empty_cache()
        for setting in settings:
            if applies(spec, setting):
                rows[(spec.key, setting)] = _row(wl, spec, setting, params, opt)
                rows[(spec.key, setting)]["flops"] = flops
    return rows


def build_steps(
    wl: Workload, specs: list[ModelSpec], keys: Sequence[Key], opt: Options
) -> dict[Key, Callable[[], None]]:
    """A fresh model's step for each (model key, setting) pair in ``keys``, in order."""
    by_key = {s.key: s for s in specs}
    steps: dict[Key, Callable[[], None]] = {}
    for model_key, setting in keys:
        torch.manual_seed(0)
        model = by_key[model_key].build(wl.spatial_dims, wl.channels)
        steps[(model_key, setting)] = make_step(model, wl, opt.device, setting)
    return steps


Timings = tuple[dict[Key, list[float]], dict[Key, list[int]]]
"""The times (s) of each pair's timed steps and the minor page faults of each, in the
order they were taken (no faults where ``getrusage`` is missing)."""


def time_in_turns(
    steps: dict[Key, Callable[[], None]], warmup: int, repeats: int, sync: Callable[[], None]
) -> Timings:
    """Run every step ``warmup`` times untimed, then time it ``repeats`` times.

    Within each repeat the pairs take turns, each repeat starting one pair later than
    the one before, so load on the machine affects all alike.

    Args:
        steps: The step of each pair, in table order.
        warmup: Untimed rounds first (they also compile the compiled settings).
        repeats: Timed rounds.
        sync: Waits for the device to finish (a no-op on CPU).

    Returns:
        The times of each pair in seconds and the page faults of each step.
    """
    keys = list(steps)
    for _ in range(warmup):  # compiles the compiled settings
        for key in keys:
            steps[key]()
    times: dict[Key, list[float]] = {key: [] for key in keys}
    faults: dict[Key, list[int]] = {key: [] for key in keys}
    for r in range(repeats):
        for i in range(len(keys)):
            key = keys[(r + i) % len(keys)]  # rotate who goes first
            seconds, count = timed_with_faults(steps[key], sync)
            times[key].append(seconds)
            if count is not None:
                faults[key].append(count)
    return times, faults


def child_times(
    model_key: str, wl_name: str, setting: str, opt: Options, repeats: int
) -> dict[str, Any]:
    """Runs in a fresh process (``--isolate``): build one model as a user would, run the
    warm-up steps, then time ``repeats`` steps and count their page faults.

    Args:
        model_key: The model's key (see :func:`model_specs`).
        wl_name: The workload's name.
        setting: The setting.
        opt: The options the parent passed on (device, warm-up, smoke sizes).
        repeats: Timed steps.

    Returns:
        ``times`` and ``minor_faults`` of the timed steps, and what the child ran
        (``pid``, ``pair``, ``smoke``, ``threads``, ``device``, ``warmup``,
        ``repeats``), which the parent checks against what it asked for.

    Raises:
        ValueError: An unknown model key or workload name.
    """
    specs = {s.key: s for s in model_specs()}
    wls = {w.name: w for w in workloads(opt.smoke)}
    if model_key not in specs or wl_name not in wls:
        raise ValueError(
            f"unknown model {model_key!r} or workload {wl_name!r}; known models "
            f"{sorted(specs)}, workloads {sorted(wls)}"
        )
    wl = wls[wl_name]
    torch.manual_seed(0)
    model = specs[model_key].build(wl.spatial_dims, wl.channels)
    step = make_step(model, wl, opt.device, setting)
    key = (model_key, setting)
    times, faults = time_in_turns({key: step}, _warmup(opt), repeats, _synchronizer(opt.device))
    return {
        "times": times[key],
        "minor_faults": faults[key],
        "pid": os.getpid(),
        "pair": f"{model_key}:{wl_name}:{setting}",
        "smoke": opt.smoke,
        "threads": torch.get_num_threads(),
        "device": str(opt.device),
        "warmup": _warmup(opt),
        "repeats": repeats,
    }


def times_in_subprocess(
    spec: ModelSpec, wl: Workload, setting: str, opt: Options
) -> dict[str, Any]:
    """:func:`child_times` of one pair in a child process (the same script, a private
    flag), with this process's environment: the process a user trains one model in.

    Raises:
        RuntimeError: The child failed, or ran another pair, sizes, threads, device,
            warm-up or repeats than this run records.
    """
    options = ["--threads", str(opt.threads), "--device", str(opt.device)]
    options += ["--warmup", str(_warmup(opt)), "--repeats", str(_repeats(wl, opt))]
    result = run_child(TIME_CHILD_FLAG, "timing", spec, wl, setting, options, opt.smoke)
    asked = {
        "pair": f"{spec.key}:{wl.name}:{setting}",
        "smoke": opt.smoke,
        "threads": opt.threads,
        "device": str(opt.device),
        "warmup": _warmup(opt),
        "repeats": _repeats(wl, opt),
    }
    ran = {name: result.get(name) for name in asked}
    if ran != asked:
        raise RuntimeError(
            f"the timing child for {spec.label} / {wl.name} / {setting} ran with {ran}, "
            f"not {asked}: its times would not be the ones this run reports"
        )
    return result


def round_order(keys: Sequence[Key], rounds: int, r: int) -> list[Key]:
    """The order of the pairs in round ``r`` of ``rounds``: the table order rotated by
    ``r / rounds`` of its length, so that each pair runs at another place in the round
    (early or late, when the machine may be busier) in every round, up to ``len(keys)``
    rounds.

    Examples:
        >>> keys = [("a", "x"), ("b", "x"), ("c", "x"), ("d", "x")]
        >>> [k[0] for k in round_order(keys, 2, 0)], [k[0] for k in round_order(keys, 2, 1)]
        (['a', 'b', 'c', 'd'], ['c', 'd', 'a', 'b'])
    """
    start = r * len(keys) // rounds
    return list(keys[start:]) + list(keys[:start])


def time_in_processes(
    wl: Workload, specs: list[ModelSpec], keys: list[Key], opt: Options
) -> Timings:
    """``--isolate``: time each pair in a fresh process per round (:func:`child_times`),
    ``opt.rounds`` rounds in the orders of :func:`round_order`.

    In one long process every model inherits the C allocator's state that the models
    before it left: memory they freed may still be mapped, so a later model's tensors
    reuse it instead of taking page faults. A user's training process holds one model,
    and here each does too.

    Args:
        wl: The workload.
        specs: The models.
        keys: The (model key, setting) pairs, in table order.
        opt: The run's options (``rounds`` among them).

    Returns:
        Each pair's times and page faults, all rounds pooled.

    Raises:
        RuntimeError: A child failed or ran otherwise than asked, or two rounds of a
            pair ran in the same process.
    """
    by_key = {s.key: s for s in specs}
    times: dict[Key, list[float]] = {key: [] for key in keys}
    faults: dict[Key, list[int]] = {key: [] for key in keys}
    pids: dict[Key, set[int]] = {key: set() for key in keys}
    for r in range(opt.rounds):
        for key in round_order(keys, opt.rounds, r):
            result = times_in_subprocess(by_key[key[0]], wl, key[1], opt)
            if result["pid"] == os.getpid() or result["pid"] in pids[key]:
                raise RuntimeError(f"{key} was timed twice in process {result['pid']}")
            pids[key].add(result["pid"])
            times[key] += result["times"]
            faults[key] += result["minor_faults"]
    return times, faults


def _add_times(rows: dict[Key, dict[str, Any]], timings: Timings, opt: Options) -> None:
    """Give each row its median time, all its times, its achieved GFLOP/s, its median
    page faults per step and how its steps ran (one shared process or one per round)."""
    times, faults = timings
    for key, row in rows.items():
        row["seconds"] = statistics.median(times[key])
        row["seconds_all"] = times[key]
        row["gflops_per_s"] = row["flops"] / row["seconds"] / 1e9
        if faults[key]:
            row["minor_faults_per_step"] = statistics.median(faults[key])
        row["process"] = "isolated" if opt.isolate else "shared"
        if opt.isolate:
            row["rounds"] = opt.rounds


def _add_speed_ratios(rows: dict[Key, dict[str, Any]]) -> None:
    """Give each row its ratios to the model's own eager row and to MONAI's AttentionUnet
    (eager, and under the same setting), where those rows exist."""
    for (model_key, setting), row in rows.items():
        own = rows.get((model_key, "eager"))
        if own is not None:
            row["speed_vs_own_eager"] = own["seconds"] / row["seconds"]
        shipped = rows.get((REFERENCE, "eager"))
        if shipped is not None:
            row["speed_vs_monai_attention_unet"] = shipped["seconds"] / row["seconds"]
            row["gflops_vs_monai_attention_unet"] = row["gflops_per_s"] / shipped["gflops_per_s"]
        same = rows.get((REFERENCE, setting))
        if same is not None:
            row["gflops_vs_monai_same_setting"] = row["gflops_per_s"] / same["gflops_per_s"]
        # equal FLOPs: the time ratio to PlainConvUNet under the same setting (its eager
        # row for nchw, which is how PlainConvUNet runs as shipped)
        plain = rows.get((PLAIN, "eager" if setting == "nchw" else setting))
        if model_key == "unet_nnunet_config" and plain is not None:
            row["speed_vs_plain_conv_unet"] = plain["seconds"] / row["seconds"]


def _add_memory(
    wl: Workload,
    specs: list[ModelSpec],
    steps: dict[Key, Callable[[], None]],
    rows: dict[Key, dict[str, Any]],
    opt: Options,
) -> None:
    """Measure the peak memory of the memory settings (:func:`measure_memory`) and give
    their rows the peak, the method, the cold peak and the ratio to the model's eager peak."""
    for key, result in measure_memory(wl, specs, steps, opt).items():
        row = rows[key]
        row["peak_memory_mib"] = result["peak_mib"]
        row["memory_method"] = result["method"]
        if "cold_peak_mib" in result:
            row["cold_peak_memory_mib"] = result["cold_peak_mib"]
    for (model_key, _setting), row in rows.items():
        own = rows.get((model_key, "eager"), {}).get("peak_memory_mib")
        if own and "peak_memory_mib" in row:
            row["memory_vs_own_eager"] = row["peak_memory_mib"] / own


def run_workload(wl: Workload, specs: list[ModelSpec], opt: Options) -> list[dict[str, Any]]:
    """Time every model under every setting on ``wl``, taking turns; one row per pair.

    FLOPs are counted once per model, on an eager float32 step: the levers change neither
    the convolutions nor their shapes, and checkpointing's recomputation is not useful work,
    so every setting of a model is credited with the same FLOPs. On ``W2`` the memory
    settings are timed as well (their rows carry both). With ``--isolate`` each pair is
    timed in processes of its own (:func:`time_in_processes`), and this process builds
    models only afterwards, for CUDA's memory measurement."""
    rows = prepare_rows(wl, specs, workload_settings(wl, opt), opt)
    if opt.isolate:
        gc.collect()
        if opt.device.type == "cuda":
            torch.cuda.empty_cache()  # the children get the whole card
        timings = time_in_processes(wl, specs, list(rows), opt)
        cuda_memory = opt.device.type == "cuda" and _measures_memory(wl, opt)
        memory_keys = [k for k in rows if k[1] in opt.memory_settings] if cuda_memory else []
        steps = build_steps(wl, specs, memory_keys, opt)
    else:
        steps = build_steps(wl, specs, list(rows), opt)
        timings = time_in_turns(steps, _warmup(opt), _repeats(wl, opt), _synchronizer(opt.device))
    _add_times(rows, timings, opt)
    _add_speed_ratios(rows)
    if _measures_memory(wl, opt):
        _add_memory(wl, specs, steps, rows, opt)
    del steps
    gc.collect()
    return list(rows.values())


def machine(device: torch.device) -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "device": str(device),
    }
    try:
        info["monai"] = importlib.metadata.version("monai")
    except importlib.metadata.PackageNotFoundError:
        info["monai"] = None
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cudnn_allow_tf32"] = torch.backends.cudnn.allow_tf32
        info["matmul_allow_tf32"] = torch.backends.cuda.matmul.allow_tf32
    info.update(memory_environment())
    return info


RUN_VARIABLES = (
    "LD_PRELOAD",
    "GLIBC_TUNABLES",
    "MALLOC_CONF",
    "PYTORCH_CUDA_ALLOC_CONF",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
)
"""Environment variables (besides any ``MALLOC_*``, ``TCMALLOC_*``, ``JE_*`` and ``KMP_*``)
that change the allocators or the threads of a run."""
RUN_VARIABLE_PREFIXES = ("MALLOC_", "TCMALLOC_", "JE_", "KMP_")


def memory_environment() -> dict[str, Any]:
    """What decides how a step's memory comes and goes, besides the models: the C
    library and its version, transparent huge pages, and the environment variables that
    tune the allocators or the threads (:data:`RUN_VARIABLES`), which the timing children
    inherit. A run from a shell that sets any of them times other page faults.

    Examples:
        >>> sorted(memory_environment())
        ['allocator_environment', 'libc', 'transparent_hugepage']
    """
    libc, version = platform.libc_ver()
    try:
        thp: str | None = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text().strip()
    except OSError:
        thp = None
    names = sorted(
        n for n in os.environ if n.startswith(RUN_VARIABLE_PREFIXES) or n in RUN_VARIABLES
    )
    return {
        "libc": f"{libc} {version}".strip() or None,
        "transparent_hugepage": thp,
        "allocator_environment": {n: os.environ[n] for n in names},
    }


def memory_method(device: torch.device, rows: list[dict[str, Any]]) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated minus memory allocated before the steps"
    methods = {row["memory_method"] for row in rows if "memory_method" in row}
    if methods - {"VmHWM after clear_refs"}:
        return f"subprocess per model: {', '.join(sorted(methods))} (see the module docs)"
    return (
        "subprocess per model: VmHWM (reset via /proc/self/clear_refs) minus VmRSS between "
        "steps (model, optimizer state, data), after a warm-up step"
    )


def _fmt_x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def markdown(result: dict[str, Any]) -> str:
    """The results as a Markdown table (the README's)."""
    peak = result["matmul_peak_gflops"]
    lines = [
        "| workload | model | setting | params (M) | GFLOP/step | median s | GFLOP/s"
        " | % of mm peak | GFLOP/s vs MONAI AU shipped | vs MONAI AU same setting"
        " | peak MiB |",
        "|" + "---|" * 11,
    ]
    for r in result["rows"]:
        mem = r.get("peak_memory_mib")
        lines.append(
            f"| {r['name']} | {r['model']} | {r['setting']} | {r['params'] / 1e6:.3f} | "
            f"{r['flops'] / 1e9:.2f} | {r['seconds']:.4f} | {r['gflops_per_s']:.1f} | "
            f"{100 * r['gflops_per_s'] / peak:.1f}% | "
            f"{_fmt_x(r.get('gflops_vs_monai_attention_unet'))} | "
            f"{_fmt_x(r.get('gflops_vs_monai_same_setting'))} | "
            f"{'' if mem is None else f'{mem:.0f}'} |"
        )
    return "\n".join(lines)


def parse_workloads(text: str) -> list[str]:
    keys = [k.strip().upper() for k in text.split(",") if k.strip()]
    for k in keys:
        if k not in ("W1", "W2", "W3"):
            raise argparse.ArgumentTypeError(f"unknown workload {k!r}: use W1, W2, W3")
    return keys


def _positive(text: str) -> int:
    """``--rounds``: an int of at least 1 (argparse reports the error)."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The command line of the script (and, hidden, of its memory and timing children)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workloads", type=parse_workloads, default=["W1", "W2", "W3"])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's own)")
    parser.add_argument(
        "--repeats", type=int, help="timed steps per model (default 5 for 2D, 3 for 3D)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        help="untimed steps per model and setting before the timed ones (default 1)",
    )
    parser.add_argument(
        "--models", help="comma-separated model keys to run (default: all), e.g. unet,monai_unet"
    )
    parser.add_argument(
        "--settings",
        type=parse_settings,
        default=list(DEFAULT_SETTINGS),
        help=f"comma-separated settings to time: 'eager' or levers {', '.join(LEVERS)} "
        f"joined by '+' (default: {','.join(DEFAULT_SETTINGS)})",
    )
    parser.add_argument(
        "--memory-settings",
        type=parse_settings,
        default=list(MEMORY_SETTINGS),
        help="settings whose W2 peak memory is measured (and timed); default "
        f"{','.join(MEMORY_SETTINGS)}",
    )
    parser.add_argument("--memory-steps", type=int, default=2, help="steps per W2 memory run")
    parser.add_argument("--no-memory", action="store_true", help="skip the W2 peak memory")
    parser.add_argument(
        "--memory-jobs", type=int, default=1, help="memory subprocesses run at once (CPU)"
    )
    parser.add_argument(
        "--isolate",
        action="store_true",
        help="time each model and setting in a fresh process per round, as a user runs one "
        "model, instead of all in this one",
    )
    parser.add_argument(
        "--rounds",
        type=_positive,
        help="with --isolate: processes per model and setting (default 3)",
    )
    parser.add_argument("--matmul-n", type=int, help="matmul size (default 2048; 256 in smoke)")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: finishes in seconds")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(MEMORY_CHILD_FLAG, dest="memory_child", help=argparse.SUPPRESS)
    parser.add_argument(TIME_CHILD_FLAG, dest="time_child", help=argparse.SUPPRESS)
    return parser


def _refuse_existing(path: Path | None) -> None:
    """Exit if the results file ``path`` exists already (it is never overwritten)."""
    if path and path.exists():
        sys.exit(f"{path} exists; choose another name (nothing was overwritten)")


def select_models(models: str | None) -> list[ModelSpec]:
    """The models named by ``--models`` (comma-separated keys; all when empty), in the
    order of :func:`model_specs`; exits naming the known keys if one is unknown."""
    specs = model_specs()
    if not models:
        return specs
    wanted = {k.strip() for k in models.split(",") if k.strip()}
    unknown = wanted - {s.key for s in specs}
    if unknown:
        sys.exit(f"unknown model key(s) {sorted(unknown)}; known: {[s.key for s in specs]}")
    return [s for s in specs if s.key in wanted]


def make_options(args: argparse.Namespace, device: torch.device) -> Options:
    """The options of a run, from the parsed command line."""
    return Options(
        device=device,
        threads=torch.get_num_threads(),
        smoke=args.smoke,
        settings=tuple(args.settings),
        repeats=args.repeats,
        warmup=args.warmup,
        memory=not args.no_memory,
        memory_settings=tuple(args.memory_settings),
        memory_steps=args.memory_steps,
        memory_jobs=args.memory_jobs,
        isolate=args.isolate,
        rounds=args.rounds or 3,
    )


def run_workloads(
    keys: Sequence[str], specs: list[ModelSpec], opt: Options
) -> list[dict[str, Any]]:
    """The rows of every workload whose key is in ``keys``, in running order; each
    workload's duration goes to stderr."""
    rows: list[dict[str, Any]] = []
    for wl in workloads(opt.smoke):
        if wl.key not in keys:
            continue
        t0 = time.perf_counter()
        rows += run_workload(wl, specs, opt)
        print(f"{wl.name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return rows


def _add_peak_fractions(rows: list[dict[str, Any]], peak: float, bf16_peak: float) -> None:
    """Give each row its fraction of the float32 matmul peak, and bf16 rows their fraction
    of the bfloat16 one (both in GFLOP/s)."""
    for row in rows:
        row["fraction_of_matmul_peak"] = row["gflops_per_s"] / peak
        if "bf16" in levers(row["setting"]):
            row["fraction_of_bf16_matmul_peak"] = row["gflops_per_s"] / bf16_peak


LEVER_NOTES = {
    "cl": "channels-last weights and input",
    "bf16": "forward under torch.autocast(dtype=torch.bfloat16), loss in float32",
    "ckpt": "model.set_checkpointing(True) (attnunet only)",
    "compile": "torch.compile(model), compiled in the warm-up",
}
"""What each lever does, as the JSON's ``config.levers`` says it."""


def run_config(args: argparse.Namespace) -> dict[str, Any]:
    """The JSON's ``config``: the workloads run and the options of the command line."""
    return {
        "workloads": [asdict(w) for w in workloads(args.smoke) if w.key in args.workloads],
        "settings": args.settings,
        "memory_settings": args.memory_settings,
        "levers": dict(LEVER_NOTES),
        "repeats": args.repeats,
        "warmup": args.warmup,
        "memory_steps": args.memory_steps,
        "memory_jobs": args.memory_jobs,
        "isolate": args.isolate,
        "rounds": (args.rounds or 3) if args.isolate else None,
        "smoke": args.smoke,
        "monai_unet_num_res_units": MONAI_RES_UNITS,
        "sliding_window": {"overlap": 0.25, "blend": "constant"},
    }


def notes(result: dict[str, Any], n: int, mm_repeats: int) -> str:
    """The paragraph printed under the table: the matmul peaks, what the ratio columns
    mean, how the peak memory was measured (when it was) and the total time."""
    mm = result["matmul"]
    return (
        f"\nmatmul peak: {result['matmul_peak_gflops']:.1f} GFLOP/s (float32 {n}x{n} torch.mm,"
        f" median of {mm_repeats}; before {mm['before']['gflops']:.1f}, after"
        f" {mm['after']['gflops']:.1f}; bfloat16 {mm['bfloat16']['gflops']:.1f}, which the"
        f" JSON uses for bf16 rows). GFLOP/s vs MONAI AU shipped: the row's GFLOP/s divided"
        f" by those of MONAI's AttentionUnet in the eager setting (float32, default layout,"
        f" as shipped); same setting: divided by those of MONAI's AttentionUnet under the"
        f" same levers. Steps timed "
        + (
            f"in a fresh process per model and setting, {result['config']['rounds']} rounds"
            if result["config"].get("isolate")
            else "in this one process, the models taking turns"
        )
        + (
            "; the JSON has each row's minor page faults per step."
            if any("minor_faults_per_step" in r for r in result["rows"])
            else "."
        )
        + (
            f" Peak MiB: W2 step, {result['memory_method']}."
            if any("peak_memory_mib" in r for r in result["rows"])
            else ""
        )
        + f" Total {result['total_seconds']:.0f} s."
    )


def run_benchmark(
    args: argparse.Namespace, specs: list[ModelSpec], device: torch.device
) -> dict[str, Any]:
    """Measure the matmul peak, run the workloads, measure the peak again, print the table
    and its notes, and return the results (the JSON's content).

    Args:
        args: The parsed command line.
        specs: The models to run (see :func:`select_models`).
        device: Where to run them.

    Returns:
        The machine, the configuration, the matmul peaks, the method of the memory
        measurement, the total time and the rows.
    """
    n = args.matmul_n or (256 if args.smoke else 2048)
    mm_repeats = 3 if args.smoke else 7
    opt = make_options(args, device)
    info = machine(device)
    print(
        f"{info['cpu']}, {opt.threads} threads, torch {info['torch']}, MONAI {info['monai']}, "
        f"device {device}{', ' + info['gpu'] if 'gpu' in info else ''}"
        f"{' (smoke sizes)' if args.smoke else ''}\n",
        flush=True,
    )
    started = time.perf_counter()
    started_utc = datetime.now(timezone.utc).isoformat(timespec="seconds")
    mm_before = matmul_peak(device, n, mm_repeats)
    rows = run_workloads(args.workloads, specs, opt)
    mm_after = matmul_peak(device, n, mm_repeats)
    peak = max(mm_before["gflops"], mm_after["gflops"])
    bf16_mm = matmul_peak(device, n, mm_repeats, torch.bfloat16)
    _add_peak_fractions(rows, peak, bf16_mm["gflops"])
    result = {
        "machine": info,
        "started_utc": started_utc,
        "config": run_config(args),
        "matmul": {"before": mm_before, "after": mm_after, "bfloat16": bf16_mm},
        "matmul_peak_gflops": peak,
        "flops_counter": "torch.utils.flop_counter.FlopCounterMode (convolutions, matmuls)",
        "memory_method": memory_method(device, rows),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    print(markdown(result))
    print(notes(result, n, mm_repeats))
    return result


def main(argv: Sequence[str] | None = None) -> None:
    """Run the benchmark, or one memory or timing child, as the command line ``argv`` says.

    Args:
        argv: The arguments (default: ``sys.argv[1:]``).
    """
    args = build_parser().parse_args(argv)
    warnings.filterwarnings("ignore")
    if args.threads:
        torch.set_num_threads(args.threads)

    if args.memory_child:
        model_key, wl_name, setting = args.memory_child.split(":", 2)
        print(json.dumps(child_memory(model_key, wl_name, setting, args.smoke, args.memory_steps)))
        return
    if args.time_child:
        model_key, wl_name, setting = args.time_child.split(":", 2)
        opt = make_options(args, torch.device(args.device))
        repeats = next((_repeats(w, opt) for w in workloads(args.smoke) if w.name == wl_name), 1)
        print(json.dumps(child_times(model_key, wl_name, setting, opt, repeats)))
        return
    if args.rounds is not None and not args.isolate:
        sys.exit("--rounds counts the processes of --isolate; add --isolate or drop --rounds")

    _refuse_existing(args.json)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: CUDA is not available")
    device = torch.device(args.device)
    result = run_benchmark(args, select_models(args.models), device)
    if args.json:
        _refuse_existing(args.json)
        args.json.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
