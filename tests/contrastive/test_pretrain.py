"""The pretraining loop learns, never produces NaN on empty subsets, and its encoder
initialises the diagnosis backbone."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from shared.contrastive.boxes import CsvBoxes
from shared.contrastive.loss import comcl_loss
from shared.contrastive.patches import PatchBank, split_bank
from shared.contrastive.pretrain import (
    ContrastivePretrainer,
    build_contrastive_model,
    pretrain_round,
)
from shared.contrastive.transfer import (
    check_encoder,
    init_from_encoder,
    read_encoder,
    save_encoder,
)
from shared.errors import UserError
from shared.models import build_models
from tests.support.configs import comcl_config


@pytest.fixture(scope="module")
def bank(synth_root: Path) -> PatchBank:
    folder = synth_root / "EYEQ"
    return split_bank(synth_root, comcl_config(), CsvBoxes(folder / "lesions.csv", folder))


def _fixed_loss(trainer: ContrastivePretrainer, bank: PatchBank, views, epoch: int) -> float:
    x1, x2 = views
    with torch.no_grad():
        # batch statistics, as in the optimised objective: after a few steps the
        # BatchNorm running averages still lag far behind (eval-mode loss barely moves)
        trainer.model.train()
        z = trainer.model(torch.cat([x1, x2]))
        loss, _ = comcl_loss(
            z[: len(x1)],
            z[len(x1) :],
            bank.subset,
            bank.ids,
            trainer.c,
            epoch,
            trainer.total_epochs,
        )
    assert loss is not None
    return float(loss)


@pytest.mark.parametrize("multi_level", [True, False])
def test_a_few_steps_lower_the_loss(bank: PatchBank, multi_level: bool) -> None:
    torch.manual_seed(0)
    cfg = comcl_config(hard_mining=False, multi_level=multi_level)
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), "cpu", total_epochs=4)
    views = trainer.views(bank.patches)  # fixed views: the same loss before and after
    before = _fixed_loss(trainer, bank, views, 0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(3):
        for index in bank.batches(64, generator):
            trainer.step(bank.patches[index], bank.subset[index], index, step=0)
    after = _fixed_loss(trainer, bank, views, 0)
    assert after < before, (before, after)


def test_mining_run_is_finite_and_logs_the_schedule(bank: PatchBank) -> None:
    cfg = comcl_config(hard_mining=True)
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), "cpu", total_epochs=4)
    logs = trainer.fit(bank, epochs=2, start_epoch=2)
    assert torch.isfinite(torch.tensor(logs["loss"]))
    assert 1 <= logs["k_L_vs_Lq"] < bank.counts()["L~"]  # K_t has shrunk by epoch 2-3 of 4
    assert 0 < logs["selected_L_vs_H"] <= 1 and logs["patches_per_second"] > 0


def test_empty_subsets_skip_terms_never_nan() -> None:
    cfg = comcl_config()
    z1, z2 = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
    ids = torch.arange(6)
    only_hq = torch.tensor([0, 0, 0, 2, 2, 2])  # no L~ and no H~
    for mining in (True, False):
        cfg.contrastive.hard_mining = mining
        loss, logs = comcl_loss(z1, z2, only_hq, ids, cfg.contrastive, 0, 4)
        assert loss is not None and torch.isfinite(loss)
        assert set(k for k in logs if k.startswith("loss_")) == {"loss_L_vs_H"}
    loss, logs = comcl_loss(z1, z2, torch.full((6,), 2), ids, cfg.contrastive, 0, 4)
    assert loss is None and logs == {}
    # the paper's rule alone (no floor) may admit nobody: zero loss, not NaN
    cfg.contrastive.min_selected_fraction = 0.0
    cfg.contrastive.hard_mining = True
    loss, logs = comcl_loss(z1, z2, only_hq, ids, cfg.contrastive, 0, 1000)
    assert loss is not None and torch.isfinite(loss)


def test_encoder_initialises_the_diagnosis_backbones(bank: PatchBank, tmp_path: Path) -> None:
    cfg = comcl_config()
    start = build_contrastive_model(cfg).state_dict()
    state, metrics = pretrain_round(start, bank, cfg, epochs=1, epoch_offset=0, total_epochs=2)
    assert metrics["num-patches"] == len(bank)
    assert any(not torch.equal(state[k], start[k]) for k in start if k.endswith("weight"))
    path = save_encoder(tmp_path / "encoder.pt", state, cfg, metrics=metrics, epochs=1)
    enc = read_encoder(path)
    assert enc.backbone == "vgg16_bn_slim" and not enc.head and enc.epochs == 1  # no head

    for method in ("mkcnet", "vanilla"):
        diag = cfg.model_copy(deep=True)
        diag.method = method  # type: ignore[assignment]
        check_encoder(path, diag)
        diag.model.pretrained_weights = path
        bundle = build_models(diag)
        for module in bundle.modules().values():
            got = module.model.state_dict()
            for key, value in enc.state_dict.items():
                assert torch.equal(got[key], value), (method, key)
    fresh = build_models(cfg)
    assert init_from_encoder(fresh.modules(), enc.state_dict) == ["task_net", "meta_learner"]
    assert torch.equal(
        fresh.task_net.model.state_dict()["block1.0.weight"], enc.state_dict["block1.0.weight"]
    )


def test_encoder_of_another_backbone_is_refused(bank: PatchBank, tmp_path: Path) -> None:
    cfg = comcl_config()
    path = save_encoder(tmp_path / "e.pt", build_contrastive_model(cfg).state_dict(), cfg)
    other = cfg.model_copy(deep=True)
    other.model.backbone = "resnet18"
    with pytest.raises(UserError, match="resnet18"):
        check_encoder(path, other)
    torch.save({"state_dict": {}}, tmp_path / "plain.pt")
    with pytest.raises(UserError, match="not a fediqad encoder"):
        check_encoder(tmp_path / "plain.pt", cfg)


def test_resnet_encoder_round_trip(tmp_path: Path) -> None:
    cfg = comcl_config()
    cfg.model.backbone = "resnet18"
    model = build_contrastive_model(cfg)
    path = save_encoder(tmp_path / "r.pt", model.state_dict(), cfg)
    cfg.model.pretrained_weights = path
    check_encoder(path, cfg)
    bundle = build_models(cfg)
    want = model.backbone.state_dict()
    got = bundle.task_net.model.state_dict()
    assert all(torch.equal(got[k], want[k]) for k in want)
