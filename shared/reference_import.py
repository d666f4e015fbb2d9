"""Convert the MKCNet authors' checkpoints into a fediqad checkpoint.

Their code saves `torch.save(model.state_dict())` for the Task Net (`best_model.pth`)
and the Meta Learner (`best_model_LG.pth`). Our Task Net / Meta Learner with
`model.backbone = "vgg16_bn"`, `model.gab = "pooled"` and the dataset preset use their
key names and shapes, so conversion is a strict key + shape check and a copy; a
`module.` prefix (DataParallel) is stripped. Any mismatch names the first key and
says which dataset the file's shapes look like.

One thing is reordered: the authors index quality by the code in their split files
(EyeQ: 2 = Good), we by canonical quality (0 = HQ; `shared.data.labels`). So the rows
of the quality head, and the joint-class blocks (y_q * D + y_d, L rows each) of the
auxiliary head and the Meta Learner, are permuted into canonical order on import.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from shared.checkpoint import save_checkpoint
from shared.config import PRESETS, RunConfig, build_config
from shared.data.labels import file_quality_codes
from shared.errors import UserError
from shared.models import ModelBundle, build_models
from shared.torch_io import load_torch_file

NETWORK_FLAGS = {"task_net": "--task-net", "meta_learner": "--meta-learner"}
# Keys only one of the two networks has; used to spot swapped files.
_OWN_KEY = {"task_net": "classifier1.0.weight", "meta_learner": "classifier.0.weight"}


def reference_config(dataset: str, set_items: list[str] | None = None) -> RunConfig:
    """The dataset preset with the authors' architecture (full VGG16-BN, pooled GABs)."""
    overrides = {
        "method": "mkcnet",
        "model.backbone": "vgg16_bn",
        "model.width": 1.0,
        "model.gab": "pooled",
    }
    return build_config(dataset, overrides=overrides, set_items=set_items)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A bare state dict from disk (weights only), `module.` prefixes removed."""
    data: Any = load_torch_file(
        path, "state dict file not found", "cannot read as a torch state dict"
    )
    if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
        data = data["state_dict"]
    if isinstance(data, Mapping) and data.get("format") == "fediqad-checkpoint":
        raise UserError("already a fediqad checkpoint; nothing to import", path=path)
    if (
        not isinstance(data, Mapping)
        or not data
        or not all(isinstance(v, torch.Tensor) for v in data.values())
    ):
        raise UserError("not a state dict (expected a mapping of names to tensors)", path=path)
    return {_strip_prefix(str(k)): v for k, v in data.items()}


def _strip_prefix(key: str) -> str:
    return key[len("module.") :] if key.startswith("module.") else key


def _shape(state: Mapping[str, torch.Tensor], key: str, dim: int) -> int | None:
    tensor = state.get(key)
    if tensor is None or tensor.ndim <= dim:
        return None
    return int(tensor.shape[dim])


def describe_shapes(state: Mapping[str, torch.Tensor], network: str) -> str:
    """Which dataset preset(s) the file's shapes fit, for error messages."""
    swapped = next(n for n in NETWORK_FLAGS if n != network)
    if _OWN_KEY[network] not in state and _OWN_KEY[swapped] in state:
        return f"this looks like a {swapped} state dict; pass it with {NETWORK_FLAGS[swapped]}"
    channels = _shape(state, "model.block1.0.weight", 1)
    stem = _shape(state, "model.block1.0.weight", 0)
    if network == "task_net":
        sig = (
            channels,
            _shape(state, "classifier1.2.weight", 0),
            _shape(state, "classifier3.2.weight", 0),
            _shape(state, "classifier2.2.weight", 0),
        )
    else:
        sig = (channels, None, None, _shape(state, "classifier.2.weight", 0))
    matches = []
    for name, cfg in PRESETS.items():
        ds = cfg.dataset
        expected = (
            ds.channels,
            ds.num_diagnosis,
            ds.num_quality,
            ds.joint_classes * cfg.model.meta_length,
        )
        if all(s is None or s == e for s, e in zip(sig, expected, strict=True)):
            matches.append(name)
    width = "" if stem in (None, 64) else f"; its first conv has {stem} filters, not VGG16's 64"
    if matches:
        return f"the file's shapes look like dataset {' or '.join(matches)}{width}"
    found = ", ".join(
        f"{label} {value}"
        for label, value in zip(
            ("input channels", "diagnosis classes", "quality classes", "auxiliary outputs"),
            sig,
            strict=True,
        )
        if value is not None
    )
    return f"the file's shapes fit no dataset preset ({found}){width}"


def check_reference_state(
    state: Mapping[str, torch.Tensor],
    module: nn.Module,
    network: str,
    path: Path,
    cfg: RunConfig,
) -> None:
    """Strict: every key present with the same shape, nothing extra; else a UserError."""
    own = module.state_dict()
    problem = None
    for key, tensor in own.items():
        if key not in state:
            problem = f"missing key {key!r}"
        elif state[key].shape != tensor.shape:
            problem = (
                f"key {key!r} has shape {tuple(state[key].shape)}, {cfg.dataset.name} "
                f"needs {tuple(tensor.shape)}"
            )
        if problem:
            break
    if problem is None:
        unknown = [k for k in state if k not in own]
        if not unknown:
            return
        problem = f"unexpected key {unknown[0]!r}"
    raise UserError(
        f"{network} does not fit the MKCNet {network} for {cfg.dataset.name}: {problem}; "
        f"{describe_shapes(state, network)}",
        path=path,
    )


def canonical_rows(cfg: RunConfig) -> dict[str, torch.Tensor]:
    """For each output layer, the file-order row feeding each canonical-order row."""
    ds = cfg.dataset
    codes = file_quality_codes(ds.name, ds.num_quality)  # canonical q -> file code
    length = cfg.model.meta_length
    blocks = [
        codes[q] * ds.num_diagnosis + d
        for q in range(ds.num_quality)
        for d in range(ds.num_diagnosis)
    ]
    joint_rows = torch.tensor([b * length + i for b in blocks for i in range(length)])
    return {
        "classifier3.2": torch.tensor(codes),
        "classifier2.2": joint_rows,
        "classifier.2": joint_rows,
    }


def to_canonical_order(
    state: Mapping[str, torch.Tensor], cfg: RunConfig
) -> dict[str, torch.Tensor]:
    """Permute the quality-indexed output rows from the authors' file codes to ours."""
    rows = canonical_rows(cfg)
    out = dict(state)
    for layer, index in rows.items():
        for suffix in ("weight", "bias"):
            key = f"{layer}.{suffix}"
            if key in out:
                out[key] = out[key].index_select(0, index)
    return out


def load_reference(
    dataset: str,
    task_net: Path,
    meta_learner: Path | None = None,
    set_items: list[str] | None = None,
) -> tuple[ModelBundle, RunConfig]:
    """The authors' weights in our modules. Without a Meta Learner file it is left out."""
    cfg = reference_config(dataset, set_items)
    if (cfg.model.backbone, cfg.model.gab, cfg.method) != ("vgg16_bn", "pooled", "mkcnet"):
        raise UserError(
            "the authors' checkpoints need backbone vgg16_bn, gab pooled, "
            "method mkcnet; do not override them"
        )
    bundle = build_models(cfg)
    files = {"task_net": task_net, "meta_learner": meta_learner}
    for network, path in files.items():
        module = getattr(bundle, network)
        if path is None:
            bundle.meta_learner = None
            continue
        state = read_state_dict(Path(path))
        check_reference_state(state, module, network, Path(path), cfg)
        module.load_state_dict(to_canonical_order(state, cfg), strict=True)
    bundle.eval()
    return bundle, cfg


def import_reference(
    dataset: str,
    task_net: Path,
    meta_learner: Path | None,
    out: Path,
    set_items: list[str] | None = None,
) -> tuple[Path, RunConfig]:
    """Convert and write one fediqad checkpoint (atomically); returns its path and config."""
    bundle, cfg = load_reference(dataset, task_net, meta_learner, set_items)
    codes = file_quality_codes(cfg.dataset.name, cfg.dataset.num_quality)
    extra = {
        "source": "MKCNet authors' release (torch.save(model.state_dict()))",
        "quality_order": f"canonical (0 = HQ); permuted from the authors' file codes {codes}",
        "imported_from": {
            "task_net": str(task_net),
            "meta_learner": str(meta_learner) if meta_learner is not None else "",
        },
    }
    return save_checkpoint(out, bundle, cfg, extra=extra), cfg
