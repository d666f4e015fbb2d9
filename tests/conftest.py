"""Fixtures every test folder shares. Helpers live in tests/support/; the names below are
re-exported because many test modules import them from here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import cli_for  # noqa: F401
from tests.support.configs import tiny_batch, tiny_config  # noqa: F401

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference"


@pytest.fixture
def reference_dir() -> Path:
    if not REFERENCE.is_dir():
        pytest.skip("../shared/reference is not present")
    return REFERENCE


@pytest.fixture(scope="session", autouse=True)
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Decoded-image caches go to one temporary folder for the whole session (session
    fixtures included), never the user's."""
    with pytest.MonkeyPatch.context() as mp:
        path = tmp_path_factory.mktemp("cache")
        mp.setenv("FEDIQAD_CACHE_DIR", str(path))
        yield path
