"""The one atomic, durable file write: readers never see half a file, and a crash never
loses the previous good one.

Write to a temp file beside the target, flush and fsync it, rename it over the target,
then fsync the folder so the rename itself survives a power cut.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


@contextmanager
def atomic_open(path: Path, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write; it replaces `path` when the block ends without an error.

    The temp file is created 0600 (never readable by others, even briefly); `mode`
    sets the final permissions (default: 0600 as created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_bytes_atomic(path: Path, data: bytes, mode: int | None = None) -> Path:
    with atomic_open(path, mode) as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(path: Path, text: str, mode: int | None = None) -> Path:
    """UTF-8 text, newlines as given."""
    return write_bytes_atomic(path, text.encode("utf-8"), mode)


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable where the platform allows it."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
