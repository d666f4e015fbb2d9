"""MKCNet's Meta Learner: an image -> a soft auxiliary label inside its joint class.

The output has D*Q blocks of L positions; joint-encoding masking keeps block
`y_dq = y_q * D + y_d` and takes a softmax over it (other positions weigh 1e-8,
as in the authors' code, so gradients stay finite). The masking ablations (and
MAXL) mask by the diagnosis class only (D blocks of L, block `y_dq mod D = y_d`)
or not at all (one block of D*Q*L positions).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from shared.models.backbones import Backbone
from shared.training.precision import kept_in_fp32

MASK_FLOOR = 1e-8


class MetaLearner(nn.Module):
    """`masking`: "joint" (MKCNet), "diagnosis" (needs `num_diagnosis`) or "none"."""

    def __init__(
        self,
        backbone: Backbone,
        joint_classes: int,
        meta_length: int,
        masking: str = "joint",
        num_diagnosis: int | None = None,
    ):
        super().__init__()
        channels = backbone.feature_size
        if masking == "diagnosis" and not num_diagnosis:
            raise ValueError("masking by diagnosis needs num_diagnosis")
        self.masking = masking
        self.num_diagnosis = num_diagnosis or 1
        blocks = {"joint": joint_classes, "diagnosis": self.num_diagnosis, "none": 1}[masking]
        # the number of mask blocks and the positions in each
        self.joint_classes = blocks
        self.meta_length = meta_length * (joint_classes if masking == "none" else 1)
        self.model = backbone
        self.classifier = nn.Sequential(
            nn.Linear(channels, channels),
            nn.ReLU(inplace=True),
            nn.Linear(channels, self.joint_classes * self.meta_length),
        )

    def block_of(self, joint: torch.Tensor) -> torch.Tensor:
        """The mask block of each example, from its joint label y_dq = y_q * D + y_d."""
        if self.masking == "diagnosis":
            return joint % self.num_diagnosis
        if self.masking == "none":
            return torch.zeros_like(joint)
        return joint

    def forward(self, x: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.model(x).mean(dim=(2, 3)))
        return masked_softmax(logits, self.block_of(joint), self.joint_classes, self.meta_length)


def joint_mask_log(joint: torch.Tensor, joint_classes: int, meta_length: int) -> torch.Tensor:
    """log of the mask: 0 on block `joint`, log(1e-8) elsewhere; shape [B, J*L]."""
    block = torch.arange(joint_classes * meta_length, device=joint.device) // meta_length
    inside = block[None, :] == joint[:, None]
    floor = torch.full(inside.shape, math.log(MASK_FLOOR), device=joint.device)
    return torch.where(inside, torch.zeros_like(floor), floor)


@kept_in_fp32
def masked_softmax(
    logits: torch.Tensor, joint: torch.Tensor, joint_classes: int, meta_length: int
) -> torch.Tensor:
    """exp(x) * m / sum(exp(x) * m), computed as softmax(x + log m) for stability."""
    log_mask = joint_mask_log(joint, joint_classes, meta_length).to(logits.dtype)
    return torch.softmax(logits + log_mask, dim=1)
