"""Equality of nested states (optimiser, scheduler, model): values, not just keys."""

from __future__ import annotations

import torch


def assert_same_state(a: object, b: object, where: str = "state") -> None:
    """Fail naming the first path where `a` and `b` differ: dict keys, list lengths,
    every tensor (exactly) and every other value."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_same_state(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same_state(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        assert torch.equal(a, b), where
    else:
        assert a == b, (where, a, b)
