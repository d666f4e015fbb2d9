"""Split files in the authors' format: `image_name,DR_label,IQ_label` then one row per image.

`parse_split` keeps rows as written (five-grade DR, the authors' quality codes) so they
can be copied verbatim; `read_split` validates them against a dataset config and returns
records with three-grade diagnosis and canonical quality (0 = HQ).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.config import DatasetConfig
from shared.data.labels import map_five_grade, quality_from_file, quality_to_file
from shared.data.layout import write_text_atomic
from shared.errors import UserError

HEADER = "image_name,DR_label,IQ_label"


@dataclass(frozen=True)
class SplitRow:
    """One data row exactly as written in a split file."""

    name: str
    diagnosis: int
    quality: int
    line: int


@dataclass(frozen=True)
class SampleRecord:
    """One labelled image: absolute path, three-grade diagnosis, canonical quality."""

    image: Path
    diagnosis: int
    quality: int
    line: int


def _is_int(text: str) -> bool:
    return text.strip().lstrip("-").isdigit()


def read_lines(path: Path) -> list[str]:
    """The file's lines; UserError when it is missing or not text."""
    path = Path(path)
    if not path.is_file():
        raise UserError("split file not found", path=path)
    try:
        return path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError:
        raise UserError("split file is not UTF-8 text", path=path) from None


def parse_line(path: Path, number: int, raw: str) -> SplitRow | None:
    """One line as a row; None for blank lines and the header (line 1 only)."""
    line = raw.strip()
    if not line:
        return None
    fields = [f.strip() for f in line.split(",")]
    if len(fields) < 3:
        raise UserError(
            f"expected 3 columns (image_name,DR_label,IQ_label), got {len(fields)}: {line!r}",
            path=path,
            line=number,
        )
    name, d_text, q_text = ",".join(fields[:-2]), fields[-2], fields[-1]
    if number == 1 and not (_is_int(d_text) and _is_int(q_text)):
        return None  # header
    if not name:
        raise UserError("empty image name", path=path, line=number)
    for label, text_value in (("DR_label", d_text), ("IQ_label", q_text)):
        if not _is_int(text_value):
            raise UserError(
                f"{label} must be an integer, got {text_value!r}", path=path, line=number
            )
    return SplitRow(name, int(d_text), int(q_text), number)


def parse_split(path: Path) -> list[SplitRow]:
    """Rows of a split file; a header line is optional. Bad rows name file and line."""
    rows = []
    for number, raw in enumerate(read_lines(path), start=1):
        row = parse_line(Path(path), number, raw)
        if row is not None:
            rows.append(row)
    return rows


def interpret_row(row: SplitRow, cfg: DatasetConfig, path: Path) -> SampleRecord:
    """Validate one row's labels and turn them into a record."""
    d_max = 4 if cfg.five_grade_dr else cfg.num_diagnosis - 1
    if not 0 <= row.diagnosis <= d_max:
        raise UserError(
            f"DR_label {row.diagnosis} out of range 0-{d_max} for {cfg.name}",
            path=path,
            line=row.line,
        )
    if not 0 <= row.quality < cfg.num_quality:
        raise UserError(
            f"IQ_label {row.quality} out of range 0-{cfg.num_quality - 1} for {cfg.name}",
            path=path,
            line=row.line,
        )
    diagnosis = map_five_grade(row.diagnosis) if cfg.five_grade_dr else row.diagnosis
    image = Path(os.path.abspath(Path(path).parent / row.name))
    return SampleRecord(image, diagnosis, quality_from_file(cfg.name, row.quality), row.line)


def read_split(path: Path, cfg: DatasetConfig) -> list[SampleRecord]:
    """Records of one split file, labels checked against `cfg`; image paths are absolute."""
    if not isinstance(cfg, DatasetConfig):  # accept a RunConfig too
        cfg = cfg.dataset
    return [interpret_row(row, cfg, Path(path)) for row in parse_split(path)]


def format_rows(rows: Iterable[SplitRow]) -> str:
    lines = [HEADER] + [f"{r.name},{r.diagnosis},{r.quality}" for r in rows]
    return "\n".join(lines) + "\n"


def write_split(path: Path, rows: Iterable[SplitRow]) -> None:
    """Write rows (already in file codes) with the authors' header."""
    write_text_atomic(Path(path), format_rows(rows))


def file_row(name: str, diagnosis_file: int, quality: int, cfg: DatasetConfig) -> SplitRow:
    """A row from a file-coded diagnosis and a canonical quality."""
    return SplitRow(name, diagnosis_file, quality_to_file(cfg.name, quality), 0)


def stratified_assign(keys: Sequence[int], fractions: Sequence[float], seed: int) -> list[int]:
    """Split index per item: each stratum (`keys`) is shuffled and cut by `fractions`.

    Rounding is by largest remainder per stratum so every split's share is as close to the
    protocol as the counts allow.
    """
    rng = np.random.default_rng(seed)
    keys_arr = np.asarray(keys)
    out = np.zeros(len(keys_arr), dtype=np.int64)
    frac = np.asarray(fractions, dtype=float) / float(sum(fractions))
    for key in np.unique(keys_arr):
        idx = np.flatnonzero(keys_arr == key)
        rng.shuffle(idx)
        counts = apportion(len(idx), frac)
        start = 0
        for split, count in enumerate(counts):
            out[idx[start : start + count]] = split
            start += count
    # tiny datasets: rounding per stratum can leave a split empty; move one item there
    # from the largest split (from its most common stratum) so every split has data
    wanted = [k for k in range(len(frac)) if frac[k] > 0]
    for split in wanted:
        sizes = np.bincount(out, minlength=len(frac))
        if sizes[split] == 0 and len(out) >= len(wanted):
            donor = int(np.argmax(sizes))
            members = np.flatnonzero(out == donor)
            common = np.bincount(np.unique(keys_arr, return_inverse=True)[1][members]).argmax()
            strata = np.unique(keys_arr, return_inverse=True)[1]
            pick = members[strata[members] == common][0]
            out[pick] = split
    return out.tolist()


def apportion(total: int, weights: Sequence[float]) -> list[int]:
    """Integer counts summing to `total`, proportional to `weights` (largest remainder)."""
    w = np.asarray(weights, dtype=float)
    if total <= 0 or w.sum() <= 0:
        return [0] * len(w)
    exact = total * w / w.sum()
    counts = np.floor(exact).astype(int)
    remainder = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:remainder]] += 1
    return counts.tolist()
