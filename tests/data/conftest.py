"""Data tests: keep the decoded-image cache in the test's temporary folder."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDIQAD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
