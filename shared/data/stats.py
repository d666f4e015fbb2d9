"""Images per diagnosis x quality class, per split: the view of Table 1 in the MKCNet
paper, for any dataset folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.config import DatasetConfig
from shared.data.layout import present_splits, split_path
from shared.data.splits import SampleRecord, read_split
from shared.errors import UserError


def count_matrix(records: list[SampleRecord], cfg: DatasetConfig) -> np.ndarray:
    """[D, Q] counts, canonical quality order."""
    table = np.zeros((cfg.num_diagnosis, cfg.num_quality), dtype=np.int64)
    for r in records:
        table[r.diagnosis, r.quality] += 1
    return table


def split_counts(folder: Path, cfg: DatasetConfig) -> dict[str, np.ndarray]:
    """Counts per split present in the folder (split files must be valid)."""
    splits = present_splits(folder)
    if not splits:
        raise UserError("no split files (train.txt, val.txt, test.txt) here", path=folder)
    return {s: count_matrix(read_split(split_path(folder, s), cfg), cfg) for s in splits}
