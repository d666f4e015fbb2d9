"""Comparison models: Vanilla (diagnosis only) and multi-task Vanilla + quality head.

MKCNet w/o Meta and w/o MAB are Task Net variants (see `bundle.build_models`).
"""

from __future__ import annotations

import torch
from torch import nn

from shared.models.backbones import Backbone
from shared.models.outputs import TaskOutputs


class VanillaNet(nn.Module):
    def __init__(self, backbone: Backbone, num_diagnosis: int, num_quality: int | None = None):
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

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def forward(self, x: torch.Tensor) -> TaskOutputs:
        pooled = self.features(x).mean(dim=(2, 3))
        quality = self.classifier3(pooled) if self.classifier3 is not None else None
        return TaskOutputs(self.classifier1(pooled), None, quality)
