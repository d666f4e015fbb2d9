"""What a study team reads: a per-round table, `metrics.json`, `report.md` and plots.

`metrics.json` is rewritten atomically after every round, so it is always a complete
JSON log of the committed rounds (and a resumed run continues it).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.atomic_write import write_text_atomic

METRICS_FILE = "metrics.json"
SHOWN = ("auc", "acc", "f1", "kappa", "auc_hq", "auc_lq")


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def _mb(n: float | None) -> str:
    return "-" if n is None else f"{n / 1e6:.2f}"


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
        write_text_atomic(
            self.path, json.dumps(self.doc, indent=1, default=_json_default, allow_nan=True)
        )

    @property
    def rounds(self) -> list[dict[str, Any]]:
        return self.doc["rounds"]


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    return str(obj)


def round_tables(record: dict[str, Any]) -> list[Table]:
    """The round's summary (global, server-side) and its per-site table."""
    rnd = record["round"]
    head = Table(title=f"Round {rnd} — {record['status']}", title_justify="left")
    head.add_column("scope")
    for key in SHOWN:
        head.add_column(key.upper().replace("_", " "), justify="right")
    head.add_column("sites", justify="right")
    glob = record.get("global") or {}
    head.add_row(
        "global (sites)",
        *[_fmt(glob.get(k)) for k in SHOWN],
        f"{record['replies']['train_ok']}/{record['replies']['sampled']}",
    )
    if record.get("server_eval"):
        srv = record["server_eval"]
        head.add_row("server held-out", *[_fmt(srv.get(k)) for k in SHOWN], "-")
    sites = Table(title_justify="left")
    for col in (
        "site",
        *(k.upper().replace("_", " ") for k in SHOWN),
        "n",
        "train s",
        "eps",
        "MB down",
        "MB up",
        "status",
    ):
        sites.add_column(col, justify="left" if col in ("site", "status") else "right")
    for name, site in sorted(record.get("sites", {}).items()):
        ev = site.get("eval") or {}
        tr = site.get("train") or {}
        sites.add_row(
            name,
            *[_fmt(ev.get(k)) for k in SHOWN],
            _fmt(ev.get("n"), 0),
            _fmt(tr.get("train_seconds"), 1),
            _fmt(tr.get("dp_epsilon"), 2),
            _mb(site.get("bytes_down")),
            _mb(site.get("bytes_up")),
            site.get("status", "ok"),
        )
    return [head, sites]


def print_round(record: dict[str, Any], console: Console) -> None:
    for table in round_tables(record):
        console.print(table)
    t = record["timing"]
    console.print(
        f"round {record['round']}: {t['round_s']:.1f} s, slowest site compute "
        f"{t['slowest_compute_s']:.1f} s, framework overhead {t['overhead_s']:.2f} s "
        f"({t['overhead_pct']:.1f} %), checkpoint {t['checkpoint_s']:.2f} s"
    )
    for item in record.get("failures", []) + record.get("rejected", []) + record.get("stopped", []):
        console.print(f"[yellow]{item['kind']}[/] {item['site']}: {item['reason']}")


def write_report(run_dir: Path, doc: dict[str, Any]) -> Path:
    """`report.md` and the PNG plots from the JSON log."""
    run_dir = Path(run_dir)
    plots = write_plots(run_dir, doc)
    rounds = doc.get("rounds", [])
    fed = doc.get("federation", {})
    lines = [f"# Federated run `{run_dir.name}`", ""]
    if fed:
        run = fed.get("run", {})
        lines += [
            f"- dataset **{run.get('dataset', {}).get('name')}**, method **{run.get('method')}**,"
            f" backbone `{run.get('model', {}).get('backbone')}` at {run.get('image_size')} px",
            f"- strategy **{fed.get('strategy')}**, {fed.get('num_rounds')} rounds x "
            f"{fed.get('local_epochs')} local epoch(s), transport {fed.get('transport_dtype')}",
            "",
        ]
    if rounds:
        last = rounds[-1]
        lines += [
            "## Final round",
            "",
            "| scope | " + " | ".join(k.upper() for k in SHOWN) + " |",
            "|---" * (len(SHOWN) + 1) + "|",
        ]
        glob = last.get("global") or {}
        lines.append("| global | " + " | ".join(_fmt(glob.get(k)) for k in SHOWN) + " |")
        if last.get("server_eval"):
            srv = last["server_eval"]
            lines.append(
                "| server held-out | " + " | ".join(_fmt(srv.get(k)) for k in SHOWN) + " |"
            )
        for name, site in sorted(last.get("sites", {}).items()):
            ev = site.get("eval") or {}
            lines.append(f"| {name} | " + " | ".join(_fmt(ev.get(k)) for k in SHOWN) + " |")
        lines += [
            "",
            "## Rounds",
            "",
            "| round | status | sites | AUC | AUC HQ | AUC LQ | round s | overhead % "
            "| MB down | MB up |",
            "|---" * 10 + "|",
        ]
        for r in rounds:
            g = r.get("global") or {}
            t = r["timing"]
            lines.append(
                f"| {r['round']} | {r['status']} | {r['replies']['train_ok']}/"
                f"{r['replies']['sampled']} | {_fmt(g.get('auc'))} | {_fmt(g.get('auc_hq'))} | "
                f"{_fmt(g.get('auc_lq'))} | {t['round_s']:.1f} | {t['overhead_pct']:.1f} | "
                f"{_mb(r.get('bytes_down'))} | {_mb(r.get('bytes_up'))} |"
            )
        events = [
            (r["round"], e) for r in rounds for e in r.get("failures", []) + r.get("rejected", [])
        ]
        if events:
            lines += ["", "## Failures and rejected updates", ""]
            lines += [f"- round {rnd}: {e['kind']} {e['site']}: {e['reason']}" for rnd, e in events]
    lines += privacy_lines(rounds)
    if plots:
        lines += ["", "## Plots", ""] + [f"![{p.stem}](plots/{p.name})" for p in plots]
    path = run_dir / "report.md"
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def privacy_lines(rounds: list[dict[str, Any]]) -> list[str]:
    """report.md's privacy section: epsilon per site per round, stopped sites, and the
    client-level epsilon; nothing when DP was off."""
    names = sorted(
        {
            n
            for r in rounds
            for n, s in r.get("sites", {}).items()
            if "dp_epsilon" in (s.get("train") or {})
        }
    )
    client = [r for r in rounds if r.get("client_dp")]
    if not names and not client:
        return []
    lines = ["", "## Privacy", ""]
    if names:
        delta = next(
            s["train"]["dp_delta"]
            for r in rounds
            for s in r["sites"].values()
            if "dp_delta" in (s.get("train") or {})
        )
        lines += [
            f"Sample-level DP: epsilon spent per site (delta {delta:g}); "
            "'stopped' = privacy budget spent, the site no longer trains.",
            "",
            "| round | " + " | ".join(names) + " |",
            "|---" * (len(names) + 1) + "|",
        ]
        for r in rounds:
            cells = []
            for name in names:
                site = r.get("sites", {}).get(name) or {}
                eps = (site.get("train") or {}).get("dp_epsilon")
                stopped = " (stopped)" if str(site.get("status", "")).startswith("stopped") else ""
                cells.append(_fmt(eps) + stopped)
            lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
    if client:
        last = client[-1]["client_dp"]
        lines += [
            "",
            f"Client-level DP: epsilon {_fmt(last['client_epsilon'])} at delta "
            f"{last['delta']:g} after {int(last['releases'])} noisy aggregate(s) "
            f"(clipping norm {last['clipping_norm']:g}).",
        ]
    return lines


def write_plots(run_dir: Path, doc: dict[str, Any]) -> list[Path]:
    """Per-round AUC (global and per site) and HQ vs LQ AUC, as PNG."""
    rounds = doc.get("rounds", [])
    if not rounds:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = run_dir / "plots"
    out_dir.mkdir(parents=True, exist_ok=True)
    xs = [r["round"] for r in rounds]

    def series(getter: Any) -> list[float]:
        return [float("nan") if (v := getter(r)) is None else float(v) for r in rounds]

    paths = []
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, series(lambda r: (r.get("global") or {}).get("auc")), "k-o", label="global")
    if any(r.get("server_eval") for r in rounds):
        ax.plot(
            xs,
            series(lambda r: (r.get("server_eval") or {}).get("auc")),
            "k--s",
            label="server held-out",
        )
    names = sorted({n for r in rounds for n in r.get("sites", {})})
    for name in names:
        ax.plot(
            xs,
            series(
                lambda r, n=name: ((r.get("sites", {}).get(n) or {}).get("eval") or {}).get("auc")
            ),
            "-.",
            label=name,
        )
    ax.set(xlabel="round", ylabel="AUC", title="Diagnosis AUC per round")
    ax.legend(fontsize=7)
    paths.append(out_dir / "auc_per_round.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(xs, series(lambda r: (r.get("global") or {}).get("auc_hq")), "b-o", label="HQ")
    ax.plot(xs, series(lambda r: (r.get("global") or {}).get("auc_lq")), "r-o", label="LQ")
    ax.set(xlabel="round", ylabel="AUC", title="Global AUC on high- vs low-quality images")
    ax.legend()
    paths.append(out_dir / "auc_hq_vs_lq.png")
    fig.tight_layout()
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths
