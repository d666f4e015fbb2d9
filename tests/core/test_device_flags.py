"""`--device cuda` (and `--gpus-per-site`) where torch sees no GPU: every command that
takes it ends with one line naming the flag and exit code 2, before any work.

CUDA is switched off for these tests, so they check the same thing on a GPU machine."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.support.cli import run_fediqad


@pytest.fixture(autouse=True)
def no_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


def _commands(tmp: Path) -> dict[str, list[object]]:
    """Each command with inputs that exist (so the path checks pass) but are empty: the
    device has to be refused before any of them is read."""
    data, ckpt = tmp / "data", tmp / "model.ckpt"
    (data / "EYEQ").mkdir(parents=True)
    ckpt.write_bytes(b"")
    (tmp / "a.png").write_bytes(b"")
    return {
        "train": ["train", "--data-root", data, "--dataset", "EYEQ", "--out", tmp / "t"],
        "evaluate": ["evaluate", "--checkpoint", ckpt, "--dataset", "EYEQ", "--data-root", data],
        "predict": ["predict", "--checkpoint", ckpt, tmp / "a.png"],
        "pretrain": ["pretrain", "--data-root", data, "--dataset", "EYEQ", "--out", tmp / "p"],
        "simulate": ["simulate", "--out", tmp / "runs", "--rounds", "1"],
        "client": [
            "client",
            "--server",
            "127.0.0.1:9",
            "--data-path",
            data,
            "--site-name",
            "s1",
            "--insecure",
            "--flwr-home",
            tmp / "home",
        ],  # fmt: skip
        "bench train-step": ["bench", "train-step", "--image-size", "32"],
        "bench dp-step": ["bench", "dp-step"],
        "bench pretrain-step": ["bench", "pretrain-step"],
        "bench loader": ["bench", "loader", "--image-size", "32"],
    }


@pytest.mark.parametrize(
    "command",
    [
        "train",
        "evaluate",
        "predict",
        "pretrain",
        "simulate",
        "client",
        "bench train-step",
        "bench dp-step",
        "bench pretrain-step",
        "bench loader",
    ],  # fmt: skip
)
def test_device_cuda_without_cuda_is_one_line(tmp_path: Path, command: str) -> None:
    result = run_fediqad(*_commands(tmp_path)[command], "--device", "cuda")
    line = result.one_line_error("--device cuda")
    assert "CUDA is not available" in line, line


def test_a_gpu_share_without_cuda_is_one_line(tmp_path: Path) -> None:
    result = run_fediqad("simulate", "--out", tmp_path, "--gpus-per-site", "0.5")
    result.one_line_error("--gpus-per-site 0.5: CUDA is not available")


@pytest.mark.parametrize(
    ("flags", "fragment"),
    [
        (["--device", "cpu", "--gpus-per-site", "0.5"], "drop one of them"),
        (["--gpus-per-site", "-1"], "--gpus-per-site must be 0 or more"),
        (["--gpus-per-site", "1.5"], "fractions up to 1"),
        (["--device", "tpu"], "unknown --device 'tpu'"),
        (["--precision", "fp8"], "unknown --precision 'fp8'"),
    ],
)
def test_contradictory_gpu_flags_are_refused_before_torch(
    tmp_path: Path, flags: list[str], fragment: str
) -> None:
    run_fediqad("simulate", "--out", tmp_path, *flags).one_line_error(fragment)
    assert not (tmp_path / "default").exists()  # refused before any settings were written
