"""Synthetic colour fundus photographs with DR lesions by five-grade level.

Field of view disc, optic disc, macula and vessel arcades; microaneurysms (grade >= 1),
haemorrhages and hard exudates (>= 2, more at 3), neovascularisation tufts and a
pre-retinal haemorrhage (4). Lesion sizes scale with the image so they stay visible
(one to three pixels) at 64 px.
"""

from __future__ import annotations

import numpy as np

from shared.data.synth.draw import (
    Layer,
    Lesion,
    box,
    gaussian_blob,
    grid,
    random_walk,
    smooth_noise,
    to_u8,
)

# (microaneurysms, haemorrhages, exudates) ranges per five-grade level
_COUNTS = {
    0: ((0, 0), (0, 0), (0, 0)),
    1: ((4, 7), (0, 1), (0, 1)),
    2: ((5, 9), (2, 5), (2, 6)),
    3: ((7, 12), (7, 13), (4, 9)),
    4: ((3, 7), (3, 8), (0, 5)),
}


class Geometry:
    """Where the eye is in this image."""

    def __init__(self, rng: np.random.Generator, size: int):
        self.size = size
        self.cx = size / 2 + rng.uniform(-0.02, 0.02) * size
        self.cy = size / 2 + rng.uniform(-0.02, 0.02) * size
        self.r = size * rng.uniform(0.43, 0.47)
        side = 1.0 if rng.uniform() < 0.5 else -1.0  # right or left eye
        self.disc = (self.cx + side * 0.52 * self.r, self.cy + rng.uniform(-0.05, 0.05) * self.r)
        self.disc_r = 0.12 * self.r
        self.fovea = (self.cx - side * 0.05 * self.r, self.cy + rng.uniform(-0.03, 0.03) * self.r)
        self.side = side

    def inside(self, rng: np.random.Generator, n: int, max_frac: float = 0.8) -> np.ndarray:
        """n random points in the field of view, away from the optic disc."""
        out = []
        while len(out) < n:
            rho = self.r * max_frac * np.sqrt(rng.uniform())
            phi = rng.uniform(0, 2 * np.pi)
            x, y = self.cx + rho * np.cos(phi), self.cy + rho * np.sin(phi)
            if np.hypot(x - self.disc[0], y - self.disc[1]) > 2.2 * self.disc_r:
                out.append((x, y))
        return np.array(out, dtype=np.float32).reshape(n, 2)


def _vessels(rng: np.random.Generator, g: Geometry, layer: Layer) -> None:
    """Four arcades leaving the disc with a few branches each."""
    dx, dy = g.disc
    toward_fovea = np.arctan2(g.fovea[1] - dy, g.fovea[0] - dx)
    for sign in (-1.0, 1.0):
        for spread, width in ((0.75, 1.3), (2.3, 1.0)):  # temporal arcade, nasal vessel
            angle = toward_fovea + sign * spread
            bend = -sign * rng.uniform(0.035, 0.06) * (1.0 if spread < 1 else 0.4)
            steps = 18
            pts = random_walk(rng, (dx, dy), angle, steps, g.r * 0.07, 0.05, bend)
            heading = angle + bend * steps
            layer.polyline(pts, width * g.size / 64)
            for j in rng.choice(np.arange(4, steps - 3), size=2, replace=False):
                branch = random_walk(
                    rng, tuple(pts[j]), heading + rng.choice([-1, 1]) * 0.9, 8, g.r * 0.06, 0.25
                )
                layer.polyline(branch, 0.6 * g.size / 64, 180)


def render(rng: np.random.Generator, size: int, grade: int) -> tuple[np.ndarray, list[Lesion]]:
    """uint8 H x W x 3 fundus image with lesions for five-grade DR level `grade`."""
    g = Geometry(rng, size)
    yy, xx = grid(size)
    rho = np.hypot(yy - np.float32(g.cy), xx - np.float32(g.cx)) / np.float32(g.r)
    fov = np.clip((1.0 - rho) * np.float32(g.r * 0.8), 0, 1)  # soft one-pixel edge
    f32 = np.float32
    tint = (
        np.array([0.80, 0.38, 0.17]) * rng.uniform(0.85, 1.1) * rng.uniform(0.93, 1.07, 3)
    ).astype(f32)
    shade = (1.0 - 0.35 * rho**2) * (1.0 + 0.08 * (smooth_noise(rng, size, 6) - 0.5))
    shade *= 1.0 - 0.35 * gaussian_blob(yy, xx, g.fovea[1], g.fovea[0], 0.12 * g.r, 0.12 * g.r)
    img = shade[..., None] * tint[None, None, :]
    disc = gaussian_blob(yy, xx, g.disc[1], g.disc[0], g.disc_r, g.disc_r * 0.9)
    img = img * (1 - disc[..., None]) + disc[..., None] * np.array([1.0, 0.86, 0.6], f32)

    vessels = Layer(size)
    _vessels(rng, g, vessels)
    v = vessels.array()[..., None]
    img = img * (1 - 0.5 * v * np.array([0.6, 1.0, 1.0], f32))

    lesions: list[Lesion] = []
    red = Layer(size)  # dark red: microaneurysms, haemorrhages, new vessels
    yellow = Layer(size)  # bright: exudates
    unit = g.r / 29.0  # lesion sizes are set for a 64 px image (r ~ 29 px)
    (ma_lo, ma_hi), (h_lo, h_hi), (e_lo, e_hi) = _COUNTS[grade]
    for x, y in g.inside(rng, int(rng.integers(ma_lo, ma_hi + 1))):
        r = rng.uniform(0.7, 0.95) * unit
        red.ellipse(x, y, r, r, 255)
        lesions.append(box(x, y, r, r, size, "microaneurysm"))
    for x, y in g.inside(rng, int(rng.integers(h_lo, h_hi + 1))):
        rx, ry = rng.uniform(1.3, 2.4, 2) * unit
        red.ellipse(x, y, rx, ry, 235)
        lesions.append(box(x, y, rx, ry, size, "haemorrhage"))
    n_ex = int(rng.integers(e_lo, e_hi + 1))
    if n_ex:
        centre = g.inside(rng, 1, 0.5)[0]
        for _ in range(n_ex):
            x, y = centre + rng.normal(0, 4.5 * unit, 2)
            r = rng.uniform(0.8, 1.5) * unit
            yellow.ellipse(x, y, r, r * rng.uniform(0.7, 1.0), 255)
            lesions.append(box(x, y, r, r, size, "exudate"))
    fibrous = Layer(size)  # pale fibrovascular tissue around new vessels
    if grade == 4:
        for k in range(int(rng.integers(1, 3))):
            if k == 0:
                cx = g.disc[0] + rng.normal(0, 1.5 * unit)
                cy = g.disc[1] + rng.normal(0, 1.5 * unit)
            else:
                cx, cy = g.inside(rng, 1, 0.6)[0]
            extent = rng.uniform(4.0, 6.0) * unit
            fibrous.ellipse(cx, cy, extent * 0.8, extent * 0.7, 150)
            for _ in range(9):
                start = (cx + rng.uniform(-0.5, 0.5) * extent, cy + rng.uniform(-0.5, 0.5) * extent)
                loop = random_walk(rng, start, rng.uniform(0, 2 * np.pi), 10, 0.8 * unit, 0.9)
                red.polyline(loop, 0.8 * unit, 255)
            lesions.append(box(cx, cy, extent, extent, size, "neovascularisation"))
        if rng.uniform() < 0.75:
            x, y = g.inside(rng, 1, 0.55)[0]
            rx, ry = rng.uniform(3.0, 5.0) * unit, rng.uniform(2.0, 3.2) * unit
            red.ellipse(x, y, rx, ry, 255)
            lesions.append(box(x, y, rx, ry, size, "haemorrhage"))
    f_m = fibrous.array()[..., None]
    img = img * (1 - 0.6 * f_m) + 0.6 * f_m * np.array([0.85, 0.75, 0.65], f32)
    r_m = red.array()[..., None]
    y_m = yellow.array()[..., None]
    img = img * (1 - r_m) + r_m * np.array([0.42, 0.06, 0.04], f32)
    img = img * (1 - y_m) + y_m * np.array([0.98, 0.9, 0.45], f32)
    img = img * fov[..., None]
    return to_u8(img), lesions
