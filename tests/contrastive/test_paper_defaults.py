"""CoMCL's defaults are the paper's (Hou et al., MICCAI 2024): ResNet-50 encoder without a
projection head, 128 px patches of the full-resolution images, tau 0.07, Adam 1e-3,
batch 400, 800 epochs, K_t advancing per optimisation step, and the five-grade EyeQ
protocol of its Table 1 as a preset. Tests elsewhere use slim backbones and small
patches; this file pins what a user gets without options."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from shared.config import ContrastiveConfig, preset
from shared.contrastive.boxes import CsvBoxes
from shared.contrastive.mining import k_schedule
from shared.contrastive.patches import input_px, patch_px, split_bank
from shared.contrastive.pretrain import (
    ContrastivePretrainer,
    build_contrastive_model,
    encoder_backbone,
)
from shared.data.dataset import open_split
from tests.support.configs import comcl_config


def test_contrastive_defaults_are_the_papers() -> None:
    c = ContrastiveConfig()
    assert (c.tau, c.lr, c.batch_size, c.epochs) == (0.07, 1e-3, 400, 800)
    assert (c.backbone, c.projection_dim, c.patch_size) == ("resnet50", 0, 128)
    assert c.multi_level and c.hard_mining
    cfg = preset("EYEQ")
    assert (patch_px(cfg), input_px(cfg)) == (128, 128)  # whatever cfg.image_size is
    assert encoder_backbone(cfg) == "resnet50" and cfg.model.backbone == "vgg16_bn"
    model = build_contrastive_model(cfg)
    assert type(model.backbone).__name__ == "TorchvisionResNet"
    assert model.backbone.feature_size == 2048 and isinstance(model.head, nn.Identity)
    # federated pretraining trains the federation's own backbone (it must transfer)
    assert encoder_backbone(cfg, federated=True) == "vgg16_bn"


def test_k_t_advances_every_step_not_every_epoch(synth_root: Path) -> None:
    cfg = comcl_config(hard_mining=True, batch_size=8)
    folder = synth_root / "EYEQ"
    bank = split_bank(synth_root, cfg, CsvBoxes(folder / "lesions.csv", folder))
    per_epoch = bank.steps_per_epoch(8)
    assert per_epoch >= 4
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), "cpu", total_epochs=1)
    seen: list[float] = []
    trainer.fit(bank, 1, on_step=lambda epoch, logs: seen.append(logs["k_L_vs_H"]))
    assert len(seen) == per_epoch
    assert seen[0] > seen[-1]  # one epoch of one: K_t shrinks within it
    assert trainer.total_steps == per_epoch
    assert k_schedule(per_epoch - 1, per_epoch, 4) < k_schedule(0, per_epoch, 4)


def test_five_grade_eyeq_preset_reads_the_eyeq_folder(synth_root: Path) -> None:
    cfg = preset("EYEQ_COMCL")
    ds = cfg.dataset
    assert (ds.name, ds.num_diagnosis, ds.five_grade_dr) == ("EYEQ", 5, False)
    assert (cfg.method, cfg.model.backbone) == ("vanilla", "resnet50")
    cfg.image_size = 64
    grades = open_split(synth_root, cfg, "train").diagnosis
    three = open_split(synth_root, preset("EYEQ"), "train").diagnosis
    assert int(grades.max()) <= 4 and len(set(grades.tolist())) > 3
    # the three-grade protocol is the five grades mapped 0 / 1-3 / 4
    mapped = torch.where(grades == 0, 0, torch.where(grades == 4, 2, 1))
    assert torch.equal(mapped, three)
