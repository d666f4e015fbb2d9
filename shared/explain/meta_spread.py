"""How spread the Meta Learner's soft labels y_w are (the embedding the paper's
batch-mean entropy regulariser is there to keep diverse)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

from shared.models.meta_learner import MetaLearner


@torch.no_grad()
def soft_label_spread(
    meta: MetaLearner, loader: Iterable[Any], device: torch.device | str = "cpu"
) -> dict[str, float]:
    """`entropy_fraction`: mean entropy of each y_w inside its block over log L (1: every
    y_w uniform, 0: one-hot); `within_class_tv`: mean total-variation distance of y_w
    to its joint class's mean y_w (0: all images of a class get the same soft label)."""
    meta = meta.to(device).eval()
    outputs, blocks = [], []
    for image, _, _, joint in loader:
        joint = joint.to(device)
        outputs.append(meta(image.to(device), joint).float().cpu())
        blocks.append(meta.block_of(joint).cpu())
    y, block = torch.cat(outputs), torch.cat(blocks)
    length = meta.meta_length
    entropy = -(y * torch.log(y.clamp_min(1e-12))).sum(1)
    tv = []
    for b in block.unique():
        rows = y[block == b]
        if len(rows) > 1:
            tv.append(0.5 * (rows - rows.mean(0)).abs().sum(1))
    return {
        "entropy_fraction": float(entropy.mean() / math.log(length)) if length > 1 else 0.0,
        "within_class_tv": float(torch.cat(tv).mean()) if tv else 0.0,
    }
