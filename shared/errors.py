"""One exception type for mistakes a user can fix.

The CLI turns it into a single line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path


class UserError(Exception):
    """A problem with the user's input: what is wrong, where, and what to do."""

    exit_code = 2

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        self.path = Path(path) if path is not None else None
        self.line = line
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(f"{where}{message}")


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'; did you mean X?' for a near miss among `choices`, else '' (for error lines)."""
    match = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {match[0]!r}?" if match else ""


def unknown_choice(what: str, given: str, choices: Iterable[str]) -> UserError:
    """`unknown method 'mkcnt'; choose one of ...; did you mean 'mkcnet'?`"""
    names = list(choices)
    return UserError(
        f"unknown {what} {given!r}; choose one of {', '.join(names)}{did_you_mean(given, names)}"
    )
