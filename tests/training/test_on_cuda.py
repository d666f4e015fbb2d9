"""On a GPU (skipped elsewhere, with the reason): train, evaluate, simulate with a Ray
GPU share, and the train-step / loader benchmarks really run on CUDA, end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.cli import TINY, run_fediqad

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("cuda-data")
    synthesize("EYEQ", 32, 32, root, seed=0)
    return root


def test_train_and_evaluate_on_cuda(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    train = run_fediqad("train", "--dataset", "EYEQ", "--data-root", data, *TINY,
                        "--epochs", "1", "--device", "cuda", "--out", out)  # fmt: skip
    assert train.code == 0, train.stderr
    score = run_fediqad("evaluate", "--checkpoint", out / "best.ckpt", "--dataset", "EYEQ",
                        "--data-root", data, "--device", "cuda", "--json")  # fmt: skip
    assert score.code == 0, score.stderr
    assert 0.0 <= json.loads(score.stdout)["metrics"]["auc"] <= 1.0


@pytest.mark.parametrize("backend", ["in-process", "ray"])
def test_simulate_trains_the_sites_on_a_gpu_share(tmp_path: Path, backend: str) -> None:
    result = run_fediqad("simulate", "--sites", "2", "--rounds", "1", "--images-per-site",
                         "40", "--gpus-per-site", "0.5", "--backend", backend,
                         "--out", tmp_path)  # fmt: skip
    assert result.code == 0, result.stderr
    assert "0.5 GPU per site" in result.stdout
    settings = json.loads((tmp_path / "default" / "metrics.json").read_text())
    assert settings["rounds"] and settings["rounds"][0]["status"] == "ok"


def test_train_step_bench_reports_mfu_on_a_known_gpu() -> None:
    import torch

    from shared import training_bench as bench
    from shared.training.flops import arithmetic, device_peak_tflops

    settings = bench.BenchSettings(image_size=64, batch=8, threads=None, device="cuda",
                                   precision="auto", backbone="vgg16_bn_slim",
                                   comcl_backbone="resnet18", patch_px=64)  # fmt: skip
    rows = bench.run_bench(settings, repeats=2, warmup=1)
    known = device_peak_tflops(
        torch.cuda.get_device_name(), arithmetic("bf16", torch.device("cuda"))
    )
    for row in rows:
        assert row.flops_per_image > 0 and row.peak_memory_mb > 0, row
        assert (row.mfu is not None) == (known is not None), row
        if row.mfu is not None:
            assert 0 < row.mfu < 1, row


def test_loader_bench_pins_memory_and_uses_workers_on_cuda(tmp_path: Path) -> None:
    result = run_fediqad("bench", "loader", "--image-size", "64", "--batch", "8", "--images", "64",
                         "--backbone", "vgg16_bn_slim", "--device", "cuda")  # fmt: skip
    assert result.code == 0, result.stderr
    assert "pin_memory True" in result.stdout and "bottleneck:" in result.stdout
