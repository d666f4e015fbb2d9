"""`fediqad bench train-step` and `bench loader` end to end at 32 px on the CPU: every
row and rate is printed; mistakes are one line. No speed is asserted."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from fediqad.commands import bench_steps
from tests.support.cli import cli_for

cli = cli_for(bench_steps.register)
ROWS = ("vanilla", "stage I", "stage II (second order)", "stage II (first order)",
        "fused (second order)", "DP stage I", "CoMCL")  # fmt: skip


def test_train_step_prints_every_row_with_flops_and_mfu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    result = cli("bench", "train-step", "--image-size", "32", "--batch", "4", "--threads", "1",
                 "--backbone", "vgg16_bn_slim", "--comcl-backbone", "vgg16_bn_slim",
                 "--patch-px", "32", "--precision", "fp32", "--peak-tflops", "1",
                 "--repeats", "1")  # fmt: skip
    for row in ROWS:
        assert f"│ {row} " in result.stdout, (row, result.stdout)
    assert "GFLOP / image" in result.stdout and "MFU" in result.stdout
    assert result.stdout.count(" %") == len(ROWS) and "—" not in result.stdout


def test_train_step_refuses_unknown_names() -> None:
    assert "--precision" in cli.user_error("bench", "train-step", "--precision", "fp8")
    message = cli.user_error("bench", "train-step", "--image-size", "32", "--step", "stage 3")
    assert "unknown --step 'stage 3'" in message


def _rate(text: str, row: str) -> float:
    match = re.search(re.escape(row) + r"[^│]*│\s*([0-9.]+)", text)
    assert match, (row, text)
    return float(match.group(1))


def test_loader_bench_prints_the_loader_and_the_step_rate(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FEDIQAD_CACHE_DIR", str(tmp_path / "cache"))
    result = cli("bench", "loader", "--image-size", "32", "--batch", "4", "--images", "24",
                 "--backbone", "vgg16_bn_slim", "--device", "cpu", "--threads", "1",
                 "--num-workers", "1")  # fmt: skip
    out = result.stdout
    loader, cached, step = (
        _rate(out, "loader, pass 1"),
        _rate(out, "loader, pass 2 (cached)"),
        _rate(out, "training step (stage I)"),
    )
    assert loader > 0 and cached > 0 and step > 0
    assert "1 workers, pin_memory False" in out  # the settings training would use
    assert "0 % cached before" in out  # fresh synthetic images: pass 1 decoded them
    expected = "the loader" if cached < step else "the training step"
    assert f"bottleneck: {expected}" in out


def test_loader_bench_reads_a_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shared.data.synth import synthesize

    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setenv("FEDIQAD_CACHE_DIR", str(tmp_path / "cache"))
    synthesize("EYEQ", 12, 32, tmp_path / "data", seed=1)
    result = cli("bench", "loader", "--data-root", tmp_path / "data", "--image-size", "32",
                 "--batch", "4", "--backbone", "vgg16_bn_slim", "--device", "cpu",
                 "--step", "vanilla")  # fmt: skip
    assert "training step (vanilla)" in result.stdout
    assert str(tmp_path / "data") in result.stdout.replace("\n", "")
