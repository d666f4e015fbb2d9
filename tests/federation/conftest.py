"""Fixtures for the federation tests: Flower task identity, synthetic sites, tiny configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from tests.conftest import tiny_config


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: starts a Ray simulation (about a minute)")
    config.addinivalue_line(
        "markers", "deployment: real SuperLink / SuperNode processes on 127.0.0.1 (minutes)"
    )


@pytest.fixture(autouse=True)
def flwr_identity():
    """Messages built outside a Flower runtime need a task identity (set by the runtime)."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield


def fed_config(**run_model: object):
    """A tiny RunConfig: the slim VGG at 32 px, width 1/8 (fast on CPU)."""
    cfg = tiny_config(**run_model)
    cfg.model.width = 0.125
    cfg.device = "cpu"
    cfg.threads = 1
    return cfg


@pytest.fixture(scope="session")
def site_dirs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three synthetic EYEQ-like sites at 32 px; site 2 mostly low quality."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("sites")
    out = []
    for i, lq in enumerate((0.2, 0.4, 0.85)):
        synthesize("EYEQ", 40, 32, root / f"site{i}", seed=i, lq_ratio=lq)
        out.append(root / f"site{i}")
    return out
