"""Aggregation of screened site updates through a stock Flower strategy.

Each accepted reply becomes a one-ArrayRecord view (`model/key` names) that Flower's
`aggregate_train` understands; the result is split back per model. Buffers that the
strategy must not touch (server optimisers) are averaged here, weighted by examples.
A non-finite aggregate is refused, so the previous global model stays.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from flwr.app import Message, MetricRecord, RecordDict
from flwr.serverapp.exception import InconsistentMessageReplies
from flwr.serverapp.strategy import Strategy

from server.layout import ModelLayout, flatten, split
from shared.records import METRICS

Arrays = dict[str, dict[str, np.ndarray]]


class AggregationFailed(Exception):
    """This round's updates could not be aggregated; the message says why."""


@dataclass
class Update:
    """One accepted site update: decoded arrays, its weight, and the reply it came in."""

    site: str
    arrays: Arrays
    num_examples: float
    reply: Message


def aggregate(
    strategy: Strategy,
    rnd: int,
    layout: ModelLayout,
    updates: list[Update],
    *,
    with_buffers: bool,
) -> tuple[Arrays, MetricRecord | None]:
    """New values for every shared key, and the strategy's aggregated train metrics."""
    if not updates:
        raise AggregationFailed("no valid updates")
    keys = {m: layout.strategy_keys(m, with_buffers=with_buffers) for m in layout.models}
    views = []
    for update in updates:
        metrics = update.reply.content.metric_records[METRICS]
        update.reply.content = RecordDict(
            {"arrays": flatten(update.arrays, keys), METRICS: metrics}
        )
        views.append(update.reply)
    try:
        agg, metrics = strategy.aggregate_train(rnd, views)
    except (InconsistentMessageReplies, ValueError) as err:
        raise AggregationFailed(str(err)) from None
    if agg is None:
        raise AggregationFailed("the strategy returned no arrays")
    merged = split(agg)
    if not with_buffers:
        _average_buffers(merged, layout, updates)
    for model, arrays in merged.items():
        for key, value in arrays.items():
            value = np.asarray(value)
            if value.dtype.kind == "f" and not np.isfinite(value).all():
                raise AggregationFailed(f"non-finite aggregate in {model}.{key}")
    return merged, metrics


def _average_buffers(merged: Arrays, layout: ModelLayout, updates: list[Update]) -> None:
    total = float(sum(u.num_examples for u in updates))
    for model in layout.models:
        for key in layout.shared_keys(model):
            if key in layout.buffers[model]:
                merged.setdefault(model, {})[key] = sum(
                    u.arrays[model][key].astype(np.float64) * (u.num_examples / total)
                    for u in updates
                )
