"""Put one run's report together from `metrics.json`: blocks, then HTML and Markdown.

Every number is read from `metrics.json` and written by `shared.report.format`. No
torch and no data are needed, so the server and the training loops rewrite the report
after every round or epoch (an interrupted run has one), and `fediqad report` adds
its checkpoint evaluation on top (`fediqad.report.build`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shared.atomic_write import write_text_atomic
from shared.metric_details import BOOTSTRAP_RESAMPLES
from shared.report import curves, set_figures
from shared.report.alarms import degenerate_model
from shared.report.document import (
    Block,
    Figure,
    Heading,
    Paragraph,
    Table,
    render_html,
    render_markdown,
)
from shared.report.federation_tables import privacy_blocks, round_table
from shared.report.format import interval, number, percent
from shared.report.paper_table2 import CITATION, paper_rows
from shared.report.rundir import RunData, load_run

FIGURES = "figures"
SUBSETS = (("all", ""), ("HQ", "_hq"), ("LQ", "_lq"))
HEADER = ["evaluated on", "images", "n", "AUC [95% CI]", "ACC [95% CI]", "F1", "kappa [95% CI]"]


@dataclass
class Report:
    html: Path
    markdown: Path
    figures: list[Path] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    alarms: list[str] = field(default_factory=list)


def _with_ci(m: dict[str, float], key: str, suffix: str) -> str:
    if suffix:  # intervals are computed for all images only
        return number(m.get(f"{key}{suffix}"))
    return interval(m.get(key), m.get(f"{key}_ci_lo"), m.get(f"{key}_ci_hi"))


def metrics_rows(results: list[tuple[str, dict[str, float]]]) -> list[list[str]]:
    """Per set and image subset: n, AUC, ACC, F1, kappa (and the quality head's accuracy)."""
    rows = []
    for scope, m in results:
        for subset, suffix in SUBSETS:
            rows.append(
                [
                    scope,
                    subset,
                    number(m.get(f"n{suffix}"), "n"),
                    _with_ci(m, "auc", suffix),
                    _with_ci(m, "acc", suffix),
                    number(m.get(f"f1{suffix}")),
                    _with_ci(m, "kappa", suffix),
                    number(m.get(f"quality_acc{suffix}")),
                ]
            )
    return rows


def referable_meaning(diagnosis_names: list[str]) -> str:
    """What 'referable' means for this dataset, in its own class names."""
    if len(diagnosis_names) < 2:
        return "referable = any diagnosis class other than class 0"
    return (
        f"referable = {' or '.join(diagnosis_names[1:])} (any diagnosis other than "
        f"{diagnosis_names[0]})"
    )


class ReportBuilder:
    """Sections in reading order; each appends blocks and the figures it drew."""

    def __init__(self, run: RunData, out: Path):
        self.run, self.out, self.fig_dir = run, out, out / FIGURES
        self.blocks: list[Block] = []
        self.figures: list[Path] = []
        self.problems: list[str] = list(run.problems)
        self.alarms: list[str] = []

    def figure(self, drawn: tuple[Path, str] | None) -> None:
        if drawn is not None:
            self.figures.append(drawn[0])
            self.blocks.append(Figure(*drawn))

    def left_out(self, text: str) -> None:
        self.problems.append(text)
        self.blocks.append(Paragraph(text, "warning"))

    # ------------------------------------------------------------- the top
    def banners(self) -> None:
        """Synthetic data and useless models are said before any number."""
        run = self.run
        if run.synthetic:
            where = ", ".join(str(p) for p in run.synthetic)
            self.blocks.append(
                Paragraph(
                    f"These results come from SYNTHETIC images ({where}, made by "
                    "`fediqad data synth`). They test the software, not a diagnostic "
                    "model: do not compare them with the paper's numbers.",
                    "banner",
                )
            )
        for scope, m in run.final_sets:
            self.alarms += degenerate_model(scope, m, run.diagnosis_names, run.quality_names)
        for text in self.alarms:
            self.blocks.append(Paragraph(text, "alarm"))

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

    # ------------------------------------------------------------- numbers
    def results(self) -> None:
        run = self.run
        self.blocks.append(Heading("Results"))
        if not run.final_sets:
            self.left_out("results tables: no evaluation recorded in metrics.json")
            return
        caption = (
            "From metrics.json. AUC from probabilities (macro one-vs-one for more than two "
            "classes), ACC, macro F1, quadratic-weighted kappa, Q-ACC = quality-head "
            "accuracy; [95% CI] = percentile bootstrap over images "
            f"({BOOTSTRAP_RESAMPLES} resamples, seeded), all images only; HQ / LQ = "
            "high- / low-quality images; '-' = "
            "undefined on that subset."
        )
        header = HEADER + ["Q-ACC"]
        if run.results:
            self.blocks.append(Table(header, metrics_rows(run.results), caption))
        if run.site_results:
            self.blocks.append(Heading("By site", 3))
            self.blocks.append(
                Table(
                    header,
                    metrics_rows(run.site_results),
                    "Each site's evaluation of the final global model, on its own data.",
                )
            )
        self.figure(
            curves.quality_bars(
                run.final_sets, self.fig_dir, "quality_bars.png", "Final metrics, all / HQ / LQ"
            )
        )

    def clinical(self) -> None:
        """Sensitivity / specificity at the referable threshold and calibration, per set."""
        run = self.run
        sets = [(s, m) for s, m in run.final_sets if "referable_sens" in m or "ece" in m]
        if not sets:
            return
        self.blocks.append(Heading("Referable disease and calibration"))
        rows = [
            [
                scope,
                number(m.get("n"), "n"),
                number(m.get("referable_n_pos"), "n"),
                number(m.get("referable_sens")),
                number(m.get("referable_spec")),
                number(m.get("referable_auc")),
                number(m.get("ece")),
                number(m.get("brier")),
                number(m.get("lq_auc")),
            ]
            for scope, m in sets
        ]
        self.blocks.append(
            Table(
                ["evaluated on", "n", "referable", "sens", "spec", "AUC", "ECE", "Brier", "LQ AUC"],
                rows,
                f"{referable_meaning(run.diagnosis_names)}; called referable when "
                "1 - p(normal) >= 0.5. sens / spec = sensitivity / specificity at that "
                "threshold, AUC = of that binary score; ECE = expected calibration error "
                "(10 bins) and Brier score of the diagnosis head; LQ AUC = the quality "
                "head telling low- from high-quality images.",
            )
        )
        sets = run.final_sets
        self.figure(
            set_figures.confusion_figure(sets, run.diagnosis_names, run.quality_names, self.fig_dir)
        )
        self.figure(set_figures.roc_figure(sets, self.fig_dir))
        self.figure(set_figures.reliability_figure(sets, self.fig_dir))

    def paper(self) -> None:
        run = self.run
        try:
            rows = paper_rows(run.dataset or "")
        except FileNotFoundError as err:  # an install without the reference data
            self.left_out(f"the MKCNet paper's Table 2 beside this run: {err}")
            return
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
                [method, f"this run ({label})", percent(m.get("auc")), percent(m.get("acc")),
                 percent(m.get("f1"))]
            )  # fmt: skip
            table.append(
                [method, f"this run ({label}), authors' scoring", percent(m.get("auc_hard_compat")),
                 percent(m.get("acc")), percent(m.get("f1_compat"))]
            )  # fmt: skip
        else:
            self.left_out("this run's row beside Table 2: no evaluation in metrics.json")
        self.blocks.append(
            Table(
                ["method", "source", "AUC %", "ACC %", "F1 %"],
                table,
                "'authors' scoring' = the MKCNet code's evaluation (for binary tasks AUC from "
                "hard predictions and binary F1), which is how the paper scored CT and CXR.",
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
        self.blocks.append(round_table(run))
        self.blocks += privacy_blocks(run.rounds)
        if run.events:
            self.blocks.append(Heading("Failures and rejected updates", 3))
            self.blocks += [Paragraph(e) for e in run.events]

    def from_metrics(self) -> ReportBuilder:
        """Every section that needs nothing but metrics.json, in reading order."""
        self.banners()
        self.configuration()
        self.results()
        self.clinical()
        self.paper()
        self.curves_section()
        self.federation()
        return self

    def write(self) -> Report:
        """index.html (self-contained) and report.md beside figures/*.png."""
        _clear_old_figures(self.fig_dir, self.figures)
        title = f"fediqad report: {self.run.path.name} ({self.run.kind})"
        html_path = _publish(self.out / "index.html", render_html(self.blocks, title))
        md_path = _publish(self.out / "report.md", render_markdown(self.blocks, title, self.out))
        return Report(html_path, md_path, self.figures, self.problems, self.alarms)


def _clear_old_figures(fig_dir: Path, keep: list[Path]) -> None:
    """Drop PNGs an earlier report left here, so the folder matches this report."""
    if fig_dir.is_dir():
        for png in fig_dir.glob("*.png"):
            if png not in keep:
                png.unlink()


def _publish(path: Path, text: str) -> Path:
    """Atomic write, readable by others (a report is meant to be shared)."""
    return write_text_atomic(path, text, mode=0o644)


def write_run_report(run_dir: Path, out: Path | None = None) -> Report:
    """The report of the run in `run_dir` from its metrics.json, into `out` (default
    `run_dir`): report.md, index.html and figures/. Cheap enough for every round."""
    run = load_run(run_dir)
    return ReportBuilder(run, Path(out) if out is not None else run.path).from_metrics().write()
