"""Synthetic IQAD datasets in the authors' layout, for every test and the default run.

`synthesize` draws a clean image per sample (fundus, OCTA, CT or CXR by dataset), then
turns the LQ ones into low-quality images with the degradation library. Degradations are
chosen so quality matters for diagnosis: every LQ image gets at least one artefact that
hides lesions or looks like one (spots, shadows, low signal, down-sampling). Each image
has its own random stream derived from (seed, index), so output does not depend on the
number of worker processes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.config import DatasetConfig, preset
from shared.data.degradations import degrade
from shared.data.labels import five_grade_of, joint_label
from shared.data.layout import IMAGES, split_path, staged_dir
from shared.data.mix import class_counts
from shared.data.splits import SplitRow, file_row, stratified_assign, write_split
from shared.data.synth import ct, cxr, fundus, octa
from shared.data.synth.draw import Lesion
from shared.errors import UserError

GENERATOR_VERSION = 1


@dataclass(frozen=True)
class QualityStyle:
    """How one quality level looks: degradation severity range and anatomy variant."""

    severity: tuple[float, float] | None
    anatomy: str = "child"
    source: str = ""


STYLES: dict[str, dict[str, QualityStyle]] = {
    "EYEQ": {
        "HQ": QualityStyle(None),
        "LQ-U": QualityStyle((0.3, 0.6)),
        "LQ-P": QualityStyle((0.65, 1.0)),
    },
    "DEEPDR": {"HQ": QualityStyle(None), "LQ": QualityStyle((0.35, 0.95))},
    "DRAC": {"HQ": QualityStyle(None), "LQ": QualityStyle((0.4, 0.95))},
    "IQAD_CT": {
        "HQ": QualityStyle(None, source="sars-cov-2-ct"),
        "LQ": QualityStyle((0.35, 0.9), source="covid-ct"),
    },
    "IQAD_CXR": {
        "HQ": QualityStyle(None, "child", "child"),
        "LQ-C": QualityStyle((0.3, 0.75), "child", "child"),
        "LQ-A": QualityStyle((0.3, 0.75), "adult", "adult"),
    },
}


@dataclass(frozen=True)
class Task:
    index: int
    name: str
    diagnosis: int  # three-grade / class index
    quality: int  # canonical
    seed: int
    size: int
    out_dir: str


def render_sample(
    cfg: DatasetConfig, diagnosis: int, quality: int, seed: int, index: int, size: int
) -> tuple[np.ndarray, list[Lesion], int, str]:
    """One synthetic image: (uint8 image, lesions, file diagnosis label, source)."""
    rng = np.random.default_rng([seed, index])
    style = STYLES[cfg.name][cfg.quality_names[quality]]
    file_dx = diagnosis
    if cfg.modality == "fundus":
        rank = int(rng.choice([1, 2, 3], p=[0.3, 0.5, 0.2]))
        grade = five_grade_of(diagnosis, rank)
        file_dx = grade if cfg.five_grade_dr else diagnosis
        image, lesions = fundus.render(rng, size, grade)
    elif cfg.modality == "octa":
        image, lesions = octa.render(rng, size, diagnosis)
    elif cfg.modality == "ct":
        image, lesions = ct.render(rng, size, diagnosis)
    else:
        image, lesions = cxr.render(rng, size, diagnosis, style.anatomy)
    if style.severity is not None:
        lo, hi = style.severity
        image, _ = degrade(image, cfg.modality, rng.uniform(lo, hi), rng)
    return image, lesions, file_dx, style.source


def _work(args: tuple[DatasetConfig, Task]) -> tuple[int, int, list[Lesion], str]:
    cfg, t = args
    image, lesions, file_dx, source = render_sample(
        cfg, t.diagnosis, t.quality, t.seed, t.index, t.size
    )
    Image.fromarray(image).save(os.path.join(t.out_dir, t.name), compress_level=1)
    return t.index, file_dx, lesions, source


def _labels(
    cfg: DatasetConfig, n: int, lq_ratio: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    counts = class_counts(cfg, n, lq_ratio)
    d = np.repeat(np.repeat(np.arange(cfg.num_diagnosis), cfg.num_quality), counts.ravel())
    q = np.repeat(np.tile(np.arange(cfg.num_quality), cfg.num_diagnosis), counts.ravel())
    order = np.random.default_rng([seed, 1]).permutation(n)
    return d[order], q[order], counts


def synthesize(
    like: str,
    n: int,
    image_size: int,
    out: Path,
    seed: int = 0,
    lq_ratio: float | None = None,
    workers: int | None = None,
    force: bool = False,
) -> Path:
    """Write OUT/NAME with n synthetic images like dataset NAME; returns OUT/NAME.

    The diagnosis x quality mix follows Table 1 (or keeps Table 1's diagnosis mix with
    `lq_ratio` of the images low quality); splits follow the dataset's protocol.
    """
    cfg = preset(like).dataset
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    if image_size < 16:
        raise UserError(f"--image-size must be at least 16, got {image_size}")
    if lq_ratio is not None and not 0.0 <= lq_ratio <= 1.0:
        raise UserError(f"--lq-ratio must be between 0 and 1, got {lq_ratio}")
    target = Path(out) / cfg.name
    diag, qual, counts = _labels(cfg, n, lq_ratio, seed)
    width = max(6, len(str(n - 1)))
    names = [f"syn_{i:0{width}d}.png" for i in range(n)]
    with staged_dir(target, force=force) as stage:
        (stage / IMAGES).mkdir()
        tasks = [
            (
                cfg,
                Task(
                    i, names[i], int(diag[i]), int(qual[i]), seed, image_size, str(stage / IMAGES)
                ),
            )
            for i in range(n)
        ]
        workers = (
            workers if workers is not None else (min(os.cpu_count() or 1, 8) if n >= 256 else 1)
        )
        if workers > 1:
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                results = pool.map(_work, tasks, chunksize=max(1, n // (workers * 8)))
        else:
            results = [_work(t) for t in tasks]
        results.sort(key=lambda r: r[0])
        _write_tables(stage, cfg, names, diag, qual, results, seed)
        meta = {
            "like": cfg.name,
            "n": n,
            "image_size": image_size,
            "seed": seed,
            "lq_ratio": lq_ratio,
            "generator_version": GENERATOR_VERSION,
            "counts": {
                f"{cfg.diagnosis_names[d]}/{cfg.quality_names[q]}": int(counts[d, q])
                for d in range(cfg.num_diagnosis)
                for q in range(cfg.num_quality)
            },
        }
        (stage / "synth.json").write_text(json.dumps(meta, indent=2) + "\n")
    return target


def _write_tables(
    stage: Path,
    cfg: DatasetConfig,
    names: list[str],
    diag: np.ndarray,
    qual: np.ndarray,
    results: list,
    seed: int,
) -> None:
    joint = [
        joint_label(int(d), int(q), cfg.num_diagnosis) for d, q in zip(diag, qual, strict=True)
    ]
    split_of = stratified_assign(joint, cfg.split_fractions, seed)
    rows: dict[int, list[SplitRow]] = {k: [] for k in range(len(cfg.splits))}
    lesion_lines = ["image,x0,y0,x1,y1,kind"]
    source_lines = ["image,source"]
    for (index, file_dx, lesions, source), split in zip(results, split_of, strict=True):
        rel = f"{IMAGES}/{names[index]}"
        rows[split].append(file_row(rel, file_dx, int(qual[index]), cfg))
        lesion_lines += [f"{rel},{les.x0},{les.y0},{les.x1},{les.y1},{les.kind}" for les in lesions]
        if source:
            source_lines.append(f"{rel},{source}")
    for k, split in enumerate(cfg.splits):
        write_split(split_path(stage, split), rows[k])
    (stage / "lesions.csv").write_text("\n".join(lesion_lines) + "\n")
    if len(source_lines) > 1:
        (stage / "sources.csv").write_text("\n".join(source_lines) + "\n")
