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


_TITLE_H = 18
"""Height of the row of panel titles (and of the heading row), in pixels."""
_GAP = 6
"""The white gap after each panel, in pixels."""
_BAR_COLUMN = 60
"""Width of the colour-bar column at the right of the panels, in pixels."""
_BAR_WIDTH = 12
"""Width of the colour bar itself; it starts :data:`_GAP` pixels into its column."""


def _colour_bar(out: Image.Image, x: int, top: int, height: int) -> None:
    """Draw the vertical colour bar of :func:`_heat` into the column starting at ``x``:
    1 in the top row, 0 in the bottom row, labelled ``1``, ``0.5``, ``0`` and, above it in
    the title row, ``attention``."""
    values = np.linspace(1.0, 0.0, height)[:, None].repeat(_BAR_WIDTH, axis=1)
    left = x + _GAP
    out.paste(Image.fromarray(_heat(values)), (left, top))
    draw = ImageDraw.Draw(out)
    right = left + _BAR_WIDTH
    draw.rectangle([left - 1, top - 1, right, top + height], outline="black")
    for frac, label in ((1.0, "1"), (0.5, "0.5"), (0.0, "0")):
        y = top + round((1.0 - frac) * (height - 1))
        draw.line([right, y, right + 3, y], fill="black")
        text_y = min(max(y - 6, top - 2), top + height - 10)
        draw.text((right + 5, text_y), label, fill="black")
    draw.text((x + 2, top - _TITLE_H + 2), "attention", fill="black")


def attention_figure(
    image: np.ndarray,
    maps: Sequence[np.ndarray],
    titles: Sequence[str],
    path: Path,
    alpha: float = 0.5,
    scale: int = 2,
    *,
    colour_bar: bool = True,
    heading: str = "",
) -> Path:
    """The input image, then each attention map (resized to the image) blended over it.

    Layout, in pixels, for an ``(H, W)`` image and ``n`` maps: an optional heading row
    (18, only when ``heading`` is given), a title row (18), then ``n + 1`` panels of
    ``H * scale`` by ``W * scale``, each followed by a white gap of 6; with ``colour_bar``
    a 60 wide column follows, holding a 12 wide bar of the maps' colours (blue 0 in the
    bottom row to red 1 in the top row, 6 from the column's left edge, as tall as the
    panels), ticks labelled ``0``, ``0.5`` and ``1``, and the title ``attention``.

    Args:
        image: 2D image ``(H, W)``; shown in gray, scaled from its minimum to its maximum.
        maps: 2D maps, any size; each is resized to ``(H, W)`` (nearest) and shown in
            ``[0, 1]`` (values outside are clipped).
        titles: one title per panel (the first for the image).
        path: the PNG to write (its folder is created).
        alpha: opacity of the maps.
        scale: integer upscaling of the panels for legibility.
        colour_bar: draw the colour bar at the right of the panels.
        heading: a line of text above the panel titles (none when empty).

    Returns:
        ``path``.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> png = attention_figure(np.eye(8), [np.full((4, 4), 0.5)], ["input", "gate"],
        ...                        folder / "a.png")
        >>> Image.open(png).size  # (2 * (8 * 2 + 6) + 60, 8 * 2 + 18)
        (104, 34)
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
    head = _TITLE_H if heading else 0
    top = head + _TITLE_H
    width = len(panels) * (w * scale + _GAP) + (_BAR_COLUMN if colour_bar else 0)
    out = Image.new("RGB", (width, h * scale + top), "white")
    draw = ImageDraw.Draw(out)
    if heading:
        draw.text((2, 2), heading, fill="black")
    for i, (panel, title) in enumerate(zip(panels, titles, strict=False)):
        x = i * (w * scale + _GAP)
        tile = Image.fromarray(panel).resize((w * scale, h * scale), Image.Resampling.NEAREST)
        out.paste(tile, (x, top))
        draw.text((x + 2, head + 2), title, fill="black")
    if colour_bar:
        _colour_bar(out, len(panels) * (w * scale + _GAP), top, h * scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    out.save(path)
    return path
