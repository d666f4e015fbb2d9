"""What the core commands show and write: metric tables, strict JSON, atomic text files."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rich.table import Table

SUBSETS = (("all", ""), ("HQ", "_hq"), ("LQ", "_lq"))
COLUMNS = (
    ("n", "n"),
    ("AUC", "auc"),
    ("ACC", "acc"),
    ("F1", "f1"),
    ("Kappa", "kappa"),
    ("Q-ACC", "quality_acc"),
)


def json_ready(obj: Any) -> Any:
    """NaN / inf become null, so files and stdout are strict JSON any parser reads."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def dumps(obj: Any) -> str:
    return json.dumps(json_ready(obj), indent=2, allow_nan=False)


def write_text_atomic(path: Path, text: str) -> Path:
    """Temp file beside `path`, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


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
