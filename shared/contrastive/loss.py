"""The CoMCL objective: three InfoNCE terms over the patch subsets, or (ablation) plain
instance discrimination over all patches, with optional self-paced hard-negative mining.

Terms (anchor subset vs negative subset; the positive is the anchor's other view):
(L vs L~) separates a lesion from its low-quality look, (L vs H) lesion from healthy
tissue, (L~ vs H~) the same under degradation. A term whose anchors or negatives are
absent from the batch is skipped (never a NaN); the loss is the mean of the others.
"""

from __future__ import annotations

import torch

from shared.config import ContrastiveConfig
from shared.contrastive.infonce import info_nce
from shared.contrastive.mining import k_schedule, self_paced_selection
from shared.contrastive.patches import SUBSETS, TERMS


def _term_name(anchor: str, negative: str) -> str:
    return f"{anchor}_vs_{negative}".replace("~", "q")


def comcl_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    subset: torch.Tensor,
    ids: torch.Tensor,
    c: ContrastiveConfig,
    epoch: int,
    total_epochs: int,
) -> tuple[torch.Tensor | None, dict[str, float]]:
    """(loss or None when no term can be formed, logs) for embeddings of two views."""
    parts: list[
        tuple[str, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    ] = []
    if c.multi_level:
        for anchor, negative in TERMS:
            a = subset == SUBSETS.index(anchor)
            n = subset == SUBSETS.index(negative)
            if a.any() and n.any():
                parts.append((_term_name(anchor, negative), z1[a], z2[a], z1[n], ids[a], ids[n]))
    elif len(ids) >= 2:
        parts.append(("instance", z1, z2, z2, ids, ids))
    logs: dict[str, float] = {}
    total: list[torch.Tensor] = []
    for name, anchor_z, positive_z, negative_z, anchor_ids, negative_ids in parts:
        delta = int(negative_z.shape[0] - (1 if negative_z is positive_z else 0))
        keep = k_schedule(epoch, total_epochs, delta) if c.hard_mining else None
        losses = info_nce(
            anchor_z,
            positive_z,
            negative_z,
            c.tau,
            anchor_ids=anchor_ids,
            negative_ids=negative_ids,
            keep=keep,
        )
        logs[f"loss_{name}"] = float(losses.detach().mean())
        if keep is not None:
            chosen, by_rule = self_paced_selection(losses, keep, c.min_selected_fraction)
            logs[f"k_{name}"] = float(keep)
            logs[f"selected_{name}"] = float(chosen.float().mean())
            logs[f"admitted_{name}"] = by_rule / max(len(losses), 1)
            # an empty selection gives 0 (no update from this term), never NaN
            total.append(losses[chosen].sum() / max(int(chosen.sum()), 1))
        else:
            total.append(losses.mean())
    if not total:
        return None, logs
    loss = torch.stack(total).mean()
    logs["loss"] = float(loss.detach())
    return loss, logs
