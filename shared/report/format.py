"""The one way a report writes a number: terminal tables, report.md and index.html alike.

Metrics get three decimals (at tens to hundreds of test images a fourth is noise),
counts are integers, anything undefined (None, NaN, inf: e.g. AUC with one class
present) is '-'.
"""

from __future__ import annotations

import math
from typing import Any

UNDEFINED = "-"
COUNT_KEYS = ("n", "n_hq", "n_lq")


def defined(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def number(value: Any, key: str = "", digits: int = 3) -> str:
    """'0.612'; counts (`n`, `n_hq`, `n_lq`) as '62'; '-' where undefined."""
    if not defined(value):
        return UNDEFINED
    if key in COUNT_KEYS:
        return str(round(value))
    return f"{value:.{digits}f}"


def interval(value: Any, low: Any, high: Any) -> str:
    """'0.612 [0.480, 0.740]': the estimate and its 95 % interval (estimate alone if the
    interval is undefined)."""
    point = number(value)
    if point == UNDEFINED or not (defined(low) and defined(high)):
        return point
    return f"{point} [{number(low)}, {number(high)}]"


def percent(value: Any) -> str:
    """A 0-1 value in percent with two decimals, as the papers print their tables."""
    return f"{100 * value:.2f}" if defined(value) else UNDEFINED


def megabytes(n_bytes: Any) -> str:
    """Bytes as MB (10^6), two decimals."""
    return f"{n_bytes / 1e6:.2f}" if defined(n_bytes) else UNDEFINED


def seconds(value: Any) -> str:
    return f"{value:.1f}" if defined(value) else UNDEFINED
