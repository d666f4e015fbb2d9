"""The one InfoNCE loss every CoMCL term (and the basic contrastive ablation) uses.

Per anchor a_i with positive p_i and negatives n_j (all L2-normalised),

    l_i = -log( exp(a_i.p_i / tau) / (exp(a_i.p_i / tau) + sum_{j in N_i} exp(a_i.n_j / tau)) )

where N_i is every negative `allowed` for anchor i (a negative with the anchor's own
patch id is never allowed), optionally cut to the `keep` most similar ones (hard-
negative mining). Per-sample losses are returned so self-paced selection can weigh them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from shared.contrastive.mining import hardest_negatives
from shared.training.precision import kept_in_fp32


def allowed_negatives(
    anchor_ids: torch.Tensor | None,
    negative_ids: torch.Tensor | None,
    n: int,
    m: int,
    device: torch.device,
) -> torch.Tensor:
    """[N, M] bool: True where negative j may be used for anchor i (not the same patch)."""
    if anchor_ids is None or negative_ids is None:
        return torch.ones(n, m, dtype=torch.bool, device=device)
    return anchor_ids.view(-1, 1) != negative_ids.view(1, -1)


@kept_in_fp32
def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negatives: torch.Tensor,
    tau: float,
    *,
    anchor_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
    keep: int | None = None,
) -> torch.Tensor:
    """Per-anchor InfoNCE losses [N]; anchors with no usable negative get log(1) = 0."""
    if tau <= 0:
        raise ValueError(f"temperature must be positive, got {tau}")
    a = F.normalize(anchor, dim=1)
    p = F.normalize(positive, dim=1)
    n = F.normalize(negatives, dim=1)
    pos = (a * p).sum(dim=1) / tau
    sim = a @ n.T  # cosine similarities [N, M]
    mask = allowed_negatives(anchor_ids, negative_ids, a.shape[0], n.shape[0], a.device)
    if keep is not None:
        mask = hardest_negatives(sim.detach(), mask, keep)
    neg = (sim / tau).masked_fill(~mask, float("-inf"))
    logits = torch.cat([pos.unsqueeze(1), neg], dim=1)
    return torch.logsumexp(logits, dim=1) - pos
