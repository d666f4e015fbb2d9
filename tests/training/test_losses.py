"""Losses against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from shared.losses import auxiliary_loss, entropy_regulariser, focal_loss


def test_focal_loss_hard_labels_by_hand() -> None:
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]])  # p = [.25,.75], [.8,.2]
    labels = torch.tensor([1, 1])
    expected = (-(0.25**2) * math.log(0.75) - (0.8**2) * math.log(0.2)) / 2
    assert float(focal_loss(logits, labels)) == pytest.approx(expected, rel=1e-6)


def test_focal_loss_gamma_zero_is_cross_entropy() -> None:
    logits = torch.randn(5, 4)
    labels = torch.tensor([0, 1, 2, 3, 0])
    ce = torch.nn.functional.cross_entropy(logits, labels)
    assert float(focal_loss(logits, labels, gamma=0.0)) == pytest.approx(float(ce), rel=1e-5)


def test_soft_target_focal_and_auxiliary_scaling() -> None:
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)]])  # p = [.25, .25, .5]
    target = torch.tensor([[0.5, 0.0, 0.5]])
    expected = -(0.5 * 0.75**2 * math.log(0.25) + 0.5 * 0.5**2 * math.log(0.5))
    assert float(focal_loss(logits, target)) == pytest.approx(expected, rel=1e-6)
    assert float(auxiliary_loss(logits, target, meta_length=5)) == pytest.approx(expected / 5)


def test_entropy_regulariser_by_hand() -> None:
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # batch mean [.5, .5]
    assert float(entropy_regulariser(y)) == pytest.approx(2 * 0.5 * math.log(0.5))
    peaked = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    assert float(entropy_regulariser(peaked)) == pytest.approx(0.0, abs=1e-12)
    # Minimising R spreads the mean embedding: uniform is the minimum.
    assert float(entropy_regulariser(y)) < float(entropy_regulariser(peaked))
