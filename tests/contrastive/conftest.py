"""CoMCL test fixtures: one tiny synthetic EYEQ set (64 px)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.configs import comcl_config  # noqa: F401 - imported from here too


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT with EYEQ/ (48 images at 64 px, 40 % LQ, with lesions.csv)."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("comcl")
    synthesize("EYEQ", 48, 64, root / "data", seed=3, lq_ratio=0.4)
    return root / "data"
