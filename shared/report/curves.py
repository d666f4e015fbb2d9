"""Figures over epochs or rounds: metrics, HQ vs LQ, per site, losses, bytes, epsilon.

Each function returns (png path, caption) or None when the run has nothing to draw
for it; undefined values (NaN, e.g. AUC on a one-class subset) leave gaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.ticker import MaxNLocator

from shared.report.rundir import GLOBAL_SCOPE, SERVER_SCOPE, RunData, Series
from shared.report.style import LINESTYLES, bar_style, new_figure, save, series_style

Drawn = tuple[Path, str] | None
UNIT = {
    "auc": "AUC (0-1, higher is better)",
    "acc": "Accuracy (fraction correct, 0-1)",
    "f1": "Macro F1 (0-1)",
    "kappa": "Quadratic-weighted kappa (-1 to 1)",
}
TITLE = {
    "auc": "Diagnosis AUC",
    "acc": "Diagnosis accuracy",
    "f1": "Diagnosis macro F1",
    "kappa": "Quadratic-weighted kappa",
}


def _xy(series: Series, key: str) -> tuple[list[int], list[float]]:
    xs = [step for step, _ in series]
    ys = [m.get(key, math.nan) for _, m in series]
    return xs, ys


def _finite(values: Sequence[float]) -> bool:
    return any(math.isfinite(v) for v in values)


def integer_steps(ax: Axes, steps: Sequence[float]) -> None:
    """Rounds and epochs are whole numbers: ticks only at integers, half a step of margin
    (one round must not show ticks 0.945 ... 1.050)."""
    steps = [float(s) for s in steps if math.isfinite(float(s))]
    if not steps:
        return
    lo, hi = math.floor(min(steps)), math.ceil(max(steps))
    ax.set_xlim(lo - 0.5, hi + 0.5)
    if hi - lo <= 12:
        ax.set_xticks(range(lo, hi + 1))
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _axis(ax: Axes, run: RunData, ylabel: str, title: str, steps: Sequence[float] = ()) -> None:
    ax.set_xlabel(f"{run.step_label} (count)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    lines = [x for line in ax.get_lines() for x in np.atleast_1d(line.get_xdata())]
    integer_steps(ax, list(steps) or lines)
    ax.grid(True, alpha=0.3)


def _plot_series(
    ax: Axes,
    run: RunData,
    lines: list[tuple[str, Series, str]],
    ylabel: str,
    title: str,
    bounded: bool = False,
    styles: list[dict[str, object]] | None = None,
) -> list[str]:
    """Draw (label, series, key) lines; returns labels that had no defined value."""
    undefined = []
    for index, (label, series, key) in enumerate(lines):
        xs, ys = _xy(series, key)
        if not _finite(ys):
            undefined.append(label)
            continue
        style = styles[index] if styles is not None else series_style(index)
        ax.plot(xs, ys, label=label, markersize=5, linewidth=1.5, **style)
    _axis(ax, run, ylabel, title)
    if bounded:
        ax.set_ylim(-0.03, 1.03)
    handles = ax.get_legend_handles_labels()[0]
    if len(handles) > 4:
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif handles:
        ax.legend(fontsize=7, loc="best")
    else:
        ax.text(0.5, 0.5, "no defined values", ha="center", va="center", transform=ax.transAxes)
    return undefined


def _note(undefined: list[str]) -> str:
    if not undefined:
        return ""
    return " Not drawn (undefined on every step): " + "; ".join(sorted(set(undefined))) + "."


def _main_scopes(run: RunData) -> list[str]:
    """Scopes shown in the overall curves: centralised eval split, or global + server."""
    if run.kind == "federated":
        return [s for s in (GLOBAL_SCOPE, SERVER_SCOPE) if s in run.evals]
    return list(run.evals)


def metric_curves(run: RunData, out: Path) -> Drawn:
    scopes = _main_scopes(run)
    if not scopes:
        return None
    fig, axes = new_figure(12, 3.8, ncols=3)
    undefined: list[str] = []
    for ax, key in zip(axes[0], ("auc", "acc", "f1"), strict=True):
        lines = [(scope, run.evals[scope], key) for scope in scopes]
        title = f"{TITLE[key]} per {run.step_label.lower()}"
        missing = _plot_series(ax, run, lines, UNIT[key], title, bounded=True)
        undefined += [f"{TITLE[key]} {u}" for u in missing]
    caption = (
        f"Diagnosis AUC, accuracy and macro F1 per {run.step_label.lower()} on "
        f"{', '.join(scopes)}.{_note(undefined)}"
    )
    return save(fig, out / "curves_metrics.png"), caption


def quality_curves(run: RunData, out: Path) -> Drawn:
    scopes = _main_scopes(run)
    if not scopes:
        return None
    fig, axes = new_figure(12, 3.8, ncols=2)
    undefined: list[str] = []
    for ax, key in zip(axes[0], ("auc", "acc"), strict=True):
        lines = [
            (f"{scope}, {subset}", run.evals[scope], f"{key}_{subset.lower()}")
            for scope in scopes
            for subset in ("HQ", "LQ")
        ]
        # subset by colour and marker, scope by line style: both survive grayscale
        styles = [
            {**series_style(s), "linestyle": LINESTYLES[c]}
            for c in range(len(scopes))
            for s in range(2)
        ]
        undefined += [
            f"{TITLE[key]} {u}"
            for u in _plot_series(
                ax,
                run,
                lines,
                UNIT[key],
                f"{TITLE[key]}: high- vs low-quality images",
                True,
                styles,
            )
        ]
    caption = (
        f"Diagnosis AUC and accuracy on high-quality (HQ) and low-quality (LQ) images "
        f"per {run.step_label.lower()}.{_note(undefined)}"
    )
    return save(fig, out / "curves_hq_lq.png"), caption


def site_curves(run: RunData, out: Path) -> Drawn:
    sites = [s for s in run.evals if s not in (GLOBAL_SCOPE, SERVER_SCOPE)]
    if run.kind != "federated" or not sites:
        return None
    fig, axes = new_figure(12, 3.8, ncols=3)
    undefined: list[str] = []
    for ax, (key, label) in zip(
        axes[0],
        (("auc", "all images"), ("auc_hq", "HQ images"), ("auc_lq", "LQ images")),
        strict=True,
    ):
        lines = [(site, run.evals[site], key) for site in sites]
        undefined += [
            f"{label}: {u}"
            for u in _plot_series(ax, run, lines, UNIT["auc"], f"AUC per site, {label}", True)
        ]
    caption = (
        "Each site's evaluation of the global model on its own data, per round "
        f"(all, HQ and LQ images).{_note(undefined)}"
    )
    return save(fig, out / "curves_sites.png"), caption


def _loss_keys(series: Series) -> list[str]:
    keys = sorted({k for _, m in series for k in m if "loss" in k or k == "meta_objective"})
    return keys


def loss_curves(run: RunData, out: Path) -> Drawn:
    main = run.train.get("training") or run.train.get("aggregated")
    if not main:
        return None
    sites = [s for s in run.train if s not in ("training", "aggregated")]
    ncols = 2 if sites else 1
    fig, axes = new_figure(12 if sites else 7, 3.8, ncols=ncols)
    first = axes[0][0] if sites else axes
    scope = "training" if "training" in run.train else "aggregated over sites"
    lines = [(key, main, key) for key in _loss_keys(main)]
    undefined = _plot_series(
        first, run, lines, "Loss (mean per batch, dimensionless)", f"Training losses ({scope})"
    )
    if sites:
        site_lines = [(site, run.train[site], "loss_diagnosis") for site in sites]
        undefined += _plot_series(
            axes[0][1],
            run,
            site_lines,
            "Focal loss (mean per batch, dimensionless)",
            "Diagnosis loss per site",
        )
    caption = (
        f"Mean training losses per {run.step_label.lower()} (focal losses of the "
        "diagnosis, quality and auxiliary heads; `meta_` = the Meta Learner's "
        f"objective in stage II).{_note(undefined)}"
    )
    return save(fig, out / "curves_losses.png"), caption


def bytes_per_round(run: RunData, out: Path) -> Drawn:
    rounds = [r for r in run.rounds if "bytes_down" in r or "bytes_up" in r]
    if not rounds:
        return None
    xs = np.array([int(r["round"]) for r in rounds])
    down = np.array([float(r.get("bytes_down") or 0) for r in rounds]) / 1e6
    up = np.array([float(r.get("bytes_up") or 0) for r in rounds]) / 1e6
    fig, ax = new_figure(7, 3.8)
    width = 0.38
    ax.bar(xs - width / 2, down, width, label="server to sites (down)", **bar_style(0))
    ax.bar(xs + width / 2, up, width, label="sites to server (up)", **bar_style(1))
    _axis(ax, run, "Data sent (MB = 10^6 bytes)", "Bytes on the wire per round", list(xs))
    ax.legend(fontsize=8)
    caption = (
        f"Model and metric payloads per round, all sites together; total "
        f"{down.sum():.2f} MB down and {up.sum():.2f} MB up."
    )
    return save(fig, out / "bytes_per_round.png"), caption


def epsilon_per_round(run: RunData, out: Path) -> Drawn:
    if not run.epsilon:
        return None
    fig, ax = new_figure(7, 3.8)
    lines = [(scope, series, "epsilon") for scope, series in sorted(run.epsilon.items())]
    _plot_series(
        ax,
        run,
        lines,
        "Privacy budget spent, epsilon (cumulative)",
        "Differential-privacy epsilon per round",
    )
    caption = "Epsilon spent per site (as each site reported it), per round."
    return save(fig, out / "epsilon_per_round.png"), caption


def quality_bars(
    rows: list[tuple[str, dict[str, float]]], out: Path, name: str, title: str
) -> Drawn:
    """AUC / accuracy / macro F1 for all, HQ and LQ images, one bar group per row."""
    if not rows:
        return None
    fig, axes = new_figure(12, 4.2, ncols=3)
    xs = np.arange(len(rows))
    width = 0.26
    for ax, key in zip(axes[0], ("auc", "acc", "f1"), strict=True):
        for index, (subset, suffix) in enumerate((("all", ""), ("HQ", "_hq"), ("LQ", "_lq"))):
            values = [m.get(f"{key}{suffix}", math.nan) for _, m in rows]
            offsets = xs + (index - 1) * width
            ax.bar(offsets, np.nan_to_num(values, nan=0.0), width, label=subset, **bar_style(index))
            for x, v in zip(offsets, values, strict=True):
                text = f"{v:.2f}" if math.isfinite(v) else "n/a"
                ax.text(
                    x,
                    (v if math.isfinite(v) else 0.0) + 0.01,
                    text,
                    rotation=90,
                    ha="center",
                    va="bottom",
                    fontsize=6,
                )
        ax.set_xticks(xs, [label for label, _ in rows], rotation=20, ha="right", fontsize=7)
        ax.set_ylim(0, 1.15)
        ax.set_ylabel(UNIT[key])
        ax.set_title(f"{TITLE[key]}: all vs HQ vs LQ")
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(fontsize=7)
    caption = f"{title} ('n/a': undefined on that subset, e.g. AUC with one class present)."
    return save(fig, out / name), caption
