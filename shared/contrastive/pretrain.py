"""The CoMCL pretraining loop, and the per-round hook a federated site calls.

The encoder is a registered backbone (feature map -> global average pool), by default
the paper's ResNet-50 without a projection head (`contrastive.projection_dim` > 0 adds
a Linear-ReLU-Linear head, dropped after pretraining). Each step takes a balanced batch
of patches from the site's bank, makes two augmented views of every patch (the positive
of a patch is its other view), and minimises `comcl_loss` with Adam. The K_t mining
schedule advances per optimisation step: step t of T_max = epochs x steps per epoch.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torchvision.transforms import v2

from shared.config import RunConfig
from shared.contrastive.loss import comcl_loss
from shared.contrastive.patches import PatchBank, input_px
from shared.models.backbones import Backbone, build_backbone
from shared.privacy.rules import refuse_contrastive
from shared.training.precision import StepPrecision, fused_optimizer_options

StepHook = Callable[[int, dict[str, float]], None]


class ContrastiveModel(nn.Module):
    """Backbone + global average pool + projection head; `backbone` is what transfers."""

    def __init__(self, backbone: Backbone, projection_dim: int = 128):
        super().__init__()
        self.backbone = backbone
        size = backbone.feature_size
        self.head: nn.Module = nn.Identity()
        if projection_dim:
            self.head = nn.Sequential(
                nn.Linear(size, size), nn.ReLU(inplace=True), nn.Linear(size, projection_dim)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean(dim=(2, 3)))


def encoder_backbone(cfg: RunConfig, *, federated: bool = False) -> str:
    """The encoder's backbone: `contrastive.backbone` (the paper's ResNet-50), or the
    diagnosis model's when unset or federated (the federated encoder must transfer into
    the federation's own models)."""
    if federated or cfg.contrastive.backbone is None:
        return cfg.model.backbone
    return cfg.contrastive.backbone


def build_contrastive_model(
    cfg: RunConfig, *, with_weights: bool = True, federated: bool = False
) -> ContrastiveModel:
    """The encoder (`encoder_backbone`) with the diagnosis config's width and channels;
    `model.pretrained_weights` initialise it only when it is the diagnosis backbone."""
    m = cfg.model
    name = encoder_backbone(cfg, federated=federated)
    weights = m.pretrained_weights if with_weights and name == m.backbone else None
    backbone = build_backbone(name, cfg.dataset.channels, m.width, weights)
    return ContrastiveModel(backbone, cfg.contrastive.projection_dim)


def make_augment(size: int) -> v2.Compose:
    """Views of one patch: crop/zoom, flips, mild brightness/contrast. Kept mild on
    purpose: strong blur or noise would imitate the quality degradation the (L vs L~)
    term must tell apart."""
    return v2.Compose(
        [
            v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            v2.ColorJitter(brightness=0.2, contrast=0.2),
        ]
    )


class ContrastivePretrainer:
    """Adam on the whole ContrastiveModel; one object per site and run."""

    def __init__(
        self,
        cfg: RunConfig,
        model: ContrastiveModel,
        device: torch.device | str = "cpu",
        total_epochs: int | None = None,
    ):
        refuse_contrastive(cfg)  # InfoNCE couples a batch: no sample-level DP here
        self.cfg = cfg
        self.c = cfg.contrastive
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.precision = StepPrecision.for_run(cfg.precision, cfg.channels_last, self.device)
        self.precision.module(self.model)
        self.total_epochs = total_epochs or self.c.epochs
        self.total_steps: int | None = None  # set by fit from the bank's steps per epoch
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=self.c.lr, **fused_optimizer_options(self.device)
        )
        self.augment = make_augment(input_px(cfg))
        ds = cfg.dataset
        self._mean = torch.tensor(ds.norm_mean).view(1, -1, 1, 1).to(self.device)
        self._std = torch.tensor(ds.norm_std).view(1, -1, 1, 1).to(self.device)

    def views(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Two independently augmented, normalised views of uint8 patches [B, C, S, S]."""
        pair = torch.stack([self.augment(p) for p in torch.cat([patches, patches])])
        x = pair.to(self.device, torch.float32).div_(255.0).sub_(self._mean).div_(self._std)
        return x[: len(patches)], x[len(patches) :]

    def step(
        self,
        patches: torch.Tensor,
        subset: torch.Tensor,
        ids: torch.Tensor,
        step: int,
        total_steps: int | None = None,
    ) -> dict[str, float]:
        """Optimisation step `step` (0-based, of `total_steps`, which drive K_t) on a
        batch of patches; logs (no update if no term fits)."""
        total = total_steps or self.total_steps or self.total_epochs
        self.model.train()
        x1, x2 = self.views(patches)
        with self.precision.autocast():  # the loss (InfoNCE) is kept in fp32
            z = self.model(self.precision.images(torch.cat([x1, x2])))
        z1, z2 = z[: len(x1)], z[len(x1) :]
        loss, logs = comcl_loss(
            z1, z2, subset.to(self.device), ids.to(self.device), self.c, step, total
        )
        if loss is not None:
            self.precision.backward_step(self.optimizer, loss)
        logs["patches"] = float(len(patches))
        return logs

    def fit(
        self,
        bank: PatchBank,
        epochs: int,
        start_epoch: int = 0,
        generator: torch.Generator | None = None,
        on_step: StepHook | None = None,
    ) -> dict[str, float]:
        """Epochs start_epoch .. start_epoch + epochs - 1 (0-based, of total_epochs);
        returns mean logs over steps, patches per epoch, seconds and patches/s. K_t
        follows the global step: epoch x steps per epoch + step within the epoch."""
        generator = generator or torch.Generator().manual_seed(self.cfg.seed)
        per_epoch = bank.steps_per_epoch(self.c.batch_size)
        self.total_steps = self.total_epochs * per_epoch
        sums: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        seen = 0
        start = time.perf_counter()
        for epoch in range(start_epoch, start_epoch + epochs):
            for i, index in enumerate(bank.batches(self.c.batch_size, generator)):
                step = epoch * per_epoch + i
                logs = self.step(bank.patches[index], bank.subset[index], index, step)
                seen += int(logs["patches"])
                for key, value in logs.items():
                    sums[key] += value
                    counts[key] += 1
                if on_step is not None:
                    on_step(epoch, logs)
        seconds = time.perf_counter() - start
        out = {k: sums[k] / counts[k] for k in sums if k != "patches"}
        out["patches"] = float(seen // max(epochs, 1))
        out["seconds"] = seconds
        out["patches_per_second"] = seen / seconds if seconds > 0 else 0.0
        return out


def pretrain_round(
    encoder_state: dict[str, torch.Tensor],
    bank: PatchBank,
    cfg: RunConfig,
    *,
    epochs: int,
    epoch_offset: int,
    total_epochs: int,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The federated hook: local CoMCL epochs from a (global) ContrastiveModel state.

    `encoder_state` is a `ContrastiveModel.state_dict()` (keys `backbone.*`, `head.*`);
    epochs run as global epochs epoch_offset .. epoch_offset + epochs - 1 of
    `total_epochs` (rounds x local epochs) so K_t follows the federation's schedule.
    Returns the updated state (CPU) and metrics including `num-patches`. A fresh Adam
    per round: its moments are not carried across rounds.
    """
    torch.manual_seed(seed)
    model = build_contrastive_model(cfg, with_weights=False, federated=True)
    model.load_state_dict(encoder_state)
    trainer = ContrastivePretrainer(cfg, model, device, total_epochs)
    generator = torch.Generator().manual_seed(seed)
    logs = trainer.fit(bank, epochs, epoch_offset, generator)
    logs["num-patches"] = float(len(bank))
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return state, logs
