"""Central CoMCL pretraining of one encoder (`fediqad pretrain`, or a notebook).

`run_pretraining` writes OUT/encoder.pt (fine-tune with `fediqad train --init-encoder`)
every tenth of the run and at the end, so an interrupted run keeps its latest encoder,
and OUT/pretrain.json (per-epoch losses, K_t, selected fractions, patch counts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shared.atomic_write import write_text_atomic
from shared.config import RunConfig
from shared.contrastive.boxes import choose_source, source_label
from shared.contrastive.patches import describe, input_px, patch_px, skipped_terms, split_bank
from shared.contrastive.pretrain import (
    ContrastivePretrainer,
    build_contrastive_model,
    encoder_backbone,
)
from shared.contrastive.transfer import save_encoder
from shared.data.dataset import resolve_dataset_dir
from shared.errors import UserError
from shared.strict_json import dumps
from shared.training.setup import pick_device, seed_everything

ENCODER, HISTORY = "encoder.pt", "pretrain.json"


@dataclass
class PretrainResult:
    encoder: Path
    history_file: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def run_pretraining(
    cfg: RunConfig,
    data_root: Path,
    out: Path,
    *,
    lesions: Path | None = None,
    detector: Path | None = None,
    proposals: bool = False,
    split: str = "train",
    force: bool = False,
    say: Callable[[str], None] = print,
) -> PretrainResult:
    """Pretrain the encoder `cfg` names on patches of `split`; `say` gets progress lines."""
    c = cfg.contrastive
    if (out / ENCODER).exists() and not force:
        raise UserError(f"already holds {ENCODER}; pass --force or another --out", path=out)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    dev = pick_device(cfg.device)
    seed_everything(cfg.seed)
    folder = resolve_dataset_dir(data_root, cfg.dataset.name)
    source = choose_source(folder, lesions, detector, proposals, str(dev), say=say)
    say(f"lesion box source: {source_label(source)}")
    bank = split_bank(data_root, cfg, source, split, cfg.seed)
    say(
        f"patches ({patch_px(cfg)} px of the full-resolution images, encoder input "
        f"{input_px(cfg)} px): {describe(bank)}"
    )
    say(
        f"encoder {encoder_backbone(cfg)}, "
        + (f"projection head {c.projection_dim}" if c.projection_dim else "no projection head")
    )
    for warning in skipped_terms(bank, c.multi_level):
        say(f"[yellow]warning:[/] {warning}")
    if len(skipped_terms(bank, c.multi_level)) == (3 if c.multi_level else 1):
        raise UserError(
            "no loss term can be formed from these patches (see the warnings)", path=folder
        )
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), dev, c.epochs)
    generator = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    every = max(1, c.epochs // 10)  # an interrupted run keeps its latest encoder
    path = out / ENCODER

    def write_history() -> None:  # beside every encoder.pt: an interrupted run keeps both
        doc = {
            "dataset": cfg.dataset.name,
            "box_source": getattr(source, "name", "custom"),
            "box_source_label": source_label(source),
            "encoder": encoder_backbone(cfg),
            "patches": bank.counts(),
            "skipped": skipped_terms(bank, c.multi_level),
            "seconds": time.perf_counter() - start,
            "config": cfg.model_dump(mode="json"),
            "compute": {"device": str(dev), **trainer.precision.describe()},
            "epochs": history,
        }
        write_text_atomic(out / HISTORY, dumps(doc) + "\n")

    for epoch in range(c.epochs):
        logs = trainer.fit(bank, 1, epoch, generator)
        history.append({"epoch": epoch + 1, **logs})
        say(
            f"epoch {epoch + 1}/{c.epochs}: loss {logs.get('loss', float('nan')):.4f} "
            f"({logs['patches_per_second']:.0f} patches/s)"
        )
        if (epoch + 1) % every == 0 or epoch + 1 == c.epochs:
            metrics = {k: v for k, v in history[-1].items() if isinstance(v, float)}
            save_encoder(path, trainer.model.state_dict(), cfg, metrics=metrics, epochs=epoch + 1)
            write_history()
    return PretrainResult(path, out / HISTORY, history)
