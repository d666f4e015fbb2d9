"""Fixtures every test folder shares. Helpers live in tests/support/; the names below are
re-exported because many test modules import them from here."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.reference_files import reference_dir
from tests.support.cli import cli_for  # noqa: F401
from tests.support.configs import tiny_batch, tiny_config  # noqa: F401

REFERENCE = reference_dir()  # shipped package data: every clone and install has it


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `cuda` run only where torch sees a GPU, and say why otherwise."""
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(name="reference_dir")
def reference_dir_fixture() -> Path:
    return REFERENCE


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded-image caches go to one temporary folder for the whole session (session
    fixtures included), never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("FEDIQAD_CACHE_DIR", str(path))
        yield path


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
