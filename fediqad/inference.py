"""`fediqad predict`: image files in, one CSV row of class names and probabilities out."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from pathlib import Path

import torch

from shared.checkpoint import Checkpoint
from shared.config import RunConfig
from shared.data.images import load_image, normalise
from shared.errors import UserError


def _name(names: list[str], index: int) -> str:
    return names[index] if index < len(names) else str(index)


def header(cfg: RunConfig, has_quality: bool) -> list[str]:
    ds = cfg.dataset
    cols = ["image", "diagnosis", "quality"]
    cols += [f"prob_diagnosis_{k}" for k in range(ds.num_diagnosis)]
    if has_quality:
        cols += [f"prob_quality_{k}" for k in range(ds.num_quality)]
    return cols


def _load(path: Path, cfg: RunConfig) -> torch.Tensor:
    if path.is_dir():
        raise UserError("is a folder; pass image files", path=path)
    # load_image names the file for missing, unreadable or wrong-channel images
    return normalise(load_image(path, cfg.dataset.channels, cfg.image_size), cfg)


@torch.no_grad()
def predict_rows(
    ck: Checkpoint, images: Sequence[Path], device: torch.device, batch_size: int = 16
) -> tuple[list[str], list[list[str]]]:
    """CSV header and rows; every image is decoded before any model work, so a bad file
    fails fast and names itself."""
    cfg = ck.cfg
    tensors = [_load(Path(p), cfg) for p in images]
    net = ck.bundle.task_net.to(device).eval()
    ds = cfg.dataset
    rows: list[list[str]] = []
    has_quality = True
    for start in range(0, len(tensors), batch_size):
        batch = torch.stack(tensors[start : start + batch_size]).to(device)
        out = net(batch)
        p_d = torch.softmax(out.diagnosis.float(), 1).cpu()
        p_q = torch.softmax(out.quality.float(), 1).cpu() if out.quality is not None else None
        has_quality = p_q is not None
        for i in range(len(batch)):
            row = [str(images[start + i]), _name(ds.diagnosis_names, int(p_d[i].argmax()))]
            row.append(_name(ds.quality_names, int(p_q[i].argmax())) if p_q is not None else "")
            row += [f"{v:.6f}" for v in p_d[i].tolist()]
            if p_q is not None:
                row += [f"{v:.6f}" for v in p_q[i].tolist()]
            rows.append(row)
    return header(cfg, has_quality), rows


def to_csv(head: list[str], rows: list[list[str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(head)
    writer.writerows(rows)
    return buffer.getvalue()
