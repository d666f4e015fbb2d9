"""Small files for the data tests: random images, split files and spreadsheets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


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
    """A one-sheet .xlsx written by openpyxl, as spreadsheet programs write them."""
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    path.parent.mkdir(parents=True, exist_ok=True)
    workbook.save(path)
    return path


def write_split(path: Path, rows: list[str], header: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = (["image_name,DR_label,IQ_label"] if header else []) + rows
    path.write_text("\n".join(lines) + "\n")
    return path
