"""DRAC 2022 (OCTA): the DR-grading training set (`... Diabetic Retinopathy
Grading_Training Labels.csv`: `image name`, `DR grade` 0-2) with quality from the
image-quality-assessment set (`... Image Quality Assessment_Training Labels.csv`:
`image name`, `image quality level` 0 poor, 1 good, 2 excellent).

The two tasks ship separate image folders, so a grading image gets the quality label of
the assessment image with identical content (or, with `drac_match=name`, the same file
name). Levels >= `drac_hq_min` (default 1: good and excellent) are HQ. Grading images
without a quality label are left out and counted. Protocol: train split only.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from shared.config import preset
from shared.data.prepare.build import Entry, FileIndex, Options, report_missing, write_dataset
from shared.data.prepare.tables import int_field, read_csv
from shared.errors import UserError

GRADING = "a. DRAC2022_ Diabetic Retinopathy Grading_Training Labels.csv"
QUALITY = "a. DRAC2022_ Image Quality Assessment_Training Labels.csv"


def _find(index: FileIndex, fragment: str, what: str) -> Path:
    hits = [p for name, paths in index.by_name.items() if fragment.lower() in name for p in paths]
    if not hits:
        raise UserError(
            f"{what} not found: expected a file named like {fragment!r} under the source folder",
            path=index.root,
        )
    return sorted(hits)[0]


def _digest(path: Path) -> str:
    return hashlib.sha1(path.read_bytes()).hexdigest()


def prepare(source: Path, out: Path, opts: Options) -> Path:
    cfg = preset("DRAC").dataset
    index = FileIndex(source)
    grading = _find(index, "Diabetic Retinopathy Grading_Training Labels", "DRAC DR-grading labels")
    quality = _find(index, "Image Quality Assessment_Training Labels", "DRAC quality labels")
    match = str(opts.extra.get("drac_match", "content"))
    hq_min = int(opts.extra.get("drac_hq_min", 1))  # type: ignore[call-overload]
    grading_dir = grading.parent.parent / "1. Original Images"
    quality_dir = quality.parent.parent / "1. Original Images"

    levels: dict[str, int] = {}
    for line, row in read_csv(quality, ["image name", "image quality level"]):
        level = int_field(
            row["image quality level"], "image quality level", quality, line, range(3)
        )
        if match == "name":
            levels[row["image name"].lower()] = level
        else:
            image = index.image(
                row["image name"], under=quality_dir if quality_dir.is_dir() else None
            )
            if image is not None:
                levels[_digest(image)] = level

    entries: list[Entry] = []
    missing: list[tuple[str, Path, int]] = []
    unlabelled = 0
    for line, row in read_csv(grading, ["image name", "DR grade"]):
        grade = int_field(row["DR grade"], "DR grade", grading, line, range(3))
        image = index.image(row["image name"], under=grading_dir if grading_dir.is_dir() else None)
        if image is None:
            missing.append((row["image name"], grading, line))
            continue
        key = row["image name"].lower() if match == "name" else _digest(image)
        if key not in levels:
            unlabelled += 1
            continue
        hq = levels[key] >= hq_min
        entries.append(Entry(image.name, grade, grade, 0 if hq else 1, src=image))
    report_missing(missing, opts.allow_missing)
    if not entries:
        raise UserError(
            f"no DR-grading image has a quality label (matched by {match}); try "
            "--drac-match name if the two tasks share file names",
            path=grading,
        )
    return write_dataset(
        cfg,
        entries,
        out,
        opts,
        {
            "from": "drac",
            "source": str(source),
            "match": match,
            "hq_min_level": hq_min,
            "without_quality": unlabelled,
            "missing": len(missing),
        },
    )
