"""Part (a): MKCNet vs Vanilla vs multitask (vs MAXL when the method registry has it),
overall and on the LQ test images, one data set per seed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.methods import list_methods
from simulations.evidence.common import (
    Say,
    Timer,
    make_data,
    run_config,
    score,
    test_predictions,
    train_central,
)
from simulations.evidence.settings import EvidenceSettings


def available(wanted: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(methods to run, methods asked for or expected that this build lacks)."""
    known = set(list_methods())
    asked = list(dict.fromkeys([*wanted, "maxl"]))
    return [m for m in asked if m in known], [m for m in asked if m not in known]


def run_methods(out: Path, s: EvidenceSettings, say: Say) -> list[dict[str, Any]]:
    methods, missing = available(s.methods)
    if missing:
        say(f"(a) not in this build, left out: {', '.join(missing)}")
    rows = []
    for seed in s.seeds:
        root = make_data(out, s, seed)
        for method in methods:
            clock = Timer()
            cfg = run_config(s, method, seed)
            bundle = train_central(cfg, root, s.epochs)
            metrics = score([test_predictions(bundle, root, cfg)])
            rows.append(
                {"part": "methods", "seed": seed, "method": method, **metrics, "seconds": clock()}
            )
            say(
                f"(a) seed {seed} {method}: kappa {metrics['kappa']:.3f}, "
                f"LQ kappa {metrics['kappa_lq']:.3f} ({clock():.0f} s)"
            )
    return rows
