"""Helpers for the data tests: tiny images, spreadsheets and the reference folder."""

from __future__ import annotations

import zipfile
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np
from PIL import Image

from shared.reference_files import reference_dir


def reference() -> Path:
    """The shipped reference files (package data, present in every clone and install)."""
    return reference_dir()


def write_image(
    path: Path, mode: str = "RGB", size: int = 24, seed: int = 0, fmt: str | None = None
) -> Path:
    """A small random image file in the given PIL mode."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "RGB":
        img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    elif mode == "L":
        img = Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8))
    elif mode == "GREY_AS_RGB":
        g = rng.integers(0, 256, (size, size), dtype=np.uint8)
        img = Image.fromarray(np.stack([g, g, g], -1))
    elif mode == "RGBA":
        img = Image.fromarray(rng.integers(0, 256, (size, size, 4), dtype=np.uint8), "RGBA")
    elif mode == "I;16":
        img = Image.fromarray(rng.integers(0, 65535, (size, size), dtype=np.uint16))
    else:
        raise ValueError(mode)
    img.save(path, format=fmt)
    return path


def write_xlsx(path: Path, rows: list[list[object]]) -> Path:
    """A minimal one-sheet .xlsx (shared strings for text, numbers inline)."""
    strings: list[str] = []
    cells_xml = []
    for r, row in enumerate(rows, start=1):
        cells = []
        for c, value in enumerate(row):
            ref = f"{chr(65 + c)}{r}"
            if isinstance(value, str):
                if value not in strings:
                    strings.append(value)
                cells.append(f'<c r="{ref}" t="s"><v>{strings.index(value)}</v></c>')
            else:
                cells.append(f'<c r="{ref}"><v>{value}</v></c>')
        cells_xml.append(f'<row r="{r}">{"".join(cells)}</row>')
    ns = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    sheet = (
        f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{ns}"><sheetData>'
        f"{''.join(cells_xml)}</sheetData></worksheet>"
    )
    shared = (
        f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{ns}">'
        + "".join(f"<si><t>{escape(s)}</t></si>" for s in strings)
        + "</sst>"
    )
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("xl/worksheets/sheet1.xml", sheet)
        zf.writestr("xl/sharedStrings.xml", shared)
        zf.writestr("[Content_Types].xml", "<Types/>")
    return path


def write_split(path: Path, rows: list[str], header: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["image_name,DR_label,IQ_label"] if header else []) + rows
    path.write_text("\n".join(lines) + "\n")
    return path
