"""InfoNCE against a hand computation, the K_t schedule, hard-negative selection and
self-paced selection."""

from __future__ import annotations

import math

import pytest
import torch

from shared.contrastive.infonce import info_nce
from shared.contrastive.mining import hardest_negatives, k_schedule, self_paced_selection


def _unit(*xs: float) -> list[float]:
    norm = math.sqrt(sum(x * x for x in xs))
    return [x / norm for x in xs]


def test_infonce_matches_hand_computation() -> None:
    tau = 0.5
    a = [_unit(1.0, 0.0), _unit(0.0, 1.0)]
    p = [_unit(1.0, 1.0), _unit(0.0, 2.0)]
    n = [_unit(-1.0, 0.0), _unit(1.0, -1.0), _unit(3.0, 4.0)]

    def hand(i: int) -> float:
        dot = lambda u, v: sum(x * y for x, y in zip(u, v, strict=True))  # noqa: E731
        pos = math.exp(dot(a[i], p[i]) / tau)
        neg = sum(math.exp(dot(a[i], nj) / tau) for nj in n)
        return -math.log(pos / (pos + neg))

    # unnormalised inputs: the loss normalises them itself
    got = info_nce(torch.tensor(a) * 3, torch.tensor(p) * 0.5, torch.tensor(n) * 7, tau)
    assert got.shape == (2,)
    assert got.tolist() == pytest.approx([hand(0), hand(1)], rel=1e-5)


def test_infonce_temperature_default_and_gradient() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(4, 8, generator=g, requires_grad=True)
    loss = info_nce(a, torch.randn(4, 8, generator=g), torch.randn(6, 8, generator=g), 0.07)
    loss.mean().backward()
    assert torch.isfinite(a.grad).all()
    with pytest.raises(ValueError):
        info_nce(a, a, a, 0.0)


@pytest.mark.parametrize(
    ("t", "t_max", "delta", "expected"),
    [
        (0, 4, 10, 10),
        (1, 4, 10, 9),
        (2, 4, 10, 7),
        (3, 4, 10, 3),
        (4, 4, 10, 1),
        (0, 800, 400, 400),
        (400, 800, 400, 282),
        (799, 800, 400, 1),
        (5, 10, 0, 0),
    ],
)
def test_k_schedule(t: int, t_max: int, delta: int, expected: int) -> None:
    # floor(delta * cos(pi t / (2 T_max))), at least 1 while negatives exist
    assert k_schedule(t, t_max, delta) == expected


def test_k_schedule_is_the_formula_and_decreasing() -> None:
    ks = [k_schedule(t, 50, 64) for t in range(50)]
    assert ks == sorted(ks, reverse=True)
    for t, k in enumerate(ks):
        assert k == max(1, math.floor(64 * math.cos(math.pi * t / 100)))


def test_mining_keeps_exactly_the_k_hardest() -> None:
    g = torch.Generator().manual_seed(1)
    sim = torch.rand(5, 9, generator=g)
    allowed = torch.rand(5, 9, generator=g) > 0.3
    allowed[0] = True
    for k in (1, 3, 9):
        kept = hardest_negatives(sim, allowed, k)
        for i in range(5):
            candidates = [j for j in range(9) if allowed[i, j]]
            want = sorted(candidates, key=lambda j: -float(sim[i, j]))[:k]
            assert sorted(torch.nonzero(kept[i]).flatten().tolist()) == sorted(want)
            assert int(kept[i].sum()) == min(k, len(candidates))


def test_infonce_with_mining_uses_only_the_k_hardest() -> None:
    g = torch.Generator().manual_seed(2)
    a, p, n = (
        torch.randn(3, 6, generator=g),
        torch.randn(3, 6, generator=g),
        torch.randn(7, 6, generator=g),
    )
    k, tau = 2, 0.1
    got = info_nce(a, p, n, tau, keep=k)
    an, pn, nn_ = (torch.nn.functional.normalize(x, dim=1) for x in (a, p, n))
    for i in range(3):
        sims = (nn_ @ an[i]).tolist()
        hardest = sorted(sims, reverse=True)[:k]
        pos = float(an[i] @ pn[i])
        want = -pos / tau + math.log(math.exp(pos / tau) + sum(math.exp(s / tau) for s in hardest))
        assert float(got[i]) == pytest.approx(want, rel=1e-5)


def test_anchor_own_patch_is_never_a_negative() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(6, 4, generator=g)
    ids = torch.arange(6)
    # negatives include every anchor's own embedding (the most similar possible)
    with_ids = info_nce(z, z + 0.01, z, 0.2, anchor_ids=ids, negative_ids=ids)
    for i in range(6):
        others = torch.cat([z[:i], z[i + 1 :]])
        alone = info_nce(z[i : i + 1], z[i : i + 1] + 0.01, others, 0.2)
        assert float(with_ids[i]) == pytest.approx(float(alone[0]), rel=1e-5)
    # mining picks the hardest *allowed* negatives: never the anchor itself
    mined = info_nce(z, z + 0.01, z, 0.2, anchor_ids=ids, negative_ids=ids, keep=1)
    assert torch.isfinite(mined).all() and (mined > 0).all()
    sim = torch.nn.functional.normalize(z, dim=1) @ torch.nn.functional.normalize(z, dim=1).T
    kept = hardest_negatives(sim, ids.view(-1, 1) != ids.view(1, -1), 2)
    assert not kept.diagonal().any()


def test_self_paced_selection_rule_and_floor() -> None:
    losses = torch.tensor([0.01, 0.3, 0.05, 2.0])
    chosen, by_rule = self_paced_selection(losses, k_t=10)  # threshold 1/10
    assert chosen.tolist() == [True, False, True, False] and by_rule == 2
    chosen, by_rule = self_paced_selection(losses, k_t=100)  # threshold 0.01: none
    assert by_rule == 0 and not chosen.any()
    chosen, _ = self_paced_selection(losses, k_t=100, min_fraction=0.5)
    assert chosen.tolist() == [True, False, True, False]  # the two easiest
    chosen, _ = self_paced_selection(losses, k_t=1)  # threshold 1: all below 1
    assert chosen.tolist() == [True, True, True, False]
