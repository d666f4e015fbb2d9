"""The federated run: rounds of train -> screen -> aggregate -> evaluate -> checkpoint.

Flower's strategies do their part through their public `configure_*` / `aggregate_*`
methods; this loop adds separate ArrayRecords per model, screening of updates,
per-site accounting, a checkpoint per round and resuming (`Strategy.start` can do
neither of the last two).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.exception import InconsistentMessageReplies
from rich.console import Console

from server.aggregation import AggregationFailed, Update, aggregate
from server.config import FederationConfig
from server.fedbn import batchnorm_note
from server.layout import GlobalModels, ModelLayout
from server.messaging import Exchange, exchange, payload_bytes
from server.persistence import RunStore, restore_strategy_state, strategy_state
from server.report import MetricsLog, print_round, write_report
from server.round_record import (
    plain_metrics,
    record_failures,
    record_reply,
    round_timing,
    site_entry,
    site_name,
)
from server.strategies import (
    aggregates_buffers,
    build_strategy,
    client_dp_record,
    privacy_summary,
)
from server.validation import RejectedUpdate, budget_exhausted, decode_train_reply
from shared.errors import UserError
from shared.interrupt import deferred_interrupt
from shared.metric_details import site_weighted
from shared.models import ModelBundle, build_models
from shared.records import (
    CFG_DTYPE,
    CFG_EPOCHS,
    CFG_EVAL_SPLIT,
    CFG_FEDBN,
    CFG_NUM_ROUNDS,
    CFG_RUN,
    CONFIG,
    METRICS,
)

log = logging.getLogger("fediqad.server")
EvaluateFn = Callable[[ModelBundle], dict[str, float]]


def _console() -> Console:
    """stderr console; wide enough for the per-site table when not on a terminal."""
    probe = Console(stderr=True)
    return probe if probe.is_terminal else Console(stderr=True, width=140)


class Federation:
    """One federated run of `fed`; `run(grid)` executes the remaining rounds."""

    def __init__(
        self,
        fed: FederationConfig,
        *,
        evaluate_fn: EvaluateFn | None = None,
        console: Console | None = None,
        poll: float = 0.05,
    ):
        self.fed = fed
        self.cfg = fed.run
        self.evaluate_fn = evaluate_fn
        self.console = console or _console()
        self.poll = poll
        torch.manual_seed(self.cfg.seed)
        self.bundle = build_models(self.cfg)
        self.layout = ModelLayout.from_bundle(self.bundle, fedbn=fed.fedbn)
        self.store = RunStore(fed.run_dir, keep=fed.keep_checkpoints)
        self.log = MetricsLog(fed.run_dir)
        self.strategy = build_strategy(fed)
        self.with_buffers = aggregates_buffers(fed)
        self.sites: dict[int, str] = {}
        self.start_round = 1
        self._resume_or_refuse()
        self.globals = GlobalModels.from_bundle(self.layout, self.bundle)

    # ------------------------------------------------------------------ set-up
    def _resume_or_refuse(self) -> None:
        point = self.store.latest(expect=self.cfg) if self.fed.resume else None
        if point is None:
            if (self.fed.run_dir / "state.json").exists() and not self.fed.resume:
                raise UserError(
                    f"{self.fed.run_dir} already holds a federated run; pass --resume to "
                    "continue it or choose another run directory"
                )
            self.log.doc["federation"] = self.fed.model_dump(mode="json")
            return
        for name, module in point.checkpoint.bundle.modules().items():
            self.bundle.modules()[name].load_state_dict(module.state_dict())
        restore_strategy_state(self.strategy, point.strategy_arrays)
        self.start_round = point.round + 1
        self.log.load(point.round)
        self.log.doc["federation"] = self.fed.model_dump(mode="json")
        self.console.print(f"resuming {self.fed.run_dir} after round {point.round}")

    # -------------------------------------------------------------------- run
    def run(self, grid: Grid) -> dict[str, Any]:
        self.fed.run_dir.mkdir(parents=True, exist_ok=True)
        self.log.doc["finished"] = False
        if self.start_round == 1 and self.evaluate_fn is not None:
            self.log.doc["initial"] = self._server_eval()
        for rnd in range(self.start_round, self.fed.num_rounds + 1):
            record = self.run_round(grid, rnd)
            print_round(record, self.console, self.cfg.dataset)
        self.log.doc["finished"] = True
        self.log.write()
        return self.log.doc

    def _relax_minimums(self) -> None:
        """Once round 1 is sent, go on with whoever is connected, down to `min_replies`:
        `min_nodes` gates the start only; a site lost for good must not stall the study."""
        floor = self.fed.min_replies
        self.strategy.min_available_nodes = floor
        self.strategy.min_train_nodes = floor
        if self.fed.fraction_evaluate > 0:
            self.strategy.min_evaluate_nodes = floor

    def _config(self) -> ConfigRecord:
        return ConfigRecord(
            {
                CFG_RUN: self.cfg.model_dump_json(),
                CFG_EPOCHS: self.fed.local_epochs,
                CFG_DTYPE: self.fed.transport_dtype,
                CFG_FEDBN: self.fed.fedbn,
                CFG_EVAL_SPLIT: self.fed.eval_split,
                CFG_NUM_ROUNDS: self.fed.num_rounds,
            }
        )

    def run_round(self, grid: Grid, rnd: int) -> dict[str, Any]:
        """Train, screen, aggregate, evaluate and commit round `rnd`; its log entry."""
        t0 = time.perf_counter()
        rec: dict[str, Any] = {
            "round": rnd,
            "status": "ok",
            "sites": {},
            "failures": [],
            "rejected": [],
            "stopped": [],
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        train = self._train_phase(grid, rnd, rec)
        t_agg = time.perf_counter()
        self._aggregate(rnd, train, rec)
        agg_s = time.perf_counter() - t_agg
        evaluation = self._evaluate_phase(grid, rnd, rec)
        round_s = time.perf_counter() - t0

        t_srv = time.perf_counter()
        rec["server_eval"] = self._server_eval() if self.evaluate_fn is not None else None
        server_eval_s = time.perf_counter() - t_srv
        with deferred_interrupt():  # Ctrl-C: the round is committed whole or not at all
            t_ck = time.perf_counter()
            self._commit(rnd, rec)
            checkpoint_s = time.perf_counter() - t_ck
            rec["timing"] = round_timing(
                rec, train, evaluation, round_s, agg_s, server_eval_s, checkpoint_s
            )
            rec["bytes_down"] = sum(s.get("bytes_down", 0) for s in rec["sites"].values())
            rec["bytes_up"] = sum(s.get("bytes_up", 0) for s in rec["sites"].values())
            self.log.add(rec)
            self.log.write()
            # after every round: an interrupted run has its report and plots too
            write_report(self.fed.run_dir, self.log.doc)
        return rec

    # ------------------------------------------------------------------ phases
    def _site(self, rec: dict[str, Any], node: int) -> dict[str, Any]:
        return site_entry(rec, self.sites, node)

    def _train_phase(self, grid: Grid, rnd: int, rec: dict[str, Any]) -> Exchange:
        config = self._config()
        flat = self.globals.flat(with_buffers=self.with_buffers)
        messages = list(self.strategy.configure_train(rnd, flat, config, grid))
        self._relax_minimums()  # started: from now on, go on with whoever is connected
        wire = RecordDict(
            {m: self.globals.wire(m, self.fed.transport_dtype) for m in self.layout.models}
        )
        wire[CONFIG] = config
        down = payload_bytes(wire)
        for msg in messages:
            msg.content = wire
        rec["replies"] = {"sampled": len(messages)}
        ex = exchange(grid, messages, timeout=self.fed.round_timeout, poll=self.poll)
        for node, reply in ex.replies.items():
            self.sites[node] = site_name(reply.content, node)
        for msg in messages:
            self._site(rec, msg.metadata.dst_node_id)["bytes_down"] += down
        for node, reply in ex.replies.items():
            record_reply(self._site(rec, node), "train", reply.content)
        record_failures(rec, ex, "train", self.sites, self.fed.round_timeout)
        return ex

    def _aggregate(self, rnd: int, ex: Exchange, rec: dict[str, Any]) -> None:
        updates = []
        # by site name: the same sum order every run, whatever order replies arrived in
        for node, reply in sorted(ex.replies.items(), key=lambda kv: self.sites[kv[0]]):
            if budget_exhausted(reply.content):
                self._site(rec, node)["status"] = "stopped: privacy budget spent"
                rec["stopped"].append(
                    {
                        "kind": "stopped (privacy budget spent)",
                        "site": self.sites[node],
                        "node_id": node,
                        "reason": "training once more would exceed its epsilon budget",
                    }
                )
                log.warning(
                    "round %s: %s has spent its privacy budget; it no longer trains",
                    rnd,
                    self.sites[node],
                )
                continue
            try:
                arrays, n = decode_train_reply(reply.content, self.layout)
            except RejectedUpdate as err:
                self._site(rec, node)["status"] = "rejected"
                rec["rejected"].append(
                    {
                        "kind": "rejected update",
                        "site": self.sites[node],
                        "node_id": node,
                        "reason": str(err),
                    }
                )
                log.warning("round %s: rejected update from %s: %s", rnd, self.sites[node], err)
                continue
            updates.append(Update(self.sites[node], arrays, n, reply))
        rec["replies"].update(
            train_ok=len(updates),
            train_failed=len(ex.errors) + len(ex.timed_out),
            rejected=len(rec["rejected"]),
            stopped=len(rec["stopped"]),
        )
        if len(updates) < self.fed.min_replies:
            rec["status"] = (
                f"not aggregated: {len(updates)} valid update(s), {self.fed.min_replies} needed"
            )
            log.warning("round %s: %s; global model kept", rnd, rec["status"])
            return
        try:
            merged, train_metrics = aggregate(
                self.strategy, rnd, self.layout, updates, with_buffers=self.with_buffers
            )
        except AggregationFailed as err:
            rec["status"] = f"not aggregated: {err}"
            log.error("round %s: %s; global model kept", rnd, rec["status"])
            return
        for model, arrays in merged.items():
            for key, value in arrays.items():
                self.globals.update(model, key, value)
        rec["train"] = plain_metrics(train_metrics)
        if self.fed.client_dp:
            history = [
                float(r["client_dp"]["noise_multiplier"])
                for r in self.log.rounds
                if r.get("client_dp")
            ]
            rec["client_dp"] = client_dp_record(self.fed, len(history) + 1, len(updates), history)
            rec["dp_client_epsilon"] = rec["client_dp"]["client_epsilon"]  # report's key

    def _evaluate_phase(self, grid: Grid, rnd: int, rec: dict[str, Any]) -> Exchange | None:
        if self.fed.fraction_evaluate <= 0:
            rec["replies"]["eval_ok"] = 0
            return None
        config = self._config()
        flat = self.globals.flat(with_buffers=self.with_buffers)
        messages = list(self.strategy.configure_evaluate(rnd, flat, config, grid))
        wire = RecordDict(
            {"task_net": self.globals.wire("task_net", self.fed.transport_dtype), CONFIG: config}
        )
        down = payload_bytes(wire)
        for msg in messages:
            msg.content = wire
        ex = exchange(grid, messages, timeout=self.fed.round_timeout, poll=self.poll)
        views = []
        for msg in messages:
            self._site(rec, msg.metadata.dst_node_id)["bytes_down"] += down
        for node, reply in sorted(
            ex.replies.items(), key=lambda kv: site_name(kv[1].content, kv[0])
        ):
            self.sites.setdefault(node, site_name(reply.content, node))
            record_reply(self._site(rec, node), "eval", reply.content)
            if METRICS in reply.content.metric_records:
                reply.content = RecordDict({METRICS: reply.content.metric_records[METRICS]})
                views.append(reply)
        record_failures(rec, ex, "evaluate", self.sites, self.fed.round_timeout)
        rec["replies"]["eval_ok"] = len(views)
        if views:
            try:
                averaged = self.strategy.aggregate_evaluate(rnd, views)
                rec["global"] = site_weighted(plain_metrics(averaged))
            except InconsistentMessageReplies as err:
                log.warning("round %s: evaluation not aggregated: %s", rnd, err)
        return ex

    # ------------------------------------------------------- evaluation, commit
    def _load_globals_into_bundle(self) -> None:
        for model, module in self.bundle.modules().items():
            arrays, kept = self.globals.arrays[model], self.layout.local.get(model, ())  # FedBN
            state = {k: torch.from_numpy(np.array(v)) for k, v in arrays.items() if k not in kept}
            module.load_state_dict(state, strict=not kept)

    def _server_eval(self) -> dict[str, float] | None:
        assert self.evaluate_fn is not None
        self._load_globals_into_bundle()
        return self.evaluate_fn(self.bundle)  # under FedBN it re-estimates BN (server.fedbn)

    def _commit(self, rnd: int, rec: dict[str, Any]) -> None:
        self._load_globals_into_bundle()
        summary = {f"global_{k}": v for k, v in (rec.get("global") or {}).items()}
        self.store.save_round(
            rnd,
            self.bundle,
            self.cfg,
            metrics=summary,
            strategy_arrays=strategy_state(self.strategy),
            extra={
                "strategy": self.fed.strategy,
                "fedbn_local_keys": sorted(
                    f"{m}.{k}" for m, keys in self.layout.local.items() for k in keys
                ),
                "privacy": privacy_summary(self.fed, self.log.rounds + [rec]),
                **batchnorm_note(self.fed),
            },
        )
