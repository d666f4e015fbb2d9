"""Per-round persistence: global checkpoint, strategy state and a commit record.

Order per round: checkpoint `checkpoints/round_NNNN.pt` (atomic), the strategy's
own state (server momentum, Adam moments) beside it, `global.pt` re-pointed at the
newest checkpoint, and last `state.json`, the commit record. A server killed at any
moment resumes from the round named in `state.json`, whose files are all complete.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shared.atomic_write import atomic_open, write_text_atomic
from shared.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from shared.config import RunConfig
from shared.errors import UserError
from shared.models import ModelBundle

STATE_FILE = "state.json"
GLOBAL_FILE = "global.pt"
# Attributes of Flower strategies that carry optimiser state across rounds.
STRATEGY_ATTRS = ("m_t", "v_t", "momentum_vector")


def strategy_state(strategy: object) -> dict[str, np.ndarray]:
    """The strategy's cross-round arrays, flattened to `attr|key` / `attr#index` names."""
    out: dict[str, np.ndarray] = {}
    for attr in STRATEGY_ATTRS:
        value = getattr(strategy, attr, None)
        if isinstance(value, dict):
            out.update({f"{attr}|{k}": np.asarray(v) for k, v in value.items()})
        elif isinstance(value, list):
            out.update({f"{attr}#{i}": np.asarray(v) for i, v in enumerate(value)})
    return out


def restore_strategy_state(strategy: object, arrays: dict[str, np.ndarray]) -> None:
    for attr in STRATEGY_ATTRS:
        as_dict = {k.split("|", 1)[1]: v for k, v in arrays.items() if k.startswith(attr + "|")}
        as_list = sorted(
            ((int(k.split("#", 1)[1]), v) for k, v in arrays.items() if k.startswith(attr + "#")),
        )
        if as_dict:
            setattr(strategy, attr, as_dict)
        elif as_list:
            setattr(strategy, attr, [v for _, v in as_list])


@dataclass
class ResumePoint:
    round: int
    checkpoint: Checkpoint
    strategy_arrays: dict[str, np.ndarray]


class RunStore:
    """Files of one federated run under `run_dir`."""

    def __init__(self, run_dir: Path, keep: int = 3):
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.keep = keep

    def checkpoint_path(self, rnd: int) -> Path:
        return self.ckpt_dir / f"round_{rnd:04d}.pt"

    def save_round(
        self,
        rnd: int,
        bundle: ModelBundle,
        cfg: RunConfig,
        *,
        metrics: dict[str, float],
        strategy_arrays: dict[str, np.ndarray],
        extra: dict[str, Any] | None = None,
    ) -> Path:
        path = save_checkpoint(
            self.checkpoint_path(rnd),
            bundle,
            cfg,
            round=rnd,
            metrics={k: v for k, v in metrics.items() if isinstance(v, int | float)},
            extra=extra,
        )
        strat = self.ckpt_dir / f"strategy_{rnd:04d}.npz"
        if strategy_arrays:
            with atomic_open(strat) as handle:
                np.savez(handle, **strategy_arrays)
        self._point_global(path)
        write_text_atomic(
            self.run_dir / STATE_FILE,
            json.dumps(
                {
                    "round": rnd,
                    "checkpoint": str(path.relative_to(self.run_dir)),
                    "strategy_state": str(strat.relative_to(self.run_dir))
                    if strategy_arrays
                    else None,
                    "saved_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                },
                indent=2,
            ),
        )
        self._prune(rnd)
        return path

    def _point_global(self, path: Path) -> None:
        """`global.pt` as a hard link to the newest checkpoint (a copy where links fail)."""
        target = self.run_dir / GLOBAL_FILE
        tmp = self.run_dir / f".{GLOBAL_FILE}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(path, tmp)
        except OSError:
            tmp.write_bytes(path.read_bytes())
        os.replace(tmp, target)

    def _prune(self, rnd: int) -> None:
        for old in range(1, rnd - self.keep + 1):
            self.checkpoint_path(old).unlink(missing_ok=True)
            (self.ckpt_dir / f"strategy_{old:04d}.npz").unlink(missing_ok=True)

    def latest(self, expect: RunConfig | None = None) -> ResumePoint | None:
        """The last committed round, or None for a fresh run directory."""
        state_path = self.run_dir / STATE_FILE
        if not state_path.is_file():
            return None
        try:
            state = json.loads(state_path.read_text())
            rnd = int(state["round"])
            ckpt_path = self.run_dir / state["checkpoint"]
        except (ValueError, KeyError, TypeError) as err:
            raise UserError(f"damaged run state ({err})", path=state_path) from None
        checkpoint = load_checkpoint(ckpt_path, expect=expect)
        arrays: dict[str, np.ndarray] = {}
        if state.get("strategy_state"):
            with np.load(self.run_dir / state["strategy_state"]) as data:
                arrays = {k: data[k] for k in data.files}
        return ResumePoint(rnd, checkpoint, arrays)
