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
