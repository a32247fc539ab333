"""Small PNG figures drawn with Pillow (no plotting library needed): training curves and
attention maps over the input."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["attention_figure", "line_chart"]

COLOURS = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
]


def _nice(value: float) -> str:
    if value == 0 or not math.isfinite(value):
        return f"{value:g}"
    return f"{value:.3g}"


def line_chart(
    panels: Sequence[tuple[str, Mapping[str, Sequence[float]]]],
    path: Path,
    xlabel: str = "epoch",
) -> Path:
    """Side-by-side line charts, one per ``(title, {series name: y values})`` panel, with x
    running 1, 2, ...; one legend for all panels. Non-finite values are skipped."""
    width, height, margin = 420, 300, 46
    names = list(dict.fromkeys(n for _, series in panels for n in series))
    legend_h = 16 * len(names) + 10
    img = Image.new("RGB", (width * len(panels), height + legend_h), "white")
    draw = ImageDraw.Draw(img)
    for p, (title, series) in enumerate(panels):
        x0 = p * width
        left, right, top, bottom = x0 + margin + 10, x0 + width - 12, 24, height - margin
        values = [v for ys in series.values() for v in ys if math.isfinite(v)]
        longest = max((len(ys) for ys in series.values()), default=1)
        lo, hi = (min(values), max(values)) if values else (0.0, 1.0)
        if hi - lo < 1e-12:
            lo, hi = lo - 0.5, hi + 0.5
        draw.text((x0 + width // 2 - 4 * len(title), 6), title, fill="black")
        draw.rectangle([left, top, right, bottom], outline="black")
        for frac in (0.0, 0.5, 1.0):
            y = bottom - frac * (bottom - top)
            draw.line([left - 4, y, left, y], fill="black")
            draw.text((x0 + 4, y - 6), _nice(lo + frac * (hi - lo)), fill="black")
        for frac in (0.0, 1.0):
            x = left + frac * (right - left)
            draw.text((x - 4, bottom + 6), str(1 if frac == 0 else longest), fill="black")
        draw.text(((left + right) // 2 - 3 * len(xlabel), bottom + 22), xlabel, fill="black")

        for name, ys in series.items():
            colour = COLOURS[names.index(name) % len(COLOURS)]
            points = [
                (
                    left + (i / max(1, longest - 1)) * (right - left),
                    bottom - (v - lo) / (hi - lo) * (bottom - top),
                )
                for i, v in enumerate(ys)
                if math.isfinite(v)
            ]
            if len(points) > 1:
                draw.line(points, fill=colour, width=2)
            for x, y in points:
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    for i, name in enumerate(names):
        y = height + 6 + 16 * i
        colour = COLOURS[i % len(COLOURS)]
        draw.line([20, y + 6, 44, y + 6], fill=colour, width=3)
        draw.text((52, y), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _heat(values: np.ndarray) -> np.ndarray:
    """A blue-to-red colour map for values in [0, 1]: (H, W) -> (H, W, 3) uint8."""
    v = np.clip(values, 0.0, 1.0)
    r = np.clip(1.5 - np.abs(4 * v - 3), 0, 1)
    g = np.clip(1.5 - np.abs(4 * v - 2), 0, 1)
    b = np.clip(1.5 - np.abs(4 * v - 1), 0, 1)
    return (np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


def _gray(image: np.ndarray) -> np.ndarray:
    lo, hi = float(image.min()), float(image.max())
    scaled = (image - lo) / (hi - lo) if hi > lo else np.zeros_like(image)
    return (np.repeat(scaled[..., None], 3, axis=-1) * 255).astype(np.uint8)


def attention_figure(
    image: np.ndarray,
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    path: Path,
    alpha: float = 0.5,
    scale: int = 2,
) -> Path:
    """The input image, then each attention map (resized to the image) blended over it.

    Args:
        image: 2D image ``(H, W)``.
        maps: 2D maps, any size; each is resized to ``(H, W)`` (nearest) and shown in
            ``[0, 1]``.
        titles: one title per panel (the first for the image).
        path: the PNG to write.
        alpha: opacity of the maps.
        scale: integer upscaling of the panels for legibility.
    """
    h, w = image.shape
    base = _gray(image)
    panels = [base]
    for m in maps:
        m = np.asarray(m, dtype=np.float32)
        rows = (np.arange(h) * m.shape[0] / h).astype(int)
        cols = (np.arange(w) * m.shape[1] / w).astype(int)
        resized = m[rows][:, cols]
        blended = (1 - alpha) * base + alpha * _heat(resized)
        panels.append(blended.astype(np.uint8))
    title_h = 18
    out = Image.new("RGB", (len(panels) * (w * scale + 6), h * scale + title_h), "white")
    draw = ImageDraw.Draw(out)
    for i, (panel, title) in enumerate(zip(panels, titles, strict=False)):
        x = i * (w * scale + 6)
        tile = Image.fromarray(panel).resize((w * scale, h * scale), Image.Resampling.NEAREST)
        out.paste(tile, (x, title_h))
        draw.text((x + 2, 2), title, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path
