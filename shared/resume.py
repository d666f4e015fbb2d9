"""The one resume rule, for central (`train --resume`) and federated (`simulate` /
`server --resume`) runs.

A resumed run continues with the settings it stored. The original command's flags may
be given again: a value equal to the stored one is accepted, a different one is refused
with one line naming the flag, except for the settings a run may change when it resumes
(`changeable`, e.g. the number of epochs or the device).
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from shared.config import (
    RunConfig,
    config_from_dict,
    load_config_tree,
    parse_assignment,
    preset,
    set_dotted,
)
from shared.errors import UserError

# Dotted RunConfig keys whose command-line flag is not `--<last part>`.
FLAG_NAMES = {"model.pretrained_weights": "--init-encoder", "privacy.mode": "--dp"}


def get_dotted(tree: dict[str, Any], dotted: str) -> Any:
    """tree["a"]["b"] for "a.b" (None where a part is missing)."""
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def flag_name(dotted: str) -> str:
    return FLAG_NAMES.get(dotted, "--" + dotted.rsplit(".", 1)[-1].replace("_", "-"))


def resumed_config(
    stored: Mapping[str, Any],
    *,
    flags: Mapping[str, Any] | None = None,
    changeable: Collection[str] = (),
    dataset: str | None = None,
    config_file: Path | None = None,
    set_items: list[str] | None = None,
) -> RunConfig:
    """The stored config (a RunConfig dump) with the `changeable` values applied.

    `flags` are dotted RunConfig keys -> value (None: not given); `config_file` and
    `set_items` are checked leaf by leaf like flags. A given value that differs from
    the stored one, outside `changeable`, is a UserError naming where it came from.
    """
    tree = copy.deepcopy(dict(stored))
    stored_name = get_dotted(tree, "dataset.name")
    if dataset is not None and preset(dataset).dataset.name != stored_name:
        raise UserError(
            f"--dataset {dataset} differs from the resumed run's dataset {stored_name}; "
            "drop --dataset or start a new run"
        )
    given: dict[str, tuple[str, Any]] = {}  # dotted -> (where it came from, value)
    if config_file is not None:
        for dotted, value in flatten(load_config_tree(config_file)).items():
            given[dotted] = (f"--config {config_file} ({dotted})", value)
    for dotted, value in (flags or {}).items():
        if value is not None:
            given[dotted] = (flag_name(dotted), value)
    for item in set_items or []:
        dotted, value = parse_assignment(item)
        given[dotted] = (f"--set {item}", value)
    if not given:
        return config_from_dict(tree, source="--resume")
    candidate = copy.deepcopy(tree)
    for dotted, (_, value) in given.items():
        set_dotted(candidate, dotted, value)
    before = config_from_dict(tree, source="--resume").model_dump(mode="json")
    after = config_from_dict(candidate, source="--resume").model_dump(mode="json")
    for dotted, (where, value) in given.items():
        if dotted in changeable:
            set_dotted(tree, dotted, value)
        elif get_dotted(after, dotted) != get_dotted(before, dotted):
            raise UserError(
                f"{where} differs from the resumed run ({dotted} = "
                f"{get_dotted(before, dotted)!r}); --resume continues with the stored "
                f"config: drop {where.split(' (')[0]}, or start a new run"
                + (
                    f" (only {', '.join(flag_name(c) for c in changeable)} may change)"
                    if changeable
                    else ""
                )
            )
    return config_from_dict(tree, source="--resume")
