"""Synthetic axial chest CT slices: body, fat, lungs with vessels, heart, aorta, spine
and ribs; COVID-19 adds peripheral ground-glass opacities, sometimes consolidation."""

from __future__ import annotations

import numpy as np

from shared.data.synth.draw import Layer, Lesion, box, gaussian_blob, grid, smooth_noise, to_u8


def render(rng: np.random.Generator, size: int, covid: int) -> tuple[np.ndarray, list[Lesion]]:
    """uint8 H x W CT slice; `covid` is the diagnosis (0 normal, 1 COVID-19)."""
    s = size
    j = rng.uniform(-0.02, 0.02, 4) * s
    body = Layer(s)
    bx, by, brx, bry = 0.5 * s + j[0], 0.52 * s + j[1], 0.44 * s, 0.33 * s + j[2]
    body.ellipse(bx, by, brx, bry)
    inner = Layer(s)
    inner.ellipse(bx, by, brx - 0.03 * s, bry - 0.03 * s)
    lungs = Layer(s)
    lung_centres = []
    for side in (-1, 1):
        lx = bx + side * (0.19 * s + j[3] * 0.3)
        ly = by - 0.02 * s
        rx, ry = 0.14 * s * rng.uniform(0.92, 1.08), 0.21 * s * rng.uniform(0.92, 1.05)
        lungs.ellipse(lx, ly, rx, ry)
        lung_centres.append((lx, ly, rx, ry))
    cut = Layer(s)  # heart and spine carve the lungs medially
    cut.ellipse(bx + 0.04 * s, by + 0.06 * s, 0.1 * s, 0.09 * s)
    cut.ellipse(bx, by + 0.24 * s, 0.07 * s, 0.07 * s)
    lung = np.clip(lungs.array() - cut.array(), 0, 1)

    img = 0.02 + 0.40 * body.array() + 0.15 * inner.array()  # fat ring darker than muscle
    img = img * (1 - lung) + lung * 0.08
    bones = Layer(s)
    bones.ellipse(bx, by + 0.25 * s, 0.045 * s, 0.04 * s)  # vertebral body
    bones.ellipse(bx, by + 0.31 * s, 0.02 * s, 0.02 * s)
    for side in (-1, 1):
        for k in range(4):  # rib cross-sections along the lateral chest wall
            ang = np.pi / 2 + side * (0.75 + 0.28 * k)
            rib_x = bx + (brx - 0.045 * s) * np.cos(ang)
            rib_y = by + (bry - 0.045 * s) * np.sin(ang)
            bones.ellipse(rib_x, rib_y, 0.018 * s, 0.012 * s)
    img = np.maximum(img, 0.95 * bones.array())
    yy, xx = grid(s)
    img += 0.08 * gaussian_blob(yy, xx, by + 0.15 * s, bx + 0.05 * s, 0.03 * s, 0.03 * s)  # aorta

    vessels = Layer(s)
    for lx, ly, rx, ry in lung_centres:
        for _ in range(int(rng.integers(10, 18))):
            a, r = rng.uniform(0, 2 * np.pi), np.sqrt(rng.uniform()) * 0.85
            d = rng.uniform(0.4, 0.8) * s / 64
            vessels.ellipse(lx + r * rx * np.cos(a), ly + r * ry * np.sin(a), d, d, 255)
    img = img + 0.3 * vessels.array() * lung

    lesions: list[Lesion] = []
    if covid:
        opac = np.zeros((s, s), dtype=np.float32)
        texture = 0.75 + 0.5 * smooth_noise(rng, s, max(4, s // 6))
        for _ in range(int(rng.integers(2, 6))):
            lx, ly, rx, ry = lung_centres[int(rng.integers(0, 2))]
            a = rng.uniform(0, 2 * np.pi)
            r = rng.uniform(0.45, 0.8)  # peripheral
            px, py = lx + r * rx * np.cos(a), ly + r * ry * np.sin(a) + 0.25 * ry
            gx, gy = rng.uniform(0.05, 0.09, 2) * s
            dense = rng.uniform() < 0.3
            level = rng.uniform(0.42, 0.52) if dense else rng.uniform(0.26, 0.34)
            blob = gaussian_blob(yy, xx, py, px, gy, gx)
            opac = np.maximum(opac, level * np.clip(blob * 1.6, 0, 1))
            lesions.append(box(px, py, 1.6 * gx, 1.6 * gy, s, "consolidation" if dense else "ggo"))
        img = img + opac * texture * lung
    img += 0.012 * rng.standard_normal((s, s)).astype(np.float32)
    return to_u8(np.clip(img, 0, 1)), lesions
