"""Reading the label tables of the public releases: CSV, and the first sheet of an XLSX
file (DeepDRiD publishes its evaluation labels as .xlsx) without extra dependencies."""

from __future__ import annotations

import csv
import re
import zipfile
from pathlib import Path
from xml.etree import ElementTree

from shared.errors import UserError

Row = tuple[int, dict[str, str]]  # (line or spreadsheet row number, values by column)

_NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main"}


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


def _col_index(ref: str) -> int:
    letters = re.match(r"[A-Z]+", ref)
    index = 0
    for ch in letters.group(0) if letters else "A":
        index = index * 26 + ord(ch) - 64
    return index - 1


def _cell_text(cell: ElementTree.Element, shared: list[str]) -> str:
    kind = cell.get("t")
    if kind == "inlineStr":
        return "".join(t.text or "" for t in cell.iter(f"{{{_NS['m']}}}t"))
    value = cell.find("m:v", _NS)
    text = value.text if value is not None and value.text is not None else ""
    if kind == "s" and text:
        return shared[int(text)]
    if text.endswith(".0"):
        text = text[:-2]  # integers stored as floats
    return text


def read_xlsx(path: Path, required: list[str]) -> list[Row]:
    """Rows of the first worksheet; the first non-empty row is the header."""
    try:
        with zipfile.ZipFile(path) as zf:
            shared: list[str] = []
            if "xl/sharedStrings.xml" in zf.namelist():
                root = ElementTree.fromstring(zf.read("xl/sharedStrings.xml"))
                for si in root.findall("m:si", _NS):
                    shared.append("".join(t.text or "" for t in si.iter(f"{{{_NS['m']}}}t")))
            sheets = sorted(
                n for n in zf.namelist() if re.fullmatch(r"xl/worksheets/sheet\d+\.xml", n)
            )
            if not sheets:
                raise UserError("spreadsheet has no worksheet", path=path)
            sheet = ElementTree.fromstring(zf.read(sheets[0]))
    except (zipfile.BadZipFile, ElementTree.ParseError, KeyError) as err:
        raise UserError(f"cannot read spreadsheet ({err})", path=path) from None
    table: list[tuple[int, list[str]]] = []
    for row in sheet.iter(f"{{{_NS['m']}}}row"):
        cells: dict[int, str] = {}
        for i, cell in enumerate(row.findall("m:c", _NS)):
            ref = cell.get("r")
            cells[_col_index(ref) if ref else i] = _cell_text(cell, shared)
        if cells and any(v.strip() for v in cells.values()):
            width = max(cells) + 1
            number = int(row.get("r", len(table) + 1))
            table.append((number, [cells.get(i, "") for i in range(width)]))
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
