"""The one checkpoint format: config + Task Net + Meta Learner + progress, one file.

A checkpoint is a plain dict written with `torch.save` and read back with
`weights_only=True`, so loading never runs code from the file:

    format "fediqad-checkpoint", version, config (JSON-able RunConfig dump),
    task_net (state dict), meta_learner (state dict or None), epoch, round,
    metrics (str -> float), extra (free: optimiser state, provenance, ...)

Writes are atomic (temp file in the same folder, fsync, `os.replace`), so a crash
mid-save leaves the previous good file in place. The model is rebuilt from the
stored config with `build_models`, so a checkpoint is self-describing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shared.atomic_write import atomic_open
from shared.config import RunConfig, config_from_dict
from shared.errors import UserError
from shared.interrupt import note_saved
from shared.models import ModelBundle, build_models
from shared.torch_io import load_torch_file

FORMAT = "fediqad-checkpoint"
VERSION = 1

# Config fields that decide tensor shapes or what the outputs mean.
ARCHITECTURE_FIELDS = (
    "dataset.name",
    "dataset.channels",
    "dataset.num_diagnosis",
    "dataset.num_quality",
    "method",
    "model.backbone",
    "model.width",
    "model.gab",
    "model.meta_length",
)

_PLAIN = (type(None), bool, int, float, str, torch.Tensor, torch.Size, torch.dtype, torch.device)


@dataclass
class Checkpoint:
    """A loaded checkpoint: the rebuilt models (on CPU, eval mode) and the run's state."""

    path: Path
    bundle: ModelBundle
    cfg: RunConfig
    epoch: int | None = None
    round: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}


def _check_plain(obj: Any, where: str) -> None:
    """Refuse what `weights_only` loading could not read back, at save time, not later."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if not isinstance(key, str | int):
                raise TypeError(f"checkpoint {where}: key {key!r} must be str or int")
            _check_plain(value, f"{where}.{key}")
    elif isinstance(obj, list | tuple):
        for index, value in enumerate(obj):
            _check_plain(value, f"{where}[{index}]")
    elif not isinstance(obj, _PLAIN):
        raise TypeError(
            f"checkpoint {where}: {type(obj).__name__} cannot be stored; use plain values"
        )


def checkpoint_payload(
    bundle: ModelBundle,
    cfg: RunConfig,
    *,
    epoch: int | None = None,
    round: int | None = None,
    metrics: Mapping[str, float] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict that goes to disk (also usable for in-memory copies)."""
    payload: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "config": cfg.model_dump(mode="json"),
        "task_net": _cpu_state(bundle.task_net),
        "meta_learner": (
            _cpu_state(bundle.meta_learner) if bundle.meta_learner is not None else None
        ),
        "epoch": epoch,
        "round": round,
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "extra": dict(extra or {}),
    }
    _check_plain(payload["extra"], "extra")
    return payload


def save_checkpoint(path: str | Path, bundle: ModelBundle, cfg: RunConfig, **fields: Any) -> Path:
    """Write a checkpoint atomically; `fields` (epoch, round, metrics, extra) as for
    `checkpoint_payload`. Returns its path."""
    return atomic_torch_save(checkpoint_payload(bundle, cfg, **fields), Path(path))


def atomic_torch_save(obj: Any, path: Path) -> Path:
    """torch.save through `shared.atomic_write` (temp file, fsync, rename)."""
    with atomic_open(path) as handle:
        torch.save(obj, handle)
    note_saved(Path(path))  # what an interrupted run keeps (the CLI names it on Ctrl-C)
    return Path(path)


def read_payload(path: str | Path) -> dict[str, Any]:
    """The raw checkpoint dict, validated as ours; UserError naming the file otherwise."""
    path = Path(path)
    data = load_torch_file(path, "checkpoint not found", "not a readable fediqad checkpoint")
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        hint = ""
        if (
            isinstance(data, dict)
            and data
            and all(isinstance(v, torch.Tensor) for v in data.values())
        ):
            hint = (
                "; it looks like a bare state dict (e.g. the MKCNet authors' release): "
                "convert it with `fediqad import-reference`"
            )
        raise UserError(f"not a fediqad checkpoint{hint}", path=path)
    version = data.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise UserError(
            f"checkpoint format version {version!r} is newer than this fediqad reads "
            f"({VERSION}); upgrade fediqad",
            path=path,
        )
    return data


def _get(cfg: RunConfig, dotted: str) -> Any:
    node: Any = cfg
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def check_compatible(cfg: RunConfig, expect: RunConfig, path: Path) -> None:
    """Same dataset and same architecture, or a UserError saying what differs."""
    if cfg.dataset.name != expect.dataset.name:
        raise UserError(
            f"checkpoint is for dataset {cfg.dataset.name}, not {expect.dataset.name}",
            path=path,
        )
    diffs = [
        f"{name}={_get(cfg, name)!r} (expected {_get(expect, name)!r})"
        for name in ARCHITECTURE_FIELDS
        if _get(cfg, name) != _get(expect, name)
    ]
    if diffs:
        raise UserError("checkpoint architecture differs: " + ", ".join(diffs), path=path)


def _load_state(module: torch.nn.Module, state: Any, name: str, path: Path) -> None:
    if not isinstance(state, Mapping):
        raise UserError(f"checkpoint has no {name} weights", path=path)
    own = module.state_dict()
    for key, tensor in own.items():
        if key not in state:
            raise UserError(f"{name} weights lack {key!r}; the file is damaged", path=path)
        if not isinstance(state[key], torch.Tensor) or state[key].shape != tensor.shape:
            got = getattr(state[key], "shape", type(state[key]).__name__)
            raise UserError(
                f"{name} weight {key!r} has shape {tuple(got)} where the stored config "
                f"builds {tuple(tensor.shape)}; the file is damaged",
                path=path,
            )
    extra = sorted(set(state) - set(own))
    if extra:
        raise UserError(f"{name} weights have unknown key {extra[0]!r}", path=path)
    module.load_state_dict(state)


def load_checkpoint(path: str | Path, expect: RunConfig | None = None) -> Checkpoint:
    """Read, validate and rebuild a checkpoint (models on CPU, eval mode).

    `expect` checks dataset and architecture against the caller's config. A checkpoint
    stored without Meta Learner weights (e.g. an imported Task Net only) comes back
    with `bundle.meta_learner = None`: fine for inference, not for meta training.
    """
    path = Path(path)
    data = read_payload(path)
    config = data.get("config")
    if not isinstance(config, dict):
        raise UserError("checkpoint has no config", path=path)
    cfg = config_from_dict(config, source=str(path))
    if expect is not None:
        check_compatible(cfg, expect, path)
    # The stored weights already contain any pretrained init: do not read that file again.
    build_cfg = cfg.model_copy(deep=True)
    build_cfg.model.pretrained_weights = None
    bundle = build_models(build_cfg)
    _load_state(bundle.task_net, data.get("task_net"), "task_net", path)
    meta_state = data.get("meta_learner")
    if meta_state is None:
        bundle.meta_learner = None
    elif bundle.meta_learner is None:
        raise UserError(
            f"checkpoint stores Meta Learner weights but method {cfg.method!r} has none",
            path=path,
        )
    else:
        _load_state(bundle.meta_learner, meta_state, "meta_learner", path)
    bundle.eval()
    return Checkpoint(
        path=path,
        bundle=bundle,
        cfg=cfg,
        epoch=data.get("epoch"),
        round=data.get("round"),
        metrics=dict(data.get("metrics") or {}),
        extra=dict(data.get("extra") or {}),
    )


# What a FedBN global checkpoint's BatchNorm statistics are (extra["batchnorm"]).
BN_SERVER = "re-estimated by the server on its held-out data"
BN_SITE_SPECIFIC = (
    "site-specific: FedBN keeps BatchNorm at the sites; the statistics in this file "
    "are the initial ones"
)


def require_usable_batchnorm(extra: dict[str, Any], path: Path) -> None:
    """Refuse to score a FedBN global model whose BatchNorm statistics never left the sites."""
    if extra.get("batchnorm") == BN_SITE_SPECIFIC:
        raise UserError(
            "a FedBN global model: its BatchNorm statistics stay at the sites, so it "
            "cannot predict on its own; use the per-site scores in the run's metrics.json, "
            "or rerun with server-eval-data so the server re-estimates them",
            path=path,
        )
