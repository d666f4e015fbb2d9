"""Put one run's report together: tables and figures as blocks, then HTML and Markdown.

Every number in a table is read from `metrics.json` (4 decimals, '-' where undefined);
numbers recomputed from a checkpoint appear only in the per-sample section, labelled
as such, and the paper's Table 2 rows are labelled as the paper's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fediqad.report import curves, diagnostics
from fediqad.report.document import (
    Block,
    Figure,
    Heading,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)
from fediqad.report.paper_table2 import CITATION, paper_rows
from fediqad.report.predictions import compute_predictions
from fediqad.report.rundir import RunData, load_run
from fediqad.reporting import write_text_atomic
from shared.metrics import compute_metrics

FIGURES = "figures"
COLUMNS = (
    ("n", "n"),
    ("AUC", "auc"),
    ("ACC", "acc"),
    ("F1", "f1"),
    ("Kappa", "kappa"),
    ("Q-ACC", "quality_acc"),
)
SUBSETS = (("all", ""), ("HQ", "_hq"), ("LQ", "_lq"))


@dataclass
class Report:
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def fmt(value: float | None, key: str = "") -> str:
    """4 decimals, counts as integers, '-' for undefined (NaN / missing)."""
    if value is None or not math.isfinite(value):
        return "-"
    return str(int(value)) if key == "n" else f"{value:.4f}"


def pct(value: float | None) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{100 * value:.2f}"


def metrics_rows(results: list[tuple[str, dict[str, float]]]) -> list[list[str]]:
    return [
        [scope, subset] + [fmt(m.get(f"{key}{suffix}"), key) for _, key in COLUMNS]
        for scope, m in results
        for subset, suffix in SUBSETS
    ]


class _Builder:
    def __init__(self, run: RunData, out: Path):
        self.run, self.out, self.fig_dir = run, out, out / FIGURES
        self.blocks: list[Block] = []
        self.figures: list[Path] = []
        self.problems: list[str] = list(run.problems)

    def figure(self, drawn: tuple[Path, str] | None) -> None:
        if drawn is not None:
            self.figures.append(drawn[0])
            self.blocks.append(Figure(*drawn))

    def left_out(self, text: str) -> None:
        self.problems.append(text)
        self.blocks.append(Paragraph(text, "warning"))

    # --------------------------------------------------------------- sections
    def configuration(self) -> None:
        run = self.run
        self.blocks.append(Heading("Configuration"))
        self.blocks.append(Paragraph(f"{run.kind.capitalize()} run in {run.path}."))
        if run.settings:
            self.blocks.append(Table(["setting", "value"], [list(r) for r in run.settings]))
        else:
            self.left_out("configuration: neither metrics.json nor a checkpoint records it")
        for problem in run.problems:
            self.blocks.append(Paragraph(problem, "warning"))

    def results(self) -> None:
        run = self.run
        self.blocks.append(Heading("Results"))
        if not run.results and not run.site_results:
            self.left_out("results tables: no evaluation recorded in metrics.json")
            return
        header = ["evaluated on", "images"] + [label for label, _ in COLUMNS]
        caption = (
            "From metrics.json. AUC from probabilities (macro one-vs-one for more than "
            "two classes), ACC, macro F1, quadratic-weighted kappa, quality-head accuracy; "
            "HQ = high-quality images, LQ = low-quality; '-' = undefined on that subset."
        )
        if run.results:
            self.blocks.append(Table(header, metrics_rows(run.results), caption))
        if run.site_results:
            self.blocks.append(Heading("By site", 3))
            self.blocks.append(
                Table(
                    header,
                    metrics_rows(run.site_results),
                    "Each site's evaluation of the final global model, "
                    "on its own data (from metrics.json).",
                )
            )
        rows = run.results + run.site_results
        self.figure(
            curves.quality_bars(
                rows, self.fig_dir, "quality_bars.png", "Final metrics on all, HQ and LQ images"
            )
        )

    def paper(self) -> None:
        run = self.run
        rows = paper_rows(run.dataset or "")
        if not rows:
            return
        self.blocks.append(Heading("Beside the MKCNet paper (Table 2)"))
        self.blocks.append(
            Paragraph(
                f"The rows marked 'paper' are published numbers from {CITATION}; they were NOT "
                "produced by this run (the paper trains full-size models on the full dataset). "
                "All values in percent.",
                "note",
            )
        )
        table = [
            [method, "paper", f"{a:.2f}", f"{c:.2f}", f"{f:.2f}"] for method, (a, c, f) in rows
        ]
        if run.headline is not None:
            label, m = run.headline
            method = str((run.config or {}).get("method", "this run"))
            table.append(
                [
                    method,
                    f"this run ({label})",
                    pct(m.get("auc")),
                    pct(m.get("acc")),
                    pct(m.get("f1")),
                ]
            )
            table.append(
                [
                    method,
                    f"this run ({label}), authors' scoring",
                    pct(m.get("auc_hard_compat")),
                    pct(m.get("acc")),
                    pct(m.get("f1_compat")),
                ]
            )
        else:
            self.left_out("this run's row beside Table 2: no evaluation in metrics.json")
        self.blocks.append(
            Table(
                ["method", "source", "AUC %", "ACC %", "F1 %"],
                table,
                "'authors' scoring' = the MKCNet code's evaluation (for "
                "binary tasks AUC from hard predictions and binary F1), "
                "which is how the paper scored CT and CXR.",
            )
        )

    def curves_section(self) -> None:
        run = self.run
        self.blocks.append(Heading(f"Per-{run.step_label.lower()} curves"))
        drawn = [
            curves.metric_curves(run, self.fig_dir),
            curves.quality_curves(run, self.fig_dir),
            curves.site_curves(run, self.fig_dir),
            curves.loss_curves(run, self.fig_dir),
        ]
        for item in drawn:
            self.figure(item)
        if not any(drawn):
            self.left_out(f"per-{run.step_label.lower()} curves: no evaluations recorded")

    def federation(self) -> None:
        run = self.run
        self.blocks.append(Heading("Communication and privacy"))
        if run.kind != "federated":
            self.blocks.append(
                Paragraph(
                    "Not applicable: a centralised run sends no bytes and spends no privacy budget."
                )
            )
            return
        self.figure(curves.bytes_per_round(run, self.fig_dir))
        drawn = curves.epsilon_per_round(run, self.fig_dir)
        self.figure(drawn)
        if drawn is None:
            self.blocks.append(
                Paragraph(
                    "No epsilon recorded: differential privacy was off or "
                    "the sites did not report it."
                )
            )
        self.blocks.append(Table(*_round_table(run)))
        if run.events:
            self.blocks.append(Heading("Failures and rejected updates", 3))
            self.blocks += [Paragraph(e) for e in run.events]

    def per_sample(
        self,
        data_root: Path | None,
        split: str | None,
        device: torch.device,
        batch_size: int | None,
        evaluate: bool,
    ) -> None:
        self.blocks.append(Heading("ROC curves and confusion matrices"))
        if not evaluate:
            self.left_out("ROC curves and confusion matrices: skipped (--no-eval)")
            return
        got, why = compute_predictions(self.run, data_root, split, device, batch_size)
        if got is None:
            self.left_out(f"ROC curves and confusion matrices need per-sample probabilities: {why}")
            return
        p = got.predictions
        again = compute_metrics(p.diagnosis_true, p.diagnosis_prob, p.quality_true, p.quality_prob)
        self.blocks.append(
            Paragraph(
                f"Per-sample probabilities: {got.source}. Recomputed from them: AUC "
                f"{fmt(again['auc'])}, ACC {fmt(again['acc'])}, F1 {fmt(again['f1'])}. "
                + _agreement(self.run, got.split, data_root, again),
                "note",
            )
        )
        self.figure(diagnostics.roc_figure(p, got.diagnosis_names, self.fig_dir))
        self.figure(diagnostics.confusion_figure(p, got.diagnosis_names, self.fig_dir))


def _round_table(run: RunData) -> tuple[list[str], list[list[str]], str]:
    eps: dict[int, float] = {}
    for series in run.epsilon.values():
        for rnd, m in series:
            eps[rnd] = max(eps.get(rnd, -math.inf), m["epsilon"])
    rows = []
    for r in run.rounds:
        glob, srv = r.get("global") or {}, r.get("server_eval") or {}
        replies = r.get("replies") or {}
        rows.append(
            [
                str(r["round"]),
                str(r.get("status", "-")),
                f"{replies.get('train_ok', '-')}/{replies.get('sampled', '-')}",
                fmt(glob.get("auc")),
                fmt(srv.get("auc")),
                fmt(r["bytes_down"] / 1e6) if "bytes_down" in r else "-",
                fmt(r["bytes_up"] / 1e6) if "bytes_up" in r else "-",
                fmt(eps.get(int(r["round"]))),
            ]
        )
    header = [
        "round",
        "status",
        "sites ok",
        "global AUC",
        "server AUC",
        "MB down",
        "MB up",
        "max epsilon",
    ]
    return header, rows, "Per round (from metrics.json); MB = 10^6 bytes."


def _agreement(run: RunData, split: str, data_root: Path | None, again: dict[str, float]) -> str:
    """Whether the recomputed numbers match what metrics.json reports for the same data."""
    same_data = data_root is None or run.eval_data is None or data_root == run.eval_data
    if run.headline is None or split != run.eval_split or not same_data:
        return "Not compared with metrics.json (it reports other data or another split)."
    label, m = run.headline
    diffs = [key for key in ("auc", "acc", "f1") if fmt(m.get(key)) != fmt(again.get(key))]
    if not diffs:
        return f"They match metrics.json ({label})."
    return (
        f"They differ from metrics.json ({label}) in {', '.join(diffs)}: the data under "
        "the given root is not what the run evaluated on."
    )


def _clear_old_figures(fig_dir: Path, keep: list[Path]) -> None:
    """Drop PNGs an earlier report left here, so the folder matches this report."""
    if fig_dir.is_dir():
        for png in fig_dir.glob("*.png"):
            if png not in keep:
                png.unlink()


def _publish(path: Path, text: str) -> Path:
    """Atomic write, readable by others (a report is meant to be shared)."""
    write_text_atomic(path, text)
    path.chmod(0o644)
    return path


def build_report(
    run_dir: Path,
    out: Path | None = None,
    *,
    data_root: Path | None = None,
    split: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
    evaluate: bool = True,
) -> Report:
    """Write OUT/index.html (self-contained) and OUT/report.md + OUT/figures/*.png."""
    run = load_run(run_dir)
    out = Path(out) if out is not None else run.path / "report"
    builder = _Builder(run, out)
    builder.configuration()
    builder.results()
    builder.paper()
    builder.curves_section()
    builder.federation()
    builder.per_sample(data_root, split, torch.device(device), batch_size, evaluate)
    _clear_old_figures(builder.fig_dir, builder.figures)
    title = f"fediqad report: {run.path.name} ({run.kind})"
    html_path = _publish(out / "index.html", render_html(builder.blocks, title))
    md_path = _publish(out / "report.md", render_markdown(builder.blocks, title, out))
    return Report(html_path, md_path, builder.figures, builder.problems)
