"""The one JSON policy for everything fediqad writes (`metrics.json`, `history.json`,
stdout in --json modes): strict JSON that any parser reads.

NaN and infinity (an undefined metric, e.g. AUC on a one-class subset) become null;
numpy and torch scalars become numbers; paths become strings. Readers turn null back
into NaN (`shared.report.rundir.plain`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shared.data.layout import write_text_atomic


def json_ready(obj: Any) -> Any:
    """`obj` with NaN / inf -> None, scalars of numpy / torch -> Python, paths -> str."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str | int):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_ready(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_ready(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and getattr(obj, "ndim", 0) == 0:
        return json_ready(obj.item())
    if hasattr(obj, "tolist"):
        return json_ready(obj.tolist())
    return str(obj)


def dumps(obj: Any, indent: int | None = 2) -> str:
    return json.dumps(json_ready(obj), indent=indent, allow_nan=False)


def write_json(path: Path, obj: Any, indent: int | None = 1) -> Path:
    """Strict JSON, written atomically: a reader never sees half a file."""
    path = Path(path)
    write_text_atomic(path, dumps(obj, indent) + "\n")
    return path
