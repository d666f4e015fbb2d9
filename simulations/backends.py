"""Where a simulation's sites run (`fediqad simulate --backend`)."""

from __future__ import annotations

from typing import Literal

# Flower's Simulation Engine on Ray; this process, one site after another; or Ray with
# this process as the fallback when Ray cannot start.
Backend = Literal["auto", "ray", "in-process"]
BACKENDS: tuple[str, ...] = ("auto", "ray", "in-process")
