"""The sweep file of `fediqad simulate --sweep sweep.toml`: a grid and common settings.

    [grid]                     # every combination is one run
    strategy = ["fedavg", "fedprox"]
    partition = ["iid", "dirichlet-label:0.5"]   # real data only (simulate.data_root)
    seed = [0, 1]

    [simulate]                 # what `fediqad simulate` takes as flags, snake_case
    rounds = 5
    sites = 4

Checked whole before anything runs (torch-free): a wrong key or value is one line that
names the file and the key.
"""

from __future__ import annotations

import itertools
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from server.config import StrategyName
from shared.errors import UserError, did_you_mean


class Grid(BaseModel):
    """The axes; each list's values are combined with every other list's."""

    model_config = ConfigDict(extra="forbid")

    strategy: list[StrategyName] = Field(default_factory=lambda: ["fedavg"], min_length=1)
    partition: list[str] | None = Field(None, min_length=1)
    seed: list[int] = Field(default_factory=lambda: [0], min_length=1)

    @field_validator("partition")
    @classmethod
    def _schemes(cls, value: list[str] | None) -> list[str] | None:
        from simulations.site_partition import parse_scheme

        for scheme in value or []:
            try:
                parse_scheme(scheme)
            except UserError as err:
                raise ValueError(str(err)) from None
        return value

    @field_validator("strategy", "partition", "seed")
    @classmethod
    def _distinct(cls, value: list[Any] | None) -> list[Any] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"values repeat: {value}")
        return value


class SimulateSettings(BaseModel):
    """`fediqad simulate`'s options, shared by every run of the sweep."""

    model_config = ConfigDict(extra="forbid")

    data_root: Path | None = None  # relative paths: from the sweep file's folder
    dataset: str | None = None
    sites: int = Field(3, ge=1)
    rounds: int | None = Field(None, ge=1)
    local_epochs: int | None = Field(None, ge=1)
    method: str | None = None
    backbone: str | None = None
    image_size: int | None = Field(None, ge=32)
    batch_size: int | None = Field(None, ge=1)
    images_per_site: int | None = Field(None, ge=4)
    server_eval: bool = True
    config: Path | None = None
    set: list[str] = Field(default_factory=list)
    fed_set: dict[str, Any] = Field(default_factory=dict)
    backend: Literal["auto", "ray", "in-process"] = "auto"
    cpus_per_site: float | None = Field(None, gt=0)
    gpus_per_site: float = Field(0.0, ge=0)
    max_parallel: int = Field(4, ge=1)
    ray_address: str | None = None
    ray_startup_timeout: float = Field(180.0, gt=0)


class SweepFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grid: Grid
    simulate: SimulateSettings = Field(default_factory=SimulateSettings)


@dataclass(frozen=True)
class GridPoint:
    strategy: str
    partition: str | None
    seed: int

    @property
    def name(self) -> str:
        """The run folder's name: `fedavg-seed0`, `fedprox-dirichlet-label-0.5-seed1`."""
        parts = [self.strategy, *([self.partition.replace(":", "-")] if self.partition else [])]
        return "-".join([*parts, f"seed{self.seed}"])


@dataclass(frozen=True)
class Sweep:
    path: Path
    grid: Grid
    settings: SimulateSettings

    def points(self) -> list[GridPoint]:
        partitions: list[str | None] = list(self.grid.partition or [None])
        return [
            GridPoint(s, p, seed)
            for s, p, seed in itertools.product(self.grid.strategy, partitions, self.grid.seed)
        ]


def _known_keys(model: type[BaseModel], loc: list[str]) -> list[str]:
    for part in loc[:-1]:
        annotation = model.model_fields[part].annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return list(model.model_fields)


def _one_line(path: Path, err: ValidationError) -> UserError:
    errors = err.errors()  # a misspelt key first: it explains the "missing" one
    first = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc) or "(top level)"
    if first["type"] == "extra_forbidden":
        hint = did_you_mean(loc[-1], _known_keys(SweepFile, loc))
        return UserError(f"{path}: unknown key {key}{hint}")
    if first["type"] == "missing":
        return UserError(f"{path}: {key} is missing (a [grid] table with at least one list)")
    msg = first["msg"].removeprefix("Value error, ")
    got = "" if first["type"] == "value_error" else f", got {first.get('input')!r}"
    return UserError(f"{path}: {key}: {msg[:1].lower()}{msg[1:]}{got}")


def load_sweep(path: Path) -> Sweep:
    """The checked sweep file, or a one-line UserError naming the file and key."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as err:
        raise UserError(f"--sweep {path}: cannot read it ({err.strerror or err})") from None
    except tomllib.TOMLDecodeError as err:
        raise UserError(f"{path}: not valid TOML: {err}") from None
    try:
        doc = SweepFile.model_validate(raw)
    except ValidationError as err:
        raise _one_line(path, err) from None
    settings = doc.simulate
    if doc.grid.partition and settings.data_root is None:
        raise UserError(
            f"{path}: grid.partition splits real data; set simulate.data_root "
            "(the synthetic sites have no partition) or drop grid.partition"
        )
    if settings.dataset and settings.data_root is None:
        raise UserError(f"{path}: simulate.dataset describes real data; set simulate.data_root")
    for key in ("data_root", "config"):
        value = getattr(settings, key)
        if value is not None and not value.is_absolute():
            settings = settings.model_copy(update={key: (path.parent / value).resolve()})
    if settings.data_root is not None and not settings.data_root.is_dir():
        raise UserError(f"{path}: simulate.data_root {settings.data_root} is not a folder")
    return Sweep(path, doc.grid, settings)
