"""Run the parts and turn their rows into mean +- sd markdown tables (sd over seeds,
ddof 1)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simulations.evidence.common import Say
from simulations.evidence.settings import EvidenceSettings


def run_evidence(out: Path, s: EvidenceSettings, say: Say = print) -> dict[str, Any]:
    """Every requested part; returns {settings, rows, seconds per part, tables}."""
    import torch

    torch.set_num_threads(s.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    seconds: dict[str, float] = {}
    for part in s.parts:
        start = time.perf_counter()
        if part == "signal":
            from simulations.evidence.signal import run_signal

            rows += run_signal(s, say)
        elif part == "methods":
            from simulations.evidence.methods import run_methods

            rows += run_methods(out, s, say)
        elif part == "federated":
            from simulations.evidence.federated import run_federated

            rows += run_federated(out, s, say)
        elif part == "comcl":
            from simulations.evidence.comcl import run_comcl

            rows += run_comcl(out, s, say)
        seconds[part] = time.perf_counter() - start
    return {"settings": s.as_dict(), "seconds": seconds, "rows": rows, "markdown": tables(rows)}


def mean_sd(values: Sequence[float]) -> str:
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if v.size == 0:
        return "-"
    if v.size == 1:
        return f"{v[0]:.3f}"
    return f"{v.mean():.3f} ± {v.std(ddof=1):.3f}"


def _table(
    rows: list[dict[str, Any]], group: Sequence[str], columns: Sequence[str], title: str
) -> str:
    keys = list(dict.fromkeys(tuple(r[g] for g in group) for r in rows))
    lines = [
        f"**{title}** (mean ± sd over seeds; n = number of seeds)",
        "",
        "| " + " | ".join([*group, "n", *columns]) + " |",
        "|" + "---|" * (len(group) + 1 + len(columns)),
    ]
    for key in keys:
        hit = [r for r in rows if tuple(r[g] for g in group) == key]
        cells = [mean_sd([r.get(c) for r in hit]) for c in columns]
        lines.append("| " + " | ".join([*map(str, key), str(len(hit)), *cells]) + " |")
    return "\n".join(lines)


def tables(rows: list[dict[str, Any]]) -> str:
    by = {
        p: [r for r in rows if r["part"] == p] for p in ("signal", "methods", "federated", "comcl")
    }
    out = []
    if by["signal"]:
        out.append(
            _table(by["signal"], ["quality"], ["median_contrast", "visible"], "Lesion signal")
        )
    if by["methods"]:
        cols = ["kappa", "acc", "auc", "kappa_lq", "acc_lq", "auc_lq", "kappa_hq"]
        out.append(_table(by["methods"], ["method"], cols, "(a) methods, test split"))
    if by["federated"]:
        cols = ["kappa", "acc", "auc", "kappa_lq", "acc_lq"]
        out.append(_table(by["federated"], ["split", "setting"], cols, "(b) federation"))
    if by["comcl"]:
        cols = ["kappa", "acc", "kappa_lq", "acc_lq"]
        out.append(_table(by["comcl"], ["lq_ratio", "init"], cols, "(c) CoMCL vs scratch"))
    return "\n\n".join(out)
