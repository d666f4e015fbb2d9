"""Privacy tests: Flower task identity, two synthetic sites."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.configs import dp_config  # noqa: F401 - imported from here too
from tests.support.flower import flwr_identity  # noqa: F401 - autouse in this folder
from tests.support.sites import synth_sites


@pytest.fixture(scope="session")
def dp_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two synthetic EYEQ-like sites at 32 px."""
    return synth_sites(tmp_path_factory.mktemp("dp-sites"), [0.3, 0.3], first_seed=10)
