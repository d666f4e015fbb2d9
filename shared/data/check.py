"""`fediqad data check`: every problem in a dataset folder, one line each.

Checks split files (columns, integer labels in range), that every listed image exists and
decodes with the dataset's channel count, duplicate rows within a split, images shared
between splits (a leak), identical files listed under different names, and empty splits.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from shared.config import DatasetConfig, preset
from shared.data.images import decode
from shared.data.layout import IMAGES, SPLITS, dataset_name_of, split_path
from shared.data.splits import SplitRow, interpret_row, parse_line, read_lines
from shared.errors import UserError


@dataclass(frozen=True, order=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def dataset_config_for(folder: Path, name: str | None = None) -> DatasetConfig:
    """The preset for a dataset folder, from its name (IQAD-CT -> IQAD_CT) or `name`."""
    key = (name or dataset_name_of(Path(folder))).upper().replace("-", "_")
    try:
        return preset(key).dataset
    except UserError:
        raise UserError(
            f"cannot tell which dataset this is from the folder name "
            f"{Path(folder).name!r}; pass --dataset",
            path=folder,
        ) from None


def _file_digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_dataset(
    folder: Path, name: str | None = None, decode_images: bool = True, threads: int = 4
) -> list[Problem]:
    """All problems found in ROOT/NAME, sorted by file and line."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError("dataset folder not found", path=folder)
    cfg = dataset_config_for(folder, name)
    problems: list[Problem] = []
    if not (folder / IMAGES).is_dir():
        problems.append(Problem(str(folder / IMAGES), 0, "Images folder missing"))
    seen: dict[str, tuple[str, int]] = {}
    listed: list[tuple[Path, str, int]] = []  # image, split file, line
    for split in SPLITS:
        path = split_path(folder, split)
        if not path.is_file():
            if split in cfg.splits:
                problems.append(
                    Problem(
                        str(path),
                        0,
                        f"split file missing ({cfg.name} protocol: {', '.join(cfg.splits)})",
                    )
                )
            continue
        rows = _rows_with_problems(path, problems)
        if not rows:
            problems.append(Problem(str(path), 0, "no images listed (empty split)"))
        for row in rows:
            try:
                record = interpret_row(row, cfg, path)
            except UserError as err:
                problems.append(Problem(str(path), row.line, _bare(err)))
                continue
            key = row.name
            if key in seen:
                other_file, other_line = seen[key]
                what = (
                    "duplicate row"
                    if other_file == str(path)
                    else "image also listed in another split (leak)"
                )
                problems.append(
                    Problem(
                        str(path),
                        row.line,
                        f"{what}: {row.name} (first at {other_file}:{other_line})",
                    )
                )
                continue
            seen[key] = (str(path), row.line)
            listed.append((record.image, str(path), row.line))
    problems += _file_problems(listed, cfg, decode_images, threads)
    return sorted(problems)


def _bare(err: UserError) -> str:
    """The message of a UserError without its `path:line: ` prefix."""
    text = str(err)
    prefix = f"{err.path}:{err.line}: " if err.line is not None else f"{err.path}: "
    return text[len(prefix) :] if err.path is not None and text.startswith(prefix) else text


def _rows_with_problems(path: Path, problems: list[Problem]) -> list[SplitRow]:
    try:
        lines = read_lines(path)
    except UserError as err:
        problems.append(Problem(str(path), 0, _bare(err)))
        return []
    rows = []
    for number, raw in enumerate(lines, start=1):
        try:
            row = parse_line(path, number, raw)
        except UserError as err:
            problems.append(Problem(str(path), number, _bare(err)))
            continue
        if row is not None:
            rows.append(row)
    return rows


def _file_problems(
    listed: list[tuple[Path, str, int]], cfg: DatasetConfig, decode_images: bool, threads: int
) -> list[Problem]:
    problems: list[Problem] = []
    present: list[tuple[Path, str, int]] = []
    for image, split_file, line in listed:
        if not image.is_file():
            problems.append(Problem(split_file, line, f"image file missing: {image}"))
        else:
            present.append((image, split_file, line))

    def probe(item: tuple[Path, str, int]) -> Problem | None:
        image, split_file, line = item
        try:
            decode(image, cfg.channels, 32)
        except UserError as err:
            return Problem(split_file, line, f"{image}: {_bare(err)}")
        return None

    if decode_images and present:
        with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
            problems += [p for p in pool.map(probe, present) if p is not None]
    by_size: dict[int, list[tuple[Path, str, int]]] = defaultdict(list)
    for item in present:
        by_size[item[0].stat().st_size].append(item)
    for group in by_size.values():
        if len(group) < 2:
            continue
        by_digest: dict[str, tuple[Path, str, int]] = {}
        for image, split_file, line in group:
            digest = _file_digest(image)
            if digest in by_digest:
                first = by_digest[digest]
                problems.append(
                    Problem(
                        split_file,
                        line,
                        f"{image} has the same content as {first[0]} ({first[1]}:{first[2]})",
                    )
                )
            else:
                by_digest[digest] = (image, split_file, line)
    return problems
