"""`fediqad embed` without the CLI: checkpoint + data -> embeddings -> t-SNE figure."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Subset

from fediqad.report.embedding_figure import EmbedResult, draw_embedding
from shared.config import preset
from shared.errors import UserError


def embed(
    checkpoint: Path,
    dataset: str,
    data_root: Path,
    out: Path,
    *,
    split: str | None = None,
    max_images: int = 1000,
    perplexity: float | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
) -> EmbedResult:
    from shared.checkpoint import load_checkpoint
    from shared.data.dataset import make_loader, open_split
    from shared.explain import collect_embeddings
    from shared.training.setup import plain_worker_errors

    wanted = preset(dataset).dataset.name
    ck = load_checkpoint(checkpoint)
    if ck.cfg.dataset.name != wanted:
        raise UserError(
            f"checkpoint is for dataset {ck.cfg.dataset.name}, not {wanted}", path=checkpoint
        )
    cfg = ck.cfg.model_copy(deep=True)
    cfg.num_workers = 0
    splits = list(cfg.dataset.splits)
    split = split or ("test" if "test" in splits else splits[-1])
    data = open_split(data_root, cfg, split)
    if len(data) < 3:
        raise UserError(
            f"the {split} split has {len(data)} image(s); t-SNE needs at least 3", path=data_root
        )
    chosen = data
    if len(data) > max_images:
        order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
        chosen = Subset(data, order[:max_images].tolist())
    with plain_worker_errors():
        loader = make_loader(chosen, cfg, False, batch_size)  # type: ignore[arg-type]
        embeddings = collect_embeddings(ck.bundle, loader, device)
    subtitle = f", {split} split ({len(chosen)} of {len(data)} images)"
    return draw_embedding(embeddings, cfg, out, seed=seed, perplexity=perplexity, subtitle=subtitle)
