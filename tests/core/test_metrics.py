"""compute_metrics: values against hand-computed cases, HQ/LQ split, NaN where undefined."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from shared.metrics import compute_metrics, probability_auc


def _onehot_probs(pred: list[int], k: int, confidence: float = 0.8) -> np.ndarray:
    probs = np.full((len(pred), k), (1 - confidence) / (k - 1))
    probs[np.arange(len(pred)), pred] = confidence
    return probs


def test_binary_auc_uses_probabilities_and_compat_uses_hard_predictions():
    y = np.array([0, 0, 1, 1])
    p1 = np.array([0.1, 0.6, 0.55, 0.9])  # one inversion of four pairs
    m = compute_metrics(y, np.stack([1 - p1, p1], axis=1), np.zeros(4, dtype=int))
    assert m["auc"] == pytest.approx(0.75)
    # perfectly ranked but under-confident: every hard prediction is 0
    p1 = np.array([0.1, 0.3, 0.4, 0.45])
    m = compute_metrics(y, np.stack([1 - p1, p1], axis=1), np.zeros(4, dtype=int))
    assert m["auc"] == pytest.approx(1.0)
    assert m["auc_hard_compat"] == pytest.approx(0.5)
    assert m["acc"] == pytest.approx(0.5)
    assert m["f1_compat"] == pytest.approx(0.0)  # binary F1 of class 1
    assert m["f1"] == pytest.approx((2 / 3 + 0.0) / 2)  # macro


def test_perfect_multiclass_and_kappa():
    y = np.array([0, 1, 2, 0, 1, 2])
    m = compute_metrics(y, _onehot_probs(list(y), 3), np.zeros(6, dtype=int))
    for key in ("auc", "acc", "f1", "kappa"):
        assert m[key] == pytest.approx(1.0), key
    assert m["auc_hard_compat"] == m["auc"]


def test_quadratic_kappa_penalises_far_errors_more():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 2])
    near = np.array([1, 1, 2, 0, 1, 1, 0, 2])
    far = np.array([2, 1, 2, 0, 1, 0, 0, 2])
    q = np.zeros(8, dtype=int)
    k_near = compute_metrics(y, _onehot_probs(list(near), 3), q)["kappa"]
    k_far = compute_metrics(y, _onehot_probs(list(far), 3), q)["kappa"]
    assert k_far < k_near < 1


def test_multiclass_auc_is_sklearn_macro_ovo():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 50)
    probs = rng.dirichlet([1, 1, 1], size=50)
    expected = roc_auc_score(y, probs, multi_class="ovo", average="macro")
    assert probability_auc(y, probs) == pytest.approx(expected)


def test_split_by_quality():
    y = np.array([0, 1, 0, 1, 0, 1])
    q = np.array([0, 0, 1, 2, 2, 1])
    pred = [0, 1, 1, 1, 0, 0]
    quality_probs = _onehot_probs([0, 0, 1, 1, 2, 1], 3)
    m = compute_metrics(y, _onehot_probs(pred, 2), q, quality_probs)
    assert (m["n"], m["n_hq"], m["n_lq"]) == (6.0, 2.0, 4.0)
    assert m["acc_hq"] == pytest.approx(1.0)
    assert m["acc_lq"] == pytest.approx(0.5)
    assert m["acc"] == pytest.approx(4 / 6)
    assert m["quality_acc"] == pytest.approx(5 / 6)  # wrong only at index 3 (2 vs 1)
    assert m["quality_acc_hq"] == pytest.approx(1.0)


def test_undefined_metrics_are_nan_not_errors():
    y = np.array([1, 1, 1, 0])
    q = np.array([0, 0, 0, 1])  # HQ has one class only, LQ has one image
    m = compute_metrics(y, _onehot_probs([1, 1, 1, 0], 2), q)
    assert math.isnan(m["auc_hq"]) and math.isnan(m["auc_lq"])
    assert math.isnan(m["kappa_hq"])  # labels and predictions all one class
    assert m["acc_hq"] == 1.0
    assert not math.isnan(m["auc"])
    # empty subset: no LQ images at all
    m = compute_metrics(np.array([0, 1]), _onehot_probs([0, 1], 2), np.array([0, 0]))
    assert m["n_lq"] == 0.0
    assert all(math.isnan(m[k]) for k in ("auc_lq", "acc_lq", "f1_lq", "kappa_lq"))


def test_multiclass_subset_missing_a_class_averages_present_pairs():
    y = np.array([0, 1, 0, 1])
    probs = _onehot_probs([0, 1, 0, 1], 3)
    assert compute_metrics(y, probs, np.zeros(4, dtype=int))["auc"] == pytest.approx(1.0)


def test_accepts_tensors_and_is_json_ready():
    y = torch.tensor([0, 1, 1, 0])
    probs = torch.softmax(torch.randn(4, 2), dim=1)
    q = torch.tensor([0, 1, 0, 1])
    m = compute_metrics(y, probs, q, torch.softmax(torch.randn(4, 2), dim=1))
    assert all(isinstance(v, float) for v in m.values())
    json.dumps(m)  # NaN is allowed by json; floats only


def test_shape_mismatch_is_a_programming_error():
    with pytest.raises(ValueError):
        compute_metrics([0, 1], np.ones((3, 2)) / 2, [0, 0])
