"""The MKCNet paper's Table 2 as the report reads it from the shipped reference file."""

from __future__ import annotations

from shared.report.paper_table2 import TABLE2, paper_rows


def test_table2_is_read_from_the_shipped_file_with_the_papers_numbers():
    # literal cells of the paper's Table 2 (Che, Chen & Chen, CVPR 2023)
    assert list(TABLE2) == ["MMCNN", "CANet", "MAXL", "QGNet", "MTMR-Net", "DETACH", "MKCNet"]
    assert TABLE2["MKCNet"]["EyeQ"] == (83.83, 78.01, 59.68)
    assert TABLE2["MMCNN"]["CT-IQAD"] == (86.57, 86.54, 86.51)
    assert TABLE2["DETACH"]["DRAC"] == (84.81, 76.94, 65.24)
    assert TABLE2["MTMR-Net"]["CXR-IQAD"] == (89.69, 91.61, 93.96)
    assert TABLE2["QGNet"]["DeepDR"] == (84.21, 73.50, 64.66)


def test_every_preset_dataset_has_rows():
    for name in ("EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD-CXR", "eyeq"):
        rows = paper_rows(name)
        assert [m for m, _ in rows][-1] == "MKCNet" and len(rows) == len(TABLE2)
    assert paper_rows("SOMETHING_ELSE") == []
