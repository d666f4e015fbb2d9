"""Self-paced hard-negative mining (CoMCL): the K_t schedule, the K_t hardest
negatives, and the sample selection s_i = [l_i < 1/K_t].

K_t = floor(delta * cos(pi t / (2 T_max))) shrinks from all delta negatives at step
t = 0 (t counts optimisation steps, T_max = epochs x steps per epoch) towards the
single hardest one, while the admission threshold 1/K_t grows, so training moves from
many easy-to-separate negatives and confident anchors to few hard negatives and all
anchors.
"""

from __future__ import annotations

import math

import torch


def k_schedule(t: int, t_max: int, delta: int) -> int:
    """K_t for step t (0-based) of t_max; at least 1 while any negative exists.

    The formula reaches 0 at t = T_max (and earlier for small delta); keeping one
    negative there stops the loss from degenerating to log(1) = 0.
    """
    if delta <= 0:
        return 0
    if t_max <= 0:
        raise ValueError(f"t_max must be positive, got {t_max}")
    t = min(max(t, 0), t_max)
    k = math.floor(delta * math.cos(math.pi * t / (2 * t_max)) + 1e-9)
    return max(1, min(delta, k))


def hardest_negatives(sim: torch.Tensor, allowed: torch.Tensor, k: int) -> torch.Tensor:
    """[N, M] bool: per row the k allowed negatives with the highest similarity.

    Rows with fewer than k allowed negatives keep all of them; ties break by index.
    """
    if k <= 0:
        return torch.zeros_like(allowed)
    masked = sim.masked_fill(~allowed, float("-inf"))
    order = masked.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    rank.scatter_(1, order, positions)
    return allowed & (rank < k)


def self_paced_selection(
    losses: torch.Tensor, k_t: int, min_fraction: float = 0.0
) -> tuple[torch.Tensor, int]:
    """s_i = 1 where l_i < 1/K_t; returns (selection mask, how many the rule admitted).

    With `min_fraction` > 0, when the rule admits fewer than ceil(min_fraction * N)
    anchors the easiest anchors up to that count are selected instead: a randomly
    initialised encoder has every l_i near log(delta + 1) >> 1/K_t, and the rule alone
    would admit nothing and never start learning (docs/comcl.md).
    """
    if k_t <= 0 or losses.numel() == 0:
        return torch.ones_like(losses, dtype=torch.bool), int(losses.numel())
    detached = losses.detach()
    chosen = detached < 1.0 / k_t
    by_rule = int(chosen.sum())
    floor = math.ceil(min_fraction * losses.numel())
    if by_rule < floor:
        easiest = detached.argsort(stable=True)[:floor]
        chosen = torch.zeros_like(chosen)
        chosen[easiest] = True
    return chosen, by_rule
