"""What every preparer shares: finding files in a release, and writing the authors' layout
(Images/, split files by the dataset's protocol, sources.csv) through a staging folder."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from shared.config import DatasetConfig
from shared.data.labels import joint_label
from shared.data.layout import IMAGES, link_file, split_path, staged_dir
from shared.data.splits import SplitRow, file_row, parse_split, stratified_assign, write_split
from shared.errors import UserError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp"}


@dataclass
class Entry:
    """One image of the prepared dataset."""

    name: str  # file name under Images/
    diagnosis_file: int  # as written in the split file (five-grade for EyeQ / DeepDR)
    diagnosis: int  # three-grade / class, for stratification
    quality: int  # canonical (0 = HQ)
    src: Path | None = None  # linked or copied as is
    pixels: np.ndarray | None = None  # or written from these pixels
    split: str | None = None  # official split, when the release has one
    source: str = ""


@dataclass
class Options:
    """Settings shared by all preparers (release-specific ones live in `extra`)."""

    seed: int = 0
    copy: bool = False
    force: bool = False
    allow_missing: bool = False
    splits_from: Path | None = None
    extra: dict[str, object] = field(default_factory=dict)


class FileIndex:
    """Every file under a release folder by lower-case basename and by stem."""

    def __init__(self, root: Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise UserError(
                "source folder not found; pass the folder where you unpacked the release",
                path=self.root,
            )
        self.by_name: dict[str, list[Path]] = defaultdict(list)
        self.by_stem: dict[str, list[Path]] = defaultdict(list)
        self.dirs: list[Path] = []
        for dirpath, dirnames, filenames in os.walk(self.root, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if d != "__MACOSX" and not d.startswith("."))
            self.dirs += [Path(dirpath) / d for d in dirnames]
            for f in sorted(filenames):
                if f.startswith("._"):
                    continue
                p = Path(dirpath) / f
                self.by_name[f.lower()].append(p)
                self.by_stem[Path(f).stem.lower()].append(p)

    def file(self, *names: str) -> Path | None:
        """The first file found with any of these names (case-insensitive)."""
        for n in names:
            hits = self.by_name.get(n.lower())
            if hits:
                return hits[0]
        return None

    def require(self, *names: str, what: str) -> Path:
        hit = self.file(*names)
        if hit is None:
            raise UserError(
                f"{what} not found: expected a file named {' or '.join(names)} "
                "somewhere under the source folder",
                path=self.root,
            )
        return hit

    def image(self, name: str, under: Path | None = None) -> Path | None:
        """An image by file name, else by stem with any image extension."""
        for table, key in ((self.by_name, name.lower()), (self.by_stem, Path(name).stem.lower())):
            for p in table.get(key, []):
                if p.suffix.lower() in IMAGE_SUFFIXES and (under is None or under in p.parents):
                    return p
        return None

    def directories(self, *names: str) -> list[Path]:
        wanted = {n.lower() for n in names}
        return [d for d in self.dirs if d.name.lower() in wanted]

    def images_in(self, folder: Path) -> list[Path]:
        return sorted(
            p
            for p in folder.iterdir()
            if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("._")
        )


def report_missing(missing: list[tuple[str, Path, int]], allow: bool) -> None:
    """Stop on the first image a label file lists but the release lacks (unless allowed)."""
    if missing and not allow:
        name, table, line = missing[0]
        raise UserError(
            f"image {name} listed here is not under the source folder "
            f"({len(missing)} missing in all; pass --allow-missing to skip them)",
            path=table,
            line=line,
        )


def _authors_splits(folder: Path) -> dict[str, tuple[str, str]]:
    """stem -> (split, image name as the authors wrote it)."""
    out: dict[str, tuple[str, str]] = {}
    for split in ("train", "val", "test"):
        path = split_path(folder, split)
        if path.is_file():
            for row in parse_split(path):
                out[Path(row.name).stem.lower()] = (split, row.name)
    if not out:
        raise UserError(
            "no split files (train.txt, val.txt, test.txt) in --splits-from", path=folder
        )
    return out


def write_dataset(
    cfg: DatasetConfig, entries: list[Entry], out_root: Path, opts: Options, meta: dict[str, object]
) -> Path:
    """Write OUT/NAME in the authors' layout; returns OUT/NAME."""
    if not entries:
        raise UserError("nothing to prepare: no labelled images were found in the source")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise UserError(
            f"two images would both be written as Images/{dup}; the release "
            "seems to be unpacked twice under the source folder"
        )
    rel_names = [f"{IMAGES}/{e.name}" for e in entries]
    split_names: list[str]
    if opts.splits_from is not None:
        authors = _authors_splits(Path(opts.splits_from))
        keep = [i for i, e in enumerate(entries) if Path(e.name).stem.lower() in authors]
        if not keep:
            raise UserError(
                "none of the prepared images appears in the --splits-from files",
                path=opts.splits_from,
            )
        entries = [entries[i] for i in keep]
        picked = [authors[Path(e.name).stem.lower()] for e in entries]
        split_names = [s for s, _ in picked]
        rel_names = [n for _, n in picked]
    elif all(e.split is not None for e in entries):
        split_names = [str(e.split) for e in entries]
    else:
        joint = [joint_label(e.diagnosis, e.quality, cfg.num_diagnosis) for e in entries]
        idx = stratified_assign(joint, cfg.split_fractions, opts.seed)
        split_names = [cfg.splits[i] for i in idx]
    target = Path(out_root) / cfg.name
    with staged_dir(target, force=opts.force) as stage:
        rows: dict[str, list[SplitRow]] = {s: [] for s in cfg.splits}
        sources = ["image,source"]
        for e, rel, split in zip(entries, rel_names, split_names, strict=True):
            dst = stage / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            if e.pixels is not None:
                Image.fromarray(e.pixels).save(dst, quality=95)  # quality: JPEG only
            else:
                assert e.src is not None
                link_file(e.src, dst, copy=opts.copy)
            rows.setdefault(split, []).append(file_row(rel, e.diagnosis_file, e.quality, cfg))
            if e.source:
                sources.append(f"{rel},{e.source}")
        for split, split_rows in rows.items():
            write_split(split_path(stage, split), split_rows)
        if len(sources) > 1:
            (stage / "sources.csv").write_text("\n".join(sources) + "\n", encoding="utf-8")
        counts = defaultdict(int)
        for e, split in zip(entries, split_names, strict=True):
            dx, q = cfg.diagnosis_names[e.diagnosis], cfg.quality_names[e.quality]
            counts[f"{split}/{dx}/{q}"] += 1
        meta = dict(meta, seed=opts.seed, images=len(entries), counts=dict(sorted(counts.items())))
        (stage / "prepare.json").write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return target


def sample(items: Iterable, k: int, rng: np.random.Generator) -> list:
    """k items at random (all when k <= 0 or k >= len), order kept."""
    items = list(items)
    if k <= 0 or k >= len(items):
        return items
    pick = sorted(rng.choice(len(items), size=k, replace=False).tolist())
    return [items[i] for i in pick]
