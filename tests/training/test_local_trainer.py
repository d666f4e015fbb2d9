"""Every method learns: a tiny model overfits a tiny batch; schedules behave as specified."""

from __future__ import annotations

import copy

import pytest
import torch

from shared.config import RunConfig
from shared.methods import get_method, list_methods
from shared.models import build_models
from shared.training import LocalTrainer
from tests.support.compare import assert_same_state
from tests.support.configs import tiny_batch, tiny_config

METHODS = list_methods()  # every registered method trains


def _loader(cfg: RunConfig, seed: int = 0):
    b = tiny_batch(cfg, n=8, seed=seed)
    return [(b.image, b.diagnosis, b.quality, b.joint)]


def _diagnosis_loss(bundle, loader) -> float:
    bundle.task_net.train()  # batch statistics, as during training
    from shared.losses import focal_loss

    with torch.no_grad():
        image, diagnosis, *_ = loader[0]
        return float(focal_loss(bundle.task_net(image).diagnosis, diagnosis))


# The schedule only matters for the meta-auxiliary methods.
CASES = [(m, "paper") for m in METHODS] + [("mkcnet", "fused"), ("mkcnet-first-order", "fused")]


@pytest.mark.parametrize(("method", "schedule"), CASES)
def test_every_method_overfits_a_tiny_batch(method: str, schedule: str) -> None:
    torch.manual_seed(0)
    cfg = tiny_config(method=method)
    cfg.schedule = schedule  # type: ignore[assignment]
    cfg.optim.lr = 0.1
    cfg.optim.meta_lr = 0.01
    bundle = build_models(cfg)
    loader = _loader(cfg)
    before = _diagnosis_loss(bundle, loader)
    trainer = LocalTrainer(cfg, bundle)
    logs = trainer.fit(loader, epochs=25)
    after = _diagnosis_loss(bundle, loader)
    assert after < 0.5 * before, (before, after)
    assert logs["examples"] == 8
    if get_method(method).meta_learner:
        assert "meta_objective" in logs and torch.isfinite(torch.tensor(logs["meta_objective"]))


def test_meta_learner_moves_only_in_meta_methods() -> None:
    for method, moves in (("mkcnet", True), ("mkcnet-no-meta", None)):
        torch.manual_seed(0)
        cfg = tiny_config(method=method)
        bundle = build_models(cfg)
        if moves is None:
            assert bundle.meta_learner is None
            continue
        start = {k: v.clone() for k, v in bundle.meta_learner.state_dict().items()}
        LocalTrainer(cfg, bundle).fit(_loader(cfg), epochs=1)
        changed = [
            k for k, v in bundle.meta_learner.state_dict().items() if not torch.equal(v, start[k])
        ]
        assert any(k.endswith("weight") for k in changed)


def test_paper_schedule_runs_stage_one_then_stage_two() -> None:
    cfg = tiny_config()
    trainer = LocalTrainer(cfg, build_models(cfg))
    stages: list[str] = []
    trainer.fit(_loader(cfg) * 3, epochs=1, on_batch=stages.append)
    assert stages == ["stage I"] * 3 + ["stage II"] * 3
    cfg.schedule = "fused"
    trainer = LocalTrainer(cfg, build_models(cfg))
    stages.clear()
    trainer.fit(_loader(cfg) * 3, epochs=1, on_batch=stages.append)
    assert stages == ["fused"] * 3


def test_step_lr_halves_and_optimizer_state_round_trips() -> None:
    torch.manual_seed(0)
    cfg = tiny_config(width=0.125)
    cfg.optim.lr_step_epochs = 1
    cfg.optim.momentum = 0.9
    trainer = LocalTrainer(cfg, build_models(cfg))
    loader = _loader(cfg)
    trainer.fit(loader, epochs=2)
    assert trainer.current_lr == pytest.approx(cfg.optim.lr * 0.25)
    state = trainer.optimizer_state()
    momentum = state["task_optimizer"]["state"]
    assert momentum and any(v["momentum_buffer"].abs().sum() > 0 for v in momentum.values())
    resumed = LocalTrainer(cfg, copy.deepcopy(trainer.bundle))
    resumed.load_optimizer_state(copy.deepcopy(state))
    assert resumed.current_lr == trainer.current_lr
    assert_same_state(resumed.optimizer_state(), state)  # momentum buffers, lr, schedule: values
    # a trainer resumed from that state takes the very step the original takes
    trainer.fit(loader, epochs=1)
    resumed.fit(loader, epochs=1)
    for name, model in trainer.bundle.modules().items():
        assert_same_state(resumed.bundle.modules()[name].state_dict(), model.state_dict(), name)


def test_spatial_gab_trains_and_differs_from_pooled() -> None:
    cfg = tiny_config(gab="spatial", method="mkcnet-no-meta", width=0.25)
    cfg.image_size = 64  # a 2x2 feature map, so spatial attention has positions to weigh
    cfg.optim.lr = 0.3
    torch.manual_seed(0)
    spatial = build_models(cfg)
    pooled = copy.deepcopy(spatial)
    pooled.task_net.gab = "pooled"  # same weights, the authors' placement
    x = tiny_batch(cfg, n=8).image
    for bundle in (spatial, pooled):
        bundle.eval()
    assert not torch.allclose(pooled.task_net(x).diagnosis, spatial.task_net(x).diagnosis)
    # the spatial gates learn: the diagnosis loss falls and every gate's conv gets gradient
    loader = _loader(cfg)
    before = _diagnosis_loss(spatial, loader)
    # w/o Meta has the diagnosis and quality GABs (no auxiliary branch, no Meta Learner)
    branches = [f"branch_bam{i}" for i in (1, 2, 3) if getattr(spatial.task_net, f"branch_bam{i}")]
    assert branches == ["branch_bam1", "branch_bam3"]
    gates = [spatial.task_net.get_submodule(f"{b}.0.SpatialGate") for b in branches]
    trainer = LocalTrainer(cfg, spatial)
    trainer.fit(loader, epochs=1)
    for gate in gates:
        grad = gate.spatial.conv.weight.grad
        assert grad is not None and grad.abs().sum() > 0
    trainer.fit(loader, epochs=9)
    assert _diagnosis_loss(spatial, loader) < 0.9 * before
