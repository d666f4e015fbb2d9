"""Figures per evaluated set (each site, the server's held-out set, a test split):
confusion matrices of both heads, ROC points, reliability diagrams.

They are drawn from the counts and points each evaluation records in `metrics.json`
(`shared.metric_details`), so a hospital's confusion matrix is in the report without
any of its images or per-image probabilities leaving the hospital.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from shared.metric_details import CALIBRATION_BINS, ROC_THRESHOLDS
from shared.report.format import number
from shared.report.style import SEQUENTIAL, new_figure, save, series_style

Scope = tuple[str, Mapping[str, float]]
Drawn = tuple[Path, str] | None


def _counts(metrics: Mapping[str, float], head: str, k: int) -> np.ndarray | None:
    keys = [f"cm_{head}_{t}_{p}" for t in range(k) for p in range(k)]
    if not all(key in metrics for key in keys):
        return None
    values = [metrics[key] for key in keys]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return np.array(values, dtype=int).reshape(k, k)


def _grid(n: int, width: float, height: float, ncols: int) -> tuple[object, list]:
    rows = math.ceil(n / ncols)
    fig, axes = new_figure(width * ncols, height * rows, ncols=ncols, nrows=rows)
    flat = list(np.ravel(axes)) if n > 1 or rows * ncols > 1 else [axes]
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def _matrix(ax, counts: np.ndarray, labels: Sequence[str], title: str, what: str) -> None:  # noqa: ANN001
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    ax.imshow(share, cmap=SEQUENTIAL, vmin=0.0, vmax=1.0)
    k = counts.shape[0]
    for i in range(k):
        for j in range(k):
            part = f"{100 * share[i, j]:.0f} %" if totals[i, 0] else "none true"
            ax.text(
                j,
                i,
                f"{counts[i, j]}\n({part})",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if share[i, j] < 0.55 else "black",
            )
    ax.set_xticks(range(k), labels, rotation=30, ha="right")
    ax.set_yticks(range(k), labels)
    ax.set_xlabel(f"Predicted {what}")
    ax.set_ylabel(f"True {what}")
    ax.set_title(title, fontsize=8)


def confusion_figure(
    scopes: Sequence[Scope],
    diagnosis_names: Sequence[str],
    quality_names: Sequence[str],
    out: Path,
    name: str = "confusion_per_set.png",
) -> Drawn:
    """Per set, the diagnosis head's and the quality head's confusion matrix."""
    panels = []
    for scope, m in scopes:
        for head, names in (("diagnosis", diagnosis_names), ("quality", quality_names)):
            counts = _counts(m, head, len(names))
            if counts is not None:
                panels.append((scope, head, names, counts))
    if not panels:
        return None
    fig, axes = _grid(len(panels), 3.3, 3.2, ncols=min(4, len(panels)))
    for ax, (scope, head, names, counts) in zip(axes, panels, strict=True):
        _matrix(ax, counts, list(names), f"{scope}\n{head} head (n = {counts.sum()})", head)
    caption = (
        "Confusion matrices of the diagnosis and the quality head on each evaluated set: "
        "image count and, in brackets, its share of the true class (the shade)."
    )
    return save(fig, out / name), caption


def _roc(m: Mapping[str, float], name: str) -> tuple[list[float], list[float]] | None:
    fpr, tpr = [], []
    for i in range(len(ROC_THRESHOLDS)):
        f, t = m.get(f"roc_{name}_fpr_{i}"), m.get(f"roc_{name}_tpr_{i}")
        if f is None or t is None or not (math.isfinite(f) and math.isfinite(t)):
            return None
        fpr.append(f)
        tpr.append(t)
    return [*fpr, 0.0], [*tpr, 0.0]


def roc_figure(scopes: Sequence[Scope], out: Path, name: str = "roc_per_set.png") -> Drawn:
    """Per set, ROC of 'referable disease' (diagnosis head) and of 'low quality'."""
    drawable = [(s, m) for s, m in scopes if _roc(m, "referable") or _roc(m, "lq")]
    if not drawable:
        return None
    fig, axes = _grid(len(drawable), 3.6, 3.6, ncols=min(4, len(drawable)))
    for ax, (scope, m) in zip(axes, drawable, strict=True):
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1)
        for index, (key, label, auc_key) in enumerate(
            (("referable", "referable disease", "referable_auc"), ("lq", "low quality", "lq_auc"))
        ):
            points = _roc(m, key)
            if points is None:
                continue
            style = series_style(index)
            ax.plot(*points, label=f"{label} (AUC {number(m.get(auc_key))})", markersize=4, **style)
            if key == "referable":
                sens, spec = m.get("referable_sens"), m.get("referable_spec")
                if sens is not None and spec is not None and math.isfinite(sens + spec):
                    ax.plot([1 - spec], [sens], "k*", markersize=11, label="threshold 0.5")
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), aspect="equal")
        ax.set_xlabel("False-positive rate (1 - specificity)")
        ax.set_ylabel("True-positive rate (sensitivity)")
        ax.set_title(scope, fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    caption = (
        "ROC points at thresholds 0, 0.1, ..., 1 per evaluated set: 'referable disease' "
        "scores 1 - p(normal class) from the diagnosis head (the star is the 0.5 "
        "threshold of the sensitivity / specificity table); 'low quality' scores "
        "1 - p(HQ) from the quality head. A set without both classes has no curve."
    )
    return save(fig, out / name), caption


def reliability_figure(
    scopes: Sequence[Scope], out: Path, name: str = "reliability_per_set.png"
) -> Drawn:
    """Per set, accuracy vs confidence of the predicted class in 10 bins, with ECE / Brier."""
    drawable = [(s, m) for s, m in scopes if "calib_n_0" in m]
    if not drawable:
        return None
    fig, axes = _grid(len(drawable), 3.4, 3.4, ncols=min(4, len(drawable)))
    width = 1.0 / CALIBRATION_BINS
    centres = (np.arange(CALIBRATION_BINS) + 0.5) * width
    for ax, (scope, m) in zip(axes, drawable, strict=True):
        acc = np.array([m.get(f"calib_acc_{b}") for b in range(CALIBRATION_BINS)], dtype=float)
        counts = [m.get(f"calib_n_{b}") or 0 for b in range(CALIBRATION_BINS)]
        ax.bar(centres, np.nan_to_num(acc), width * 0.9, color="#0072B2", edgecolor="black")
        ax.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1, label="calibrated")
        for x, c in zip(centres, counts, strict=True):
            if c:
                ax.text(x, 0.02, str(int(c)), ha="center", fontsize=6, color="white", rotation=90)
        ax.set(xlim=(0, 1), ylim=(0, 1.02))
        ax.set_xlabel("Confidence of the predicted class")
        ax.set_ylabel("Accuracy in the bin")
        ax.set_title(
            f"{scope}\nECE {number(m.get('ece'))}, Brier {number(m.get('brier'))}", fontsize=8
        )
        ax.legend(fontsize=6, loc="upper left")
    caption = (
        "Reliability diagrams of the diagnosis head: accuracy per confidence bin (bars, "
        "image count inside) against the diagonal of a calibrated model. ECE = expected "
        "calibration error (0 is perfect), Brier = multi-class Brier score (0 to 2)."
    )
    return save(fig, out / name), caption
