"""The per-round record the server keeps: per-site entries, failures, timing split."""

from __future__ import annotations

import logging
import math
from typing import Any

from flwr.app import MetricRecord, RecordDict

from server.messaging import Exchange, payload_bytes
from shared.records import METRICS, SITE

log = logging.getLogger("fediqad.server")


def site_name(content: RecordDict, node: int) -> str:
    site = content.config_records.get(SITE)
    return str(site["name"]) if site is not None and "name" in site else f"node-{node}"


def ran_on(content: RecordDict) -> dict[str, str]:
    """Where a simulated site handled a message (host:pid, Ray node id), if it said."""
    site = content.config_records.get(SITE)
    if site is None:
        return {}
    return {key: str(site[key]) for key in ("host", "ray-node") if key in site}


def record_reply(site: dict[str, Any], phase: str, content: RecordDict) -> None:
    """A site's reply in its round-record entry: bytes up, metrics, and (simulation on
    Ray) where it ran, as `PHASE_on`."""
    site["bytes_up"] += payload_bytes(content)
    site[phase] = plain_metrics(content.metric_records.get(METRICS))
    if where := ran_on(content):
        site[f"{phase}_on"] = where


def plain_metrics(metrics: MetricRecord | dict[str, Any] | None) -> dict[str, float]:
    if not metrics:
        return {}
    return {k: float(v) for k, v in metrics.items() if not isinstance(v, list)}


def site_entry(rec: dict[str, Any], sites: dict[int, str], node: int) -> dict[str, Any]:
    """The round record's entry of one site (made on first use)."""
    name = sites.get(node, f"node-{node}")
    return rec["sites"].setdefault(
        name, {"node_id": node, "bytes_down": 0, "bytes_up": 0, "status": "ok"}
    )


def record_failures(
    rec: dict[str, Any], ex: Exchange, phase: str, sites: dict[int, str], timeout: float
) -> None:
    """Mark the sites that failed or timed out in `phase` and list why in `rec`."""
    for node, reason in ex.errors.items():
        site_entry(rec, sites, node)["status"] = f"{phase} failed"
        rec["failures"].append(
            {
                "kind": f"{phase} failed",
                "site": sites.get(node, f"node-{node}"),
                "node_id": node,
                "reason": reason,
            }
        )
        log.warning(
            "round %s: %s failed at %s: %s",
            rec["round"],
            phase,
            sites.get(node, node),
            reason,
        )
    for node in ex.timed_out:
        site_entry(rec, sites, node)["status"] = f"{phase} timed out"
        rec["failures"].append(
            {
                "kind": f"{phase} timed out",
                "site": sites.get(node, f"node-{node}"),
                "node_id": node,
                "reason": f"no reply within {timeout:.0f} s",
            }
        )


def round_timing(
    rec: dict[str, Any],
    train: Exchange,
    evaluation: Exchange | None,
    round_s: float,
    agg_s: float,
    server_eval_s: float,
    checkpoint_s: float,
) -> dict[str, float]:
    """Round time split into the slowest site's compute and the framework's share."""
    sites = rec["sites"].values()

    def slowest(phase: str, key: str) -> float:
        vals = [float(s.get(phase, {}).get(key, 0.0)) for s in sites]
        vals = [v for v in vals if math.isfinite(v)]
        return max(vals, default=0.0)

    compute = slowest("train", "train_seconds") + slowest("eval", "eval_seconds")
    handler = slowest("train", "handler_seconds") + slowest("eval", "handler_seconds")
    return {
        "round_s": round_s,
        "train_phase_s": train.seconds,
        "aggregate_s": agg_s,
        "eval_phase_s": evaluation.seconds if evaluation else 0.0,
        "slowest_compute_s": compute,
        "slowest_handler_s": handler,
        "overhead_s": round_s - compute,
        "overhead_pct": 100.0 * (round_s - compute) / round_s if round_s > 0 else 0.0,
        "transport_overhead_s": round_s - handler,
        "server_eval_s": server_eval_s,
        "checkpoint_s": checkpoint_s,
    }
