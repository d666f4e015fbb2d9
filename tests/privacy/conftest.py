"""Fixtures for the privacy tests: Flower task identity, synthetic sites, tiny DP configs."""

from __future__ import annotations

from pathlib import Path

import pytest
from flwr.supercore.task_identity import TaskIdentity

from shared.config import RunConfig
from tests.conftest import tiny_config


@pytest.fixture(autouse=True)
def flwr_identity():
    """Messages built outside a Flower runtime need a task identity (set by the runtime)."""
    TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0
    yield


def dp_config(method: str = "mkcnet", width: float = 0.125, **privacy: object) -> RunConfig:
    """Slim VGG (width 1/8 of slim) at 32 px with sample-level DP."""
    cfg = tiny_config(method=method)
    cfg.model.width = width
    cfg.device = "cpu"
    cfg.threads = 1
    cfg.privacy.mode = "sample"
    cfg.privacy.noise_seed = 0
    for key, value in {"noise_multiplier": 1.0, **privacy}.items():
        setattr(cfg.privacy, key, value)
    return cfg


@pytest.fixture(scope="session")
def dp_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two synthetic EYEQ-like sites at 32 px."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("dp-sites")
    out = []
    for i in range(2):
        synthesize("EYEQ", 40, 32, root / f"site{i}", seed=10 + i, lq_ratio=0.3)
        out.append(root / f"site{i}")
    return out


@pytest.fixture
def releases(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The noise multiplier of every noise addition any Opacus DPOptimizer makes: one
    entry per noisy release, whatever the code under test reports."""
    from opacus.optimizers import DPOptimizer

    made: list[float] = []
    add_noise = DPOptimizer.add_noise

    def spy(self: DPOptimizer) -> None:
        made.append(float(self.noise_multiplier))
        add_noise(self)

    monkeypatch.setattr(DPOptimizer, "add_noise", spy)
    return made


def expanded(history) -> list[float]:
    """A ledger history [(sigma, q, steps), ...] as one sigma per step."""
    return [float(sigma) for sigma, _, steps in history for _ in range(int(steps))]


def opacus_epsilon(sigmas: list[float], q: float, delta: float) -> float:
    """Epsilon of these releases from a fresh Opacus RDP accountant, one step each."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for sigma in sigmas:
        accountant.step(noise_multiplier=sigma, sample_rate=q)
    return accountant.get_epsilon(delta=delta)
