"""What the core commands show and write: metric tables and atomic text files.

Numbers are written by `shared.report.format`, JSON by `shared.strict_json`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich.table import Table

from shared.atomic_write import write_text_atomic
from shared.report.alarms import degenerate_model
from shared.report.format import number
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


def metrics_table(
    sections: Iterable[tuple[str, Mapping[str, float]]], title: str, dataset: Any = None
) -> Table:
    """One row per (section, quality subset): n, AUC, ACC, macro F1, kappa, quality ACC.

    '-' marks a metric that is undefined on that subset (e.g. AUC with one class). Signs
    of a degenerate model (`shared.report.alarms`) go under the table, in red; `dataset`
    (a DatasetConfig) names the classes in them.
    """
    sections = list(sections)
    diagnosis = list(getattr(dataset, "diagnosis_names", []))
    quality = list(getattr(dataset, "quality_names", []))
    alarms = [
        text for name, m in sections for text in degenerate_model(name, m, diagnosis, quality)
    ]
    caption = "\n".join(f"WARNING {text}" for text in alarms) or None
    table = Table(
        title=title, title_justify="left", caption=caption, caption_style="bold red",
        caption_justify="left",
    )  # fmt: skip
    table.add_column("split")
    table.add_column("images")
    for label, _ in COLUMNS:
        table.add_column(label, justify="right")
    for name, metrics in sections:
        for subset, suffix in SUBSETS:
            cells = [number(metrics.get(f"{key}{suffix}"), key) for _, key in COLUMNS]
            table.add_row(name, subset, *cells)
    return table


def compat_line(metrics: Mapping[str, float]) -> str:
    """The authors' way of scoring, labelled as such (hard-prediction AUC for binary tasks)."""
    auc = number(metrics.get("auc_hard_compat"))
    f1 = number(metrics.get("f1_compat"))
    return f"compatibility (MKCNet authors' evaluation): AUC {auc}, F1 {f1}"
