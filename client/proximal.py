"""FedProx's proximal term, added to the gradients right before each optimiser step.

d/dw (mu/2 ||w - w_global||^2) = mu (w - w_global). Adding it in an optimizer
step pre-hook covers every update path of the trainer (plain backward, stage I,
and the meta-gradient steps that set `.grad` directly) without touching its code.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch.utils.hooks import RemovableHandle


def add_proximal_term(
    optimizers: Iterable[torch.optim.Optimizer | None], mu: float
) -> list[RemovableHandle]:
    """Anchor every parameter at its current (global) value; returns the hook handles."""
    handles = []
    for optimizer in optimizers:
        if optimizer is None or mu <= 0:
            continue
        anchors = {id(p): p.detach().clone() for g in optimizer.param_groups for p in g["params"]}

        def hook(
            opt: torch.optim.Optimizer,
            args: object,
            kwargs: object,
            anchors: dict[int, torch.Tensor] = anchors,
        ) -> None:
            for group in opt.param_groups:
                for p in group["params"]:
                    if p.grad is not None:
                        p.grad = p.grad + mu * (p.detach() - anchors[id(p)])

        handles.append(optimizer.register_step_pre_hook(hook))
    return handles
