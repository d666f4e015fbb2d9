"""`fediqad data check / stats / synth / partition / degrade`: problems one per line, and
user errors as one line with exit code 2 and nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from fediqad.commands import data
from shared.data.check import check_dataset
from shared.data.synth import synthesize
from shared.errors import UserError
from tests.support.cli import cli_for, run_fediqad
from tests.support.files import write_image, write_split

cli = cli_for(data.register)


@pytest.fixture
def broken(tmp_path: Path) -> Path:
    """A CT dataset with one problem of every kind."""
    folder = tmp_path / "IQAD_CT"
    img = folder / "Images"
    for seed, name in enumerate(("a.png", "b.png", "c.png")):
        write_image(img / name, "L", 16, seed=seed)
    (img / "copy.png").write_bytes((img / "a.png").read_bytes())
    write_image(img / "colour.png", "RGB", 16)
    (img / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    write_split(
        folder / "train.txt",
        [
            "Images/a.png,0,1",
            "Images/missing.png,1,0",
            "Images/b.png,3,0",
            "Images/a.png,0,1",
            "Images/colour.png,1,1",
            "Images/broken.png,0,0",
            "Images/copy.png,1,1",
            "Images/c.png,1",
        ],
    )
    write_split(folder / "val.txt", ["Images/c.png,1,0"])
    write_split(folder / "test.txt", ["Images/c.png,1,0"])
    return folder


def test_check_reports_every_problem_with_file_and_line(broken: Path) -> None:
    problems = [str(p) for p in check_dataset(broken)]
    train, test = broken / "train.txt", broken / "test.txt"
    expect = {
        f"{train}:3": "image file missing",
        f"{train}:4": "DR_label 3 out of range 0-1",
        f"{train}:5": "duplicate row",
        f"{train}:6": "colour image in a 1-channel dataset",
        f"{train}:7": "cannot read image",
        f"{train}:8": "same content as",
        f"{train}:9": "expected 3 columns",
        f"{test}:2": "image also listed in another split (leak)",
    }
    for where, what in expect.items():
        assert any(p.startswith(where + ": ") and what in p for p in problems), (where, problems)
    assert len(problems) == len(expect)


def test_check_cli_exit_codes(broken: Path, tmp_path: Path) -> None:
    result = cli("data", "check", str(broken), ok=False)
    assert result.exit_code == 1
    assert len([ln for ln in result.stdout.splitlines() if ln.startswith(str(broken))]) == 8
    good = synthesize("IQAD_CT", 12, 32, tmp_path / "good")
    result = cli("data", "check", str(good), ok=False)
    assert result.exit_code == 0, result.output
    assert "no problems" in result.stdout


def test_synth_stats_partition_degrade_commands(tmp_path: Path) -> None:
    root = tmp_path / "root"
    r = cli("data", "synth", "--like", "IQAD-CXR", "--n", "60", "--image-size", "32",
            "--out", root, "--seed", "1", "--lq-ratio", "0.5")  # fmt: skip
    assert "images/s" in r.stdout and "LQ-A" in r.stdout
    r = cli("data", "stats", root / "IQAD_CXR")
    assert "Pneumonia" in r.stdout and "all splits" in r.stdout
    r = cli("data", "partition", "--data-root", root, "--dataset", "IQAD_CXR", "--sites", "2",
            "--scheme", "iid", "--out", tmp_path / "sites")  # fmt: skip
    assert (tmp_path / "sites" / "site_1" / "IQAD_CXR" / "train.txt").is_file()
    assert "site_0" in r.stdout and (tmp_path / "sites" / "partition.tsv").is_file()
    cli("data", "degrade", "--data-root", root, "--dataset", "IQAD_CXR", "--lq-ratio", "0.9",
        "--out", tmp_path / "lq")  # fmt: skip
    r = cli("data", "partition", "--data-root", root, "--dataset", "IQAD_CXR", "--sites", "2",
            "--scheme", "nope", "--out", tmp_path / "x", ok=False)  # fmt: skip
    assert isinstance(r.exception, UserError) and not (tmp_path / "x").exists()


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    folder = tmp_path / "EYEQ"
    write_image(folder / "Images" / "a.png", "RGB", 16)
    split = write_split(folder / "train.txt", ["Images/a.png,0,0", "Images/a.png,1"])
    run_fediqad("data", "stats", folder).one_line_error(f"{split}:3: expected 3 columns")
    write_split(folder / "train.txt", ["Images/a.png,9,0"])
    run_fediqad("data", "stats", folder).one_line_error("DR_label 9 out of range")
    write_split(folder / "train.txt", [])
    out = tmp_path / "sites"
    run_fediqad("data", "partition", "--data-root", tmp_path, "--dataset", "EYEQ", "--sites", "2",
                "--scheme", "iid", "--out", out).one_line_error("empty dataset")  # fmt: skip
    assert not out.exists()
    synthesize("IQAD_CT", 8, 32, tmp_path / "ct")
    run_fediqad("data", "partition", "--data-root", tmp_path / "ct", "--dataset", "IQAD_CT",
                "--sites", "9", "--scheme", "dirichlet-label:0.1", "--out", out
                ).one_line_error("has no samples")  # fmt: skip
    assert not out.exists()
    run_fediqad("data", "synth", "--like", "EYEQ", "--n", "0", "--image-size", "32", "--out", out
                ).one_line_error("--n must be at least 1")  # fmt: skip
    assert not out.exists()
    ct = tmp_path / "ct" / "IQAD_CT"
    hq = next(
        r.split(",")[0] for r in (ct / "train.txt").read_text().splitlines()[1:] if r.endswith(",1")
    )  # file code 1 = HQ in CT-IQAD
    (ct / hq).write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    run_fediqad("data", "degrade", "--data-root", tmp_path / "ct", "--dataset", "IQAD_CT",
                "--split", "train", "--lq-ratio", "1.0", "--out", out
                ).one_line_error("cannot read image")  # fmt: skip
    assert not out.exists()
