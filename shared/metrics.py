"""Diagnosis metrics overall and split by image quality, computed by scikit-learn.

Keys (all floats; counts are floats too so the dict is JSON- and MetricRecord-ready):

- `auc`, `acc`, `f1`, `kappa`, `n`: all images. AUC comes from probabilities
  (binary: `roc_auc_score` on p[:, 1]; multi-class: macro one-vs-one), F1 is macro,
  kappa is Cohen's quadratic-weighted kappa (the ordinal grading metric CoMCL reports).
- the same with `_hq` (quality 0) and `_lq` (quality > 0) suffixes.
- `quality_acc` (and `_hq` / `_lq`) when quality probabilities are given.
- intervals, calibration, referable sensitivity / specificity, confusion counts, ROC
  points and head usage for all images (`shared.metric_details`).
- `auc_hard_compat`, `f1_compat`: what the MKCNet authors' evaluation reports, for
  comparison with their tables only. For binary tasks their AUC is computed from hard
  predictions (a known quirk) and their F1 uses `average="binary"`; for multi-class
  tasks both equal `auc` / `f1`.

A metric that is undefined on the given subset is NaN, never an exception, so a
site with only HQ images still reports: AUC with fewer than two diagnosis classes
present, kappa when labels and predictions are all one class, anything on an
empty subset. Multi-class AUC on a subset missing a class averages the class
pairs that are present (scikit-learn's one-vs-one with the full label list).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, roc_auc_score

from shared.metric_details import metric_details

NAN = float("nan")
SUBSETS = ("", "_hq", "_lq")


def _as_labels(values: Any) -> np.ndarray:
    return np.asarray(_numpy(values)).astype(np.int64).reshape(-1)


def _as_probs(values: Any, n: int) -> np.ndarray:
    probs = np.asarray(_numpy(values), dtype=np.float64)
    if probs.ndim != 2 or probs.shape[0] != n:
        raise ValueError(f"probabilities must have shape [N={n}, K], got {probs.shape}")
    return probs


def _numpy(values: Any) -> Any:
    """Accept torch tensors without importing torch here."""
    if hasattr(values, "detach"):
        return values.detach().cpu().numpy()
    return values


def _safe(fn: Callable[[], float]) -> float:
    """Run a metric; NaN where it is undefined (one class present, empty subset)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UndefinedMetricWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            value = float(fn())
    except ValueError:
        return NAN
    return value if math.isfinite(value) else NAN


def probability_auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Binary: AUC of p[:, 1]; multi-class: macro one-vs-one (Hand & Till).

    With fewer than two classes present the AUC is undefined (NaN). A multi-class
    subset missing some class is averaged over the class pairs that are present,
    which is what scikit-learn does when given the full label list.
    """
    if len(np.unique(labels)) < 2:
        return NAN
    num_classes = probs.shape[1]
    if num_classes == 2:
        return _safe(lambda: roc_auc_score(labels, probs[:, 1]))
    # sklearn insists rows sum to 1; float32 softmax is only close to it.
    rows = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    return _safe(
        lambda: roc_auc_score(
            labels, rows, multi_class="ovo", average="macro", labels=np.arange(num_classes)
        )
    )


def _kappa(labels: np.ndarray, pred: np.ndarray, num_classes: int) -> float:
    if len(labels) == 0 or len(np.unique(np.concatenate([labels, pred]))) < 2:
        return NAN
    return _safe(
        lambda: cohen_kappa_score(labels, pred, weights="quadratic", labels=np.arange(num_classes))
    )


def _diagnosis_block(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    num_classes = probs.shape[1]
    if len(labels) == 0:
        return {"auc": NAN, "acc": NAN, "f1": NAN, "kappa": NAN, "n": 0.0}
    pred = probs.argmax(axis=1)
    return {
        "auc": probability_auc(labels, probs),
        "acc": float(accuracy_score(labels, pred)),
        "f1": _safe(
            lambda: f1_score(
                labels, pred, average="macro", labels=np.arange(num_classes), zero_division=0
            )
        ),
        "kappa": _kappa(labels, pred, num_classes),
        "n": float(len(labels)),
    }


def _compat(labels: np.ndarray, probs: np.ndarray, auc: float, f1: float) -> dict[str, float]:
    """The authors' reported AUC / F1 (hard-prediction AUC and binary F1 for 2 classes)."""
    if probs.shape[1] != 2:
        return {"auc_hard_compat": auc, "f1_compat": f1}
    pred = probs.argmax(axis=1)
    hard_auc = NAN if len(np.unique(labels)) < 2 else _safe(lambda: roc_auc_score(labels, pred))
    binary_f1 = (
        NAN
        if len(labels) == 0
        else _safe(lambda: f1_score(labels, pred, average="binary", zero_division=0))
    )
    return {"auc_hard_compat": hard_auc, "f1_compat": binary_f1}


def compute_metrics(
    diagnosis_true: Sequence[int] | np.ndarray | Any,
    diagnosis_prob: np.ndarray | Any,
    quality_true: Sequence[int] | np.ndarray | Any,
    quality_prob: np.ndarray | Any | None = None,
) -> dict[str, float]:
    """All diagnosis metrics overall / HQ / LQ, plus quality accuracy if probabilities given."""
    y_d = _as_labels(diagnosis_true)
    y_q = _as_labels(quality_true)
    if len(y_q) != len(y_d):
        raise ValueError(f"{len(y_d)} diagnosis labels but {len(y_q)} quality labels")
    p_d = _as_probs(diagnosis_prob, len(y_d))
    p_q = None if quality_prob is None else _as_probs(quality_prob, len(y_d))

    masks = {"": np.ones(len(y_d), dtype=bool), "_hq": y_q == 0, "_lq": y_q > 0}
    out: dict[str, float] = {}
    for suffix, mask in masks.items():
        block = _diagnosis_block(y_d[mask], p_d[mask])
        out.update({f"{key}{suffix}": value for key, value in block.items()})
        if p_q is not None:
            hits = p_q[mask].argmax(axis=1) == y_q[mask]
            out[f"quality_acc{suffix}"] = float(hits.mean()) if mask.any() else NAN
    out.update(_compat(y_d, p_d, out["auc"], out["f1"]))
    out.update(metric_details(y_d, p_d, y_q, p_q))
    return out
