"""What every diagnosis model returns, so training and evaluation treat them alike."""

from __future__ import annotations

from typing import NamedTuple

import torch


class TaskOutputs(NamedTuple):
    """Logits; `auxiliary` and `quality` are None for models without those heads.

    `side`: (diagnosis, quality) logits of deeply supervised task-specific features
    (CANet, DETACH); trained, never used for prediction.
    """

    diagnosis: torch.Tensor
    auxiliary: torch.Tensor | None = None
    quality: torch.Tensor | None = None
    side: tuple[torch.Tensor, torch.Tensor] | None = None
