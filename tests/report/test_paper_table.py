"""The shipped copy of the MKCNet paper's Table 2 equals the reference file."""

from __future__ import annotations

import csv

import pytest

from fediqad.report.paper_table2 import PAPER_DATASET, TABLE2, paper_rows


def test_shipped_table_equals_reference(reference_dir):
    with open(reference_dir / "table2_paper_results.tsv", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert [r["method"] for r in rows] == list(TABLE2)
    for row in rows:
        for column in PAPER_DATASET.values():
            expected = tuple(float(row[f"{column}_{m}"]) for m in ("AUC", "ACC", "F1"))
            assert TABLE2[row["method"]][column] == pytest.approx(expected, abs=1e-9)


def test_every_preset_dataset_has_rows():
    for name in ("EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD-CXR", "eyeq"):
        rows = paper_rows(name)
        assert [m for m, _ in rows][-1] == "MKCNet" and len(rows) == len(TABLE2)
    assert paper_rows("SOMETHING_ELSE") == []
