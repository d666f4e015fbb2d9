"""Training a lesion detector from files: the samples of a split (images at their file
resolution with their annotated boxes) and `fit_detector`, which trains on `train`,
scores on the held-out `test` (else `val`) split and writes the checkpoint
(`fediqad detector train`; docs/comcl.md "Training a lesion detector")."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from shared.contrastive.boxes import CsvBoxes
from shared.contrastive.detector import (
    DetectionSample,
    DetectorReport,
    DetectorSettings,
    save_detector,
    score_detector,
    train_detector,
)
from shared.errors import UserError


def load_samples(data_root: Path, cfg: Any, split: str, annotations: Path) -> list[DetectionSample]:
    """Every image of one split at its file resolution with its annotated boxes."""
    from shared.data.dataset import open_split, resolve_dataset_dir
    from shared.data.images import load_image

    folder = resolve_dataset_dir(Path(data_root), cfg.dataset.name)
    table = CsvBoxes(annotations, folder)
    data = open_split(data_root, cfg, split, cache=False)
    out = []
    for record in data.records:
        image = load_image(record.image, cfg.dataset.channels, 0)
        boxes = table(record.image, image)
        tensor = torch.tensor([[b.x0, b.y0, b.x1, b.y1] for b in boxes], dtype=torch.float32)
        out.append(DetectionSample(image, tensor.reshape(-1, 4)))
    return out


def fit_detector(
    data_root: Path,
    cfg: Any,
    annotations: Path | None,
    s: DetectorSettings,
    out: Path,
    *,
    force: bool = False,
    say: Callable[[str], None] = print,
) -> DetectorReport:
    """Train on the `train` split, score on `test` (else `val`), write `out`;
    `annotations` defaults to DATASET/lesions.csv."""
    from shared.data.layout import present_splits, resolve_dataset_dir

    s.check()
    if Path(out).exists() and not force:
        raise UserError("already exists; pass --force or another --out", path=out)
    folder = resolve_dataset_dir(Path(data_root), cfg.dataset.name)
    annotations = annotations or folder / "lesions.csv"
    if not annotations.is_file():
        raise UserError(
            "no lesion box annotations; pass --annotations FILE (image,x0,y0,x1,y1[,kind])",
            path=annotations,
        )
    start = time.perf_counter()
    train = load_samples(data_root, cfg, "train", annotations)
    say(
        f"detector: {len(train)} training images, "
        f"{sum(len(x.boxes) for x in train)} lesion boxes, input {s.input_size} px"
    )
    model, history = train_detector(
        train, s, on_epoch=lambda e, loss: say(f"epoch {e}/{s.epochs}: loss {loss:.4f}")
    )
    present = present_splits(resolve_dataset_dir(Path(data_root), cfg.dataset.name))
    held = next((x for x in ("test", "val") if x in present), "train")
    report = score_detector(model, load_samples(data_root, cfg, held, annotations), s)
    report.history = history
    report.seconds = time.perf_counter() - start
    save_detector(
        out,
        model,
        s,
        {
            "scored_on": held,
            "recall": report.recall,
            "precision": report.precision,
        },
    )
    return report
