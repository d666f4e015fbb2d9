"""Bootstrap intervals, calibration, referable sensitivity / specificity, confusion counts
and degenerate-model alarms: each checked on sets whose right answer is known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from shared.metric_details import (
    bootstrap_intervals,
    calibration,
    site_weighted,
    weighted_probability_auc,
)
from shared.metrics import compute_metrics, probability_auc
from shared.report.alarms import degenerate_model
from shared.strict_json import dumps

DR = ["NoDR", "NPDR", "PDR"]
QUALITY = ["HQ", "LQ-U", "LQ-P"]


def _informative(n: int, seed: int = 0, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities that carry real but imperfect information."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    p = rng.dirichlet(np.ones(k), n)
    p[np.arange(n), y] += 0.6
    return y, p / p.sum(1, keepdims=True)


def test_weighted_auc_with_unit_weights_is_sklearns_auc():
    y, p = _informative(200, k=3)
    p = np.round(p, 1)  # many ties: they count half, as in scikit-learn
    assert weighted_probability_auc(y, p, np.ones((1, 200)))[0] == pytest.approx(
        probability_auc(y, p), abs=1e-12
    )
    yb, pb = _informative(150, seed=1, k=2)
    assert weighted_probability_auc(yb, pb, np.ones((1, 150)))[0] == pytest.approx(
        roc_auc_score(yb, pb[:, 1]), abs=1e-12
    )
    # a weight of 2 is the same as the image listed twice
    twice = np.ones((1, 150))
    twice[0, :10] = 2
    listed = np.concatenate([np.arange(150), np.arange(10)])
    assert weighted_probability_auc(yb, pb, twice)[0] == pytest.approx(
        roc_auc_score(yb[listed], pb[listed, 1]), abs=1e-12
    )


def test_interval_contains_the_estimate_narrows_with_n_and_is_seeded():
    widths = []
    for n in (40, 400, 4000):
        y, p = _informative(n)
        m = compute_metrics(y, p, np.zeros(n, dtype=int))
        for key in ("auc", "acc", "kappa"):
            assert m[f"{key}_ci_lo"] <= m[key] <= m[f"{key}_ci_hi"], (n, key)
        widths.append(m["auc_ci_hi"] - m["auc_ci_lo"])
        assert bootstrap_intervals(y, p) == bootstrap_intervals(y, p)  # seeded
    assert widths[0] > 2 * widths[1] > 4 * widths[2] > 0


def test_interval_is_undefined_where_auc_is():
    y = np.zeros(30, dtype=int)
    _, p = _informative(30)
    got = bootstrap_intervals(y, p)
    assert np.isnan(got["auc_ci_lo"]) and np.isnan(got["auc_ci_hi"])
    assert got["acc_ci_lo"] <= got["acc_ci_hi"]


def test_calibration_of_a_perfectly_calibrated_set_is_near_zero():
    rng = np.random.default_rng(3)
    n = 20000
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.uniform(size=n) < confidence  # right exactly as often as it claims
    y = np.where(correct, 1, 0)
    p = np.stack([1 - confidence, confidence], 1)
    got = calibration(y, p)
    assert got["ece"] < 0.01
    # an over-confident model: claims 0.95, right half the time
    over = calibration(np.arange(1000) % 2, np.tile([0.05, 0.95], (1000, 1)))
    assert over["ece"] == pytest.approx(0.45)
    assert over["calib_n_9"] == 1000 and over["calib_acc_9"] == pytest.approx(0.5)
    # Brier: 0 for a certain, right model, 2 for a certain, wrong one
    assert calibration(np.array([0, 1]), np.eye(2))["brier"] == 0.0
    assert calibration(np.array([1, 0]), np.eye(2))["brier"] == 2.0


def test_referable_sensitivity_and_specificity_by_hand():
    # 4 NoDR, 6 referable (NPDR or PDR); called referable when p(NoDR) <= 0.5
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 1, 2])
    p_nodr = np.array([0.9, 0.8, 0.4, 0.7, 0.2, 0.6, 0.1, 0.3, 0.45, 0.05])
    rest = (1 - p_nodr) / 2
    p = np.stack([p_nodr, rest, rest], 1)
    m = compute_metrics(y, p, np.zeros(10, dtype=int))
    assert m["referable_sens"] == pytest.approx(5 / 6)
    assert m["referable_spec"] == pytest.approx(3 / 4)
    assert m["referable_n_pos"] == 6
    # ROC points: threshold 0 calls everything referable, threshold 1 nothing
    assert (m["roc_referable_fpr_0"], m["roc_referable_tpr_0"]) == (1.0, 1.0)
    assert (m["roc_referable_fpr_10"], m["roc_referable_tpr_10"]) == (0.0, 0.0)


def test_confusion_counts_of_both_heads():
    y = np.array([0, 1, 2, 2])
    p = np.eye(3)[[0, 2, 2, 1]]
    q = np.array([0, 1, 1, 0])
    pq = np.eye(3)[[0, 1, 2, 0]]
    m = compute_metrics(y, p, q, pq)
    assert (m["cm_diagnosis_0_0"], m["cm_diagnosis_1_2"], m["cm_diagnosis_2_1"]) == (1, 1, 1)
    assert m["cm_diagnosis_2_2"] == 1 and m["cm_diagnosis_1_1"] == 0
    assert (m["cm_quality_0_0"], m["cm_quality_1_1"], m["cm_quality_1_2"]) == (2, 1, 1)


def test_site_weighted_keeps_rates_and_drops_per_set_details():
    y, p = _informative(50)
    m = compute_metrics(y, p, np.zeros(50, dtype=int), np.tile([0.9, 0.05, 0.05], (50, 1)))
    kept = site_weighted(m)
    assert {"auc", "acc", "kappa", "ece", "brier", "referable_sens"} <= set(kept)
    assert not [k for k in kept if k.startswith(("cm_", "roc_", "calib_")) or "_ci_" in k]
    assert "pred_top_class" not in kept


def test_a_model_that_always_says_nodr_raises_every_alarm():
    rng = np.random.default_rng(0)
    n = 62
    y = rng.choice(3, n, p=[0.7, 0.25, 0.05])
    q = rng.integers(0, 3, n)
    p = np.tile([0.6, 0.3, 0.1], (n, 1)) + rng.normal(0, 0.01, (n, 3))  # NoDR, every time
    pq = np.tile([0.8, 0.1, 0.1], (n, 1))  # HQ, every time
    m = compute_metrics(y, p, q, pq)
    alarms = degenerate_model("hospital-b", m, DR, QUALITY)
    assert alarms == [
        "hospital-b: the diagnosis head predicts NoDR for 100 % of 62 images; its AUC "
        "and accuracy say nothing about finding disease.",
        "hospital-b: quadratic-weighted kappa 0.000, no better than chance agreement.",
        "hospital-b: the quality head says HQ for 100 % of images; it does not tell "
        "high- from low-quality images.",
    ]
    # the same set with a model that uses its heads: no alarm
    good_y, good_p = _informative(n)
    good = compute_metrics(good_y, good_p, q, np.eye(3)[q] * 0.8 + 0.2 / 3)
    assert degenerate_model("hospital-a", good, DR, QUALITY) == []
    # averaged over sites, the share says "one class" but not which
    pooled = {"n": 81.0, "pred_top_share": 1.0, "kappa": 0.4}
    assert degenerate_model("global", pooled, DR, QUALITY) == [
        "global: the diagnosis head predicts a single class for 100 % of 81 images; its AUC "
        "and accuracy say nothing about finding disease."
    ]


def test_metrics_are_strict_json_with_null_for_undefined():
    m = compute_metrics(np.zeros(5, dtype=int), np.tile([0.9, 0.05, 0.05], (5, 1)), np.zeros(5))
    text = dumps(m)
    doc = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
    assert doc["auc"] is None and doc["auc_ci_lo"] is None and doc["acc"] == 1.0
