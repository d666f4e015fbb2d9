"""The privacy ledger against the noisy releases actually made.

Every call of Opacus' `DPOptimizer.add_noise` is one release of a subsampled Gaussian
mechanism. A spy records the noise multiplier of each; epsilon recomputed from those
releases by a fresh Opacus accountant must equal what the ledger reports, and the
ledger's history must list exactly those releases (2 per batch slot for MKCNet).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from shared.errors import UserError
from shared.models import build_models
from shared.privacy.budget import PrivacyLedger, calibrate_remaining
from shared.privacy.trainer import (
    DPLocalTrainer,
    new_ledger,
    poisson_loader,
    sampling_generator,
    steps_per_epoch,
)
from tests.conftest import tiny_batch
from tests.privacy.conftest import dp_config, expanded, opacus_epsilon

pytestmark = pytest.mark.timeout(300)


def dataset(cfg, n: int = 24) -> TensorDataset:
    b = tiny_batch(cfg, n=n)
    return TensorDataset(b.image, b.diagnosis, b.quality, b.joint)


@pytest.mark.parametrize(("method", "per_slot"), [("mkcnet", 2), ("maxl", 2), ("canet", 1)])
def test_ledger_lists_exactly_the_noisy_releases(releases, method: str, per_slot: int) -> None:
    cfg = dp_config(method=method, noise_multiplier=1.3)
    data = dataset(cfg)
    ledger = new_ledger(cfg, len(data), 10)
    trainer = DPLocalTrainer(cfg, build_models(cfg), "cpu", ledger)
    loader = poisson_loader(data, cfg, sampling_generator(cfg))
    trainer.fit(loader, epochs=2)
    assert len(releases) == 2 * per_slot * steps_per_epoch(cfg, len(data))
    assert expanded(ledger.history) == releases
    assert ledger.epsilon() == pytest.approx(
        opacus_epsilon(releases, ledger.sample_rate, ledger.delta), rel=1e-9
    )


def test_a_changed_noise_multiplier_is_recorded_at_the_step_it_applies(releases) -> None:
    cfg = dp_config(method="mkcnet", noise_multiplier=1.0)
    data = dataset(cfg)
    ledger = new_ledger(cfg, len(data), 10)
    trainer = DPLocalTrainer(cfg, build_models(cfg), "cpu", ledger)
    loader = poisson_loader(data, cfg, sampling_generator(cfg))
    trainer.fit(loader, epochs=1)
    trainer.set_noise_multiplier(2.5)
    trainer.fit(loader, epochs=1)
    assert sorted(set(releases)) == [1.0, 2.5]
    assert expanded(ledger.history) == releases
    assert ledger.epsilon() == pytest.approx(
        opacus_epsilon(releases, ledger.sample_rate, ledger.delta), rel=1e-9
    )


def test_a_loader_of_another_rate_is_refused() -> None:
    cfg = dp_config(method="vanilla", noise_multiplier=1.0)
    data = dataset(cfg)
    trainer = DPLocalTrainer(cfg, build_models(cfg), "cpu", new_ledger(cfg, len(data), 10))
    with pytest.raises(ValueError, match="Poisson loader"):
        trainer.fit(torch.utils.data.DataLoader(data, batch_size=8))


@pytest.mark.parametrize("remaining", [30, 90])
def test_recalibration_after_a_spent_history_ends_at_the_target(remaining: int) -> None:
    cfg = dp_config(noise_multiplier=None, target_epsilon=4.0, delta=1e-3)
    q, spent = 0.2, [(2.0, 0.2, 20)]  # epsilon 1.68 spent
    sigma = calibrate_remaining(cfg.privacy, spent, q, remaining)
    history = [*spent, (sigma, q, remaining)]
    final = PrivacyLedger("rdp", 1e-3, sigma, q, history=history).epsilon()
    assert 4.0 - 0.011 <= final <= 4.0
    assert final == pytest.approx(opacus_epsilon(expanded(history), q, 1e-3), rel=1e-9)


def _encoder(tmp_path, cfg, privacy: str, epsilon: float | None = None):
    from shared.contrastive.transfer import save_encoder
    from shared.models.backbones import build_backbone

    backbone = build_backbone(cfg.model.backbone, cfg.dataset.channels, cfg.model.width)
    state = {f"backbone.{k}": v for k, v in backbone.state_dict().items()}
    pre = cfg.model_copy(deep=True)
    pre.privacy.mode = privacy  # type: ignore[assignment]
    metrics = {"dp_client_epsilon": epsilon} if epsilon is not None else {}
    return save_encoder(tmp_path / f"{privacy}.pt", state, pre, metrics=metrics)


def test_init_encoder_under_dp_needs_public_or_dp_provenance(tmp_path) -> None:
    cfg = dp_config(method="vanilla", noise_multiplier=None, target_epsilon=6.0, delta=1e-3)
    cfg.model.pretrained_weights = _encoder(tmp_path, cfg, "off")
    with pytest.raises(UserError, match="pretrained without DP on EYEQ"):
        new_ledger(cfg, 24, 30)
    cfg.privacy.public_pretrained = True  # the user's statement: public weights
    assert new_ledger(cfg, 24, 30).prior_epsilon == 0.0
    cfg.privacy.public_pretrained = False
    cfg.model.pretrained_weights = _encoder(tmp_path, cfg, "client", epsilon=1.5)
    ledger = new_ledger(cfg, 24, 30)
    assert ledger.prior_epsilon == 1.5
    ledger.step(30)
    assert ledger.epsilon() == pytest.approx(
        opacus_epsilon([ledger.noise_multiplier] * 30, ledger.sample_rate, 1e-3) + 1.5
    )
    assert ledger.epsilon() <= 6.0  # the noise was calibrated for what the encoder left
    cfg.model.pretrained_weights = tmp_path / "plain.pth"  # e.g. ImageNet weights
    torch.save({}, cfg.model.pretrained_weights)
    with pytest.raises(UserError, match="unknown provenance"):
        new_ledger(cfg, 24, 30)
