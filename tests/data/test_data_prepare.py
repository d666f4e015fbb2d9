"""Each preparer on tiny fixture files laid out and named like the public release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fediqad.commands import data
from shared.config import preset
from shared.data.check import check_dataset
from shared.data.prepare import Options, prepare
from shared.data.prepare.tables import read_table
from shared.data.splits import parse_split, read_split
from shared.data.stats import split_counts
from shared.errors import UserError
from tests.support.cli import cli_for
from tests.support.files import write_image, write_split, write_xlsx

cli = cli_for(data.register)


def _all_rows(folder: Path) -> dict[str, tuple[str, int, int]]:
    out = {}
    for split in ("train", "val", "test"):
        if (folder / f"{split}.txt").is_file():
            for r in parse_split(folder / f"{split}.txt"):
                out[Path(r.name).name] = (split, r.diagnosis, r.quality)
    return out


# ---------------------------------------------------------------------------- EyeQ
EYEQ_TRAIN = [
    ("10_left.jpeg", 0, 0),
    ("10_right.jpeg", 0, 0),
    ("13_left.jpeg", 2, 1),
    ("15_left.jpeg", 1, 4),
    ("16_left.jpeg", 0, 2),
    ("16_right.jpeg", 1, 3),
    ("17_left.jpeg", 0, 1),
    ("19_left.jpeg", 2, 0),
    ("20_left.jpeg", 0, 0),
    ("21_left.jpeg", 1, 0),
]
EYEQ_TEST = [
    ("1_left.jpeg", 0, 0),
    ("1_right.jpeg", 2, 2),
    ("3_left.jpeg", 1, 1),
    ("5_left.jpeg", 0, 4),
    ("6_left.jpeg", 0, 0),
]


def _eyeq_release(root: Path, rows_train=EYEQ_TRAIN, rows_test=EYEQ_TEST) -> Path:
    for offset, (table, folder, rows) in enumerate(
        (("Label_EyeQ_train.csv", "train", rows_train), ("Label_EyeQ_test.csv", "test", rows_test))
    ):
        lines = [",image,quality,DR_grade"] + [
            f"{i},{n},{q},{g}" for i, (n, q, g) in enumerate(rows)
        ]
        (root / "EyeQ" / "data").mkdir(parents=True, exist_ok=True)
        (root / "EyeQ" / "data" / table).write_text("\n".join(lines) + "\n")
        for i, (name, _, _) in enumerate(rows):
            write_image(
                root / "EyePACS" / folder / name, "RGB", 40, seed=100 * offset + i, fmt="JPEG"
            )
    return root


def test_eyeq(tmp_path: Path) -> None:
    src = _eyeq_release(tmp_path / "src")
    folder = prepare(src, "eyeq", tmp_path / "root", Options(seed=1))
    assert folder == tmp_path / "root" / "EYEQ"
    rows = _all_rows(folder)
    assert len(rows) == 15
    for name, quality, grade in EYEQ_TRAIN + EYEQ_TEST:
        _, d_file, q_file = rows[name]
        assert d_file == grade  # five-grade kept, as the authors' files
        assert q_file == {0: 2, 1: 1, 2: 0}[quality]  # EyeQ Good -> authors' code 2
    link = folder / "Images" / "13_left.jpeg"
    assert link.is_symlink() and link.resolve().parent.name == "train"
    recs = read_split(folder / "train.txt", preset("EYEQ").dataset)
    assert {r.quality for r in recs} <= {0, 1, 2}
    assert check_dataset(folder) == []
    assert (folder / "prepare.json").is_file()


def test_eyeq_missing_image_column_and_copy(tmp_path: Path) -> None:
    src = _eyeq_release(tmp_path / "src")
    (src / "EyePACS" / "train" / "15_left.jpeg").unlink()
    table = src / "EyeQ" / "data" / "Label_EyeQ_train.csv"
    with pytest.raises(UserError, match="15_left.jpeg listed here") as err:
        prepare(src, "eyeq", tmp_path / "root", Options())
    assert err.value.path == table and err.value.line == 5
    assert not (tmp_path / "root" / "EYEQ").exists()
    folder = prepare(src, "eyeq", tmp_path / "root", Options(allow_missing=True, copy=True))
    assert len(_all_rows(folder)) == 14
    assert not (folder / "Images" / "10_left.jpeg").is_symlink()
    table.write_text(",image,DR_grade\n0,10_left.jpeg,0\n")
    with pytest.raises(UserError, match="missing column 'quality'") as err:
        prepare(src, "eyeq", tmp_path / "other", Options())
    assert err.value.line == 1
    table.write_text(",image,quality,DR_grade\n0,10_left.jpeg,0,7\n")
    with pytest.raises(UserError, match="'DR_grade'.*got '7'"):
        prepare(src, "eyeq", tmp_path / "other", Options())


def test_eyeq_with_the_authors_split_files(tmp_path: Path) -> None:
    src = _eyeq_release(tmp_path / "src")
    authors = tmp_path / "authors"
    write_split(authors / "train.txt", ["Images/10_left.jpg,0,2", "Images/15_left.jpg,4,1"])
    write_split(authors / "val.txt", ["Images/1_left.jpg,0,2"])
    write_split(authors / "test.txt", ["Images/3_left.jpg,1,1"])
    folder = prepare(src, "eyeq", tmp_path / "root", Options(splits_from=authors))
    assert [r.name for r in parse_split(folder / "train.txt")] == [
        "Images/10_left.jpg",
        "Images/15_left.jpg",
    ]
    assert (folder / "Images" / "10_left.jpg").is_file()
    assert len(read_split(folder / "test.txt", preset("EYEQ").dataset)) == 1


# -------------------------------------------------------------------------- DeepDRiD
DEEPDR_HEADER = (
    "patient_id,image_id,image_path,Overall quality,left_eye_DR_Level,"
    "right_eye_DR_Level,patient_DR_Level,Clarity,Field definition,Artifact"
)


def _deepdr_release(root: Path) -> Path:
    base = root / "DeepDRiD" / "regular_fundus_images"
    levels = {1: (0, 2), 2: (4, 1), 3: (3, 0)}  # patient -> (left, right)
    quality = {"l1": 0, "l2": 1, "r1": 1, "r2": 0}
    for split, folder, patients in (
        ("training", "regular-fundus-training", (1, 2)),
        ("validation", "regular-fundus-validation", (3,)),
    ):
        lines, sources = [DEEPDR_HEADER], ["patient_id,image_id,image_path,Source"]
        for p in patients:
            left, right = levels[p]
            for eye in ("l1", "l2", "r1", "r2"):
                iid = f"{p}_{eye}"
                lv, rv = (left, "") if eye[0] == "l" else ("", right)
                path = f"\\{folder}\\{p}\\{iid}.jpg"
                lines.append(f"{p},{iid},{path},{quality[eye]},{lv},{rv},{max(levels[p])},8,8,0")
                sources.append(f"{p},{iid},{path},{'Nicheng' if p != 2 else 'Shanghai'}")
                write_image(
                    base / folder / "Images" / str(p) / f"{iid}.jpg",
                    "RGB",
                    32,
                    seed=p * 10 + len(eye),
                    fmt="JPEG",
                )
        (base / folder / f"{folder}.csv").write_text("\n".join(lines) + "\n")
        (base / folder / f"regular-fundus-source-{split}.csv").write_text("\n".join(sources) + "\n")
    ev = base / "Online-Challenge1&2-Evaluation"
    ids = ["4_l1", "4_l2", "4_r1", "4_r2"]
    for k, iid in enumerate(ids):
        write_image(ev / "Images" / "4" / f"{iid}.jpg", "RGB", 32, seed=90 + k, fmt="JPEG")
    write_xlsx(
        ev / "Challenge1_labels.xlsx",
        [["image_id", "DR_Levels"]] + [[i, k] for k, i in enumerate(ids)],
    )
    write_xlsx(
        ev / "Challenge2_labels.xlsx",
        [["Overall quality", "Artifact", "Clarity", "Field definition", "image_id"]]
        + [[k % 2, 0, 8, 8, i] for k, i in enumerate(ids)],
    )
    return root


def test_deepdr_official_splits_eye_levels_and_quality(tmp_path: Path) -> None:
    folder = prepare(_deepdr_release(tmp_path / "src"), "deepdr", tmp_path / "root", Options())
    rows = _all_rows(folder)
    assert rows["1_l1.jpg"] == ("train", 0, 0)
    assert rows["1_r1.jpg"] == ("train", 2, 1)  # right eye level, good quality -> code 1
    assert rows["2_l2.jpg"] == ("train", 4, 1)
    assert rows["3_r2.jpg"] == ("val", 0, 0)
    assert [rows[f"4_{e}.jpg"] for e in ("l1", "l2", "r1", "r2")] == [
        ("test", 0, 0),
        ("test", 1, 1),
        ("test", 2, 0),
        ("test", 3, 1),
    ]
    counts = split_counts(folder, preset("DEEPDR").dataset)
    assert {s: int(c.sum()) for s, c in counts.items()} == {"train": 8, "val": 4, "test": 4}
    sources = (folder / "sources.csv").read_text()
    assert "Images/2_l1.jpg,shanghai" in sources and "Images/1_l1.jpg,nicheng" in sources


def test_deepdr_without_evaluation_labels(tmp_path: Path) -> None:
    src = _deepdr_release(tmp_path / "src")
    for p in src.rglob("Challenge1_labels.xlsx"):
        p.unlink()
    with pytest.raises(UserError, match="Challenge1_labels.xlsx or Challenge1_labels.csv"):
        prepare(src, "deepdr", tmp_path / "root", Options())


def test_xlsx_labels_as_a_spreadsheet_program_saves_them(tmp_path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    sheet.title = "labels"
    sheet["A2"], sheet["B2"] = "image_id", "DR_Levels"  # a title row left empty
    sheet.append(["4_l1", 2.0])  # integers saved as floats
    sheet.append([])
    sheet.append(["4_l2", 3, "an extra column"])
    workbook.create_sheet("notes").append(["image_id", "ignored"])
    workbook.save(tmp_path / "labels.xlsx")
    assert read_table(tmp_path / "labels.xlsx", ["image_id", "DR_Levels"]) == [
        (3, {"image_id": "4_l1", "DR_Levels": "2"}),
        (5, {"image_id": "4_l2", "DR_Levels": "3"}),
    ]
    with pytest.raises(UserError, match="missing column 'quality'"):
        read_table(tmp_path / "labels.xlsx", ["image_id", "quality"])
    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not a workbook")
    with pytest.raises(UserError, match="cannot read spreadsheet"):
        read_table(tmp_path / "broken.xlsx", ["image_id"])


# ---------------------------------------------------------------------------- DRAC
def _drac_release(root: Path) -> Path:
    grading = root / "C. Diabetic Retinopathy Grading"
    quality = root / "B. Image Quality Assessment"
    g_rows, q_rows = ["image name,DR grade"], ["image name,image quality level"]
    levels = [2, 1, 0, 2, 0, 1]
    for i in range(6):
        img = write_image(
            grading / "1. Original Images" / "a. Training Set" / f"{i + 1:03d}.png", "L", 32, seed=i
        )
        g_rows.append(f"{img.name},{i % 3}")
        if i < 5:  # the sixth grading image has no quality label
            copy = quality / "1. Original Images" / "a. Training Set" / f"{100 + i}.png"
            copy.parent.mkdir(parents=True, exist_ok=True)
            copy.write_bytes(img.read_bytes())
            q_rows.append(f"{copy.name},{levels[i]}")
    write_image(quality / "1. Original Images" / "a. Training Set" / "200.png", "L", 32, seed=50)
    q_rows.append("200.png,2")
    for folder, name, rows in (
        (grading, "a. DRAC2022_ Diabetic Retinopathy Grading_Training Labels.csv", g_rows),
        (quality, "a. DRAC2022_ Image Quality Assessment_Training Labels.csv", q_rows),
    ):
        (folder / "2. Groundtruths").mkdir(parents=True, exist_ok=True)
        (folder / "2. Groundtruths" / name).write_text("\n".join(rows) + "\n")
    return root


def test_drac_joins_quality_by_content(tmp_path: Path) -> None:
    folder = prepare(_drac_release(tmp_path / "src"), "drac", tmp_path / "root", Options())
    rows = _all_rows(folder)
    assert sorted(rows) == ["001.png", "002.png", "003.png", "004.png", "005.png"]
    # DR grade i % 3; quality levels 2,1,0,2,0 -> HQ (code 1) when >= 1
    assert [rows[f"{i:03d}.png"][1:] for i in range(1, 6)] == [
        (0, 1),
        (1, 1),
        (2, 0),
        (0, 1),
        (1, 0),
    ]
    assert {s for s, _, _ in rows.values()} == {"train"}
    assert not (folder / "val.txt").exists()
    with pytest.raises(UserError, match="no DR-grading image has a quality label"):
        prepare(tmp_path / "src", "drac", tmp_path / "other", Options(extra={"drac_match": "name"}))
    strict = prepare(
        tmp_path / "src", "drac", tmp_path / "strict", Options(extra={"drac_hq_min": 2})
    )
    assert _all_rows(strict)["002.png"][2] == 0  # "good" is LQ when only excellent is HQ


# -------------------------------------------------------------------- COVID-CT + SARS
def _ct_release(root: Path) -> Path:
    cc = root / "COVID-CT" / "Images-processed"
    for i, name in enumerate(
        [
            "2020.01.24.919183-p27-132.png",
            "2020.02.10.20021584-p6-52%11.png",
            "2020.03.01.20029769-p21-73_1%1.png",
        ]
    ):
        write_image(cc / "CT_COVID" / name, "GREY_AS_RGB", 24, seed=i)
    for i, name in enumerate(["0.jpg", "1%0.jpg", "102.png", "1029.png"]):
        write_image(cc / "CT_NonCOVID" / name, "GREY_AS_RGB", 24, seed=10 + i, fmt="PNG")
    sars = root / "sarscov2-ctscan-dataset"
    for i in range(1, 6):
        write_image(sars / "COVID" / f"Covid ({i}).png", "GREY_AS_RGB", 24, seed=20 + i)
        write_image(sars / "non-COVID" / f"Non-Covid ({i}).png", "GREY_AS_RGB", 24, seed=30 + i)
    split_dir = root / "COVID-CT" / "Data-split" / "COVID"  # a folder named COVID, no images
    split_dir.mkdir(parents=True)
    (split_dir / "trainCT_COVID.txt").write_text("x\n")
    return root


def test_covid_ct_plus_sars(tmp_path: Path) -> None:
    folder = prepare(
        _ct_release(tmp_path / "src"),
        "covid-ct+sars",
        tmp_path / "root",
        Options(extra={"sars_per_class": 3}),
    )
    rows = _all_rows(folder)
    assert len(rows) == 3 + 4 + 3 + 3
    assert rows["2020.02.10.20021584-p6-52%11.png"][1:] == (1, 0)  # COVID, LQ = code 0
    assert rows["1%0.jpg"][1:] == (0, 0)
    sars = [v for k, v in rows.items() if "Covid (" in k]
    assert len(sars) == 6 and all(q == 1 for _, _, q in sars)  # HQ = code 1
    assert {s for s, _, _ in rows.values()} == {"train", "val", "test"}
    text = (folder / "sources.csv").read_text()
    assert text.count(",covid-ct") == 7 and text.count(",sars-cov-2-ct") == 6
    assert check_dataset(folder) == []


def test_ct_release_missing(tmp_path: Path) -> None:
    src = _ct_release(tmp_path / "src")
    for p in (src / "sarscov2-ctscan-dataset" / "non-COVID").iterdir():
        p.unlink()
    with pytest.raises(UserError, match="SARS-CoV-2 CT-scan folder 'non-covid'"):
        prepare(src, "covid-ct+sars", tmp_path / "root", Options())


# ------------------------------------------------------------------ Kermany + CXR14
CXR14_HEADER = (
    "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,"
    "View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],"
)


def _cxr_release(root: Path) -> Path:
    k = root / "ChestXRay2017" / "chest_xray"
    names = {
        "NORMAL": [
            "IM-0115-0001.jpeg",
            "IM-0117-0001.jpeg",
            "NORMAL2-IM-0927-0001.jpeg",
            "IM-0119-0001.jpeg",
        ],
        "PNEUMONIA": [
            "person1_bacteria_1.jpeg",
            "person1_virus_6.jpeg",
            "person3_bacteria_11.jpeg",
            "person5_virus_10.jpeg",
            "person7_bacteria_29.jpeg",
            "person8_virus_27.jpeg",
        ],
    }
    for c, (cls, files) in enumerate(names.items()):
        for i, name in enumerate(files):
            split = "train" if i % 2 == 0 else "test"
            write_image(
                k / split / cls / name,
                "GREY_AS_RGB" if i == 0 else "L",
                64,
                seed=10 * c + i,
                fmt="JPEG",
            )
    dup = root / "ChestXRay2017" / "chest_xray" / "chest_xray" / "train" / "NORMAL"
    write_image(dup / "IM-0115-0001.jpeg", "L", 64, fmt="JPEG")  # Kaggle's nested copy
    write_image(root / "__MACOSX" / "chest_xray" / "train" / "NORMAL" / "._IM-1.jpeg", "L", 8)
    nih = root / "NIH"
    rows = [
        ("00000001_000.png", "Cardiomegaly", 58),
        ("00000002_000.png", "No Finding", 81),
        ("00000003_000.png", "Pneumonia", 74),
        ("00000004_000.png", "Atelectasis|Pneumonia", 9),
        ("00000005_000.png", "No Finding", 70),
        ("00000006_000.png", "No Finding", 40),
        ("00000007_000.png", "Pneumonia", 30),
    ]
    lines = [CXR14_HEADER]
    for i, (name, finding, age) in enumerate(rows):
        lines.append(f"{name},{finding},0,{i + 1},{age},M,PA,2682,2749,0.143,0.143,")
        if name != "00000007_000.png":  # not downloaded
            write_image(
                nih / "images_001" / "images" / name, "RGBA" if i == 1 else "L", 64, seed=50 + i
            )
    (nih / "Data_Entry_2017.csv").write_text("\n".join(lines) + "\n")
    rgba = nih / "images_001" / "images" / "00000002_000.png"
    arr = np.asarray(Image.open(rgba)).copy()
    arr[..., 1] = arr[..., 2] = arr[..., 0]
    Image.fromarray(arr, "RGBA").save(rgba)
    return root


def test_kermany_plus_cxr14(tmp_path: Path) -> None:
    opts = Options(seed=2, extra={"cxr14_normal": 2, "downsample": 4})
    folder = prepare(_cxr_release(tmp_path / "src"), "kermany+cxr14", tmp_path / "root", opts)
    rows = _all_rows(folder)
    child = {k: v for k, v in rows.items() if not k.startswith("000")}
    adult = {k: v for k, v in rows.items() if k.startswith("000")}
    assert len(child) == 10
    assert sum(1 for _, _, q in child.values() if q == 0) == 5  # half of each class HQ
    assert sum(1 for _, d, q in child.values() if q == 1 and d == 1) == 3
    normal = {"00000002_000.png", "00000005_000.png", "00000006_000.png"}  # "No Finding"
    assert {"00000003_000.png", "00000004_000.png"} <= set(adult)  # every pneumonia found
    assert len(set(adult) & normal) == 2 and len(adult) == 4  # cxr14_normal = 2
    assert all(q == 2 for _, _, q in adult.values())
    assert adult["00000004_000.png"][1] == 1 and "00000001_000.png" not in rows
    for name, (_, _, q) in rows.items():
        path = folder / "Images" / name
        if q == 0:
            assert path.is_symlink()
        else:
            with Image.open(path) as img:
                assert img.size == (16, 16) and img.mode == "L"
    assert check_dataset(folder) == []
    older = prepare(
        tmp_path / "src",
        "kermany+cxr14",
        tmp_path / "older",
        Options(extra={"min_adult_age": 18, "cxr14_normal": 5}),
    )
    assert "00000004_000.png" not in _all_rows(older)


def test_cli_prepare_and_unknown_source(tmp_path: Path) -> None:
    src = _eyeq_release(tmp_path / "src")
    result = cli(
        "data", "prepare", src, "--from", "eyeq", "--out", tmp_path / "root", "--seed", "3"
    )
    assert "EYEQ train" in result.stdout
    with pytest.raises(UserError, match="unknown source 'eyepacs'"):
        prepare(src, "eyepacs", tmp_path / "x", Options())
