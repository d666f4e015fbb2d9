"""Strategy selection: every name maps to one of Flower's own strategies.

FedBN is FedAvg with the BatchNorm state left out of what travels (the layout
decides that); FedAdam and FedAvgM apply their server optimiser to trainable
parameters only, while running statistics are averaged plainly - an adaptive step
on a BatchNorm variance could make it negative.
"""

from __future__ import annotations

import math
from typing import Any

from flwr.app import MetricRecord, RecordDict
from flwr.serverapp.strategy import (
    DifferentialPrivacyServerSideFixedClipping,
    FedAdam,
    FedAvg,
    FedAvgM,
    FedMedian,
    FedProx,
    FedTrimmedAvg,
    Krum,
    MultiKrum,
    Strategy,
)

from server.config import FederationConfig
from shared.privacy.budget import DP_UNIT_WEIGHT, epsilon_of
from shared.records import CONFIG, METRICS, NUM_EXAMPLES

# Strategies whose server-side optimiser must not touch BatchNorm running statistics.
SERVER_OPTIMISERS = ("fedadam", "fedavgm")
# Metrics that are counts (summed across sites) rather than rates (averaged).
COUNT_KEYS = ("n", "n_hq", "n_lq", NUM_EXAMPLES, "examples")


def build_strategy(fed: FederationConfig) -> Strategy:
    """The Flower strategy for `fed.strategy`, wired to this project's record keys;
    under client-level DP wrapped in Flower's server-side fixed-clipping DP wrapper."""
    if not fed.client_dp:
        return _base_strategy(fed)
    # DP-FedAvg: a uniform mean of clipped updates (sensitivity C / m); sites send a
    # constant weight so FedAvg does not weigh by example counts.
    base = _base_strategy(fed, weighted_by_key=DP_UNIT_WEIGHT)
    return DifferentialPrivacyServerSideFixedClipping(
        base,
        noise_multiplier=fed.dp_noise_multiplier,
        clipping_norm=fed.dp_clipping_norm,
        num_sampled_clients=fed.dp_clients,
    )


def _base_strategy(fed: FederationConfig, weighted_by_key: str = NUM_EXAMPLES) -> FedAvg:
    common: dict[str, Any] = {
        "fraction_train": fed.fraction_train,
        "fraction_evaluate": fed.fraction_evaluate,
        "min_train_nodes": fed.min_nodes,
        "min_evaluate_nodes": fed.min_nodes if fed.fraction_evaluate > 0 else 0,
        "min_available_nodes": fed.min_nodes,
        "weighted_by_key": weighted_by_key,
        "arrayrecord_key": "arrays",
        "configrecord_key": CONFIG,
        "train_metrics_aggr_fn": weighted_metrics,
        "evaluate_metrics_aggr_fn": _by_examples,
    }
    name = fed.strategy
    if name in ("fedavg", "fedbn"):
        return FedAvg(**common)
    if name == "fedprox":
        return FedProx(**common, proximal_mu=fed.proximal_mu)
    if name == "fedadam":
        return FedAdam(
            **common,
            eta=fed.eta,
            eta_l=fed.eta_l,
            beta_1=fed.beta_1,
            beta_2=fed.beta_2,
            tau=fed.tau,
        )
    if name == "fedavgm":
        return FedAvgM(
            **common, server_learning_rate=fed.server_lr, server_momentum=fed.server_momentum
        )
    if name == "fedmedian":
        return FedMedian(**common)
    if name == "fedtrimmedavg":
        return FedTrimmedAvg(**common, beta=fed.trim_beta)
    if name == "krum":
        return Krum(**common, num_malicious_nodes=fed.num_malicious)
    if name == "multikrum":
        return MultiKrum(
            **common, num_malicious_nodes=fed.num_malicious, num_nodes_to_select=fed.krum_select
        )
    raise ValueError(f"unknown strategy {name!r}")  # unreachable: pydantic checks the name


def client_dp_record(
    fed: FederationConfig, releases: int, replies: int, history: list[float]
) -> dict[str, float]:
    """Client-level (site-level) epsilon after this round's noisy aggregate.

    Flower's wrapper adds N(0, (sigma C / m)^2) with m = `dp_clients`; when only k < m
    sites reply, the mean is over k, so the effective multiplier is sigma k / m. Each
    release is accounted as a Gaussian mechanism without sampling amplification
    (rate 1: the server does not claim secrecy of which sites took part).
    """
    effective = fed.dp_noise_multiplier * min(replies, fed.dp_clients) / fed.dp_clients
    sigmas = [*history, effective]
    eps = epsilon_of("rdp", [(s, 1.0, 1) for s in sigmas], fed.run.privacy.delta)
    return {
        "client_epsilon": eps,
        "delta": fed.run.privacy.delta,
        "noise_multiplier": effective,
        "clipping_norm": fed.dp_clipping_norm,
        "releases": float(releases),
    }


def privacy_summary(fed: FederationConfig, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Checkpoint metadata: the DP mode, each site's latest epsilon and status, the
    client-level epsilon."""
    out: dict[str, Any] = {"mode": fed.run.privacy.mode}
    if fed.run.privacy.mode == "off":
        return out
    sites: dict[str, dict[str, Any]] = {}
    for rec in rounds:
        for name, site in rec.get("sites", {}).items():
            train = site.get("train") or {}
            if "dp_epsilon" in train:
                sites[name] = {k: v for k, v in train.items() if k.startswith("dp_")}
                sites[name]["status"] = site.get("status", "ok")
                sites[name]["round"] = rec["round"]
        if rec.get("client_dp"):
            out["client"] = rec["client_dp"]
    if sites:
        out["sites"] = sites
    return out


def aggregates_buffers(fed: FederationConfig) -> bool:
    """Whether the strategy itself aggregates buffers (else they are plainly averaged)."""
    return fed.strategy not in SERVER_OPTIMISERS


def _by_examples(records: list[RecordDict], weight_key: str) -> MetricRecord:
    """Evaluation metrics are weighted by examples even where training is not (DP-FedAvg
    averages updates uniformly; an AUC still counts as many times as its images)."""
    del weight_key
    return weighted_metrics(records)


def _weight_key(key: str) -> str:
    for suffix in ("_hq", "_lq"):
        if key.endswith(suffix):
            return "n" + suffix
    return NUM_EXAMPLES


def weighted_metrics(records: list[RecordDict], weight_key: str = NUM_EXAMPLES) -> MetricRecord:
    """Counts summed; rates averaged weighted by the examples they were computed on.

    HQ / LQ metrics are weighted by each site's HQ / LQ count, and an undefined (NaN)
    site metric is left out instead of turning the average into NaN.
    """
    metrics = [
        rd.metric_records[METRICS]
        if METRICS in rd.metric_records
        else next(iter(rd.metric_records.values()))
        for rd in records
    ]
    out = MetricRecord()
    keys = sorted({k for m in metrics for k in m})
    for key in keys:
        values = [m.get(key) for m in metrics]
        if any(isinstance(v, list) for v in values):
            continue
        if key in COUNT_KEYS:
            out[key] = float(sum(float(v) for v in values if v is not None))
            continue
        num = den = 0.0
        wkey = _weight_key(key) if weight_key == NUM_EXAMPLES else weight_key
        for m, v in zip(metrics, values, strict=True):
            w = m.get(wkey, m.get(NUM_EXAMPLES, 1.0))
            if v is None or w is None or not math.isfinite(float(v)) or float(w) <= 0:
                continue
            num += float(v) * float(w)
            den += float(w)
        out[key] = num / den if den > 0 else float("nan")
    return out


__all__ = ["Strategy", "aggregates_buffers", "build_strategy", "weighted_metrics"]
