"""DeepDRiD regular fundus images (Liu et al., Patterns 2022), official splits:
`regular-fundus-training.csv` -> train, `regular-fundus-validation.csv` -> val, and the
evaluation set (`Challenge1_labels` DR levels + `Challenge2_labels` quality, .xlsx or .csv)
-> test. Each eye's DR level comes from `left_eye_DR_Level` / `right_eye_DR_Level` by the
image id (`<patient>_l1` is a left eye). `Overall quality` 1 is HQ, 0 LQ. The source
screening project (`regular-fundus-source-*.csv`, column `Source`) goes to sources.csv."""

from __future__ import annotations

from pathlib import Path

from shared.config import preset
from shared.data.labels import map_five_grade
from shared.data.prepare.build import Entry, FileIndex, Options, report_missing, write_dataset
from shared.data.prepare.tables import int_field, read_csv, read_table
from shared.errors import UserError

QUALITY_COLUMN = "Overall quality"


def _eye_level(row: dict[str, str], image_id: str, table: Path, line: int) -> int:
    side = image_id.split("_")[-1][:1].lower()
    column = "left_eye_DR_Level" if side == "l" else "right_eye_DR_Level"
    return int_field(row[column], column, table, line, range(5))


def _sources(index: FileIndex) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in ("regular-fundus-source-training.csv", "regular-fundus-source-validation.csv"):
        table = index.file(name)
        if table is not None:
            for _, row in read_csv(table, ["image_id", "Source"]):
                out[row["image_id"]] = row["Source"].strip().lower()
    return out


def _evaluation(index: FileIndex) -> list[tuple[str, int, int, Path, int]]:
    dr_table = index.require(
        "Challenge1_labels.xlsx",
        "Challenge1_labels.csv",
        what="DeepDRiD evaluation DR labels (the test split)",
    )
    q_table = index.require(
        "Challenge2_labels.xlsx",
        "Challenge2_labels.csv",
        what="DeepDRiD evaluation quality labels (the test split)",
    )
    dr_rows = read_table(dr_table, ["image_id"])
    if dr_rows and "DR_Levels" not in dr_rows[0][1] and "DR_Level" not in dr_rows[0][1]:
        raise UserError("missing column 'DR_Levels'", path=dr_table, line=1)
    quality = {
        row["image_id"]: (line, row[QUALITY_COLUMN])
        for line, row in read_table(q_table, ["image_id", QUALITY_COLUMN])
    }
    out = []
    for line, row in dr_rows:
        column = "DR_Levels" if "DR_Levels" in row else "DR_Level"
        level = int_field(row[column], column, dr_table, line, range(5))
        if row["image_id"] not in quality:
            raise UserError(
                f"image {row['image_id']} has no quality label in {q_table.name}",
                path=dr_table,
                line=line,
            )
        q_line, q_text = quality[row["image_id"]]
        good = int_field(q_text, QUALITY_COLUMN, q_table, q_line, range(2))
        out.append((row["image_id"], level, good, dr_table, line))
    return out


def prepare(source: Path, out: Path, opts: Options) -> Path:
    cfg = preset("DEEPDR").dataset
    index = FileIndex(source)
    sources = _sources(index)
    labelled: list[tuple[str, str, int, int, Path, int]] = []
    required = ["image_id", QUALITY_COLUMN, "left_eye_DR_Level", "right_eye_DR_Level"]
    for split, name in (
        ("train", "regular-fundus-training.csv"),
        ("val", "regular-fundus-validation.csv"),
    ):
        table = index.require(name, what=f"DeepDRiD {split} labels")
        for line, row in read_csv(table, required):
            level = _eye_level(row, row["image_id"], table, line)
            good = int_field(row[QUALITY_COLUMN], QUALITY_COLUMN, table, line, range(2))
            labelled.append((split, row["image_id"], level, good, table, line))
    labelled += [("test", *item) for item in _evaluation(index)]
    entries: list[Entry] = []
    missing: list[tuple[str, Path, int]] = []
    for split, image_id, level, good, table, line in labelled:
        image = index.image(f"{image_id}.jpg")
        if image is None:
            missing.append((image_id, table, line))
            continue
        entries.append(
            Entry(
                image.name,
                level,
                map_five_grade(level),
                0 if good == 1 else 1,
                src=image,
                split=split,
                source=sources.get(image_id, ""),
            )
        )
    report_missing(missing, opts.allow_missing)
    return write_dataset(
        cfg, entries, out, opts, {"from": "deepdr", "source": str(source), "missing": len(missing)}
    )
