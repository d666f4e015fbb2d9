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


def _fusion(kind: str, half: int) -> nn.Module:
    """What the assisting feature passes before it joins f^d (the MAB and its ablations)."""
    if kind == "mab":
        return MetaKnowledgeAssistance(half)
    if kind == "fc":
        return nn.Sequential(nn.Linear(half, half), nn.ReLU(inplace=True))
    if kind == "concat":
        return nn.Identity()
    raise ValueError(f"fusion must be 'mab', 'fc' or 'concat', got {kind!r}")


class TaskNet(nn.Module):
    """`assist`: the feature that assists diagnosis - "auxiliary" (MKCNet's f^w),
    "quality" (f^q: the paper's w/o Meta, which has no auxiliary branch) or "none";
    `fusion`: how it is combined ("mab", or the ablations "fc" and "concat")."""

    def __init__(
        self,
        backbone: Backbone,
        num_diagnosis: int,
        num_quality: int,
        auxiliary_size: int | None,
        gab: str = "pooled",
        use_mab: bool = True,
        *,
        assist: str | None = None,
        fusion: str = "mab",
    ):
        super().__init__()
        if gab not in ("pooled", "spatial"):
            raise ValueError(f"gab must be 'pooled' or 'spatial', got {gab!r}")
        assist = assist or ("auxiliary" if use_mab else "none")
        if assist == "auxiliary" and not auxiliary_size:
            raise ValueError("f^w cannot assist diagnosis without an auxiliary branch")
        channels = backbone.feature_size
        half = channels // 2
        self.gab = gab
        self.assist = assist
        self.use_mab = assist != "none"
        self.model = backbone
        self.branch_bam1 = GlobalAttentionBlock(channels)
        self.branch_bam2 = GlobalAttentionBlock(channels) if auxiliary_size else None
        self.branch_bam3 = GlobalAttentionBlock(channels)
        self.branch_cor = _fusion(fusion, half) if self.use_mab else None
        self.classifier1 = _head(channels if self.use_mab else half, num_diagnosis)
        self.classifier2 = _head(half, auxiliary_size) if auxiliary_size else None
        self.classifier3 = _head(half, num_quality)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        feature_map = self.model(x)
        if self.gab == "pooled":
            return feature_map.mean(dim=(2, 3), keepdim=True)
        return feature_map

    def forward(self, x: torch.Tensor) -> TaskOutputs:
        feature = self.features(x)
        diagnosis = self.branch_bam1(feature)
        quality = self.branch_bam3(feature)
        auxiliary = self.branch_bam2(feature) if self.branch_bam2 is not None else None
        if self.branch_cor is not None:
            helper = auxiliary if self.assist == "auxiliary" else quality
            diagnosis = torch.cat([diagnosis, self.branch_cor(helper)], dim=1)
        aux_logits = self.classifier2(auxiliary) if self.classifier2 is not None else None
        return TaskOutputs(self.classifier1(diagnosis), aux_logits, self.classifier3(quality))
