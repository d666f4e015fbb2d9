"""MKCNet's Task Net: backbone, three GABs, the MAB and three heads.

Attribute names match the authors' release (`model`, `branch_bam1..3`, `branch_cor`,
`classifier1..3`), so `gab="pooled"` with the reference VGG16-BN loads their
checkpoints unchanged. `branch_bam1` serves diagnosis, `branch_bam2` the auxiliary
embedding, `branch_bam3` quality.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.models.attention import CBAM
from shared.models.backbones import Backbone
from shared.models.outputs import TaskOutputs


def _head(width: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, out))


class GlobalAttentionBlock(nn.Sequential):
    """CBAM -> global average pool -> Linear(C, C/2).

    `pooled` (authors' code) receives the already pooled 1x1 map, `spatial` (the
    paper's text) the backbone's feature map; the parameters are the same.
    """

    def __init__(self, channels: int):
        super().__init__(
            CBAM(channels),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, channels // 2),
        )


class MetaKnowledgeAssistance(nn.Sequential):
    """Channel-only CBAM over the auxiliary feature: the 'filter' of the MAB."""

    def __init__(self, channels: int):
        super().__init__(CBAM(channels, spatial=False), nn.Flatten())

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        return super().forward(feature[:, :, None, None])


class TaskNet(nn.Module):
    def __init__(
        self,
        backbone: Backbone,
        num_diagnosis: int,
        num_quality: int,
        auxiliary_size: int,
        gab: str = "pooled",
        use_mab: bool = True,
    ):
        super().__init__()
        if gab not in ("pooled", "spatial"):
            raise ValueError(f"gab must be 'pooled' or 'spatial', got {gab!r}")
        channels = backbone.feature_size
        half = channels // 2
        self.gab = gab
        self.use_mab = use_mab
        self.model = backbone
        self.branch_bam1 = GlobalAttentionBlock(channels)
        self.branch_bam2 = GlobalAttentionBlock(channels)
        self.branch_bam3 = GlobalAttentionBlock(channels)
        self.branch_cor = MetaKnowledgeAssistance(half) if use_mab else None
        self.classifier1 = _head(channels if use_mab else half, num_diagnosis)
        self.classifier2 = _head(half, auxiliary_size)
        self.classifier3 = _head(half, num_quality)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feature_map = self.model(x)
        if self.gab == "pooled":
            return feature_map.mean(dim=(2, 3), keepdim=True)
        return feature_map

    def forward(self, x: torch.Tensor) -> TaskOutputs:
        feature = self.features(x)
        diagnosis = self.branch_bam1(feature)
        auxiliary = self.branch_bam2(feature)
        quality = self.branch_bam3(feature)
        if self.branch_cor is not None:
            diagnosis = torch.cat([diagnosis, self.branch_cor(auxiliary)], dim=1)
        return TaskOutputs(
            self.classifier1(diagnosis), self.classifier2(auxiliary), self.classifier3(quality)
        )
