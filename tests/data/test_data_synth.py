"""Synthetic datasets: deterministic, the requested mix and protocol, lesion boxes, and
LQ images that differ measurably from HQ ones."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from shared.config import preset
from shared.data.layout import present_splits
from shared.data.mix import class_counts
from shared.data.stats import split_counts
from shared.data.synth import render_sample, synthesize
from shared.errors import UserError

NAMES = ["EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD_CXR"]


def _digest(folder: Path) -> str:
    h = hashlib.sha1()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != "synth.json":
            h.update(p.relative_to(folder).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


@pytest.mark.parametrize("name", NAMES)
def test_layout_mix_and_protocol(tmp_path: Path, name: str) -> None:
    n = 90
    folder = synthesize(name, n, 32, tmp_path, seed=3)
    cfg = preset(name).dataset
    assert folder == tmp_path / cfg.name
    assert present_splits(folder) == cfg.splits
    counts = split_counts(folder, cfg)
    total = sum(counts.values())
    assert (total == class_counts(cfg, n)).all()
    for split, frac in zip(cfg.splits, cfg.split_fractions, strict=True):
        assert abs(counts[split].sum() / n - frac) < 0.12
    images = sorted((folder / "Images").iterdir())
    assert len(images) == n
    with Image.open(images[0]) as img:
        assert img.size == (32, 32) and img.mode == ("RGB" if cfg.channels == 3 else "L")
    meta = json.loads((folder / "synth.json").read_text())
    assert meta["n"] == n and meta["like"] == cfg.name
    with open(folder / "lesions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and list(rows[0]) == ["image", "x0", "y0", "x1", "y1", "kind"]
    names = {f"Images/{p.name}" for p in images}
    for r in rows:
        assert r["image"] in names
        x0, y0, x1, y1 = (int(r[k]) for k in ("x0", "y0", "x1", "y1"))
        assert 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32
    if name in ("IQAD_CT", "IQAD_CXR"):
        assert (folder / "sources.csv").is_file()


def test_five_grade_labels_written_for_eyeq(tmp_path: Path) -> None:
    folder = synthesize("EYEQ", 120, 32, tmp_path)
    grades = {
        int(line.split(",")[1])
        for s in ("train", "val", "test")
        for line in (folder / f"{s}.txt").read_text().splitlines()[1:]
    }
    assert grades <= {0, 1, 2, 3, 4} and {1, 2, 3} & grades and 4 in grades


def test_deterministic_for_a_seed_whatever_the_workers(tmp_path: Path) -> None:
    a = _digest(synthesize("DRAC", 24, 32, tmp_path / "a", seed=5, workers=1))
    b = _digest(synthesize("DRAC", 24, 32, tmp_path / "b", seed=5, workers=2))
    c = _digest(synthesize("DRAC", 24, 32, tmp_path / "c", seed=6, workers=1))
    assert a == b != c


def test_lq_ratio(tmp_path: Path) -> None:
    cfg = preset("EYEQ").dataset
    for ratio in (0.0, 0.7, 1.0):
        folder = synthesize("EYEQ", 100, 32, tmp_path / str(ratio), lq_ratio=ratio)
        total = sum(split_counts(folder, cfg).values())
        lq = total[:, 1:].sum() / total.sum()
        assert abs(lq - ratio) <= 0.05, (ratio, lq)


@pytest.mark.parametrize("name", NAMES)
def test_lq_images_differ_measurably_from_hq(name: str) -> None:
    """Same scene, HQ vs each LQ level: the LQ rendering is far from the clean one, and
    fine detail (mean absolute Laplacian) changes."""
    cfg = preset(name).dataset
    for q in range(1, cfg.num_quality):
        diffs, detail_hq, detail_lq = [], [], []
        for i in range(12):
            d = i % cfg.num_diagnosis
            hq = render_sample(cfg, d, 0, 0, i, 48)[0].astype(float)
            lq = render_sample(cfg, d, q, 0, i, 48)[0].astype(float)
            if hq.shape == lq.shape and cfg.quality_names[q] != "LQ-A":
                diffs.append(np.abs(hq - lq).mean())
            for img, acc in ((hq, detail_hq), (lq, detail_lq)):
                g = img.mean(-1) if img.ndim == 3 else img
                lap = np.abs(
                    4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
                )
                acc.append(lap.mean())
        if diffs:
            assert np.median(diffs) > 8.0, (name, q, diffs)
        assert abs(np.mean(detail_lq) - np.mean(detail_hq)) > 2.0


def test_bad_arguments_leave_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown dataset"):
        synthesize("MNIST", 10, 32, tmp_path)
    with pytest.raises(UserError, match="--lq-ratio"):
        synthesize("EYEQ", 10, 32, tmp_path, lq_ratio=1.5)
    synthesize("EYEQ", 10, 32, tmp_path)
    with pytest.raises(UserError, match="already exists"):
        synthesize("EYEQ", 10, 32, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["EYEQ"]
