"""Synthetic OCT angiography (superficial plexus en face): capillary mesh, large vessels,
a foveal avascular zone (FAZ) that grows and turns irregular with DR grade, capillary
non-perfusion areas (NPDR, PDR) and bright neovascular tufts (PDR)."""

from __future__ import annotations

import numpy as np

from shared.data.synth.draw import Layer, Lesion, box, grid, random_walk, smooth_noise, to_u8

_FAZ = {0: (0.06, 0.08), 1: (0.10, 0.13), 2: (0.12, 0.15)}  # radius / image size
_NONPERFUSION = {0: (0, 0), 1: (1, 3), 2: (2, 4)}


def _mesh(rng: np.random.Generator, size: int) -> np.ndarray:
    """Worm-like capillary network: ridges of two band-limited noise fields."""
    cells = max(4, size // 5)
    out = np.zeros((size, size), dtype=np.float32)
    for _ in range(2):
        n = smooth_noise(rng, size, cells)
        out = np.maximum(out, np.exp(-(((n - 0.5) / 0.06) ** 2)))
    return out


def render(rng: np.random.Generator, size: int, grade: int) -> tuple[np.ndarray, list[Lesion]]:
    """uint8 H x W OCTA image for DR grade 0 (NoDR), 1 (NPDR) or 2 (PDR)."""
    yy, xx = grid(size)
    cx, cy = size / 2 + rng.uniform(-0.03, 0.03, 2) * size
    lo, hi = _FAZ[grade]
    r_faz = rng.uniform(lo, hi) * size
    phi = np.arctan2(yy - cy, xx - cx)
    wobble = 0.05 if grade == 0 else 0.18
    harmonics = rng.uniform(-1, 1, (3, 2))
    edge = r_faz * (
        1
        + wobble
        * sum(
            harmonics[k, 0] * np.cos((k + 2) * phi) + harmonics[k, 1] * np.sin((k + 2) * phi)
            for k in range(3)
        )
        / 2
    )
    dist = np.hypot(yy - cy, xx - cx)
    perfused = np.clip((dist - edge) / 1.5, 0, 1)

    lesions: list[Lesion] = []
    if grade > 0:
        lesions.append(box(cx, cy, r_faz * 1.15, r_faz * 1.15, size, "faz_enlargement"))
    n_lo, n_hi = _NONPERFUSION[grade]
    for _ in range(int(rng.integers(n_lo, n_hi + 1))):
        ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.22, 0.38) * size
        px, py = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
        rx, ry = rng.uniform(0.07, 0.12, 2) * size
        d = ((yy - py) / ry) ** 2 + ((xx - px) / rx) ** 2
        perfused = perfused * np.clip(d * 2.0 - 1.0, 0, 1)
        lesions.append(box(px, py, rx, ry, size, "nonperfusion"))

    vessels = Layer(size)
    for _ in range(int(rng.integers(6, 10))):
        ang = rng.uniform(0, 2 * np.pi)
        start = (cx + 0.75 * size * np.cos(ang), cy + 0.75 * size * np.sin(ang))
        path = random_walk(rng, start, ang + np.pi + rng.uniform(-0.4, 0.4), 16, 0.04 * size, 0.18)
        keep = np.hypot(path[:, 0] - cx, path[:, 1] - cy) > r_faz * 1.3
        if keep.sum() > 1:
            path = path[: int(np.argmin(keep)) or len(path)]
            vessels.polyline(path, rng.uniform(0.8, 1.4) * size / 64, 230)
            branch_at = int(rng.integers(2, max(3, len(path) - 1)))
            branch = random_walk(
                rng,
                tuple(path[min(branch_at, len(path) - 1)]),
                rng.uniform(0, 2 * np.pi),
                6,
                0.03 * size,
                0.3,
            )
            vessels.polyline(branch, 0.7 * size / 64, 200)
    v = vessels.array() * np.clip((dist - r_faz) / 2.0, 0, 1)

    tufts = Layer(size)
    if grade == 2:
        for _ in range(int(rng.integers(1, 4))):
            ang, rad = rng.uniform(0, 2 * np.pi), rng.uniform(0.18, 0.35) * size
            tx, ty = cx + rad * np.cos(ang), cy + rad * np.sin(ang)
            extent = rng.uniform(0.05, 0.08) * size
            for _ in range(8):
                start = (tx + rng.uniform(-0.5, 0.5) * extent, ty + rng.uniform(-0.5, 0.5) * extent)
                loop = random_walk(rng, start, rng.uniform(0, 2 * np.pi), 8, 0.012 * size, 1.0)
                tufts.polyline(loop, 0.9 * size / 64, 255)
            lesions.append(box(tx, ty, extent, extent, size, "neovascularisation"))

    background = 0.08 + 0.04 * smooth_noise(rng, size, 5)
    signal = 0.65 * _mesh(rng, size) * perfused + 0.85 * v + tufts.array()
    img = background + np.clip(signal, 0, 1) * rng.uniform(0.75, 0.9)
    return to_u8(np.clip(img, 0, 1)), lesions
