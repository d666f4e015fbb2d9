"""The reference facts ship with the package, the code agrees with them, and a plain
clone runs its tests with bare `pytest`.

A plain clone or a non-editable install has no `../shared/reference`; these files
are package data, so every test that checks code against the papers runs everywhere.
"""

from __future__ import annotations

import csv
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from shared.config import preset
from shared.reference_files import reference_dir, reference_file

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = [
    "README.md",
    "hparams.tsv",
    "mkcnet_state_dict_keys.tsv",
    "table1_label_quality_counts.tsv",
    "table2_paper_results.tsv",
    "splits/EYEQ/test.txt",
    "splits/DRAC/train.txt",
    "splits/IQAD-CXR/val.txt",
]


def test_reference_files_are_found_through_the_package():
    assert reference_dir().is_dir()
    for name in SHIPPED:
        assert reference_file(*name.split("/")).stat().st_size > 0
    with pytest.raises(FileNotFoundError, match="not in this install"):
        reference_file("no_such_table.tsv")


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",")]


@pytest.mark.parametrize("name", ["EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD_CXR"])
def test_presets_equal_the_authors_hyper_parameters(name: str):
    with reference_file("hparams.tsv").open(newline="") as handle:
        row = next(r for r in csv.DictReader(handle, delimiter="\t") if r["dataset"] == name)
    cfg = preset(name)
    ds, optim = cfg.dataset, cfg.optim
    assert (ds.modality, ds.channels) == (row["modality"], int(row["channels"]))
    assert (ds.num_diagnosis, ds.num_quality) == (
        int(row["num_diagnosis"]),
        int(row["num_quality"]),
    )
    assert cfg.model.meta_length == int(row["meta_length"])
    assert optim.batch_size == int(row["batch_size"])
    assert (optim.lr, optim.meta_lr) == (float(row["lr"]), float(row["meta_lr"]))
    assert optim.weight_decay == float(row["weight_decay"])
    assert optim.meta_weight_decay == float(row["meta_weight_decay"])
    assert optim.lr_step_epochs == int(row["lr_step_epochs"])
    assert optim.entropy_weight == float(row["entropy_weight"])
    assert optim.epochs == int(row["epochs"])
    assert ds.norm_mean == _floats(row["norm_mean"])
    assert ds.norm_std == _floats(row["norm_std"])


def test_a_built_wheel_carries_the_reference_files(tmp_path: Path):
    """A non-editable install gets the files only if pyproject declares them."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        (src / name).write_bytes((ROOT / name).read_bytes())
    # the shared package alone is enough to see what setuptools puts in the wheel
    for path in (ROOT / "shared").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts:
            target = src / path.relative_to(ROOT)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    out = tmp_path / "dist"
    code = f"import sys; from setuptools import build_meta as b; print(b.build_wheel({str(out)!r}))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=src, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = out / done.stdout.strip().splitlines()[-1]
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in SHIPPED:
        assert f"shared/reference/{name}" in names
    assert sum(n.startswith("shared/reference/splits/") for n in names) == 13


def test_bare_pytest_imports_the_tests_package():
    """`pytest` (not only `python -m pytest`) finds `tests.*` imports from the repo root."""
    pytest_script = Path(sys.executable).with_name("pytest")
    if not pytest_script.is_file():
        pytest.skip(f"no pytest script beside {sys.executable}")
    done = subprocess.run(
        # a folder with its own conftest.py is where `tests.*` imports broke
        [str(pytest_script), "--collect-only", "-q", "-p", "no:cacheprovider", "tests/contrastive"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "ModuleNotFoundError" not in done.stdout
