"""Reading the label tables of the public releases: CSV, and the first sheet of an XLSX
file (DeepDRiD publishes its evaluation labels as .xlsx; openpyxl reads them)."""

from __future__ import annotations

import csv
import zipfile
from pathlib import Path

from shared.errors import UserError

Row = tuple[int, dict[str, str]]  # (line or spreadsheet row number, values by column)


def _columns(header: list[str], path: Path, required: list[str], line: int = 1) -> list[str]:
    names = [h.strip() for h in header]
    missing = [c for c in required if c not in names]
    if missing:
        found = ", ".join(repr(n) for n in names if n) or "nothing"
        raise UserError(f"missing column {missing[0]!r} (found {found})", path=path, line=line)
    return names


def read_csv(path: Path, required: list[str]) -> list[Row]:
    """Rows of a CSV file with a header; UserError naming the file if a column is missing."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise UserError("empty label file", path=path)
            names = _columns(header, path, required)
            rows = []
            for values in reader:
                if not any(v.strip() for v in values):
                    continue
                rows.append(
                    (
                        reader.line_num,
                        {
                            n: (values[i].strip() if i < len(values) else "")
                            for i, n in enumerate(names)
                        },
                    )
                )
            return rows
    except UnicodeDecodeError:
        raise UserError("label file is not UTF-8 text", path=path) from None


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # integers stored as floats
    return str(value)


def read_xlsx(path: Path, required: list[str]) -> list[Row]:
    """Rows of the first worksheet (cached values, not formulas); the first non-empty row
    is the header."""
    from openpyxl import load_workbook  # imported here: only DeepDRiD's labels need it
    from openpyxl.utils.exceptions import InvalidFileException

    try:
        workbook = load_workbook(path, data_only=True)
    except (InvalidFileException, zipfile.BadZipFile, KeyError, ValueError) as err:
        raise UserError(f"cannot read spreadsheet ({err})", path=path) from None
    try:
        table = []
        rows = workbook.worksheets[0].iter_rows(values_only=True)
        for number, values in enumerate(rows, start=1):
            cells = [_cell_text(v) for v in values]
            while cells and not cells[-1].strip():
                cells.pop()  # the sheet's width, not this row's
            if cells:
                table.append((number, cells))
    finally:
        workbook.close()
    if not table:
        raise UserError("empty spreadsheet", path=path)
    header_line, header = table[0]
    names = _columns(header, path, required, header_line)
    return [
        (n, {name: (vals[i].strip() if i < len(vals) else "") for i, name in enumerate(names)})
        for n, vals in table[1:]
    ]


def read_table(path: Path, required: list[str]) -> list[Row]:
    """CSV or XLSX by extension."""
    if path.suffix.lower() == ".xlsx":
        return read_xlsx(path, required)
    return read_csv(path, required)


def int_field(value: str, column: str, path: Path, line: int, allowed: range) -> int:
    """An integer label in `allowed`; UserError naming file, line and column otherwise."""
    text = value.strip()
    if text.endswith(".0"):
        text = text[:-2]
    if not text.lstrip("-").isdigit() or int(text) not in allowed:
        raise UserError(
            f"column {column!r}: expected an integer {allowed.start}-"
            f"{allowed.stop - 1}, got {value!r}",
            path=path,
            line=line,
        )
    return int(text)
