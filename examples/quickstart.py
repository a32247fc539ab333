"""Quickstart: train the four U-Nets of the zoo briefly on the bundled nuclei image.

For each model this script builds a small 2D version with ``attnunet.create_model``,
trains it with a fixed seed on random crops of the left three quarters of the bundled
``nuclei2d`` sample (Adam, binary cross-entropy with logits + soft Dice), then segments
the right quarter (a 512 x 128 strip, in one forward pass) and reports its Dice score.
It runs on the CPU in well under two minutes.

Usage::

    python examples/quickstart.py
    python examples/quickstart.py --steps 100 --models unet,ag_res_unet

It exits with status 1 and a one-line message on stderr if anything fails (status 2 for
invalid options).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import attnunet
from attnunet.data import Sample, load_sample, random_crops
from attnunet.metrics import dice_score

MODELS = ("unet", "ag_unet", "res_unet", "ag_res_unet")
CHANNELS = (8, 16, 32, 64)
CROP = (64, 64)
BATCH = 8
LEARNING_RATE = 1e-2
SEED = 0
MIN_STEPS_FOR_CHECK = 10  # below this, first and last losses are too noisy to compare


@dataclass
class Result:
    model: str
    parameters: int
    first_loss: float
    last_loss: float
    val_dice: float
    seconds: float


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """``1 - soft Dice`` of ``sigmoid(logits)`` and ``target``, pooled over the batch."""
    prob = torch.sigmoid(logits)
    inter = (prob * target).sum()
    return 1.0 - (2.0 * inter + eps) / (prob.sum() + target.sum() + eps)


def train_and_evaluate(name: str, train: Sample, val: Sample, steps: int) -> Result:
    """Train ``name`` for ``steps`` steps on crops of ``train``; score it on ``val``."""
    start = time.perf_counter()
    torch.manual_seed(SEED)
    generator = torch.Generator().manual_seed(SEED)
    # U-Nets are built from widths; encoder models (RAUNet) take a small encoder instead
    size = {"channels": CHANNELS}
    if name in attnunet.list_models("raunet*"):
        size = {"encoder": "resnet18"}
    model = attnunet.create_model(name, spatial_dims=2, in_channels=1, num_classes=1, **size)
    optimizer = torch.optim.Adam(model.parameters(), lr=LEARNING_RATE)
    losses = []
    model.train()
    for _ in range(steps):
        images, masks = random_crops(train.image, train.mask, CROP, BATCH, generator)
        logits = model(images)
        loss = F.binary_cross_entropy_with_logits(logits, masks) + soft_dice_loss(logits, masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())

    # The whole validation strip at once: the model pads and crops any size itself.
    model.eval()
    image = torch.from_numpy(val.image.copy())[None, None]
    target = torch.from_numpy(val.mask.copy())[None]
    with torch.no_grad():
        pred = model(image)[:, 0] > 0
    dice = dice_score(pred, target, spatial_dims=2).item()
    # Average the first and last few losses: one batch of crops is a noisy estimate.
    k = max(1, min(5, steps // 4))
    return Result(
        model=name,
        parameters=sum(p.numel() for p in model.parameters()),
        first_loss=sum(losses[:k]) / k,
        last_loss=sum(losses[-k:]) / k,
        val_dice=dice,
        seconds=time.perf_counter() - start,
    )


def format_table(results: list[Result]) -> str:
    width = max([12, *(len(r.model) for r in results)])
    header = f"{'model':<{width}} {'parameters':>10} {'first loss':>10} {'last loss':>10} "
    header += f"{'val Dice':>8} {'seconds':>7}"
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(
            f"{r.model:<{width}} {r.parameters:>10,} {r.first_loss:>10.3f} "
            f"{r.last_loss:>10.3f} {r.val_dice:>8.3f} {r.seconds:>7.1f}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(
            "Train small 2D U-Nets of the attnunet zoo on the bundled nuclei image and "
            "compare their validation Dice. Each model is seeded, so runs repeat."
        ),
        epilog=(
            f"Training uses random {CROP[0]}x{CROP[1]} crops (batch {BATCH}) of the left "
            "three quarters of the image; validation is the right quarter (512x128)."
        ),
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=40,
        metavar="N",
        help=(
            "optimisation steps per model (default: %(default)s); from "
            f"{MIN_STEPS_FOR_CHECK} steps on, a loss that does not go down is an error"
        ),
    )
    parser.add_argument(
        "--models",
        default=",".join(MODELS),
        metavar="A,B",
        help="comma-separated registry names to train (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not args.models:
        parser.error("--models needs at least one model name")
    known = attnunet.list_models(spatial_dims=2, presets=False)
    for name in args.models:
        if name not in known:
            parser.error(f"unknown model {name!r}; choose from {', '.join(known)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sample = load_sample("nuclei2d")
    train, val = sample.split()
    print(f"data: {sample.name} {sample.image.shape}, {sample.attribution}")
    print(f"train {train.image.shape}, val {val.image.shape}; {args.steps} steps per model\n")

    results = []
    for name in args.models:
        result = train_and_evaluate(name, train, val, args.steps)
        print(
            f"{name:<12} loss {result.first_loss:.3f} -> {result.last_loss:.3f}, "
            f"val Dice {result.val_dice:.3f} ({result.seconds:.1f} s)"
        )
        if args.steps >= MIN_STEPS_FOR_CHECK and not result.last_loss < result.first_loss:
            raise RuntimeError(
                f"{name}: the training loss did not go down "
                f"({result.first_loss:.3f} -> {result.last_loss:.3f})"
            )
        results.append(result)

    print()
    print(format_table(results))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as error:
        print(f"quickstart failed: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(1)
