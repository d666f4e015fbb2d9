"""Epsilon stays exact when a DP run resumes with another number of epochs, and in a
federated run: the ledger against the noisy releases the optimisers actually made."""

from __future__ import annotations

import json

import pytest

from shared.checkpoint import load_checkpoint
from shared.privacy.budget import PrivacyLedger
from shared.training.central import LAST, EpochHooks, TrainRun
from tests.privacy.conftest import dp_config, expanded, opacus_epsilon

pytestmark = pytest.mark.timeout(900)

TARGET, DELTA = 3.0, 1e-3


class Interrupted(Exception):
    pass


def _stop_after(first: int) -> EpochHooks:
    def end_epoch(epoch: int, _metrics: dict) -> None:
        if epoch == first:
            raise Interrupted  # as if the run were killed after this epoch's checkpoint

    return EpochHooks(end_epoch=end_epoch)


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("dp-resume")
    synthesize("EYEQ", 40, 32, root, seed=3, lq_ratio=0.3)
    return root


def _config(epochs: int):
    cfg = dp_config(method="mkcnet", noise_multiplier=None, target_epsilon=TARGET, delta=DELTA)
    cfg.optim.epochs = epochs
    return cfg


@pytest.mark.parametrize("resumed_epochs", [2, 4])
def test_resume_with_other_epochs_keeps_epsilon_exact(
    tiny_root, tmp_path, releases, resumed_epochs: int
) -> None:
    """Started for 3 epochs, killed after 1, resumed for 2 (fewer) or 4 (more)."""
    out = tmp_path / "run"
    with pytest.raises(Interrupted):
        TrainRun(_config(3), tiny_root, out).run(_stop_after(1))
    first = len(releases)
    TrainRun(_config(resumed_epochs), tiny_root, out, resume=True).run()
    saved = load_checkpoint(out / LAST).extra
    ledger = PrivacyLedger.from_json(saved["privacy_ledger"])
    # the ledger lists exactly the releases made, each at the sigma it used
    assert expanded(ledger.history) == releases
    assert len(set(releases[:first])) == 1 and len(set(releases[first:])) == 1
    assert releases[first] != releases[0]  # recalibrated for the epochs left
    recomputed = opacus_epsilon(releases, ledger.sample_rate, DELTA)
    assert saved["privacy"]["dp_epsilon"] == pytest.approx(recomputed, rel=1e-9)
    # and the run ends at its target, neither below (old bug: 10-18 % low) nor above
    assert TARGET - 0.011 <= recomputed <= TARGET
    history = json.loads((out / "metrics.json").read_text())
    assert history["epochs"][-1]["train"]["dp_epsilon"] == pytest.approx(recomputed, rel=1e-9)


def test_federated_sites_ledgers_equal_their_releases(tmp_path, dp_sites, monkeypatch) -> None:
    """2 sites x 2 rounds: each site's ledger file lists that site's releases."""
    import client.handlers as handlers
    from client.site import Site
    from server.config import FederationConfig
    from server.server_app import run_server
    from tests.privacy.test_dp_federation import grid_for

    made: dict[str, list[float]] = {"site0": [], "site1": []}
    current: list[str] = []
    train = handlers.train

    def tagged(msg, context, site, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        current[:] = [site.name]
        return train(msg, context, site, *args, **kwargs)

    monkeypatch.setattr(handlers, "train", tagged)
    from opacus.optimizers import DPOptimizer

    add_noise = DPOptimizer.add_noise

    def spy(self: DPOptimizer) -> None:
        made[current[0]].append(float(self.noise_multiplier))
        add_noise(self)

    monkeypatch.setattr(DPOptimizer, "add_noise", spy)
    cfg = dp_config(method="mkcnet", noise_multiplier=None, target_epsilon=TARGET, delta=DELTA)
    fed = FederationConfig(
        run=cfg, run_dir=tmp_path / "run", num_rounds=2, min_nodes=2, fraction_evaluate=0.0
    )
    sites = [Site(f"site{i}", p) for i, p in enumerate(dp_sites)]
    files = {i: tmp_path / f"site{i}-ledger.json" for i in range(2)}
    run_server(
        grid_for(sites, node_extra={i: {"privacy-ledger": str(f)} for i, f in files.items()}), fed
    )
    doc = json.loads((fed.run_dir / "metrics.json").read_text())
    for i in range(2):
        name = f"site{i}"
        ledger = PrivacyLedger.from_json(files[i].read_text())
        assert expanded(ledger.history) == made[name]
        reported = doc["rounds"][-1]["sites"][name]["train"]
        per_round = 2 * int(1 / ledger.sample_rate)  # stage I + stage II per batch slot
        assert reported["dp_steps"] == len(made[name]) == 2 * per_round
        recomputed = opacus_epsilon(made[name], ledger.sample_rate, DELTA)
        assert reported["dp_epsilon"] == pytest.approx(recomputed, rel=1e-9)
        assert TARGET - 0.011 <= recomputed <= TARGET
