"""The Meta Learner's meta-gradient against finite differences, in float64."""

from __future__ import annotations

import pytest
import torch

from shared.meta_auxiliary import MetaHyper, meta_gradient, meta_objective
from shared.models import build_models
from tests.support.configs import tiny_batch, tiny_config


@pytest.fixture
def setup():
    torch.manual_seed(0)
    cfg = tiny_config()
    bundle = build_models(cfg)
    bundle.task_net.double().train()
    bundle.meta_learner.double().train()
    batch = tiny_batch(cfg, n=6, dtype=torch.float64)
    # A large step makes the second-order term dominate, so the check has teeth.
    hp = MetaHyper(lr=0.5, weight_decay=5e-4, entropy_weight=0.2, meta_length=5)
    return bundle, batch, hp


def _directional_fd(bundle, batch, hp, direction, h=1e-7):
    phi = {k: p.detach() for k, p in bundle.meta_learner.named_parameters()}

    def f(sign):
        shifted = {k: phi[k] + sign * h * direction[k] for k in phi}
        with torch.enable_grad():
            objective = meta_objective(bundle.task_net, bundle.meta_learner, batch, hp, shifted)
            return float(objective.detach())

    return (f(+1) - f(-1)) / (2 * h)


def test_second_order_matches_central_differences(setup):
    bundle, batch, hp = setup
    step = meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp)
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        direction = {
            k: torch.randn(p.shape, generator=g, dtype=p.dtype)
            for k, p in bundle.meta_learner.named_parameters()
        }
        analytic = sum(float((step.meta_grads[k] * d).sum()) for k, d in direction.items())
        numeric = _directional_fd(bundle, batch, hp, direction)
        assert analytic == pytest.approx(numeric, rel=1e-4, abs=1e-8)


def test_meta_gradient_is_not_just_the_entropy_term(setup):
    bundle, batch, hp = setup
    full = meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp)
    no_entropy = meta_gradient(
        bundle.task_net,
        bundle.meta_learner,
        batch,
        MetaHyper(**{**hp.__dict__, "entropy_weight": 0.0}),
    )
    norm = torch.sqrt(sum((g**2).sum() for g in no_entropy.meta_grads.values()))
    assert norm > 1e-8  # the second-order path itself carries signal
    assert any(
        not torch.equal(full.meta_grads[k], no_entropy.meta_grads[k]) for k in full.meta_grads
    )


def test_first_order_approximates_second_order(setup):
    bundle, batch, hp = setup
    exact = meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp)
    a = torch.cat([exact.meta_grads[k].flatten() for k in exact.meta_grads])

    def cosine_with(fd_epsilon: float) -> float:
        hp_fd = MetaHyper(**{**hp.__dict__, "fd_epsilon": fd_epsilon})
        approx = meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp_fd, first_order=True)
        b = torch.cat([approx.meta_grads[k].flatten() for k in exact.meta_grads])
        return float(a @ b / (a.norm() * b.norm()))

    assert cosine_with(1e-6) > 0.999  # the difference quotient converges to the exact term
    assert cosine_with(0.01) > 0.9  # the DARTS default step is a usable approximation


def test_meta_step_leaves_task_net_state_and_grads_alone(setup):
    bundle, batch, hp = setup
    before = {k: v.clone() for k, v in bundle.task_net.state_dict().items()}
    meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp)
    meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp, first_order=True)
    for key, value in bundle.task_net.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN running stats included
    assert all(p.grad is None for p in bundle.task_net.parameters())
    assert all(p.grad is None for p in bundle.meta_learner.parameters())


def test_fused_returns_stage_one_gradient(setup):
    bundle, batch, hp = setup
    step = meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp, return_task_grads=True)
    from shared.meta_auxiliary import task_loss

    with torch.no_grad():
        target = bundle.meta_learner(batch.image, batch.joint)
    loss, _ = task_loss(bundle.task_net(batch.image), batch, target, hp)
    loss.backward()
    for name, p in bundle.task_net.named_parameters():
        expected = p.grad if p.grad is not None else torch.zeros_like(p)
        torch.testing.assert_close(step.task_grads[name], expected)
