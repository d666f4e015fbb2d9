"""Preparers: turn a public release, as its users download it, into the authors' layout.

Nothing is downloaded: SOURCE is the folder where the user unpacked the release(s).
Images are symlinked unless `copy` is set; only derived images (CXR low-dose versions)
are written. Output is staged and renamed into place at the end.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from shared.data.prepare import ct, cxr, deepdr, drac, eyeq
from shared.data.prepare.build import Options
from shared.errors import UserError

PREPARERS: dict[str, Callable[[Path, Path, Options], Path]] = {
    "eyeq": eyeq.prepare,
    "deepdr": deepdr.prepare,
    "drac": drac.prepare,
    "covid-ct+sars": ct.prepare,
    "kermany+cxr14": cxr.prepare,
}


def prepare(source: Path, kind: str, out: Path, opts: Options | None = None) -> Path:
    """Prepare release(s) `kind` found under `source` into OUT/NAME; returns OUT/NAME."""
    key = kind.lower()
    if key not in PREPARERS:
        raise UserError(f"unknown source {kind!r}; choose one of {', '.join(PREPARERS)}")
    return PREPARERS[key](Path(source), Path(out), opts or Options())


__all__ = ["PREPARERS", "Options", "prepare"]
