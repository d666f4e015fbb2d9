"""Where the shipped reference data lives (`shared/reference/`, package data).

The files are the published facts the code is checked against (hyper-parameters,
the MKCNet paper's Tables 1 and 2, the authors' state-dict layout and split files);
see `shared/reference/README.md` for each file's source.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def reference_dir() -> Path:
    """The folder of the shipped reference files (a real folder: setuptools installs
    package data unzipped, and an editable install points into the checkout)."""
    return Path(str(files("shared").joinpath("reference")))


def reference_file(*parts: str) -> Path:
    """One shipped file, e.g. `reference_file("splits", "EYEQ", "test.txt")`."""
    path = reference_dir().joinpath(*parts)
    if not path.is_file():
        raise FileNotFoundError(f"reference file {'/'.join(parts)} is not in this install")
    return path
