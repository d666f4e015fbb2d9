"""How many images of each (diagnosis, quality) class a synthetic dataset gets.

`TABLE1` holds the MKCNet paper's Table 1 (images per diagnosis x quality class); a test
keeps it in step with `table1_label_quality_counts.tsv` in the reference data.
"""

from __future__ import annotations

import numpy as np

from shared.config import DatasetConfig
from shared.data.splits import apportion

TABLE1_NAMES = {
    "EYEQ": "EyeQ",
    "DEEPDR": "DeepDR",
    "DRAC": "DRAC",
    "IQAD_CT": "CT-IQAD",
    "IQAD_CXR": "CXR-IQAD",
}

TABLE1: dict[str, dict[tuple[str, str], int]] = {
    "EYEQ": {
        ("NoDR", "HQ"): 12308,
        ("NoDR", "LQ-U"): 4553,
        ("NoDR", "LQ-P"): 3747,
        ("NPDR", "HQ"): 4405,
        ("NPDR", "LQ-U"): 1690,
        ("NPDR", "LQ-P"): 1438,
        ("PDR", "HQ"): 104,
        ("PDR", "LQ-U"): 191,
        ("PDR", "LQ-P"): 353,
    },
    "DEEPDR": {
        ("NoDR", "HQ"): 532,
        ("NoDR", "LQ"): 382,
        ("NPDR", "HQ"): 506,
        ("NPDR", "LQ"): 468,
        ("PDR", "HQ"): 50,
        ("PDR", "LQ"): 62,
    },
    "DRAC": {
        ("NoDR", "HQ"): 444,
        ("NoDR", "LQ"): 101,
        ("NPDR", "HQ"): 303,
        ("NPDR", "LQ"): 41,
        ("PDR", "HQ"): 93,
        ("PDR", "LQ"): 15,
    },
    "IQAD_CT": {
        ("Normal", "HQ"): 800,
        ("Normal", "LQ"): 349,
        ("Covid-19", "HQ"): 800,
        ("Covid-19", "LQ"): 397,
    },
    "IQAD_CXR": {
        ("Normal", "HQ"): 792,
        ("Normal", "LQ-C"): 791,
        ("Normal", "LQ-A"): 999,
        ("Pneumonia", "HQ"): 2137,
        ("Pneumonia", "LQ-C"): 2136,
        ("Pneumonia", "LQ-A"): 1431,
    },
}


def table1_matrix(cfg: DatasetConfig) -> np.ndarray:
    """Table 1 as a [D, Q] array in canonical index order (quality 0 = HQ)."""
    table = TABLE1[cfg.name]
    return np.array(
        [[table[(d, q)] for q in cfg.quality_names] for d in cfg.diagnosis_names], dtype=float
    )


def class_weights(cfg: DatasetConfig, lq_ratio: float | None = None) -> np.ndarray:
    """[D, Q] weights: Table 1, or Table 1's diagnosis mix with `lq_ratio` of images LQ
    (LQ levels keep their Table-1 proportions within each diagnosis)."""
    m = table1_matrix(cfg)
    if lq_ratio is None:
        return m / m.sum()
    if not 0.0 <= lq_ratio <= 1.0:
        raise ValueError(f"LQ ratio must be in [0, 1], got {lq_ratio}")
    p_d = m.sum(axis=1) / m.sum()
    lq = m[:, 1:]
    lq_share = lq / np.maximum(lq.sum(axis=1, keepdims=True), 1e-12)
    out = np.zeros_like(m)
    out[:, 0] = p_d * (1.0 - lq_ratio)
    out[:, 1:] = p_d[:, None] * lq_ratio * lq_share
    return out


def class_counts(cfg: DatasetConfig, n: int, lq_ratio: float | None = None) -> np.ndarray:
    """[D, Q] integer counts summing to n; every class with weight gets at least one image
    when n allows, so small synthetic sets still contain every class."""
    w = class_weights(cfg, lq_ratio)
    flat = w.ravel()
    positive = flat > 0
    counts = np.zeros_like(flat, dtype=np.int64)
    if n >= int(positive.sum()):
        counts[positive] = 1
        rest = apportion(n - int(positive.sum()), flat)
        counts += np.asarray(rest, dtype=np.int64)
    else:
        counts = np.asarray(apportion(n, flat), dtype=np.int64)
    return counts.reshape(w.shape)
