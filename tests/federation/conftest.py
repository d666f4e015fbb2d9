"""Federation tests: Flower task identity, three synthetic sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.flower import flwr_identity  # noqa: F401 - autouse in this folder
from tests.support.sites import synth_sites


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: starts a Ray simulation (about a minute)")
    config.addinivalue_line(
        "markers", "deployment: real SuperLink / SuperNode processes on 127.0.0.1 (minutes)"
    )


@pytest.fixture(scope="session")
def site_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three synthetic EYEQ-like sites at 32 px; site 2 mostly low quality."""
    return synth_sites(tmp_path_factory.mktemp("sites"), [0.2, 0.4, 0.85])
