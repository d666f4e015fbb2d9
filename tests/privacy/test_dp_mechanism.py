"""The DP mechanism itself: clipping before noise, noise on the Meta Learner, honest epsilon.

Each test pins behaviour that would break if the mechanism were wrong: per-sample
gradients are clipped to C *before* they are summed (captured between Opacus'
clipping and its noise), the per-example meta-gradient is the gradient of example i's
own objective, noise seeds change the Meta Learner, and epsilon is what an Opacus
accountant built independently reports.
"""

from __future__ import annotations

import pytest
import torch
from opacus.accountants import PRVAccountant, RDPAccountant
from torch.func import functional_call

from server.config import FederationConfig, validated
from shared.errors import UserError
from shared.meta_auxiliary import Batch, primary_losses, task_loss
from shared.models import build_models
from shared.privacy.budget import PrivacyLedger
from shared.privacy.meta import per_example_entropy, per_example_meta_gradients
from shared.privacy.trainer import DPLocalTrainer, new_ledger
from tests.support.configs import dp_config, tiny_batch


def _trainer(cfg, sigma: float = 1.0, seed: int = 0) -> DPLocalTrainer:
    torch.manual_seed(seed)
    ledger = PrivacyLedger("rdp", 1e-5, sigma, 0.25)
    return DPLocalTrainer(cfg, build_models(cfg), "cpu", ledger)


def _capture_clipping(optimizer) -> dict:
    """Wrap Opacus' clip_and_accumulate: per-sample gradients in, summed clipped sum out."""
    seen: dict = {}
    original = optimizer.clip_and_accumulate

    def wrapped() -> None:
        seen["per_sample"] = [g.detach().clone() for g in optimizer.grad_samples]
        original()
        seen["summed"] = [p.summed_grad.detach().clone() for p in optimizer.params]

    optimizer.clip_and_accumulate = wrapped
    return seen


def _check_clipped(seen: dict, c: float) -> None:
    per_sample = seen["per_sample"]
    norms = torch.stack([g.flatten(1).norm(dim=1) for g in per_sample], 1).norm(dim=1)
    assert (norms > c).any(), "choose C below the gradient norms so clipping acts"
    factors = (c / (norms + 1e-6)).clamp(max=1.0)
    clipped = [torch.einsum("i,i...->i...", factors, g) for g in per_sample]
    clipped_norms = torch.stack([g.flatten(1).norm(dim=1) for g in clipped], 1).norm(dim=1)
    assert (clipped_norms <= c * (1 + 1e-5)).all()
    for summed, parts in zip(seen["summed"], clipped, strict=True):
        torch.testing.assert_close(summed, parts.sum(0), rtol=1e-3, atol=2e-6)


@pytest.mark.parametrize("method", ["vanilla", "mkcnet"])
def test_task_net_per_sample_gradients_are_clipped_before_noise(method):
    cfg = dp_config(method=method, max_grad_norm=1e-3)
    trainer = _trainer(cfg)
    seen = _capture_clipping(trainer.task_dp)
    batch = tiny_batch(cfg, n=6)
    step = trainer.stage_one_step if method == "mkcnet" else trainer._supervised_step
    step(batch)
    assert seen["per_sample"][0].shape[0] == 6
    _check_clipped(seen, 1e-3)
    assert trainer.ledger.steps == 1


def test_meta_learner_per_example_gradients_are_clipped_before_noise():
    cfg = dp_config(max_grad_norm=1e-4)
    trainer = _trainer(cfg)
    seen = _capture_clipping(trainer.meta_dp)
    trainer.stage_two_step(tiny_batch(cfg, n=5))
    assert seen["per_sample"][0].shape[0] == 5
    _check_clipped(seen, 1e-4)
    assert trainer.ledger.steps == 1  # the Meta Learner's step is accounted too


def test_per_example_meta_gradient_is_the_gradient_of_example_is_own_objective():
    cfg = dp_config(width=0.25)
    torch.manual_seed(0)
    bundle = build_models(cfg)
    trainer = DPLocalTrainer(cfg, bundle, "cpu", PrivacyLedger("rdp", 1e-5, 1.0, 0.5))
    hp = trainer.hyper()
    trainer.close()
    batch = tiny_batch(cfg, n=3)
    grads, _ = per_example_meta_gradients(
        bundle.task_net, bundle.meta_learner, batch, hp, num_diagnosis=3, num_quality=3
    )
    i = 1
    one = Batch(*(t[i : i + 1] for t in (batch.image, batch.diagnosis, batch.quality, batch.joint)))
    phi = dict(bundle.meta_learner.named_parameters())
    theta = {k: v.detach().requires_grad_() for k, v in bundle.task_net.named_parameters()}
    soft = bundle.meta_learner(one.image, one.joint)
    loss, _ = task_loss(functional_call(bundle.task_net, theta, (one.image,)), one, soft, hp)
    g = torch.autograd.grad(loss, list(theta.values()), create_graph=True, allow_unused=True)
    pseudo = {
        k: t - hp.lr * ((gk if gk is not None else 0) + hp.weight_decay * t)
        for (k, t), gk in zip(theta.items(), g, strict=True)
    }
    objective = (
        primary_losses(functional_call(bundle.task_net, pseudo, (one.image,)), one, hp.gamma)
        + hp.entropy_weight * per_example_entropy(soft)[0]
    )
    expected = torch.autograd.grad(objective, list(phi.values()))
    for name, want in zip(phi, expected, strict=True):
        torch.testing.assert_close(grads[name][i], want, rtol=1e-3, atol=2e-6)
    # and example i's gradient does not depend on the other examples of the batch
    swapped = Batch(
        *(
            torch.cat([t[i : i + 1], t[:i]])
            for t in (batch.image, batch.diagnosis, batch.quality, batch.joint)
        )
    )
    again, _ = per_example_meta_gradients(
        bundle.task_net, bundle.meta_learner, swapped, hp, num_diagnosis=3, num_quality=3
    )
    for name in phi:
        torch.testing.assert_close(again[name][0], grads[name][i], rtol=1e-3, atol=2e-6)


def _meta_after_step(noise_seed: int, sigma: float) -> torch.Tensor:
    cfg = dp_config(noise_seed=noise_seed)
    trainer = _trainer(cfg, sigma=sigma, seed=0)
    trainer.stage_two_step(tiny_batch(cfg, n=4))
    return torch.cat([p.detach().flatten() for p in trainer.bundle.meta_learner.parameters()])


def test_the_meta_learners_update_is_noised():
    a, b = _meta_after_step(1, 1.0), _meta_after_step(2, 1.0)
    assert not torch.allclose(a, b)  # same data and init, other noise
    torch.testing.assert_close(a, _meta_after_step(1, 1.0))  # the noise seed is the only cause
    quiet = _meta_after_step(1, 0.0)
    assert not torch.allclose(a, quiet)


@pytest.mark.parametrize("kind, accountant", [("rdp", RDPAccountant), ("prv", PRVAccountant)])
def test_reported_epsilon_equals_an_independent_opacus_accountant(kind, accountant):
    ledger = PrivacyLedger(kind, 1e-5, 1.1, 0.05)
    for _ in range(30):
        ledger.step()
    ledger.step(10)
    reference = accountant()
    for _ in range(40):
        reference.step(noise_multiplier=1.1, sample_rate=0.05)
    assert ledger.steps == 40
    assert ledger.epsilon() == pytest.approx(reference.get_epsilon(delta=1e-5), rel=1e-6)
    restored = PrivacyLedger.from_json(ledger.to_json())
    assert restored.epsilon() == ledger.epsilon()


def test_target_epsilon_calibrates_the_noise_for_the_whole_run():
    cfg = dp_config(noise_multiplier=None, target_epsilon=8.0, delta=1e-5)
    ledger = new_ledger(cfg, n=200, total_steps=100)
    assert ledger.sample_rate == pytest.approx(8 / 200)
    assert ledger.budget == 8.0
    assert 7.5 < ledger.epsilon(100) <= 8.0  # spends (almost) exactly the target


def test_settings_without_an_honest_guarantee_are_refused():
    with pytest.raises(UserError, match="--noise-multiplier or --target-epsilon"):
        new_ledger(dp_config(noise_multiplier=None), n=100, total_steps=10)
    with pytest.raises(UserError, match="1/n"):
        new_ledger(dp_config(delta=0.02), n=100, total_steps=10)
    cfg = dp_config()
    cfg.schedule = "fused"
    with pytest.raises(UserError, match="paper schedule"):
        _trainer(cfg)
    with pytest.raises(UserError, match="--dp client"):
        validated(run=dp_config(), pretrain_rounds=1)
    with pytest.raises(UserError, match="fedbn"):
        validated(run=dp_config(), strategy="fedbn")
    client = dp_config()
    client.privacy.mode = "client"
    with pytest.raises(UserError, match="fedavg or fedprox"):
        validated(run=client, strategy="krum")
    assert FederationConfig(run=client, strategy="fedprox").client_dp


def test_comcl_pretraining_refuses_sample_dp():
    from shared.contrastive.pretrain import ContrastivePretrainer, build_contrastive_model

    cfg = dp_config()
    with pytest.raises(UserError, match="--dp client"):
        ContrastivePretrainer(cfg, build_contrastive_model(cfg, with_weights=False))


def test_dp_models_have_no_batchnorm_and_client_and_server_agree():
    cfg = dp_config()
    a, b = build_models(cfg), build_models(cfg.model_copy(deep=True))
    for bundle in (a, b):
        for module in bundle.modules().values():
            assert not any(
                isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()
            )
            assert not list(module.buffers())
    for name in a.modules():
        assert a.modules()[name].state_dict().keys() == b.modules()[name].state_dict().keys()
    off = cfg.model_copy(deep=True)
    off.privacy.mode = "off"
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in build_models(off).task_net.modules())
