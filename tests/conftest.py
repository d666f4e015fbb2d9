"""Shared test fixtures: tiny configs and batches, and where the reference data lives."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import typer
from typer.testing import CliRunner, Result

from shared.config import RunConfig, preset
from shared.reference_files import reference_dir

REFERENCE = reference_dir()  # shipped package data: every clone and install has it


def tiny_config(dataset: str = "EYEQ", method: str = "mkcnet", **model: object) -> RunConfig:
    """Slim VGG16-BN at 32 px: the whole architecture, small enough for CPU tests."""
    cfg = preset(dataset)
    cfg.method = method  # type: ignore[assignment]
    cfg.image_size = 32
    cfg.model.backbone = "vgg16_bn_slim"
    for key, value in model.items():
        setattr(cfg.model, key, value)
    cfg.optim.batch_size = 8
    return cfg


def tiny_batch(cfg: RunConfig, n: int = 8, seed: int = 0, dtype=torch.float32):
    from shared.meta_auxiliary import Batch

    g = torch.Generator().manual_seed(seed)
    ds = cfg.dataset
    diagnosis = torch.arange(n) % ds.num_diagnosis
    quality = (torch.arange(n) // ds.num_diagnosis) % ds.num_quality
    image = torch.randn(n, ds.channels, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    return Batch(image, diagnosis, quality, quality * ds.num_diagnosis + diagnosis)


@pytest.fixture(name="reference_dir")
def reference_dir_fixture() -> Path:
    return REFERENCE


def non_strict_metrics_files(root: Path) -> list[Path]:
    """metrics.json files under `root` that parse only with NaN / Infinity allowed."""
    bad = []
    for path in root.rglob("metrics.json"):
        text = path.read_text(errors="replace")
        try:
            json.loads(text)
        except ValueError:
            continue  # not JSON at all: a test damaged it on purpose
        try:
            json.loads(text, parse_constant=_refuse_constant)
        except ValueError:
            bad.append(path)
    return bad


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


@pytest.fixture(scope="session", autouse=True)
def _every_metrics_json_is_strict(tmp_path_factory: pytest.TempPathFactory):
    """One JSON policy: each metrics.json any test's run wrote has null, never NaN."""
    yield
    bad = non_strict_metrics_files(tmp_path_factory.getbasetemp())
    assert not bad, f"metrics.json with NaN / Infinity literals: {bad}"


def cli_for(*registers: Callable[[typer.Typer], None]) -> Callable[..., Result]:
    """An in-process `fediqad` with the given command modules; `cli(..., ok=False)` lets
    a failing command through for the test to inspect."""
    app = typer.Typer()
    for register in registers:
        register(app)
    runner = CliRunner()

    def cli(*args: object, ok: bool = True) -> Result:
        result = runner.invoke(app, [str(a) for a in args])
        if ok and result.exit_code != 0:
            raise AssertionError(f"exit {result.exit_code}: {result.output}") from result.exception
        return result

    return cli
