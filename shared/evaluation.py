"""Evaluate a model bundle on a loader: probabilities in, metrics (overall, HQ, LQ) out."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.config import RunConfig
from shared.metrics import compute_metrics
from shared.models import ModelBundle


@dataclass
class Predictions:
    diagnosis_true: np.ndarray
    quality_true: np.ndarray
    diagnosis_prob: np.ndarray
    quality_prob: np.ndarray | None


@torch.no_grad()
def predict(bundle: ModelBundle, loader: Iterable[Any], device: torch.device | str) -> Predictions:
    """Softmax probabilities of every head, in eval mode (BN running statistics)."""
    task_net = bundle.task_net.to(device)
    was_training = task_net.training
    task_net.eval()
    diag_true, qual_true, diag_prob, qual_prob = [], [], [], []
    try:
        for image, diagnosis, quality, *_ in loader:
            out = task_net(image.to(device))
            diag_prob.append(torch.softmax(out.diagnosis, 1).float().cpu())
            if out.quality is not None:
                qual_prob.append(torch.softmax(out.quality, 1).float().cpu())
            diag_true.append(diagnosis)
            qual_true.append(quality)
    finally:
        task_net.train(was_training)
    if not diag_prob:
        raise ValueError("cannot evaluate on an empty loader")
    return Predictions(
        torch.cat(diag_true).numpy(),
        torch.cat(qual_true).numpy(),
        torch.cat(diag_prob).numpy(),
        torch.cat(qual_prob).numpy() if qual_prob else None,
    )


def evaluate(
    bundle: ModelBundle, loader: Iterable[Any], cfg: RunConfig, device: torch.device | str = "cpu"
) -> dict[str, float]:
    del cfg  # metrics depend only on the labels and probabilities
    p = predict(bundle, loader, device)
    return compute_metrics(p.diagnosis_true, p.diagnosis_prob, p.quality_true, p.quality_prob)


@dataclass
class CheckpointScore:
    checkpoint: Path
    dataset: str
    method: str
    split: str
    metrics: dict[str, float]


def evaluate_checkpoint(
    checkpoint: Path,
    data_root: Path,
    *,
    dataset: str | None = None,
    split: str | None = None,
    device: torch.device | str = "cpu",
    batch_size: int | None = None,
) -> CheckpointScore:
    """Score a saved model on one split (default test; the last split where there is no
    test, e.g. DRAC's train). `dataset`, if given, must be the checkpoint's."""
    from shared.checkpoint import load_checkpoint, require_usable_batchnorm
    from shared.config import preset
    from shared.data.dataset import make_loader, open_split
    from shared.errors import UserError
    from shared.training.setup import plain_worker_errors

    ck = load_checkpoint(checkpoint)
    require_usable_batchnorm(ck.extra, Path(checkpoint))  # FedBN without server statistics
    cfg = ck.cfg
    if dataset is not None and preset(dataset).dataset.name != cfg.dataset.name:
        raise UserError(
            f"checkpoint is for dataset {cfg.dataset.name}, not {preset(dataset).dataset.name}",
            path=checkpoint,
        )
    split = split or ("test" if "test" in cfg.dataset.splits else cfg.dataset.splits[-1])
    data = open_split(Path(data_root), cfg, split)
    cfg.device = str(torch.device(device))  # the loader pins memory and adds workers for it
    with plain_worker_errors():
        metrics = evaluate(ck.bundle, make_loader(data, cfg, False, batch_size), cfg, device)
    return CheckpointScore(Path(checkpoint), cfg.dataset.name, cfg.method, split, metrics)


@torch.no_grad()
def reestimate_batchnorm(
    module: torch.nn.Module, loader: Iterable[Any], device: torch.device | str = "cpu"
) -> int:
    """Replace every BatchNorm's running statistics by their average over `loader`'s
    images (AdaBN-style; for a FedBN global model, whose statistics stay at the sites).
    Parameters are untouched; returns the number of images seen (0: no BatchNorm)."""
    norms = [m for m in module.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return 0
    saved = [(m, m.momentum) for m in norms]
    was_training = module.training
    module.to(device).eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
        m.train()
    seen = 0
    try:
        for image, *_ in loader:
            if len(image) < 2:  # one image cannot give batch statistics of a 1x1 map
                continue
            module(image.to(device))
            seen += len(image)
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        module.train(was_training)
    return seen
