"""Synthetic hospital sites: one EYEQ-like data folder per site."""

from __future__ import annotations

from pathlib import Path


def synth_sites(
    root: Path,
    lq_ratios: list[float],
    *,
    n: int = 40,
    size: int = 32,
    first_seed: int = 0,
    names: list[str] | None = None,
) -> list[Path]:
    """ROOT/site0, site1, ... (or `names`): `n` synthetic EYEQ images each at `size` px,
    site i with low-quality share `lq_ratios[i]` and seed `first_seed + i`."""
    from shared.data.synth import synthesize

    names = names or [f"site{i}" for i in range(len(lq_ratios))]
    out = []
    for i, (name, lq) in enumerate(zip(names, lq_ratios, strict=True)):
        synthesize("EYEQ", n, size, root / name, seed=first_seed + i, lq_ratio=lq)
        out.append(root / name)
    return out
