"""Small drawing kit for the synthetic modalities: masks drawn at 2x with Pillow and
reduced (cheap antialiasing), smooth noise, soft blobs, and lesion boxes."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SCALE = 2


@dataclass(frozen=True)
class Lesion:
    """A drawn lesion's bounding box in output pixels (x1, y1 exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int
    kind: str


def box(cx: float, cy: float, rx: float, ry: float, size: int, kind: str) -> Lesion:
    """Lesion box around an ellipse, clipped to the image; at least one pixel wide."""
    x0 = min(max(int(np.floor(cx - rx)), 0), size - 1)
    y0 = min(max(int(np.floor(cy - ry)), 0), size - 1)
    x1 = min(max(int(np.ceil(cx + rx)), x0 + 1), size)
    y1 = min(max(int(np.ceil(cy + ry)), y0 + 1), size)
    return Lesion(x0, y0, x1, y1, kind)


class Layer:
    """An 8-bit mask drawn at SCALE x the output size; `array()` gives [0, 1] floats."""

    def __init__(self, size: int):
        self.size = size
        self.image = Image.new("L", (size * SCALE, size * SCALE), 0)
        self.draw = ImageDraw.Draw(self.image)

    def ellipse(self, cx: float, cy: float, rx: float, ry: float, value: int = 255) -> None:
        s = SCALE
        self.draw.ellipse([(cx - rx) * s, (cy - ry) * s, (cx + rx) * s, (cy + ry) * s], fill=value)

    def polyline(self, pts: np.ndarray, width: float, value: int = 255) -> None:
        w = max(1, int(round(width * SCALE)))
        flat = (np.asarray(pts, dtype=np.float64) * SCALE).ravel().tolist()
        self.draw.line(flat, fill=value, width=w, joint="curve" if w > 2 else None)

    def polygon(self, pts: np.ndarray, value: int = 255) -> None:
        self.draw.polygon((np.asarray(pts, dtype=np.float64) * SCALE).ravel().tolist(), fill=value)

    def array(self) -> np.ndarray:
        return np.asarray(self.image.reduce(SCALE), dtype=np.float32) / 255.0


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited noise in [0, 1]: `cells` x `cells` random values, bicubic upsampled."""
    cells = max(2, cells)
    base = Image.fromarray(rng.random((cells, cells), dtype=np.float32), mode="F")
    out = np.asarray(base.resize((size, size), Image.Resampling.BICUBIC), dtype=np.float32)
    return np.clip(out, 0, 1)


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) in output pixels."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    return yy + 0.5, xx + 0.5


def gaussian_blob(
    yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float
) -> np.ndarray:
    """exp(-d^2 / 2) for the ellipse-normalised distance d, in float32."""
    f = np.float32
    dy = (yy - f(cy)) * f(1.0 / max(ry, 1e-3))
    dx = (xx - f(cx)) * f(1.0 / max(rx, 1e-3))
    return np.exp(f(-0.5) * (dy * dy + dx * dx))


def random_walk(
    rng: np.random.Generator,
    start: tuple[float, float],
    angle: float,
    steps: int,
    step: float,
    turn: float,
    bend: float = 0.0,
) -> np.ndarray:
    """A wandering path: heading changes by `bend` plus up to `turn` radians per step."""
    headings = angle + np.cumsum(bend + rng.uniform(-turn, turn, steps))
    pts = np.empty((steps + 1, 2), dtype=np.float32)
    pts[0] = start
    pts[1:, 0] = start[0] + step * np.cumsum(np.cos(headings))
    pts[1:, 1] = start[1] + step * np.cumsum(np.sin(headings))
    return pts


def to_u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)
