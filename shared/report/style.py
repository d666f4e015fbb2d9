"""One look for every figure: colour-blind-safe, readable in grayscale, fixed pixel size.

Colours are the Okabe-Ito palette (distinguishable with every common colour-vision
deficiency); each series also gets its own marker and line style, and bars their own
hatch, so a grayscale print still separates them. Sequential maps are perceptually
uniform (`cividis`, `inferno`), whose lightness rises monotonically. Figures are
saved at a fixed DPI without tight bounding boxes, so a figure of W x H inches is
exactly 100 W x 100 H pixels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

DPI = 100
OKABE_ITO = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # bluish green
    "#CC79A7",  # reddish purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow (last: low contrast on white)
)
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":", (0, (5, 1)), (0, (3, 1, 1, 1)), (0, (1, 1)), "-")
HATCHES = ("", "//", "..", "xx", "\\\\", "oo", "--", "++")
SEQUENTIAL = "cividis"
HEATMAP = "inferno"


def series_style(index: int) -> dict[str, object]:
    """Colour, marker and line style of the index-th series."""
    i = index % len(OKABE_ITO)
    return {"color": OKABE_ITO[i], "marker": MARKERS[i], "linestyle": LINESTYLES[i]}


def bar_style(index: int) -> dict[str, object]:
    i = index % len(OKABE_ITO)
    return {"color": OKABE_ITO[i], "hatch": HATCHES[i], "edgecolor": "black", "linewidth": 0.6}


def new_figure(width: float, height: float, ncols: int = 1, nrows: int = 1) -> tuple[Figure, Any]:
    """A figure of width x height inches (100 px per inch) and its axes."""
    plt.rcParams.update({"hatch.linewidth": 0.6, "font.size": 9})
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(width, height), dpi=DPI, squeeze=False, layout="constrained"
    )
    return fig, axes if nrows * ncols > 1 else axes[0, 0]


def save(fig: Figure, path: Path) -> Path:
    """PNG at the fixed DPI; the figure is closed so long reports do not leak memory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI, format="png")
    plt.close(fig)
    return path


def pixel_size(width: float, height: float) -> tuple[int, int]:
    """The PNG size (w, h) in pixels of a width x height inch figure."""
    return round(width * DPI), round(height * DPI)


def new_mosaic(
    width: float, height: float, layout: list[list[str]], height_ratios: list[float] | None = None
) -> tuple[Figure, dict[str, Any]]:
    """A named-panel figure (matplotlib's subplot_mosaic) of width x height inches."""
    plt.rcParams.update({"hatch.linewidth": 0.6, "font.size": 9})
    fig = plt.figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplot_mosaic(layout, height_ratios=height_ratios)
    return fig, axes
