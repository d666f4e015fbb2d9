"""What a site keeps between rounds in its node Context (it never leaves the site).

- the local optimiser and LR-scheduler state (momentum buffers, epoch count), so the
  site's schedule continues across rounds as in centralized training;
- under FedBN, its own BatchNorm weights and running statistics;
- under sample-level DP, its privacy ledger (noise, rate, accountant history), so
  epsilon accumulates over every round the site has trained in.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import torch
from flwr.app import ConfigRecord, Context
from torch import nn

from shared.atomic_write import write_text_atomic
from shared.privacy.budget import PrivacyLedger
from shared.records import from_record, to_record

log = logging.getLogger("fediqad.client")
OPTIMIZER = "fediqad.optimizer"
LOCAL_BN = "fediqad.local-bn."
LEDGER = "fediqad.privacy-ledger"
LEDGER_FILE = "privacy-ledger"  # node config key


def save_optimizer(context: Context, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    context.state[OPTIMIZER] = ConfigRecord({"state": buffer.getvalue()})


def load_optimizer(context: Context) -> dict[str, Any] | None:
    record = context.state.config_records.get(OPTIMIZER)
    if record is None:
        return None
    try:
        return torch.load(io.BytesIO(record["state"]), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a stale state must not stop training
        log.warning("discarding unreadable optimiser state: %s", err)
        return None


def save_local(context: Context, model: str, module: nn.Module, keys: set[str]) -> None:
    state = {k: v for k, v in module.state_dict().items() if k in keys}
    context.state[LOCAL_BN + model] = to_record(state)


def restore_local(context: Context, model: str, module: nn.Module) -> bool:
    """Put this site's own BatchNorm state back; False on the first round."""
    record = context.state.array_records.get(LOCAL_BN + model)
    if record is None:
        return False
    module.load_state_dict(from_record(record), strict=False)
    return True


def save_ledger(context: Context, ledger: PrivacyLedger) -> None:
    context.state[LEDGER] = ConfigRecord({"ledger": ledger.to_json()})


def load_ledger(context: Context) -> PrivacyLedger | None:
    """The site's ledger from earlier rounds; an unreadable one is an error, never reset
    (forgetting spent epsilon would break the guarantee)."""
    record = context.state.config_records.get(LEDGER)
    return None if record is None else PrivacyLedger.from_json(str(record["ledger"]))


def ledger_file(context: Context) -> Path | None:
    """Node config `privacy-ledger`: a file that keeps the ledger across SuperNode
    restarts and runs (the Context lives only as long as the SuperNode process)."""
    value = context.node_config.get(LEDGER_FILE)
    return Path(str(value)).expanduser() if value not in (None, "") else None


def write_ledger_file(path: Path, ledger: PrivacyLedger) -> None:
    write_text_atomic(path, ledger.to_json())
