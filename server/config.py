"""Federation settings: rounds, strategy, fault tolerance, transport, where results go.

The science settings (dataset, model, method, optimiser) stay in `shared.config.RunConfig`;
this model wraps one and adds what only the federation needs. It arrives either as a
Python object (simulation) or as Flower run config (`[tool.flwr.app.config]` in
pyproject.toml, overridable with `flwr run --run-config`), flat kebab-case keys.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.config import RunConfig, build_config
from shared.errors import UserError, did_you_mean
from shared.privacy.rules import COMCL_SAMPLE_DP

StrategyName = Literal[
    "fedavg",
    "fedprox",
    "fedadam",
    "fedavgm",
    "fedbn",
    "fedmedian",
    "fedtrimmedavg",
    "krum",
    "multikrum",
]
STRATEGIES: tuple[str, ...] = StrategyName.__args__  # type: ignore[attr-defined]


class FederationConfig(BaseModel):
    """Everything the ServerApp needs besides the Grid."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    run: RunConfig = Field(default_factory=RunConfig)
    run_dir: Path = Path("runs/federated")
    num_rounds: int = Field(5, ge=1, le=100_000)
    local_epochs: int = Field(1, ge=1, le=10_000)
    # CoMCL rounds of the encoder before the diagnosis rounds (server/comcl.py)
    pretrain_rounds: int = Field(0, ge=0, le=100_000)
    pretrain_epochs: int = Field(1, ge=1, le=10_000)

    strategy: StrategyName = "fedavg"
    proximal_mu: float = Field(0.01, ge=0.0, le=100.0)
    server_lr: float = Field(1.0, gt=0.0, le=100.0)  # FedAvgM
    server_momentum: float = Field(0.9, ge=0.0, lt=1.0)  # FedAvgM
    eta: float = Field(0.01, gt=0.0, le=10.0)  # FedAdam server learning rate
    eta_l: float = Field(0.01, gt=0.0, le=10.0)  # FedAdam client learning rate (reported)
    beta_1: float = Field(0.9, ge=0.0, lt=1.0)
    beta_2: float = Field(0.99, ge=0.0, lt=1.0)
    tau: float = Field(1e-3, gt=0.0, le=1.0)
    trim_beta: float = Field(0.2, ge=0.0, lt=0.5)  # FedTrimmedAvg cut fraction per side
    num_malicious: int = Field(0, ge=0)  # Krum / MultiKrum
    krum_select: int = Field(2, ge=1)  # MultiKrum: updates averaged after selection

    fraction_train: float = Field(1.0, gt=0.0, le=1.0)
    fraction_evaluate: float = Field(1.0, ge=0.0, le=1.0)
    min_nodes: int = Field(2, ge=1, description="sites that must be connected to start")
    min_replies: int = Field(1, ge=1, description="valid train replies needed to aggregate")
    round_timeout: float = Field(3600.0, gt=0.0)

    # Client-level DP (run.privacy.mode = "client"): Flower's server-side fixed clipping
    dp_noise_multiplier: float = Field(1.0, ge=0.0, le=1000.0)
    dp_clipping_norm: float = Field(1.0, gt=0.0, le=1e6)
    dp_sampled_clients: int = Field(0, ge=0, description="sites per round; 0 = min_nodes")

    transport_dtype: Literal["float32", "float16"] = "float32"
    eval_split: str = "auto"
    server_eval_data: Path | None = None
    server_eval_split: str = "test"
    resume: bool = False
    keep_checkpoints: int = Field(3, ge=1)
    # `fediqad simulate` only: the Ray cluster the sites run on (HOST:PORT or "auto");
    # "" = a Ray started for the run on this machine (simulations/ray_cluster.py)
    ray_address: str = ""

    @model_validator(mode="after")
    def _check(self) -> FederationConfig:
        if self.min_replies > self.min_nodes:
            raise ValueError(
                f"min_replies ({self.min_replies}) cannot exceed min_nodes ({self.min_nodes})"
            )
        mode = self.run.privacy.mode
        if mode != "off" and self.fedbn:
            raise ValueError(
                "fedbn keeps BatchNorm local, but with DP the models use GroupNorm "
                "(no BatchNorm at all); choose another strategy, e.g. fedavg"
            )
        if mode == "sample" and self.pretrain_rounds > 0:
            raise ValueError(COMCL_SAMPLE_DP)
        if mode == "client" and self.strategy not in ("fedavg", "fedprox"):
            raise ValueError(
                f"client-level DP adds noise calibrated to a plain mean of clipped updates; "
                f"strategy {self.strategy} is not one: use fedavg or fedprox"
            )
        return self

    @property
    def client_dp(self) -> bool:
        return self.run.privacy.mode == "client"

    @property
    def dp_clients(self) -> int:
        """m in the noise std sigma C / m: the sites expected to reply each round."""
        return self.dp_sampled_clients or self.min_nodes

    @property
    def fedbn(self) -> bool:
        return self.strategy == "fedbn"


# The flags of `fediqad simulate` / `fediqad server` that set federation fields; any
# other field is set with `--fed-set KEY=VALUE`.
FLAGS = {
    "num_rounds": "--rounds",
    "local_epochs": "--local-epochs",
    "pretrain_rounds": "--pretrain-rounds",
    "pretrain_epochs": "--pretrain-epochs",
    "strategy": "--strategy",
    "proximal_mu": "--proximal-mu",
    "transport_dtype": "--transport-dtype",
    "min_nodes": "--min-nodes",
    "min_replies": "--min-replies",
    "round_timeout": "--round-timeout",
    "server_eval_data": "--server-eval-data",
    "dp_noise_multiplier": "--noise-multiplier",
    "dp_clipping_norm": "--max-grad-norm",
}


def validated(*, flags: Mapping[str, str] | None = None, **fields: Any) -> FederationConfig:
    """FederationConfig from keyword fields; a UserError naming the user's flag.

    `flags` maps field names to the flags of the calling command (default `FLAGS`)."""
    names = dict(FLAGS if flags is None else flags)
    try:
        return FederationConfig(**fields)
    except ValidationError as err:
        first = err.errors()[0]
        loc = [str(p) for p in first["loc"]]
        msg = first["msg"].removeprefix("Value error, ")
        if not loc:  # a rule across fields: speak in flags
            for field, flag in sorted(names.items(), key=lambda kv: -len(kv[0])):
                msg = re.sub(rf"\b{field}\b", flag, msg)
            raise UserError(msg) from None
        if loc[0] == "run":
            raise UserError(f"invalid run setting '{'.'.join(loc[1:])}': {msg}") from None
        who = names.get(loc[0]) or f"--fed-set {loc[0].replace('_', '-')}"
        if first["type"] == "literal_error":
            choices = re.findall(r"'([^']*)'", str(first.get("ctx", {}).get("expected", "")))
            raise UserError(
                f"{who}: {first.get('input')!r} is not one of {', '.join(choices)}"
                f"{did_you_mean(first.get('input'), choices)}"
            ) from None
        got = "" if first["type"] == "value_error" else f", got {first.get('input')!r}"
        raise UserError(f"{who}: {msg[:1].lower()}{msg[1:]}{got}") from None


# Keys of [tool.flwr.app.config] that are not FederationConfig fields.
_RUN_KEYS = ("dataset", "config-file", "set")


def from_user_config(user: dict[str, Any]) -> FederationConfig:
    """Build from Flower run config (flat kebab-case keys; '' means 'not given')."""
    fields = {k.replace("-", "_"): v for k, v in user.items() if k not in _RUN_KEYS and v != ""}
    unknown = sorted(set(fields) - set(FederationConfig.model_fields) - {"run"})
    if unknown:
        raise UserError(f"unknown run-config key(s): {', '.join(unknown)}")
    config_file = user.get("config-file") or None
    run = build_config(
        dataset=user.get("dataset") or None,
        config_file=Path(config_file) if config_file else None,
        set_items=shlex.split(str(user.get("set") or "")),
    )
    return validated(run=run, **fields)


def to_user_config(fed: FederationConfig, *, config_file: Path) -> dict[str, Any]:
    """The run-config overrides that rebuild `fed` on the server (its RunConfig in a file).

    Used by `fediqad server`, which writes `fed.run` to `config_file` as YAML.
    """
    out: dict[str, Any] = {}
    for name, value in fed.model_dump(mode="json", exclude={"run"}).items():
        out[name.replace("_", "-")] = "" if value is None else value
    out["dataset"] = fed.run.dataset.name
    out["config-file"] = str(config_file)
    out["set"] = ""
    return out
