"""Test sets at a chosen LQ ratio (CoMCL's 33 % / 70 % / 100 % protocol), built by
degrading randomly chosen HQ images of an existing split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from shared.config import DatasetConfig, preset
from shared.data.degradations import degrade
from shared.data.images import _to_basic_mode
from shared.data.labels import quality_to_file
from shared.data.layout import IMAGES, find_dataset_dir, link_file, split_path, staged_dir
from shared.data.splits import SplitRow, interpret_row, parse_split, write_split
from shared.errors import UserError


def lq_quality_for(cfg: DatasetConfig, severity: float) -> int:
    """Canonical quality label of an HQ image degraded at `severity`."""
    names = cfg.quality_names
    if "LQ-U" in names and "LQ-P" in names:
        return names.index("LQ-U") if severity < 0.6 else names.index("LQ-P")
    if "LQ-C" in names:
        return names.index("LQ-C")  # HQ CXR images are children: low-dose child
    return 1


def _load_full(path: Path, channels: int) -> np.ndarray:
    try:
        with Image.open(path) as img:
            img.load()
            basic = _to_basic_mode(img)
            basic = basic.convert("RGB" if channels == 3 else "L")
            return np.asarray(basic, dtype=np.uint8).copy()
    except OSError as err:
        raise UserError(f"cannot read image ({err})", path=path) from None


def degrade_to_ratio(
    data_root: Path,
    dataset: str,
    split: str,
    ratio: float,
    out: Path,
    seed: int = 0,
    severity: tuple[float, float] = (0.4, 0.9),
    force: bool = False,
) -> Path:
    """Copy one split to OUT/NAME with HQ images degraded until `ratio` of it is LQ.

    CoMCL's protocol (33 % as published, then 70 % and 100 % LQ). Unchanged images are
    linked; degraded ones are written as PNG with their new quality label (EyeQ: LQ-U
    below severity 0.6, else LQ-P; CXR: LQ-C). Returns OUT/NAME.
    """
    cfg = preset(dataset).dataset
    if not 0.0 <= ratio <= 1.0:
        raise UserError(f"LQ ratio must be between 0 and 1, got {ratio}")
    folder = find_dataset_dir(Path(data_root), cfg.name)
    path = split_path(folder, split)
    rows = parse_split(path)
    if not rows:
        raise UserError("split file lists no images (empty dataset)", path=path)
    records = [interpret_row(r, cfg, path) for r in rows]
    hq = [i for i, r in enumerate(records) if r.quality == 0]
    have = len(rows) - len(hq)
    want = int(round(ratio * len(rows)))
    if want < have:
        raise UserError(
            f"{split} already has {have / len(rows):.1%} LQ images, more than "
            f"the requested {ratio:.1%}; only HQ images are degraded",
            path=path,
        )
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(hq, size=want - have, replace=False).tolist()) if want > have else set()
    target = Path(out) / cfg.name
    with staged_dir(target, force=force) as stage:
        new_rows: list[SplitRow] = []
        for i, (row, record) in enumerate(zip(rows, records, strict=True)):
            if i not in chosen:
                link_file(record.image, stage / row.name)
                new_rows.append(row)
                continue
            sev = float(rng.uniform(*severity))
            image, _ = degrade(_load_full(record.image, cfg.channels), cfg.modality, sev, rng)
            name = f"{IMAGES}/lq_{i:06d}_{Path(row.name).stem}.png"
            (stage / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(stage / name)
            q_file = quality_to_file(cfg.name, lq_quality_for(cfg, sev))
            new_rows.append(SplitRow(name, row.diagnosis, q_file, row.line))
        write_split(split_path(stage, split), new_rows)
    return target
