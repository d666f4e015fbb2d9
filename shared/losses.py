"""MKCNet's losses, one implementation each.

All are computed in fp32 under mixed precision (`kept_in_fp32`).
Focal loss works on softmax probabilities with a hard label or a soft target:
-sum_k t_k (1 - p_k)^gamma log p_k per sample, averaged over the batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.training.precision import kept_in_fp32

LOG_FLOOR = 1e-20


@kept_in_fp32
def focal_loss(logits: torch.Tensor, target: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Focal loss against class indices (int) or a probability target (float, [B, K])."""
    probs = torch.softmax(logits, dim=1)
    if target.dtype in (torch.int64, torch.int32):
        target = F.one_hot(target.long(), logits.shape[1]).to(probs.dtype)
    per_sample = -(target * (1 - probs).pow(gamma) * torch.log(probs + LOG_FLOOR)).sum(dim=1)
    return per_sample.mean()


@kept_in_fp32
def auxiliary_loss(
    logits: torch.Tensor, soft_target: torch.Tensor, meta_length: int, gamma: float = 2.0
) -> torch.Tensor:
    """L_W: focal loss of the auxiliary head against the Meta Learner's y_w, divided by L."""
    return focal_loss(logits, soft_target, gamma) / float(meta_length)


@kept_in_fp32
def entropy_regulariser(soft_labels: torch.Tensor, per_example: bool = False) -> torch.Tensor:
    """R = sum_k p_k log p_k of the batch-mean y_w; minimising it spreads the embedding.

    `per_example`: the batch mean of each y_w's own sum_k y_k log y_k instead, the form
    DP training needs (docs/privacy.md: it pushes every y_w towards uniform)."""
    if per_example:
        return (soft_labels * torch.log(soft_labels + LOG_FLOOR)).sum(dim=1).mean()
    mean = soft_labels.mean(dim=0)
    return (mean * torch.log(mean + LOG_FLOOR)).sum()
