"""Config errors in the user's words: the flag, `--set` key or file field they wrote,
and the closest valid name for a typo."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ValidationError

from shared.errors import did_you_mean

# CLI flags whose name is not the field's own name in kebab case (`optim.lr` -> --lr).
FLAG_NAMES = {
    "model.pretrained_weights": "--init-encoder",
    "contrastive.hard_mining": "--no-mining",
    "contrastive.multi_level": "--no-multi-level",
    "privacy.mode": "--dp",
}


def flag_name(dotted: str) -> str:
    """The command-line flag that sets config field `dotted`."""
    return FLAG_NAMES.get(dotted) or "--" + dotted.rsplit(".", 1)[-1].replace("_", "-")


def _fields_at(model: Any, path: list[str]) -> list[str]:
    """Field names of the config section at `path` (for typo suggestions)."""
    for part in path:
        field = model.model_fields.get(part)
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def format_validation(
    err: ValidationError,
    source: str,
    schema: type[BaseModel],
    given: dict[str, str] | None = None,
) -> str:
    """One line naming what the user typed (flag, --set key, or field of their file)."""
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"]]
    dotted = ".".join(loc) or "(root)"
    who = (given or {}).get(dotted) or (
        f"field '{dotted}'" if source == "defaults" else f"field '{dotted}' in {source}"
    )
    if first["type"] == "extra_forbidden":
        section, leaf = loc[:-1], loc[-1] if loc else ""
        prefix = "".join(f"{part}." for part in section)
        hint = did_you_mean(leaf, _fields_at(schema, section)).replace("'", f"'{prefix}", 1)
        where = "" if source == "defaults" else f" in {source}"
        place = f"section {'.'.join(section)}" if section else "the config"
        return f"unknown field '{dotted}'{where} (not in {place}){hint}"
    value = first.get("input")
    if first["type"] == "literal_error":
        choices = re.findall(r"'([^']*)'", str(first.get("ctx", {}).get("expected", "")))
        return f"{who}: {value!r} is not one of {', '.join(choices)}{did_you_mean(value, choices)}"
    msg = first["msg"].removeprefix("Value error, ")
    got = "" if first["type"] == "value_error" else f", got {value!r}"
    return f"{who}: {msg[:1].lower()}{msg[1:]}{got}"
