"""Signs that a model is useless, stated in words a clinician reads first.

A model that answers "NoDR" for every image can still show AUC 0.61 / ACC 0.69 on a
set that is mostly NoDR. These checks read the head-usage numbers every evaluation
records (`shared.metric_details`) and kappa, and return one sentence per problem.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

# |kappa| below this is "no better than chance" (Landis & Koch: < 0.20 is slight,
# < 0 is poor); 0.05 flags only the degenerate case, not a weak model.
CHANCE_KAPPA = 0.05
# a head that gives one answer for at least this share of images is called constant
CONSTANT_SHARE = 0.98


def _name(names: Sequence[str], index: float) -> str:
    """The class a head keeps predicting; an average over sites does not say which."""
    if math.isnan(index):
        return "a single class"
    i = int(index)
    return names[i] if 0 <= i < len(names) else f"class {i}"


def _value(metrics: Mapping[str, float], key: str) -> float:
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) and value is not None else math.nan


def degenerate_model(
    scope: str,
    metrics: Mapping[str, float],
    diagnosis_names: Sequence[str],
    quality_names: Sequence[str],
) -> list[str]:
    """One sentence per sign of a degenerate model on this evaluated set; [] if none."""
    out = []
    n = _value(metrics, "n")
    if not n or math.isnan(n) or n < 2:
        return out
    share = _value(metrics, "pred_top_share")
    if share >= CONSTANT_SHARE:
        label = _name(diagnosis_names, _value(metrics, "pred_top_class"))
        out.append(
            f"{scope}: the diagnosis head predicts {label} for {100 * share:.0f} % of "
            f"{int(n)} images; its AUC and accuracy say nothing about finding disease."
        )
    kappa = _value(metrics, "kappa")
    if not math.isnan(kappa) and abs(kappa) < CHANCE_KAPPA:
        out.append(
            f"{scope}: quadratic-weighted kappa {kappa:.3f}, no better than chance agreement."
        )
    q_share = _value(metrics, "quality_pred_top_share")
    if q_share >= CONSTANT_SHARE:
        label = _name(quality_names, _value(metrics, "quality_pred_top_class"))
        out.append(
            f"{scope}: the quality head says {label} for {100 * q_share:.0f} % of images; "
            "it does not tell high- from low-quality images."
        )
    return out
