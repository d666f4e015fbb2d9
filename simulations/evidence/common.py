"""Data, configs, training and scoring shared by the evidence parts.

Every model is trained with the project's `LocalTrainer` and scored with
`shared.evaluation.predict` + `shared.metrics.compute_metrics` on the test split; a
part that pools several sites' test images pools their predictions first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.config import RunConfig, preset
from shared.evaluation import Predictions, predict
from shared.metrics import compute_metrics
from shared.models import ModelBundle, build_models
from simulations.evidence.settings import EvidenceSettings

Say = Callable[[str], None]
KEYS = ("kappa", "acc", "auc", "f1", "kappa_hq", "acc_hq", "kappa_lq", "acc_lq", "auc_lq")


def run_config(
    s: EvidenceSettings,
    method: str,
    seed: int,
    *,
    image_size: int | None = None,
    epochs: int | None = None,
) -> RunConfig:
    """EyeQ preset at the evidence scale (slim backbone, tiny images, no augmentation,
    SGD halved after half the epochs)."""
    cfg = preset("EYEQ")
    cfg.method = method  # type: ignore[assignment]
    cfg.schedule = s.schedule  # type: ignore[assignment]
    cfg.image_size = image_size or s.image_size
    cfg.model.backbone = s.backbone
    cfg.optim.batch_size = s.batch_size
    cfg.optim.lr = s.lr
    cfg.optim.epochs = epochs or s.epochs
    cfg.optim.lr_step_epochs = max(1, cfg.optim.epochs // 2)
    cfg.seed = seed
    cfg.device = "cpu"
    cfg.contrastive.backbone = None
    return cfg


def make_data(out: Path, s: EvidenceSettings, seed: int, image_size: int | None = None) -> Path:
    """ROOT with EYEQ/ synthesised for this seed (the data differ between seeds)."""
    from shared.data.synth import synthesize

    size = image_size or s.image_size
    root = Path(out) / f"data-seed{seed}-{size}px"
    synthesize("EYEQ", s.n, size, root, seed=seed, lq_ratio=s.lq_ratio, workers=1, force=True)
    return root


def loader(root: Path, cfg: RunConfig, split: str, train: bool, seed: int = 0) -> Any:
    from shared.data.dataset import make_loader, open_split

    data = open_split(root, cfg, split)
    generator = torch.Generator().manual_seed(seed) if train else None
    return make_loader(data, cfg, train, generator=generator)


def train_central(
    cfg: RunConfig, root: Path, epochs: int, bundle: ModelBundle | None = None
) -> ModelBundle:
    """`epochs` epochs of `cfg.method` on ROOT's training split, from a seeded init."""
    from shared.training import LocalTrainer

    torch.manual_seed(cfg.seed)
    bundle = bundle or build_models(cfg)
    trainer = LocalTrainer(cfg, bundle, "cpu")
    trainer.fit(loader(root, cfg, "train", True, cfg.seed), epochs=epochs)
    return bundle


def test_predictions(bundle: ModelBundle, root: Path, cfg: RunConfig) -> Predictions:
    return predict(bundle, loader(root, cfg, "test", False), "cpu")


def score(parts: Sequence[Predictions]) -> dict[str, float]:
    """Metrics (overall, HQ, LQ) of the pooled predictions."""
    metrics = compute_metrics(
        np.concatenate([p.diagnosis_true for p in parts]),
        np.concatenate([p.diagnosis_prob for p in parts]),
        np.concatenate([p.quality_true for p in parts]),
    )
    out = {k: float(metrics[k]) for k in KEYS if k in metrics}
    out["n"] = float(sum(len(p.diagnosis_true) for p in parts))
    out["n_lq"] = float(sum(int((p.quality_true > 0).sum()) for p in parts))
    return out


class Timer:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
