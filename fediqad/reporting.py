"""What the core commands show and write: metric tables, strict JSON, atomic text files."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table

from shared.atomic_write import write_text_atomic
from shared.strict_json import dumps, json_ready

__all__ = ["compat_line", "dumps", "json_ready", "metrics_table", "write_text_atomic"]

SUBSETS = (("all", ""), ("HQ", "_hq"), ("LQ", "_lq"))
COLUMNS = (
    ("n", "n"),
    ("AUC", "auc"),
    ("ACC", "acc"),
    ("F1", "f1"),
    ("Kappa", "kappa"),
    ("Q-ACC", "quality_acc"),
)


def _cell(value: Any, key: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if key == "n":
        return str(int(value))
    return f"{value:.4f}"


def metrics_table(sections: Iterable[tuple[str, Mapping[str, float]]], title: str) -> Table:
    """One row per (section, quality subset): n, AUC, ACC, macro F1, kappa, quality ACC.

    '-' marks a metric that is undefined on that subset (e.g. AUC with one class).
    """
    table = Table(title=title, title_justify="left")
    table.add_column("split")
    table.add_column("images")
    for label, _ in COLUMNS:
        table.add_column(label, justify="right")
    for name, metrics in sections:
        for subset, suffix in SUBSETS:
            cells = [_cell(metrics.get(f"{key}{suffix}"), key) for _, key in COLUMNS]
            table.add_row(name, subset, *cells)
    return table


def compat_line(metrics: Mapping[str, float]) -> str:
    """The authors' way of scoring, labelled as such (hard-prediction AUC for binary tasks)."""
    auc = _cell(metrics.get("auc_hard_compat"), "auc")
    f1 = _cell(metrics.get("f1_compat"), "f1")
    return f"compatibility (MKCNet authors' evaluation): AUC {auc}, F1 {f1}"
