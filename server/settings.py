"""The settings of a federated run, fresh or resumed (`fediqad simulate` / `server`).

A run's settings are stored in RUN_DIR/federation.json, so `--resume` continues with
them: its run config as `shared.resume` rules, its federation fields (rounds, timeouts,
...) as given again.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from server.config import FLAGS, FederationConfig, validated
from shared.config import RunConfig, build_config, parse_assignment
from shared.errors import UserError, did_you_mean
from shared.resume import resumed_config
from shared.training.precision_rules import refuse_unsupported_precision

SETTINGS_FILE = "federation.json"


def federation_settings(
    *,
    run_dir: Path,
    resume: bool,
    dataset: str | None,
    config: Path | None,
    set_items: list[str] | None,
    run_flags: dict[str, Any],
    fed_flags: dict[str, Any],
    defaults: RunConfig | None = None,
    simulation: bool = False,
) -> FederationConfig:
    """Fresh settings from the flags, or on --resume the stored ones: the run config as
    `shared.resume` allows (the original flags again are fine), federation fields as given.

    `simulation`: errors speak `fediqad simulate`'s flags (--sites, --name), not the
    server's (--min-nodes, --run-dir)."""
    flags = {**FLAGS, "min_nodes": "--sites"} if simulation else FLAGS
    stored = run_dir / SETTINGS_FILE
    if resume:
        if not stored.is_file():
            raise UserError(f"nothing to resume: {stored} does not exist")
        base = FederationConfig.model_validate_json(stored.read_text())
        run = resumed_config(
            base.run.model_dump(mode="json"),
            flags=run_flags,
            dataset=dataset,
            config_file=config,
            set_items=set_items,
        )
        fields = base.model_dump()
        fields.update({k: v for k, v in fed_flags.items() if v is not None})
        fields.update(run=run, resume=True, run_dir=run_dir)
        fed = validated(flags=flags, **fields)
        refuse_unsupported_precision(fed.run)
        return fed
    if defaults is not None and dataset is None and config is None:
        run = build_config(None, None, run_flags, set_items, base=defaults)
    else:
        run = build_config(dataset, config, run_flags, set_items)
    fed = validated(
        flags=flags,
        run=run,
        run_dir=run_dir,
        **{k: v for k, v in fed_flags.items() if v is not None},
    )
    refuse_unsupported_precision(fed.run)  # before any site builds a trainer
    from server.persistence import STATE_FILE  # torch: only once the settings are valid

    if (run_dir / STATE_FILE).exists():
        raise UserError(
            f"{run_dir} already holds a federated run; pass --resume to continue "
            f"it or {'--name' if simulation else '--run-dir'} for a new one"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    stored.write_text(fed.model_dump_json(indent=2))
    return fed


def committed_round(run_dir: Path) -> int | None:
    """The last round RUN_DIR/state.json records as complete (None: no round yet)."""
    try:
        from server.persistence import STATE_FILE

        return int(json.loads((run_dir / STATE_FILE).read_text())["round"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def parse_fed_set(items: list[str] | None) -> dict[str, Any]:
    """`--fed-set key=value` pairs as FederationConfig fields (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, value = parse_assignment(item, "--fed-set", "key=value")
        field = key.replace("-", "_")
        if field not in FederationConfig.model_fields or field == "run":
            known = [f.replace("_", "-") for f in FederationConfig.model_fields if f != "run"]
            raise UserError(
                f"--fed-set: unknown federation setting {key!r}{did_you_mean(key, known)}"
            )
        out[field] = value
    return out


def parse_site_budgets(items: list[str] | None) -> dict[str, float]:
    """`--site-epsilon-budget NAME=EPS` pairs."""
    out: dict[str, float] = {}
    for item in items or []:
        name, value = parse_assignment(item, "--site-epsilon-budget", "NAME=EPS")
        try:
            out[name] = float(None if isinstance(value, bool) else value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UserError(f"--site-epsilon-budget {item!r} must look like NAME=EPS") from None
    return out
