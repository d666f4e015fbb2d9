"""What a report needs beyond the headline metrics, as flat numbers any site may send.

Per-sample probabilities never leave the place they are computed (a hospital); these
summaries do, in the same MetricRecord as AUC / ACC, so the report can draw every
site's confusion matrices, ROC points and reliability diagram and say how sure each
number is:

- `auc_ci_lo/hi`, `acc_ci_lo/hi`, `kappa_ci_lo/hi`: 95 % percentile bootstrap
  intervals (seeded, so a rerun gives the same interval).
- `ece` (expected calibration error, 10 equal-width confidence bins) and `brier`
  (multi-class Brier score, 0 = perfect, 2 = worst) of the diagnosis head, with the
  bins as `calib_n_B`, `calib_conf_B`, `calib_acc_B`.
- `referable_sens`, `referable_spec`, `referable_auc`: "referable" is any diagnosis
  other than class 0 (the normal class in every supported dataset: NoDR, Normal),
  scored by 1 - p(class 0) and called referable at >= 0.5.
- `cm_diagnosis_T_P`, `cm_quality_T_P`: confusion counts (true T, predicted P).
- `roc_referable_{fpr,tpr}_I`, `roc_lq_{fpr,tpr}_I`: ROC points at the thresholds
  I / 10 for referable disease and for low quality (1 - p(HQ)) from the quality head.
- `pred_classes`, `pred_top_class`, `pred_top_share` (and `quality_` ones): how
  many classes a head predicts at all, and the share of its most frequent answer,
  which is how a model that says "NoDR" for every image is caught.

Counts and bins only make sense per evaluated set: `site_weighted` drops them (and the
intervals) from an average over sites.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import confusion_matrix, roc_auc_score

NAN = float("nan")
BOOTSTRAP_RESAMPLES = 500
BOOTSTRAP_SEED = 20230618
CALIBRATION_BINS = 10
ROC_THRESHOLDS = np.linspace(0.0, 1.0, 11)
REFERABLE_THRESHOLD = 0.5
PER_SET_PREFIXES = ("cm_", "roc_", "calib_")
PER_SET_KEYS = (
    "pred_top_class",
    "quality_pred_top_class",
    "pred_classes",
    "quality_pred_classes",
    "referable_n_pos",
)


def _percentile_interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if len(finite) < 0.5 * len(values) or len(finite) < 10:
        return NAN, NAN
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return float(lo), float(hi)


def _kappa_from_counts(counts: np.ndarray) -> float:
    """Quadratic-weighted kappa of one confusion matrix (NaN where undefined)."""
    k = counts.shape[0]
    n = counts.sum()
    if n == 0:
        return NAN
    i, j = np.indices((k, k))
    weights = (i - j) ** 2
    expected = np.outer(counts.sum(1), counts.sum(0)) / n
    denominator = float((weights * expected).sum())
    if denominator == 0.0:
        return NAN
    return 1.0 - float((weights * counts).sum()) / denominator


def weighted_auc(score: np.ndarray, positive: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Binary AUC (Mann-Whitney, ties count half) for each row of image weights.

    `weights` is (resamples, n): how often each image is drawn. With all weights 1 it
    is scikit-learn's `roc_auc_score`; NaN where a row draws only one class.
    """
    pos_w, neg_w = weights[:, positive], weights[:, ~positive]
    neg_order = np.argsort(score[~positive], kind="stable")
    neg_sorted = score[~positive][neg_order]
    cum = np.concatenate(
        [np.zeros((len(weights), 1)), np.cumsum(neg_w[:, neg_order], axis=1)], axis=1
    )
    pos_score = score[positive]
    below = cum[:, np.searchsorted(neg_sorted, pos_score, "left")]
    upto = cum[:, np.searchsorted(neg_sorted, pos_score, "right")]
    wins = (pos_w * (below + 0.5 * (upto - below))).sum(1)
    pairs = pos_w.sum(1) * neg_w.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def weighted_probability_auc(labels: np.ndarray, probs: np.ndarray, weights: np.ndarray):
    """`shared.metrics.probability_auc` per weight row: binary AUC of p[:, 1], else the
    macro one-vs-one AUC (Hand & Till) over the class pairs a row draws."""
    k = probs.shape[1]
    if k == 2:
        return weighted_auc(probs[:, 1], labels == 1, weights)
    rows = probs / np.clip(probs.sum(axis=1, keepdims=True), 1e-12, None)
    pairs = []
    for a in range(k):
        for b in range(a + 1, k):
            both = (labels == a) | (labels == b)
            y, w = labels[both], weights[:, both]
            pairs.append(
                (weighted_auc(rows[both, a], y == a, w) + weighted_auc(rows[both, b], y == b, w))
                / 2
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a row drawing one class only
        return np.nanmean(np.array(pairs), axis=0)


def bootstrap_intervals(
    labels: np.ndarray,
    probs: np.ndarray,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> dict[str, float]:
    """95 % percentile intervals of AUC, accuracy and quadratic kappa over resampled images.

    Each resample draws n images with replacement (multinomial counts, seeded); NaN where
    the metric is undefined on most resamples (e.g. AUC with one class present).
    """
    n, k = probs.shape
    keys = ("auc", "acc", "kappa")
    if n < 2:
        return {f"{key}_ci_{end}": NAN for key in keys for end in ("lo", "hi")}
    weights = np.random.default_rng(seed).multinomial(n, np.full(n, 1.0 / n), size=resamples)
    weights = weights.astype(float)
    pred = probs.argmax(1)
    acc = weights @ (pred == labels).astype(float) / n
    cells = np.eye(k * k)[labels * k + pred]  # (n, k*k) one-hot confusion cell per image
    counts = (weights @ cells).reshape(resamples, k, k)
    kappa = np.array([_kappa_from_counts(c) for c in counts])
    auc = weighted_probability_auc(labels, probs, weights)
    out: dict[str, float] = {}
    for key, values in (("auc", auc), ("acc", acc), ("kappa", kappa)):
        out[f"{key}_ci_lo"], out[f"{key}_ci_hi"] = _percentile_interval(values)
    return out


def calibration(labels: np.ndarray, probs: np.ndarray, bins: int = CALIBRATION_BINS) -> dict:
    """ECE and Brier score of the predicted class, with the reliability bins."""
    n, k = probs.shape
    out: dict[str, float] = {}
    if n == 0:
        return {"ece": NAN, "brier": NAN}
    confidence = probs.max(1)
    correct = (probs.argmax(1) == labels).astype(float)
    which = np.minimum((confidence * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        members = which == b
        count = int(members.sum())
        conf = float(confidence[members].mean()) if count else NAN
        acc = float(correct[members].mean()) if count else NAN
        out[f"calib_n_{b}"] = float(count)
        out[f"calib_conf_{b}"] = conf
        out[f"calib_acc_{b}"] = acc
        if count:
            ece += count / n * abs(acc - conf)
    onehot = np.eye(k)[labels]
    out["ece"] = ece
    out["brier"] = float(((probs - onehot) ** 2).sum(1).mean())
    return out


def _roc_points(positive: np.ndarray, score: np.ndarray, name: str) -> dict[str, float]:
    """(fpr, tpr) at each fixed threshold: 'positive' predicted when score >= threshold."""
    out: dict[str, float] = {}
    pos, neg = int(positive.sum()), int((~positive).sum())
    for i, threshold in enumerate(ROC_THRESHOLDS):
        called = score >= threshold
        out[f"roc_{name}_tpr_{i}"] = float((called & positive).sum() / pos) if pos else NAN
        out[f"roc_{name}_fpr_{i}"] = float((called & ~positive).sum() / neg) if neg else NAN
    return out


def _binary_auc(positive: np.ndarray, score: np.ndarray) -> float:
    if positive.all() or not positive.any():
        return NAN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        return float(roc_auc_score(positive, score))


def referable(labels: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """Sensitivity / specificity for 'any class but class 0' at score 0.5, and its ROC."""
    positive = labels > 0
    score = 1.0 - probs[:, 0]
    called = score >= REFERABLE_THRESHOLD
    pos, neg = int(positive.sum()), int((~positive).sum())
    out = {
        "referable_sens": float((called & positive).sum() / pos) if pos else NAN,
        "referable_spec": float((~called & ~positive).sum() / neg) if neg else NAN,
        "referable_auc": _binary_auc(positive, score),
        "referable_n_pos": float(pos),
    }
    out.update(_roc_points(positive, score, "referable"))
    return out


def head_usage(pred: np.ndarray, num_classes: int, prefix: str = "") -> dict[str, float]:
    """How many classes a head predicts, its most frequent answer and that answer's share."""
    if len(pred) == 0:
        return {}
    counts = np.bincount(pred, minlength=num_classes)
    top = int(counts.argmax())
    return {
        f"{prefix}pred_classes": float((counts > 0).sum()),
        f"{prefix}pred_top_class": float(top),
        f"{prefix}pred_top_share": float(counts[top] / len(pred)),
    }


def _confusion(labels: np.ndarray, pred: np.ndarray, k: int, name: str) -> dict[str, float]:
    counts = confusion_matrix(labels, pred, labels=np.arange(k))
    return {f"cm_{name}_{t}_{p}": float(counts[t, p]) for t in range(k) for p in range(k)}


def metric_details(
    y_d: np.ndarray,
    p_d: np.ndarray,
    y_q: np.ndarray,
    p_q: np.ndarray | None,
) -> dict[str, float]:
    """Every detail above for one evaluated set (all images)."""
    k = p_d.shape[1]
    out: dict[str, float] = {}
    if len(y_d) == 0:
        return out
    out.update(bootstrap_intervals(y_d, p_d))
    out.update(calibration(y_d, p_d))
    out.update(referable(y_d, p_d))
    out.update(head_usage(p_d.argmax(1), k))
    out.update(_confusion(y_d, p_d.argmax(1), k, "diagnosis"))
    if p_q is not None:
        q = p_q.shape[1]
        out.update(head_usage(p_q.argmax(1), q, "quality_"))
        out.update(_confusion(y_q, p_q.argmax(1), q, "quality"))
        out.update(_roc_points(y_q > 0, 1.0 - p_q[:, 0], "lq"))
        out["lq_auc"] = _binary_auc(y_q > 0, 1.0 - p_q[:, 0])
    return {key: (v if math.isfinite(v) else NAN) for key, v in out.items()}


def site_weighted(metrics: dict[str, float]) -> dict[str, float]:
    """An average over sites without what only one evaluated set can say (counts,
    bins, ROC points, intervals, which class a head predicts)."""
    return {
        key: value
        for key, value in metrics.items()
        if not key.startswith(PER_SET_PREFIXES) and "_ci_" not in key and key not in PER_SET_KEYS
    }
