"""The encoder file `fediqad pretrain` writes, and moving it into a diagnosis backbone.

Format (a plain dict, `torch.save`, read back with `weights_only=True`):
    format "fediqad-encoder", version, backbone, width, channels,
    state_dict (the backbone's tensors: exactly what the diagnosis backbone loads),
    head (projection head tensors), config (the RunConfig of pretraining, JSON-able),
    metrics, epochs.
`shared.models.backbones.load_local_weights` reads `state_dict` from it, so setting
`model.pretrained_weights` to this file initialises every backbone `build_models`
makes (Task Net, Meta Learner, plain classifier); `check_encoder` first makes sure the
file was pretrained for the same backbone, width and channels.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.checkpoint import atomic_torch_save
from shared.config import RunConfig
from shared.errors import UserError
from shared.models.backbones import build_backbone, load_strict
from shared.torch_io import load_torch_file

FORMAT = "fediqad-encoder"
VERSION = 1


@dataclass
class EncoderFile:
    backbone: str
    width: float
    channels: int
    state_dict: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    epochs: int = 0


def _split_state(state: Mapping[str, torch.Tensor]) -> tuple[dict, dict]:
    backbone = {
        k.removeprefix("backbone."): v.detach().cpu().clone()
        for k, v in state.items()
        if k.startswith("backbone.")
    }
    head = {
        k.removeprefix("head."): v.detach().cpu().clone()
        for k, v in state.items()
        if k.startswith("head.")
    }
    return backbone, head


def save_encoder(
    path: Path,
    model_state: Mapping[str, torch.Tensor],
    cfg: RunConfig,
    *,
    metrics: Mapping[str, float] | None = None,
    epochs: int = 0,
) -> Path:
    """Write a ContrastiveModel state (keys backbone.*, head.*) as an encoder file."""
    backbone, head = _split_state(model_state)
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "backbone": cfg.model.backbone,
        "width": float(cfg.model.width),
        "channels": int(cfg.dataset.channels),
        "state_dict": backbone,
        "head": head,
        "config": cfg.model_dump(mode="json"),
        "metrics": {str(k): float(v) for k, v in (metrics or {}).items()},
        "epochs": int(epochs),
    }
    return atomic_torch_save(payload, Path(path))


def read_encoder(path: Path) -> EncoderFile:
    path = Path(path)
    data = load_torch_file(
        path,
        "encoder file not found; write one with `fediqad pretrain`",
        "not a readable encoder file",
    )
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError("not a fediqad encoder file (write one with `fediqad pretrain`)", path=path)
    if int(data.get("version", 0)) > VERSION:
        raise UserError(
            f"encoder format version {data.get('version')} is newer than this "
            "fediqad reads; upgrade fediqad",
            path=path,
        )
    return EncoderFile(
        str(data["backbone"]),
        float(data["width"]),
        int(data["channels"]),
        dict(data["state_dict"]),
        dict(data.get("head") or {}),
        dict(data.get("config") or {}),
        dict(data.get("metrics") or {}),
        int(data.get("epochs") or 0),
    )


def check_encoder(path: Path, cfg: RunConfig) -> EncoderFile:
    """The encoder file, if its backbone is the one `cfg` builds; else a UserError."""
    enc = read_encoder(path)
    want = (cfg.model.backbone, float(cfg.model.width), int(cfg.dataset.channels))
    got = (enc.backbone, enc.width, enc.channels)
    if got != want:
        raise UserError(
            f"encoder was pretrained as backbone {enc.backbone} width {enc.width:g} with "
            f"{enc.channels} channel(s); this run builds {want[0]} width {want[1]:g} with "
            f"{want[2]} channel(s) (pass --backbone / --width to match)",
            path=path,
        )
    backbone = build_backbone(cfg.model.backbone, cfg.dataset.channels, cfg.model.width)
    load_strict(backbone, enc.state_dict, path)
    return enc


def init_from_encoder(
    modules: Mapping[str, nn.Module], state: Mapping[str, torch.Tensor]
) -> list[str]:
    """Load an encoder's backbone state into each diagnosis model's backbone (`.model`);
    returns the names of the models initialised."""
    done = []
    for name, module in modules.items():
        backbone = getattr(module, "model", None)
        if isinstance(backbone, nn.Module):
            load_strict(backbone, state, f"{name}.model")
            done.append(name)
    return done
