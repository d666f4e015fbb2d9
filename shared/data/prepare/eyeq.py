"""EyeQ (Fu et al., MICCAI 2019): EyePACS images with `Label_EyeQ_train.csv` /
`Label_EyeQ_test.csv` (columns: unnamed index, image, quality, DR_grade). EyeQ's quality
codes (0 Good, 1 Usable, 2 Reject) are already the canonical HQ / LQ-U / LQ-P order; the
split protocol is the MKCNet authors' random 60/10/30 over both label files."""

from __future__ import annotations

from pathlib import Path

from shared.config import preset
from shared.data.labels import map_five_grade
from shared.data.prepare.build import Entry, FileIndex, Options, report_missing, write_dataset
from shared.data.prepare.tables import int_field, read_csv

LABEL_FILES = ("Label_EyeQ_train.csv", "Label_EyeQ_test.csv")


def prepare(source: Path, out: Path, opts: Options) -> Path:
    cfg = preset("EYEQ").dataset
    index = FileIndex(source)
    tables = [index.file(name) for name in LABEL_FILES]
    if not any(tables):
        index.require(*LABEL_FILES, what="EyeQ label file")
    entries: list[Entry] = []
    missing: list[tuple[str, Path, int]] = []
    for table in (t for t in tables if t is not None):
        for line, row in read_csv(table, ["image", "quality", "DR_grade"]):
            grade = int_field(row["DR_grade"], "DR_grade", table, line, range(5))
            quality = int_field(row["quality"], "quality", table, line, range(3))
            image = index.image(row["image"])
            if image is None:
                missing.append((row["image"], table, line))
                continue
            entries.append(Entry(image.name, grade, map_five_grade(grade), quality, src=image))
    report_missing(missing, opts.allow_missing)
    return write_dataset(
        cfg, entries, out, opts, {"from": "eyeq", "source": str(source), "missing": len(missing)}
    )
