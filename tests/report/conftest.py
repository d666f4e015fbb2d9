"""A tiny trained run (slim VGG16-BN, 32 px, 24 synthetic EyeQ images, 1 epoch) and
helpers to run the report commands through the CLI and to check the PNGs they write."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from fediqad.commands import core, report
from tests.support.cli import CPU, TINY, cli_for

cli = cli_for(core.register, report.register)


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a valid, non-empty PNG; fails on anything else."""
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as img:
        img.verify()
    with Image.open(path) as img:
        assert img.format == "PNG"
        img.load()
        assert img.getextrema() != ((255, 255),) * len(img.getbands())  # not blank
        return img.size


@dataclass
class TinyRun:
    root: Path
    data: Path
    run: Path

    @property
    def checkpoint(self) -> Path:
        return self.run / "best.ckpt"

    def images(self, n: int = 2) -> list[Path]:
        return sorted((self.data / "EYEQ" / "Images").glob("*.png"))[:n]


@pytest.fixture(scope="session")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("report")
    synthesize("EYEQ", 24, 32, root / "data", seed=0)
    synthesize("IQAD_CT", 12, 32, root / "data", seed=0)
    cli(
        "train",
        "--dataset",
        "EYEQ",
        "--data-root",
        root / "data",
        *TINY,
        *CPU,
        "--epochs",
        "1",
        "--seed",
        "1",
        "--out",
        root / "run",
    )
    return TinyRun(root, root / "data", root / "run")


@pytest.fixture
def run_copy(tiny: TinyRun, tmp_path: Path) -> Path:
    """A private copy of the tiny run folder a test may damage."""
    return Path(shutil.copytree(tiny.run, tmp_path / "run"))
