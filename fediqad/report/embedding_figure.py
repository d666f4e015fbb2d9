"""`fediqad embed`: t-SNE maps of the Meta Learner's soft labels and of the diagnosis
features, coloured by diagnosis and shaped by quality (the MKCNet paper's Fig. 8).

Without a Meta Learner (a baseline, or an imported Task Net only) the left panel
says so and the right one is still drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from shared.config import RunConfig
from shared.explain import EmbeddingData, tsne_2d
from shared.report.style import OKABE_ITO, new_figure, save

FIG_WIDTH, FIG_HEIGHT = 13.0, 5.6
QUALITY_MARKERS = ("o", "^", "s", "D", "v", "P")


@dataclass
class EmbedResult:
    path: Path
    notes: list[str]


def _scatter(ax: Axes, xy: np.ndarray, data: EmbeddingData, cfg: RunConfig, title: str) -> None:
    ds = cfg.dataset
    for q in range(ds.num_quality):
        for d in range(ds.num_diagnosis):
            keep = (data.diagnosis == d) & (data.quality == q)
            if keep.any():
                ax.scatter(
                    xy[keep, 0],
                    xy[keep, 1],
                    s=28,
                    alpha=0.85,
                    linewidths=0.5,
                    color=OKABE_ITO[d % len(OKABE_ITO)],
                    edgecolors="black",
                    marker=QUALITY_MARKERS[q % len(QUALITY_MARKERS)],
                )
    ax.set_title(title)
    ax.set_xlabel("t-SNE dimension 1 (arbitrary units)")
    ax.set_ylabel("t-SNE dimension 2 (arbitrary units)")
    ax.grid(True, alpha=0.3)


def _legend_handles(cfg: RunConfig) -> list[Artist]:
    ds = cfg.dataset
    handles: list[Artist] = [
        Patch(
            facecolor=OKABE_ITO[d % len(OKABE_ITO)], edgecolor="black", label=f"diagnosis: {name}"
        )
        for d, name in enumerate(ds.diagnosis_names)
    ]
    handles += [
        Line2D(
            [],
            [],
            linestyle="",
            marker=QUALITY_MARKERS[q % len(QUALITY_MARKERS)],
            markersize=8,
            markerfacecolor="white",
            markeredgecolor="black",
            label=f"quality: {name}",
        )
        for q, name in enumerate(ds.quality_names)
    ]
    return handles


def _message(ax: Axes, title: str, text: str) -> None:
    ax.set_title(title)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.set_xticks([])
    ax.set_yticks([])


def draw_embedding(
    data: EmbeddingData,
    cfg: RunConfig,
    out: Path,
    *,
    seed: int = 0,
    perplexity: float | None = None,
    subtitle: str = "",
) -> EmbedResult:
    notes: list[str] = []
    fig, axes = new_figure(FIG_WIDTH, FIG_HEIGHT, ncols=2)
    left, right = axes[0]
    meta_title = "Meta Learner output (soft auxiliary labels)"
    if data.meta_outputs is None:
        why = (
            f"no Meta Learner in this checkpoint (method {cfg.method}): "
            "the meta-knowledge map cannot be drawn"
        )
        notes.append(why)
        _message(left, meta_title, why.replace(": ", ":\n", 1))
    else:
        _scatter(left, tsne_2d(data.meta_outputs, seed, perplexity), data, cfg, meta_title)
    _scatter(
        right,
        tsne_2d(data.diagnosis_features, seed, perplexity),
        data,
        cfg,
        "Final diagnosis features (input of the diagnosis head)",
    )
    fig.legend(handles=_legend_handles(cfg), loc="outside right center", fontsize=8)
    fig.suptitle(f"t-SNE of {cfg.method} on {cfg.dataset.name}{subtitle}", fontsize=11)
    return EmbedResult(save(fig, out), notes)
