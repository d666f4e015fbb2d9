"""Per-sample figures: ROC curves per class and confusion matrices, all / HQ / LQ images.

They need probabilities per image (`shared.evaluation.Predictions`); the run's
`metrics.json` only holds summaries, so `predictions.py` evaluates the checkpoint.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import auc, confusion_matrix, roc_curve

from fediqad.report.style import SEQUENTIAL, new_figure, save, series_style
from shared.evaluation import Predictions

SUBSETS = (("all images", None), ("HQ images", 0), ("LQ images", 1))


def _mask(pred: Predictions, subset: int | None) -> np.ndarray:
    if subset is None:
        return np.ones(len(pred.diagnosis_true), dtype=bool)
    return pred.quality_true == 0 if subset == 0 else pred.quality_true > 0


def _roc_classes(num_classes: int) -> list[int]:
    """Binary tasks: the positive class only (its ROC mirrors the other's)."""
    return [1] if num_classes == 2 else list(range(num_classes))


def roc_figure(pred: Predictions, names: list[str], out: Path) -> tuple[Path, str]:
    """One-vs-rest ROC per diagnosis class; AUC of each curve in the legend."""
    num_classes = pred.diagnosis_prob.shape[1]
    fig, axes = new_figure(13.5, 4.6, ncols=3)
    skipped: list[str] = []
    for ax, (label, subset) in zip(axes[0], SUBSETS, strict=True):
        mask = _mask(pred, subset)
        y, p = pred.diagnosis_true[mask], pred.diagnosis_prob[mask]
        ax.plot([0, 1], [0, 1], color="0.5", linestyle=":", linewidth=1, label="chance")
        for index, k in enumerate(_roc_classes(num_classes)):
            positives = int((y == k).sum())
            name = names[k] if k < len(names) else str(k)
            if positives == 0 or positives == len(y):
                skipped.append(f"{name} on {label}")
                continue
            fpr, tpr, _ = roc_curve(y == k, p[:, k])
            style = series_style(index)
            ax.plot(
                fpr,
                tpr,
                color=style["color"],
                linestyle=style["linestyle"],
                marker=style["marker"],
                markevery=max(1, len(fpr) // 8),
                markersize=4,
                linewidth=1.6,
                label=f"{name} vs rest (AUC {auc(fpr, tpr):.3f})",
            )
        ax.set_xlim(-0.01, 1.01)
        ax.set_ylim(-0.01, 1.01)
        ax.set_aspect("equal")
        ax.set_xlabel("False-positive rate (1 - specificity, fraction)")
        ax.set_ylabel("True-positive rate (sensitivity, fraction)")
        ax.set_title(f"ROC per class, {label} (n = {int(mask.sum())})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    caption = (
        "One-vs-rest ROC curves of the diagnosis head per class, on all, high-quality "
        "(HQ) and low-quality (LQ) images."
    )
    if skipped:
        caption += (
            " Not drawn (the class is absent, or the only one present): " + "; ".join(skipped) + "."
        )
    return save(fig, out / "roc.png"), caption


def confusion_figure(pred: Predictions, names: list[str], out: Path) -> tuple[Path, str]:
    """Counts per (true, predicted) class; shade = fraction of the true class (recall)."""
    num_classes = pred.diagnosis_prob.shape[1]
    labels = [names[k] if k < len(names) else str(k) for k in range(num_classes)]
    fig, axes = new_figure(13.5, 4.6, ncols=3)
    image = None
    for ax, (label, subset) in zip(axes[0], SUBSETS, strict=True):
        mask = _mask(pred, subset)
        counts = confusion_matrix(
            pred.diagnosis_true[mask],
            pred.diagnosis_prob[mask].argmax(1),
            labels=np.arange(num_classes),
        )
        totals = counts.sum(axis=1, keepdims=True)
        share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
        image = ax.imshow(share, cmap=SEQUENTIAL, vmin=0.0, vmax=1.0)
        for i in range(num_classes):
            for j in range(num_classes):
                dark = share[i, j] < 0.55
                part = f"{100 * share[i, j]:.0f} %" if totals[i, 0] else "no true case"
                ax.text(
                    j,
                    i,
                    f"{counts[i, j]}\n({part})",
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if dark else "black",
                )
        ax.set_xticks(range(num_classes), labels, rotation=30, ha="right")
        ax.set_yticks(range(num_classes), labels)
        ax.set_xlabel("Predicted diagnosis (class)")
        ax.set_ylabel("True diagnosis (class)")
        ax.set_title(f"Confusion matrix, {label} (n = {int(mask.sum())})")
    if image is not None:
        bar = fig.colorbar(image, ax=list(axes[0]), fraction=0.02, pad=0.02)
        bar.set_label("Fraction of the true class (row-normalised, 0-1)")
    caption = (
        "Confusion matrices of the diagnosis head: each cell gives the image count and, "
        "in brackets, its share of the true class (the shade)."
    )
    return save(fig, out / "confusion.png"), caption
