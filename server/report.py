"""What a study team reads: a per-round table, `metrics.json`, `report.md` and plots.

`metrics.json` is rewritten atomically after every round (strict JSON, NaN -> null:
`shared.strict_json`), so it is always a complete log of the committed rounds (and a
resumed run continues it); the report is rebuilt from it (`shared.report.build`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

from shared.report.alarms import degenerate_model
from shared.report.build import Report, write_run_report
from shared.report.format import megabytes, number, seconds
from shared.strict_json import write_json

METRICS_FILE = "metrics.json"
# (column header, metric key): what fits a per-round table at 80 columns; the rest
# (F1, intervals, calibration, per-set figures) is in report.md
SHOWN = (("AUC", "auc"), ("ACC", "acc"), ("kappa", "kappa"), ("HQ AUC", "auc_hq"))
SHOWN += (("LQ AUC", "auc_lq"), ("Q-ACC", "quality_acc"))


class MetricsLog:
    """The run's JSON log: settings, the optional round-0 evaluation, one entry per round."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE
        self.doc: dict[str, Any] = {"federation": {}, "initial": None, "rounds": []}

    def load(self, upto_round: int) -> None:
        """Continue an existing log, dropping rounds after the resumed checkpoint."""
        if self.path.is_file():
            try:
                doc = json.loads(self.path.read_text())
            except ValueError:
                return
            doc["rounds"] = [r for r in doc.get("rounds", []) if r.get("round", 0) <= upto_round]
            self.doc.update(doc)

    def add(self, record: dict[str, Any]) -> None:
        self.doc["rounds"].append(record)

    def write(self) -> None:
        write_json(self.path, self.doc)

    @property
    def rounds(self) -> list[dict[str, Any]]:
        return self.doc["rounds"]


def _table(title: str | None = None) -> Table:
    """Compact: no vertical rules, so eight number columns fit in 80 characters."""
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)


def _numbers(table: Table, *headers: str) -> None:
    for header in headers:
        table.add_column(header, justify="right", no_wrap=True, min_width=len(header))


def round_tables(record: dict[str, Any]) -> list[Table]:
    """The round's summary (global, server-side) and its per-site table."""
    head = _table(f"Round {record['round']}: {record['status']}")
    head.add_column("scope", overflow="fold")
    _numbers(head, *(label for label, _ in SHOWN), "sites")
    glob = record.get("global") or {}
    replies = record["replies"]
    head.add_row(
        "global",
        *[number(glob.get(k)) for _, k in SHOWN],
        f"{replies['train_ok']}/{replies['sampled']}",
    )
    if record.get("server_eval"):
        srv = record["server_eval"]
        head.add_row("held-out", *[number(srv.get(k)) for _, k in SHOWN], "-")
    sites = _table()
    sites.add_column("site", overflow="fold", max_width=24)
    _numbers(sites, "n", *(label for label, _ in SHOWN))
    for name, site in sorted(record.get("sites", {}).items()):
        ev = site.get("eval") or {}
        sites.add_row(
            name,
            number(ev.get("n"), "n"),
            *[number(ev.get(k)) for _, k in SHOWN],
        )
    return [head, sites]


def site_lines(record: dict[str, Any]) -> list[str]:
    """Per site what the table leaves out: time, bytes, epsilon, a status other than ok."""
    lines = []
    for name, site in sorted(record.get("sites", {}).items()):
        train = site.get("train") or {}
        parts = [f"trained {seconds(train.get('train_seconds'))} s"]
        parts.append(f"{megabytes(site.get('bytes_down'))} MB down")
        parts.append(f"{megabytes(site.get('bytes_up'))} MB up")
        if "dp_epsilon" in train:
            parts.append(f"epsilon {number(train['dp_epsilon'], digits=2)}")
        if site.get("status", "ok") != "ok":
            parts.append(str(site["status"]))
        lines.append(f"  {name}: " + ", ".join(parts))
    return lines


def round_alarms(record: dict[str, Any], diagnosis: list[str], quality: list[str]) -> list[str]:
    """Degenerate-model warnings for this round's evaluated sets."""
    sets = [("held-out", record.get("server_eval") or {})]
    sets += [(n, s.get("eval") or {}) for n, s in sorted(record.get("sites", {}).items())]
    return [text for scope, m in sets for text in degenerate_model(scope, m, diagnosis, quality)]


def print_round(record: dict[str, Any], console: Console, dataset: Any = None) -> None:
    """The round's tables, a line per site and the degenerate-model warnings; `dataset`
    (a DatasetConfig) names the classes in them."""
    diagnosis = list(getattr(dataset, "diagnosis_names", []))
    quality = list(getattr(dataset, "quality_names", []))
    for table in round_tables(record):
        console.print(table)
    for line in site_lines(record):
        console.print(line, highlight=False)
    for text in round_alarms(record, diagnosis, quality):
        console.print(f"[bold red]WARNING[/] {text}", highlight=False)
    t = record["timing"]
    console.print(
        f"round {record['round']}: {t['round_s']:.1f} s, slowest site compute "
        f"{t['slowest_compute_s']:.1f} s, framework overhead {t['overhead_s']:.2f} s "
        f"({t['overhead_pct']:.1f} %), checkpoint {t['checkpoint_s']:.2f} s",
        highlight=False,
    )
    for item in record.get("failures", []) + record.get("rejected", []) + record.get("stopped", []):
        console.print(f"[yellow]{item['kind']}[/] {item['site']}: {item['reason']}")


def write_report(run_dir: Path, doc: dict[str, Any] | None = None) -> Report:
    """`report.md`, `index.html` and `figures/` in the run folder, from its metrics.json
    (`doc` is accepted for callers that hold it; the file on disk is what is reported)."""
    del doc
    return write_run_report(Path(run_dir))
