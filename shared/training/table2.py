"""The MKCNet paper's Table 2 on one dataset: train every chosen method centrally with
the dataset's preset (the authors' settings), score the selected model, and write our
numbers beside the paper's (`fediqad table2`).

Binary tasks (CT, CXR) are compared on the paper's own definitions: AUC from hard
predictions and binary F1 (`auc_hard_compat`, `f1_compat`); the probability AUC is
kept in its own column. Each method's run folder is OUT/<method>; a finished one is
reused, so an interrupted grid continues where it stopped.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.atomic_write import write_text_atomic
from shared.config import build_config
from shared.methods import TABLE2_METHODS, get_method
from shared.strict_json import dumps, json_ready


@dataclass
class Table2Row:
    method: str
    paper_name: str
    ours: dict[str, float]
    paper: tuple[float, float, float] | None  # AUC, ACC, F1 in percent


@dataclass
class Table2Result:
    dataset: str
    binary: bool
    rows: list[Table2Row] = field(default_factory=list)
    markdown: Path | None = None


def _scores(run_dir: Path) -> dict[str, float] | None:
    """The selected model's scores of a finished run (test split if there is one)."""
    history = run_dir / "metrics.json"
    if not history.is_file():
        return None
    doc = json.loads(history.read_text())
    epochs = doc.get("epochs") or []
    planned = (doc.get("config") or {}).get("optim", {}).get("epochs")
    if not epochs or epochs[-1].get("epoch") != planned:
        return None  # not finished
    return doc.get("test") or doc.get("best")


def run_table2(
    data_root: Path,
    dataset: str,
    out: Path,
    *,
    methods: Sequence[str] = TABLE2_METHODS,
    paper: Mapping[str, tuple[float, float, float]] | None = None,
    flags: dict[str, Any] | None = None,
    set_items: list[str] | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Table2Result:
    """Train (or reuse) every method's run under OUT and write OUT/table2.md and .json.

    `paper`: the published (AUC, ACC, F1) % by paper row name for this dataset (the
    CLI passes the shipped copy of Table 2)."""
    from shared.training.central import TrainRun

    for name in methods:
        get_method(name)  # unknown names fail before any training
    paper = dict(paper or {})
    result = Table2Result(dataset, binary=False)
    for name in methods:
        cfg = build_config(dataset, None, {**(flags or {}), "method": name}, set_items)
        result.dataset, result.binary = cfg.dataset.name, cfg.dataset.num_diagnosis == 2
        run_dir = Path(out) / name
        scores = _scores(run_dir)
        if scores is None:
            say(f"training {name} ({cfg.optim.epochs} epochs) in {run_dir}")
            run_dir.mkdir(parents=True, exist_ok=True)
            for stale in ("best.ckpt", "last.ckpt"):
                (run_dir / stale).unlink(missing_ok=True)  # an unfinished earlier attempt
            TrainRun(cfg, data_root, run_dir).run()
            scores = _scores(run_dir) or {}
        else:
            say(f"reusing the finished run in {run_dir}")
        spec = get_method(name)
        result.rows.append(Table2Row(name, spec.paper_name, scores, paper.get(spec.paper_name)))
    out = Path(out)
    result.markdown = out / "table2.md"
    write_text_atomic(result.markdown, table2_markdown(result))
    write_text_atomic(out / "table2.json", dumps(json_ready(_as_json(result))) + "\n")
    return result


def _ours(row: Table2Row, binary: bool) -> tuple[float, float, float, float]:
    s = row.ours
    auc = s.get("auc_hard_compat" if binary else "auc", float("nan"))
    f1 = s.get("f1_compat" if binary else "f1", float("nan"))
    return 100 * auc, 100 * s.get("acc", float("nan")), 100 * f1, 100 * s.get("auc", float("nan"))


def table2_markdown(result: Table2Result) -> str:
    """Our AUC / ACC / F1 (%) beside the paper's, one row per method."""
    auc_name = "AUC (hard, as the paper)" if result.binary else "AUC"
    lines = [
        f"# Table 2 on {result.dataset}: this run vs the paper",
        "",
        f"| method | paper row | {auc_name} | ACC | F1 | AUC (prob.) | paper AUC | ACC | F1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        ours = " | ".join(f"{v:.2f}" for v in _ours(row, result.binary))
        paper = " | ".join(f"{v:.2f}" for v in row.paper) if row.paper else "- | - | -"
        lines.append(f"| {row.method} | {row.paper_name} | {ours} | {paper} |")
    lines += [
        "",
        "Paper: Che, Chen & Chen, CVPR 2023, Table 2 (numbers are the paper's). Ours: the "
        "selected model of each run on the test split (DRAC: last epoch on train, the "
        "authors' protocol); settings in each OUT/<method>/metrics.json.",
    ]
    return "\n".join(lines) + "\n"


def _as_json(result: Table2Result) -> dict[str, Any]:
    return {
        "dataset": result.dataset,
        "binary": result.binary,
        "rows": [
            {"method": r.method, "paper_name": r.paper_name, "ours": r.ours, "paper": r.paper}
            for r in result.rows
        ],
    }
