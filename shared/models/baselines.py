"""Comparison models: Vanilla (diagnosis only), multi-task Vanilla + quality head, and
MAXL's multi-task network (diagnosis + auxiliary head, Liu et al. 2019).

MKCNet's ablations are Task Net variants; CANet and DETACH live in `comparison`.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.models.backbones import Backbone
from shared.models.outputs import TaskOutputs


class VanillaNet(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        num_diagnosis: int,
        num_quality: int | None = None,
        auxiliary_size: int | None = None,
    ):
        super().__init__()
        channels = backbone.feature_size
        self.model = backbone
        self.classifier1 = nn.Sequential(
            nn.Linear(channels, channels), nn.ReLU(inplace=True), nn.Linear(channels, num_diagnosis)
        )
        self.classifier3 = (
            nn.Sequential(
                nn.Linear(channels, channels // 2),
                nn.ReLU(inplace=True),
                nn.Linear(channels // 2, num_quality),
            )
            if num_quality
            else None
        )
        self.classifier2 = (
            nn.Sequential(
                nn.Linear(channels, channels),
                nn.ReLU(inplace=True),
                nn.Linear(channels, auxiliary_size),
            )
            if auxiliary_size
            else None
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward(self, x: torch.Tensor) -> TaskOutputs:
        pooled = self.features(x).mean(dim=(2, 3))
        quality = self.classifier3(pooled) if self.classifier3 is not None else None
        auxiliary = self.classifier2(pooled) if self.classifier2 is not None else None
        return TaskOutputs(self.classifier1(pooled), auxiliary, quality)
