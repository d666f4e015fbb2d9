"""The one JSON policy for files and stdout: strict JSON, NaN / inf written as null.

Every `metrics.json` (central and federated), `history.json` and --json output goes
through here; readers turn null back into NaN (`shared.report.rundir.plain`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.atomic_write import write_text_atomic


def json_ready(obj: Any) -> Any:
    """NaN / inf become null, so files and stdout are strict JSON any parser reads;
    numpy / torch scalars become numbers, paths strings."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:
        return json_ready(obj.item())
    return obj


def _fallback(obj: Any) -> Any:
    """Arrays as lists, anything else JSON does not know as its text (never a crash)."""
    return json_ready(obj.tolist()) if hasattr(obj, "tolist") else str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(json_ready(obj), indent=indent, allow_nan=False, default=_fallback)


def write_json(path: Path, obj: Any, indent: int | None = 1) -> Path:
    """Strict JSON, written atomically and durably (`shared.atomic_write`)."""
    return write_text_atomic(Path(path), dumps(obj, indent) + "\n")
