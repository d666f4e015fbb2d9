"""Input paths checked before any command imports torch: a missing checkpoint is one
line in about the time of `fediqad --help`, not after seconds of library start-up.

Every command uses these flags for files or folders it reads, never for ones it
writes, so checking them from the command line alone is safe for all commands.
"""

from __future__ import annotations

from pathlib import Path

from shared.errors import UserError

# flag -> what it must name
INPUT_FILES = (
    "--checkpoint",
    "--config",
    "--init-encoder",
    "--task-net",
    "--meta-learner",
    "--lesions",
    "--detector",
)
INPUT_FOLDERS = ("--data-root",)


def _values(argv: list[str], flag: str) -> list[str]:
    out = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            out.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            out.append(arg.split("=", 1)[1])
    return out


def check_input_paths(argv: list[str]) -> None:
    """Raise UserError for the first input file or folder flag naming nothing there."""
    if "--help" in argv or "--" in argv:
        return
    for flag in INPUT_FILES:
        for value in _values(argv, flag):
            path = Path(value).expanduser()
            if path.is_dir():
                raise UserError(f"{flag} names a folder, not a file", path=value)
            if not path.exists():
                raise UserError(f"{flag}: no such file", path=value)
    for flag in INPUT_FOLDERS:
        for value in _values(argv, flag):
            path = Path(value).expanduser()
            if not path.exists():
                raise UserError(f"{flag}: no such folder", path=value)
            if not path.is_dir():
                raise UserError(f"{flag} names a file, not a folder", path=value)
