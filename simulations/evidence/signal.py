"""Does an LQ image lose diagnostic signal? Lesion contrast before and after the
generator's degradations, on the same drawn images.

For each lesion box of a drawn fundus image: contrast = |mean green inside the box -
mean green of a ring around it| / (std of the ring + 1 grey level). A lesion with
contrast below 1 is not distinguishable from the variation of its surroundings. The
same images are degraded exactly as the synthetic LQ images are (`degrade` at the
LQ-U / LQ-P severities of `shared.data.synth.STYLES`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.data.degradations import degrade
from shared.data.synth import STYLES, fundus
from simulations.evidence.common import Say
from simulations.evidence.settings import EvidenceSettings


def lesion_contrast(image: np.ndarray, box: Any) -> float:
    g = image[..., 1].astype(np.float32)
    h, w = g.shape
    x0, y0, x1, y1 = box.x0, box.y0, box.x1, box.y1
    pad = max(x1 - x0, y1 - y0, 2)
    X0, Y0 = max(x0 - pad, 0), max(y0 - pad, 0)
    X1, Y1 = min(x1 + pad, w), min(y1 + pad, h)
    ring = np.ones((Y1 - Y0, X1 - X0), bool)
    ring[y0 - Y0 : y1 - Y0, x0 - X0 : x1 - X0] = False
    around = g[Y0:Y1, X0:X1][ring]
    if around.size < 4:
        return float("nan")
    inside = g[y0:y1, x0:x1].mean()
    return float(abs(inside - around.mean()) / (around.std() + 1.0))


def run_signal(s: EvidenceSettings, say: Say, images: int = 60) -> list[dict[str, Any]]:
    rows = []
    for seed in s.seeds:
        found: dict[str, list[float]] = {"HQ": [], "LQ-U": [], "LQ-P": []}
        for index in range(images):
            rng = np.random.default_rng([seed, 77, index])
            clean, lesions = fundus.render(rng, s.image_size, int(rng.integers(1, 5)))
            for name, style in STYLES["EYEQ"].items():
                if style.severity is None:
                    image = clean
                else:
                    lq_rng = np.random.default_rng([seed, 78, index, len(name)])
                    image, _ = degrade(clean, "fundus", lq_rng.uniform(*style.severity), lq_rng)
                found[name] += [lesion_contrast(image, b) for b in lesions]
        for name, values in found.items():
            v = np.array([x for x in values if np.isfinite(x)])
            rows.append(
                {
                    "part": "signal",
                    "seed": seed,
                    "quality": name,
                    "lesions": int(v.size),
                    "median_contrast": float(np.median(v)),
                    "visible": float((v >= 1.0).mean()),
                }
            )
            say(
                f"signal seed {seed} {name}: median lesion contrast "
                f"{rows[-1]['median_contrast']:.2f}, visible {rows[-1]['visible']:.2f}"
            )
    return rows
