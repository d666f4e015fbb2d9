"""CXR-IQAD = pediatric chest X-rays (Kermany et al. 2018; `chest_xray/{train,test,val}/
{NORMAL,PNEUMONIA}`) + NIH ChestX-ray14 adults (`Data_Entry_2017.csv` or
`Data_Entry_2017_v2020.csv`: `Image Index`, `Finding Labels`, `Patient Age`).

Bicubic down-sampling by `downsample` (default 4) simulates low dose. Half of each
child class stays HQ, the other half becomes LQ-C; adults are LQ-A: all images whose
findings include Pneumonia and `cxr14_normal` (default 1000, Table 1) "No Finding"
images, optionally only patients aged >= `min_adult_age` (default 0, as the paper's
1431 pneumonia images include every age). Protocol: random 70/10/20."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from shared.config import preset
from shared.data.images import _to_basic_mode
from shared.data.prepare.build import Entry, FileIndex, Options, sample, write_dataset
from shared.data.prepare.tables import read_csv
from shared.errors import UserError

HQ, LQ_C, LQ_A = 0, 1, 2


def low_dose(path: Path, factor: int) -> np.ndarray:
    """Grey pixels of `path`, bicubic down-sampled by `factor`."""
    try:
        with Image.open(path) as img:
            img.load()
            grey = _to_basic_mode(img).convert("L")
    except OSError as err:
        raise UserError(f"cannot read image ({err})", path=path) from None
    size = (max(1, grey.width // factor), max(1, grey.height // factor))
    return np.asarray(grey.resize(size, Image.Resampling.BICUBIC))


def _children(index: FileIndex, rng: np.random.Generator, factor: int) -> list[Entry]:
    entries: list[Entry] = []
    seen: set[str] = set()
    for folder, diagnosis in (("normal", 0), ("pneumonia", 1)):
        images = [p for d in index.directories(folder) for p in index.images_in(d)]
        unique = []
        for p in images:  # Kaggle's copy nests the release twice
            if p.name.lower() not in seen:
                seen.add(p.name.lower())
                unique.append(p)
        if not unique:
            raise UserError(
                f"pediatric CXR folder {folder.upper()!r} (chest_xray/*/"
                f"{folder.upper()}) not found under the source folder",
                path=index.root,
            )
        order = rng.permutation(len(unique))
        half = set(order[: len(unique) // 2].tolist())
        for i, p in enumerate(unique):
            if i in half:
                entries.append(
                    Entry(p.name, diagnosis, diagnosis, HQ, src=p, source="kermany-child")
                )
            else:
                entries.append(
                    Entry(
                        p.name,
                        diagnosis,
                        diagnosis,
                        LQ_C,
                        pixels=low_dose(p, factor),
                        source="kermany-child",
                    )
                )
    return entries


def _adults(
    index: FileIndex, rng: np.random.Generator, factor: int, n_normal: int, min_age: int
) -> list[Entry]:
    table = index.require(
        "Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv", what="NIH ChestX-ray14 label file"
    )
    normal, pneumonia = [], []
    for _line, row in read_csv(table, ["Image Index", "Finding Labels"]):
        age_text = "".join(ch for ch in row.get("Patient Age", "") if ch.isdigit())
        if min_age and age_text and int(age_text) < min_age:
            continue
        findings = {f.strip().lower() for f in row["Finding Labels"].split("|")}
        image = index.image(row["Image Index"])
        if image is None:
            continue  # users often download a few of the twelve image archives
        if "pneumonia" in findings:
            pneumonia.append(image)
        elif findings == {"no finding"}:
            normal.append(image)
    if not pneumonia and not normal:
        raise UserError(
            "no ChestX-ray14 image listed here was found under the source folder", path=table
        )
    picked = [(p, 0) for p in sample(normal, n_normal, rng)] + [(p, 1) for p in pneumonia]
    return [
        Entry(p.name, d, d, LQ_A, pixels=low_dose(p, factor), source="cxr14-adult")
        for p, d in picked
    ]


def prepare(source: Path, out: Path, opts: Options) -> Path:
    cfg = preset("IQAD_CXR").dataset
    index = FileIndex(source)
    factor = int(opts.extra.get("downsample", 4))  # type: ignore[call-overload]
    n_normal = int(opts.extra.get("cxr14_normal", 1000))  # type: ignore[call-overload]
    min_age = int(opts.extra.get("min_adult_age", 0))  # type: ignore[call-overload]
    if factor < 1:
        raise UserError(f"--downsample must be at least 1, got {factor}")
    rng = np.random.default_rng(opts.seed)
    entries = _children(index, rng, factor) + _adults(index, rng, factor, n_normal, min_age)
    return write_dataset(
        cfg,
        entries,
        out,
        opts,
        {
            "from": "kermany+cxr14",
            "source": str(source),
            "downsample": factor,
            "cxr14_normal": n_normal,
            "min_adult_age": min_age,
        },
    )
