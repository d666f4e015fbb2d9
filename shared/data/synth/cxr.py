"""Synthetic frontal chest radiographs of children and adults; pneumonia adds lobar or
patchy consolidation. Children have a shorter, rounder chest and a larger heart shadow;
adults longer lung fields, prominent clavicles and oblique ribs."""

from __future__ import annotations

import numpy as np

from shared.data.synth.draw import Layer, Lesion, box, gaussian_blob, grid, smooth_noise, to_u8

_ANATOMY = {  # chest half-width, lung height, lung top, heart half-width, rib count
    "child": (0.36, 0.46, 0.20, 0.15, 7),
    "adult": (0.40, 0.62, 0.10, 0.12, 9),
}


def render(
    rng: np.random.Generator, size: int, pneumonia: int, anatomy: str = "child"
) -> tuple[np.ndarray, list[Lesion]]:
    """uint8 H x W radiograph; `pneumonia` is the diagnosis (0 normal, 1 pneumonia)."""
    s = size
    chest_w, lung_h, lung_top, heart_w, n_ribs = _ANATOMY[anatomy]
    jit = rng.uniform(0.94, 1.06, 4)
    cx = 0.5 * s + rng.uniform(-0.02, 0.02) * s
    yy, xx = grid(s)

    body = Layer(s)
    body.ellipse(cx, 0.75 * s, chest_w * s * jit[0] + 0.08 * s, 0.72 * s)
    img = 0.12 + 0.5 * body.array()

    lungs = Layer(s)
    fields = []
    for side in (-1, 1):
        lw = (chest_w - 0.04) * s * 0.5 * jit[1]
        lx = cx + side * (lw + 0.04 * s)
        top, bottom = lung_top * s, (lung_top + lung_h * jit[2]) * s
        ly, ry = (top + bottom) / 2, (bottom - top) / 2
        lungs.ellipse(lx, ly, lw, ry)
        fields.append((lx, ly, lw, ry))
    heart = Layer(s)
    hw = heart_w * s * jit[3]
    heart_y = fields[0][1] + 0.6 * fields[0][3]
    heart.ellipse(cx + 0.35 * hw, heart_y, hw, 0.8 * hw)
    lung = np.clip(lungs.array() - heart.array(), 0, 1)
    img = img * (1 - 0.6 * lung)

    ribs = Layer(s)
    for lx, ly, lw, ry in fields:
        side = 1 if lx > cx else -1
        top = ly - ry
        for k in range(n_ribs):
            y = top + (k + 0.5) * 2 * ry / n_ribs
            tilt = 0.10 if anatomy == "child" else 0.22
            xs = np.linspace(cx + side * 0.02 * s, lx + side * 1.1 * lw, 12)
            t = np.abs(xs - cx) / (1.1 * lw + abs(lx - cx))
            ys = y - 0.08 * s * np.sin(np.pi * t) + tilt * s * t
            ribs.polyline(np.stack([xs, ys], 1), 0.9 * s / 64, 255)
    if anatomy == "adult":
        for side in (-1, 1):
            xs = np.linspace(cx + side * 0.03 * s, cx + side * chest_w * s, 8)
            ribs.polyline(
                np.stack(
                    [
                        xs,
                        np.full_like(xs, fields[0][1] - fields[0][3])
                        + 0.02 * s * np.abs(xs - cx) / s * 8,
                    ],
                    1,
                ),
                1.4 * s / 64,
            )
    img = img + 0.12 * ribs.array() * (0.4 + 0.6 * lung)
    img = img + 0.18 * gaussian_blob(yy, xx, 0.5 * s, cx, 0.6 * s, 0.035 * s)  # spine

    lesions: list[Lesion] = []
    if pneumonia:
        opac = np.zeros((s, s), dtype=np.float32)
        lobar = rng.uniform() < 0.6
        n = int(rng.integers(1, 3)) if lobar else int(rng.integers(3, 6))
        texture = 0.7 + 0.6 * smooth_noise(rng, s, max(4, s // 8))
        for _ in range(n):
            lx, ly, lw, ry = fields[int(rng.integers(0, 2))]
            px = lx + rng.uniform(-0.5, 0.5) * lw
            py = ly + rng.uniform(-0.2, 0.6) * ry
            gx, gy = (rng.uniform(0.08, 0.12, 2) if lobar else rng.uniform(0.04, 0.07, 2)) * s
            opac = np.maximum(opac, gaussian_blob(yy, xx, py, px, gy, gx))
            lesions.append(box(px, py, 1.6 * gx, 1.6 * gy, s, "consolidation"))
        img = img + 0.5 * np.clip(opac * 1.5, 0, 1) * texture * lung
    img += 0.01 * rng.standard_normal((s, s)).astype(np.float32)
    return to_u8(np.clip(img, 0, 1)), lesions
