"""Table-2 comparison models that learn diagnosis and quality jointly: CANet, DETACH.

Written from the papers' descriptions for this project's two tasks (diagnosis and
quality, where the originals grade two diseases); docs/mkcnet.md lists what differs.

- CANet (Li et al., "CANet: Cross-disease Attention Network for Joint Diabetic
  Retinopathy and Diabetic Macular Edema Grading", IEEE TMI 2019): per task a
  task-specific attention module (channel then spatial attention on the backbone's
  feature map), then a task-dependent module that adds the other task's
  channel-attended feature; final heads on the refined features, deeply supervised
  side heads on the task-specific ones (loss weight 0.25, the paper's lambda).
- DETACH (Che et al., "Learning Robust Representation for Joint Grading of Ophthalmic
  Diseases via Adaptive Curriculum and Feature Disentanglement", MICCAI 2022): a
  feature per task; each head reads its own feature and the other task's feature with
  the gradient detached, so each branch is shaped by its own task only; side heads
  on each task feature alone. The adaptive curriculum is not implemented.
"""

from __future__ import annotations

import torch
from torch import nn

from shared.models.attention import CBAM, ChannelGate
from shared.models.backbones import Backbone
from shared.models.outputs import TaskOutputs
from shared.models.task_net import GlobalAttentionBlock, _head


class CANet(nn.Module):
    def __init__(self, backbone: Backbone, num_diagnosis: int, num_quality: int):
        super().__init__()
        channels = backbone.feature_size
        self.model = backbone
        self.specific_diagnosis = CBAM(channels)
        self.specific_quality = CBAM(channels)
        self.dependent_diagnosis = ChannelGate(channels)  # attends the quality feature
        self.dependent_quality = ChannelGate(channels)  # attends the diagnosis feature
        self.classifier1 = _head(channels, num_diagnosis)
        self.classifier3 = _head(channels, num_quality)
        self.side_diagnosis = nn.Linear(channels, num_diagnosis)
        self.side_quality = nn.Linear(channels, num_quality)

    def forward(self, x: torch.Tensor) -> TaskOutputs:
        feature = self.model(x)
        f_d = self.specific_diagnosis(feature)
        f_q = self.specific_quality(feature)
        refined_d = f_d + self.dependent_diagnosis(f_q)
        refined_q = f_q + self.dependent_quality(f_d)

        def pool(t: torch.Tensor) -> torch.Tensor:
            return t.mean(dim=(2, 3))

        return TaskOutputs(
            self.classifier1(pool(refined_d)),
            None,
            self.classifier3(pool(refined_q)),
            (self.side_diagnosis(pool(f_d)), self.side_quality(pool(f_q))),
        )


class DETACH(nn.Module):
    def __init__(self, backbone: Backbone, num_diagnosis: int, num_quality: int):
        super().__init__()
        channels = backbone.feature_size
        half = channels // 2
        self.model = backbone
        self.branch_diagnosis = GlobalAttentionBlock(channels)
        self.branch_quality = GlobalAttentionBlock(channels)
        self.classifier1 = _head(channels, num_diagnosis)
        self.classifier3 = _head(channels, num_quality)
        self.side_diagnosis = nn.Linear(half, num_diagnosis)
        self.side_quality = nn.Linear(half, num_quality)

    def forward(self, x: torch.Tensor) -> TaskOutputs:
        feature = self.model(x)
        f_d = self.branch_diagnosis(feature)
        f_q = self.branch_quality(feature)
        diagnosis = self.classifier1(torch.cat([f_d, f_q.detach()], dim=1))
        quality = self.classifier3(torch.cat([f_q, f_d.detach()], dim=1))
        return TaskOutputs(
            diagnosis, None, quality, (self.side_diagnosis(f_d), self.side_quality(f_q))
        )
