"""The settings of a federated run, fresh or resumed (`fediqad simulate` / `server`).

A run's settings are stored in RUN_DIR/federation.json, so `--resume` continues
with them (only rounds, timeouts and resources may change).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from server.config import FederationConfig, validated
from shared.config import RunConfig, build_config
from shared.errors import UserError

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
) -> FederationConfig:
    """Fresh settings from the flags, or on --resume the stored ones plus allowed changes."""
    stored = run_dir / SETTINGS_FILE
    if resume and stored.is_file():
        fixed = [k for k, v in run_flags.items() if v is not None]
        if fixed or config is not None or set_items:
            raise UserError(
                "--resume continues with the stored settings; drop "
                f"{', '.join(fixed) or '--config/--set'}"
            )
        base = FederationConfig.model_validate_json(stored.read_text()).model_dump()
        base.update({k: v for k, v in fed_flags.items() if v is not None})
        base.update(resume=True, run_dir=run_dir)
        return validated(**base)
    if resume:
        raise UserError(f"nothing to resume: {stored} does not exist")
    if (run_dir / "state.json").exists():
        raise UserError(
            f"{run_dir} already holds a federated run; pass --resume to continue "
            "it or --name / --run-dir for a new one"
        )
    if defaults is not None and dataset is None and config is None:
        run = defaults
        run_tree = run.model_dump()
        for dotted, value in run_flags.items():
            if value is not None:
                node = run_tree
                *sections, leaf = dotted.split(".")
                for section in sections:
                    node = node[section]
                node[leaf] = value
        run = build_config(run.dataset.name, None, _flatten(run_tree), set_items)
    else:
        run = build_config(dataset, config, run_flags, set_items)
    fed = validated(
        run=run, run_dir=run_dir, **{k: v for k, v in fed_flags.items() if v is not None}
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    stored.write_text(fed.model_dump_json(indent=2))
    return fed


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def parse_fed_set(items: list[str] | None) -> dict[str, Any]:
    """`--fed-set key=value` pairs as FederationConfig fields (values parsed as YAML)."""
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--fed-set {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        field = key.strip().replace("-", "_")
        if field not in FederationConfig.model_fields or field == "run":
            raise UserError(f"--fed-set: unknown federation setting {key!r}")
        out[field] = yaml.safe_load(raw) if raw else ""
    return out


def parse_site_budgets(items: list[str] | None) -> dict[str, float]:
    """`--site-epsilon-budget NAME=EPS` pairs."""
    out: dict[str, float] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--site-epsilon-budget {item!r} must look like NAME=EPS") from None
    return out
