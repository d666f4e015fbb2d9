"""Per-sample probabilities for ROC curves and confusion matrices.

A run folder keeps checkpoints and summaries, not one row per image, so the report
evaluates the run's checkpoint on its evaluation data: the data root given on the
command line, else the one the run recorded (a federation's server held-out set).
When neither exists the report says so instead of drawing these figures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from shared.errors import UserError
from shared.evaluation import Predictions
from shared.report.rundir import RunData


@dataclass
class PredictionSet:
    predictions: Predictions
    source: str  # what was evaluated on what, for the report's text
    split: str
    diagnosis_names: list[str]


def _default_split(run: RunData, splits: list[str]) -> str:
    if run.eval_split:
        return run.eval_split
    return "test" if "test" in splits else splits[-1]


def compute_predictions(
    run: RunData,
    data_root: Path | None,
    split: str | None,
    device: torch.device,
    batch_size: int | None = None,
) -> tuple[PredictionSet | None, str | None]:
    """(predictions, None) or (None, why they could not be computed)."""
    from shared.checkpoint import load_checkpoint, require_usable_batchnorm
    from shared.data.dataset import make_loader, open_split
    from shared.evaluation import predict
    from shared.training.setup import plain_worker_errors

    root = data_root or run.eval_data
    if run.checkpoint is None:
        return None, "the run folder has no checkpoint to evaluate"
    if root is None:
        return None, (
            "the run does not record where its data lives; pass --data-root "
            "(the folder holding DATASET/Images and the split files)"
        )
    try:
        ck = load_checkpoint(run.checkpoint)
        require_usable_batchnorm(ck.extra, run.checkpoint)  # FedBN without server statistics
        cfg = ck.cfg.model_copy(deep=True)
        cfg.num_workers = 0
        chosen = split or _default_split(run, list(cfg.dataset.splits))
        data = open_split(Path(root), cfg, chosen)
        with plain_worker_errors():
            pred = predict(ck.bundle, make_loader(data, cfg, False, batch_size), device)
    except UserError as err:
        return None, f"evaluating {run.checkpoint.name} failed: {err}"
    source = f"{run.checkpoint.name} evaluated on the {chosen} split of {root} ({len(data)} images)"
    return PredictionSet(pred, source, chosen, list(cfg.dataset.diagnosis_names)), None
