"""Reading a torch file the one safe way: `weights_only=True` (loading never runs code
from the file), and a missing or unreadable file ends as one UserError naming it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from shared.errors import UserError


def load_torch_file(path: Path, missing: str, unreadable: str) -> Any:
    """torch.load on CPU; `missing` / `unreadable` say what the file should have been
    (the reason torch gives is appended to `unreadable` in parentheses)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(missing, path=path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is the file's fault
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{unreadable} ({reason[:200]})", path=path) from None
