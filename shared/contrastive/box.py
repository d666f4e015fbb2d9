"""A lesion box, and what a box source is (`boxes.py` has the sources)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class Box:
    """A lesion box in pixels of the image as loaded: [x0, x1) x [y0, y1)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(self.x1 - self.x0, 0.0) * max(self.y1 - self.y0, 0.0)

    def scaled(self, sx: float, sy: float) -> Box:
        return Box(self.x0 * sx, self.y0 * sy, self.x1 * sx, self.y1 * sy)


# A box source maps (image path, uint8 image [C, H, W]) to boxes in that image.
BoxSource = Callable[[Path, torch.Tensor], list[Box]]
