"""MKCNet's Meta Learner: an image -> a soft auxiliary label inside its joint class.

The output has D*Q blocks of L positions; joint-encoding masking keeps block
`y_dq = y_q * D + y_d` and takes a softmax over it (other positions weigh 1e-8,
as in the authors' code, so gradients stay finite).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shared.models.backbones import Backbone

MASK_FLOOR = 1e-8


class MetaLearner(nn.Module):
    def __init__(self, backbone: Backbone, joint_classes: int, meta_length: int):
        super().__init__()
        channels = backbone.feature_size
        self.joint_classes = joint_classes
        self.meta_length = meta_length
        self.model = backbone
        self.classifier = nn.Sequential(
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, joint_classes * meta_length),
        )

    def forward(self, x: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.model(x).mean(dim=(2, 3)))
        return masked_softmax(logits, joint, self.joint_classes, self.meta_length)


def joint_mask_log(joint: torch.Tensor, joint_classes: int, meta_length: int) -> torch.Tensor:
    """log of the mask: 0 on block `joint`, log(1e-8) elsewhere; shape [B, J*L]."""
    block = torch.arange(joint_classes * meta_length, device=joint.device) // meta_length
    inside = block[None, :] == joint[:, None]
    floor = torch.full(inside.shape, math.log(MASK_FLOOR), device=joint.device)
    return torch.where(inside, torch.zeros_like(floor), floor)


def masked_softmax(
    logits: torch.Tensor, joint: torch.Tensor, joint_classes: int, meta_length: int
) -> torch.Tensor:
    """exp(x) * m / sum(exp(x) * m), computed as softmax(x + log m) for stability."""
    log_mask = joint_mask_log(joint, joint_classes, meta_length).to(logits.dtype)
    return torch.softmax(logits + log_mask, dim=1)
