"""Screening of site updates before aggregation: nothing malformed is ever averaged in.

A reply is rejected (and the reason logged and recorded) when a model record is
missing, has other keys or shapes than the global model, holds non-finite numbers,
or its example count is not a positive finite number.
"""

from __future__ import annotations

import math

import numpy as np
from flwr.app import RecordDict

from server.layout import ModelLayout
from shared.privacy.budget import BUDGET_EXHAUSTED
from shared.records import METRICS, NUM_EXAMPLES, to_numpy


class RejectedUpdate(Exception):
    """A site's update that must not be aggregated; the message says why."""


def budget_exhausted(content: RecordDict) -> bool:
    """A site that has spent its privacy budget replies with this status and no arrays:
    not a malformed update, a site that has stopped training."""
    metrics = content.metric_records.get(METRICS)
    return metrics is not None and float(metrics.get(BUDGET_EXHAUSTED, 0.0) or 0.0) > 0


def decode_train_reply(
    content: RecordDict, layout: ModelLayout
) -> tuple[dict[str, dict[str, np.ndarray]], float]:
    """The reply's arrays (float32 numpy, per model) and its example count, or raise."""
    arrays: dict[str, dict[str, np.ndarray]] = {}
    for model in layout.models:
        if model not in content.array_records:
            raise RejectedUpdate(f"no '{model}' ArrayRecord in the reply")
        expected = layout.shared_keys(model)
        got = to_numpy(content.array_records[model])
        missing = [k for k in expected if k not in got]
        unexpected = [k for k in got if k not in set(expected)]
        if missing or unexpected:
            raise RejectedUpdate(
                f"{model}: keys differ from the global model "
                f"({len(missing)} missing, e.g. {missing[:1]}; "
                f"{len(unexpected)} unexpected, e.g. {unexpected[:1]})"
            )
        for key in expected:
            arr = got[key]
            want = layout.shapes[model][key]
            if tuple(arr.shape) != want:
                raise RejectedUpdate(f"{model}.{key}: shape {tuple(arr.shape)}, expected {want}")
            if arr.dtype.kind not in "fiub":
                raise RejectedUpdate(f"{model}.{key}: unsupported dtype {arr.dtype}")
            if arr.dtype.kind == "f" and not np.isfinite(arr).all():
                bad = int(arr.size - np.isfinite(arr).sum())
                raise RejectedUpdate(f"{model}.{key}: {bad} non-finite value(s)")
        arrays[model] = got
    return arrays, example_count(content)


def example_count(content: RecordDict) -> float:
    metrics = content.metric_records.get(METRICS)
    if metrics is None or NUM_EXAMPLES not in metrics:
        raise RejectedUpdate(f"no '{NUM_EXAMPLES}' in the reply's metrics")
    value = metrics[NUM_EXAMPLES]
    if isinstance(value, list) or not math.isfinite(float(value)) or float(value) <= 0:
        raise RejectedUpdate(f"'{NUM_EXAMPLES}' must be a positive number, got {value!r}")
    return float(value)
