"""`fediqad report`: the run's report from metrics.json (`shared.report.build`), plus the
run's checkpoint evaluated on data given on the command line (or recorded by the run).

The checkpoint section is the only one that recomputes numbers; it is labelled as such
and says whether they agree with metrics.json.
"""

from __future__ import annotations

from pathlib import Path

import torch

from fediqad.report.predictions import compute_predictions
from shared.metrics import compute_metrics
from shared.report import set_figures
from shared.report.build import Report, ReportBuilder, metrics_rows
from shared.report.document import Heading, Paragraph, Table
from shared.report.format import number
from shared.report.rundir import RunData, load_run


def _checkpoint_section(
    builder: ReportBuilder,
    data_root: Path | None,
    split: str | None,
    device: torch.device,
    batch_size: int | None,
    evaluate: bool,
) -> None:
    builder.blocks.append(Heading("The checkpoint on the evaluation data"))
    if not evaluate:
        builder.left_out("checkpoint evaluation: skipped (--no-eval)")
        return
    got, why = compute_predictions(builder.run, data_root, split, device, batch_size)
    if got is None:
        builder.left_out(f"checkpoint evaluation (full-resolution ROC, confusion): {why}")
        return
    p = got.predictions
    again = compute_metrics(p.diagnosis_true, p.diagnosis_prob, p.quality_true, p.quality_prob)
    builder.blocks.append(
        Paragraph(
            f"Recomputed from per-image probabilities: {got.source}. "
            + _agreement(builder.run, got.split, data_root, again),
            "note",
        )
    )
    scope = [(f"checkpoint, {got.split} split", again)]
    builder.blocks.append(Table(["evaluated on", "images", *HEADER_TAIL], metrics_rows(scope)))
    run = builder.run
    names = list(got.diagnosis_names)
    quality = run.quality_names or [str(q) for q in range(p.quality_true.max() + 1)]
    fig_dir = builder.fig_dir
    builder.figure(
        set_figures.confusion_figure(scope, names, quality, fig_dir, "checkpoint_cm.png")
    )
    builder.figure(set_figures.roc_figure(scope, fig_dir, "checkpoint_roc.png"))
    builder.figure(set_figures.reliability_figure(scope, fig_dir, "checkpoint_reliability.png"))


HEADER_TAIL = ["n", "AUC [95% CI]", "ACC [95% CI]", "F1", "kappa [95% CI]", "Q-ACC"]


def _agreement(run: RunData, split: str, data_root: Path | None, again: dict[str, float]) -> str:
    """Whether the recomputed numbers match what metrics.json reports for the same data."""
    same_data = data_root is None or run.eval_data is None or data_root == run.eval_data
    if run.headline is None or split != run.eval_split or not same_data:
        return "Not compared with metrics.json (it reports other data or another split)."
    label, m = run.headline
    diffs = [key for key in ("auc", "acc", "f1") if number(m.get(key)) != number(again.get(key))]
    if not diffs:
        return f"They match metrics.json ({label})."
    return (
        f"They differ from metrics.json ({label}) in {', '.join(diffs)}: the data under "
        "the given root is not what the run evaluated on."
    )


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
    builder = ReportBuilder(run, out).from_metrics()
    _checkpoint_section(builder, data_root, split, torch.device(device), batch_size, evaluate)
    return builder.write()
