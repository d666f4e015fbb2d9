"""Federated CoMCL: K pretraining rounds of the encoder before the diagnosis rounds.

Each round sends the global encoder (ArrayRecord `encoder`) to every connected site as
a `train.comcl` message, screens the replies (same keys and shapes, finite numbers,
a positive patch count), averages them weighted by patch count (FedAvg) and writes
RUN_DIR/comcl/encoder.pt (a `fediqad-encoder` file, round in its metrics) and
RUN_DIR/comcl/rounds.json. The final encoder's backbone then initialises every
backbone of the global diagnosis models. With `resume`, finished rounds are skipped;
once diagnosis rounds have started, pretraining is not repeated.

Hook: `server.server_app.run_server` calls `pretrain_federation(grid, federation)`
between building the Federation and `Federation.run` when `pretrain_rounds` > 0.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import numpy as np
import torch
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.serverapp import Grid
from flwr.serverapp.strategy.strategy_utils import sample_nodes

from server.federation import Federation
from server.layout import GlobalModels
from server.messaging import exchange
from shared.contrastive.pretrain import build_contrastive_model
from shared.contrastive.protocol import (
    CFG_EPOCH_OFFSET,
    CFG_EPOCHS,
    CFG_TOTAL_EPOCHS,
    ENCODER,
    MESSAGE_TYPE,
)
from shared.contrastive.transfer import init_from_encoder, read_encoder, save_encoder
from shared.records import (
    CFG_DTYPE,
    CFG_ROUND,
    CFG_RUN,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    SITE,
    to_numpy,
    to_record,
)
from shared.strict_json import write_json

log = logging.getLogger("fediqad.server")


class Rejected(Exception):
    """A site's encoder update that must not be averaged in."""


def screen(
    content: RecordDict, own: dict[str, torch.Tensor]
) -> tuple[dict[str, np.ndarray], float]:
    """The reply's encoder arrays and patch count, or Rejected saying why."""
    if ENCODER not in content.array_records:
        raise Rejected(f"no '{ENCODER}' ArrayRecord in the reply")
    arrays = to_numpy(content.array_records[ENCODER])
    if set(arrays) != set(own):
        raise Rejected("encoder keys differ from the global encoder")
    for key, arr in arrays.items():
        if tuple(arr.shape) != tuple(own[key].shape):
            raise Rejected(f"{key}: shape {tuple(arr.shape)}, expected {tuple(own[key].shape)}")
        if arr.dtype.kind == "f" and not np.isfinite(arr).all():
            raise Rejected(f"{key}: non-finite values")
    metrics = content.metric_records.get(METRICS)
    n = float(metrics[NUM_EXAMPLES]) if metrics is not None and NUM_EXAMPLES in metrics else 0
    if not np.isfinite(n) or n <= 0:
        raise Rejected(f"'{NUM_EXAMPLES}' must be a positive number, got {n!r}")
    return arrays, n


def fedavg(
    updates: list[tuple[dict[str, np.ndarray], float]], own: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Patch-count weighted mean of each tensor (integer counters rounded)."""
    total = sum(n for _, n in updates)
    out = {}
    for key, ref in own.items():
        mean = sum(arrays[key].astype(np.float64) * (n / total) for arrays, n in updates)
        value = torch.from_numpy(np.asarray(mean))
        out[key] = (
            value.round().to(ref.dtype) if not ref.is_floating_point() else value.to(ref.dtype)
        )
    return out


def _start(federation: Federation) -> tuple[dict[str, torch.Tensor], int, list[dict]]:
    """Global encoder, rounds done and round log: fresh, or from RUN_DIR/comcl on resume."""
    fed = federation.fed
    folder = fed.run_dir / "comcl"
    torch.manual_seed(fed.run.seed)
    model = build_contrastive_model(fed.run, federated=True)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    path, history = folder / "encoder.pt", folder / "rounds.json"
    if fed.resume and path.is_file() and history.is_file():
        enc = read_encoder(path)
        state.update({f"backbone.{k}": v for k, v in enc.state_dict.items()})
        state.update({f"head.{k}": v for k, v in enc.head.items()})
        rounds = json.loads(history.read_text())["rounds"]
        return state, int(enc.metrics.get("round", len(rounds))), rounds
    return state, 0, []


def pretrain_federation(grid: Grid, federation: Federation) -> dict[str, torch.Tensor] | None:
    """Run the remaining CoMCL rounds, then load the encoder into the global models."""
    fed = federation.fed
    rounds_total = fed.pretrain_rounds
    if rounds_total <= 0 or federation.start_round > 1:
        return None
    state, done, history = _start(federation)
    folder = fed.run_dir / "comcl"
    epochs = fed.pretrain_epochs
    for rnd in range(done + 1, rounds_total + 1):
        t0 = time.perf_counter()
        sample_nodes(grid, fed.min_nodes, fed.min_nodes)  # waits for min_nodes sites
        node_ids = list(grid.get_node_ids())  # then every connected site takes part
        config = ConfigRecord(
            {
                CFG_RUN: fed.run.model_dump_json(),
                CFG_ROUND: rnd,
                CFG_EPOCHS: epochs,
                CFG_EPOCH_OFFSET: (rnd - 1) * epochs,
                CFG_TOTAL_EPOCHS: rounds_total * epochs,
                CFG_DTYPE: fed.transport_dtype,
            }
        )
        content = RecordDict({ENCODER: to_record(state, dtype=fed.transport_dtype), CONFIG: config})
        messages = [Message(content, dst_node_id=n, message_type=MESSAGE_TYPE) for n in node_ids]
        ex = exchange(grid, messages, timeout=fed.round_timeout, poll=federation.poll)
        entry: dict[str, Any] = {"round": rnd, "sites": {}, "failures": []}
        updates = []
        for node, reply in ex.replies.items():
            site = reply.content.config_records.get(SITE)
            name = str(site["name"]) if site is not None else f"node-{node}"
            try:
                arrays, n = screen(reply.content, state)
            except Rejected as err:
                entry["failures"].append({"site": name, "reason": f"rejected: {err}"})
                log.warning("CoMCL round %s: rejected update from %s: %s", rnd, name, err)
                continue
            updates.append((arrays, n))
            metrics = reply.content.metric_records.get(METRICS) or {}
            entry["sites"][name] = {
                k: float(v) for k, v in metrics.items() if not isinstance(v, list)
            }
            if site is not None and "box-source" in site:  # annotations / detector / fallback
                entry["sites"][name]["box_source"] = str(site["box-source"])
        for node, reason in ex.errors.items():
            entry["failures"].append({"site": f"node-{node}", "reason": reason})
            log.warning("CoMCL round %s: node %s failed: %s", rnd, node, reason)
        for node in ex.timed_out:
            entry["failures"].append({"site": f"node-{node}", "reason": "timed out"})
        if len(updates) >= fed.min_replies:
            state = fedavg(updates, state)
            entry["status"] = "ok"
        else:
            entry["status"] = f"not aggregated: {len(updates)} valid update(s)"
        entry["seconds"] = time.perf_counter() - t0
        losses = [s.get("loss") for s in entry["sites"].values() if "loss" in s]
        entry["loss"] = float(np.mean(losses)) if losses else None
        history.append(entry)
        save_encoder(
            folder / "encoder.pt",
            state,
            fed.run,
            metrics={
                "round": float(rnd),
                **({"loss": entry["loss"]} if entry["loss"] is not None else {}),
            },
            epochs=rnd * epochs,
            federated=True,
        )
        write_json(folder / "rounds.json", {"rounds": history}, indent=2)
        loss = f"{entry['loss']:.4f}" if entry["loss"] is not None else "-"
        federation.console.print(
            f"CoMCL round {rnd}/{rounds_total}: {len(updates)} site(s), loss {loss}, "
            f"{entry['status']}, {entry['seconds']:.1f}s",
            highlight=False,
        )
    backbone = {
        k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")
    }
    init_from_encoder(federation.bundle.modules(), backbone)
    federation.globals = GlobalModels.from_bundle(federation.layout, federation.bundle)
    return state
