"""The MKCNet paper's Table 2 as the report reads it from the shipped reference file."""

from __future__ import annotations

from shared.report.paper_table2 import paper_rows, table2


def test_table2_is_read_from_the_shipped_file_with_the_papers_numbers():
    # literal cells of the paper's Table 2 (Che, Chen & Chen, CVPR 2023)
    got = table2()
    assert list(got) == ["MMCNN", "CANet", "MAXL", "QGNet", "MTMR-Net", "DETACH", "MKCNet"]
    assert got["MKCNet"]["EyeQ"] == (83.83, 78.01, 59.68)
    assert got["MMCNN"]["CT-IQAD"] == (86.57, 86.54, 86.51)
    assert got["DETACH"]["DRAC"] == (84.81, 76.94, 65.24)
    assert got["MTMR-Net"]["CXR-IQAD"] == (89.69, 91.61, 93.96)
    assert got["QGNet"]["DeepDR"] == (84.21, 73.50, 64.66)


def test_every_preset_dataset_has_rows():
    for name in ("EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD-CXR", "eyeq"):
        rows = paper_rows(name)
        assert [m for m, _ in rows][-1] == "MKCNet" and len(rows) == len(table2())
    assert paper_rows("SOMETHING_ELSE") == []


def test_a_bundle_without_reference_data_still_reports(tmp_path, monkeypatch):
    """The deployed ServerApp runs from a Flower App Bundle, which carries no .tsv files:
    its report leaves the paper's table out instead of failing the run."""
    import json

    from shared.config import preset
    from shared.report import paper_table2
    from shared.report.build import write_run_report
    from shared.strict_json import write_json

    monkeypatch.setattr(paper_table2, "reference_file", _missing)
    paper_table2.table2.cache_clear()
    try:
        doc = {"federation": {"run": preset("EYEQ").model_dump(mode="json")}, "rounds": []}
        write_json(tmp_path / "metrics.json", doc)
        report = write_run_report(tmp_path)
    finally:
        paper_table2.table2.cache_clear()
    assert any("Table 2 beside this run: reference file" in p for p in report.problems)
    assert json.loads((tmp_path / "metrics.json").read_text())["rounds"] == []


def _missing(*parts: str):
    raise FileNotFoundError(f"reference file {'/'.join(parts)} is not in this install")
