"""Split one dataset into N hospital sites, each a dataset folder of its own.

`partition` writes OUT/site_k/NAME/{Images/, train.txt, val.txt, test.txt} for k = 0..N-1
with images symlinked (never copied), every split partitioned so each sample lands in
exactly one site, and OUT/partition.tsv, the per-site diagnosis x quality table.

Schemes:
- `iid`: each (diagnosis, quality) class dealt round-robin, so sites look alike.
- `dirichlet-label:ALPHA` / `dirichlet-quality:ALPHA`: per diagnosis (or quality) class,
  site shares drawn from Dirichlet(ALPHA); small ALPHA gives skewed sites. The same shares
  apply to every split, so a site's test set resembles its training set. Redrawn (up to
  100 times) until no site has an empty split.
- `source`: the dataset's natural sources (`sources.csv` when present; otherwise CT-IQAD's
  two releases and CXR-IQAD's children vs adults from the quality label); sources are
  assigned to sites round-robin and each source dealt iid among its sites.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.config import DatasetConfig, preset
from shared.data.labels import joint_label
from shared.data.layout import (
    link_file,
    present_splits,
    resolve_dataset_dir,
    split_path,
    staged_dir,
)
from shared.data.splits import SplitRow, apportion, interpret_row, parse_split, write_split
from shared.errors import UserError

SCHEMES = ("iid", "dirichlet-label:ALPHA", "dirichlet-quality:ALPHA", "source")
MAX_DRAWS = 100


@dataclass(frozen=True)
class Scheme:
    kind: str  # iid | dirichlet-label | dirichlet-quality | source
    alpha: float = 0.0


def parse_scheme(text: str) -> Scheme:
    """`iid`, `source`, `dirichlet-label:0.5` or `dirichlet-quality:0.5`."""
    kind, _, value = text.strip().partition(":")
    if kind in ("iid", "source") and not value:
        return Scheme(kind)
    if kind in ("dirichlet-label", "dirichlet-quality"):
        try:
            alpha = float(value)
        except ValueError:
            alpha = -1.0
        if alpha > 0:
            return Scheme(kind, alpha)
        raise UserError(f"scheme {text!r}: ALPHA must be a positive number, e.g. {kind}:0.5")
    raise UserError(f"unknown scheme {text!r}; choose one of {', '.join(SCHEMES)}")


@dataclass
class SplitData:
    path: Path
    rows: list[SplitRow]
    diagnosis: np.ndarray
    quality: np.ndarray
    joint: np.ndarray


def _load(folder: Path, cfg: DatasetConfig) -> dict[str, SplitData]:
    splits = present_splits(folder)
    if not splits:
        raise UserError("no split files (train.txt, val.txt, test.txt) here", path=folder)
    out = {}
    for split in splits:
        path = split_path(folder, split)
        rows = parse_split(path)
        if not rows:
            raise UserError("split file lists no images (empty dataset)", path=path)
        recs = [interpret_row(r, cfg, path) for r in rows]
        d = np.array([r.diagnosis for r in recs])
        q = np.array([r.quality for r in recs])
        out[split] = SplitData(path, rows, d, q, joint_label(d, q, cfg.num_diagnosis))
    return out


def _deal(
    indices: np.ndarray, sites: list[int], rng: np.random.Generator, assign: np.ndarray
) -> None:
    """Round-robin from a random starting site, after a shuffle."""
    idx = indices.copy()
    rng.shuffle(idx)
    offset = int(rng.integers(len(sites)))
    for j, i in enumerate(idx):
        assign[i] = sites[(j + offset) % len(sites)]


def _iid(data: SplitData, sites: list[int], rng: np.random.Generator, assign: np.ndarray) -> None:
    for c in np.unique(data.joint):
        _deal(np.flatnonzero(data.joint == c), sites, rng, assign)


def _sources(folder: Path, cfg: DatasetConfig, data: SplitData) -> list[str]:
    """Source of every row: sources.csv, else what the dataset's construction implies."""
    table = folder / "sources.csv"
    if table.is_file():
        with open(table, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image", "source"} <= set(reader.fieldnames):
                raise UserError("sources.csv needs columns image,source", path=table, line=1)
            mapping = {row["image"]: row["source"] for row in reader}
        missing = [r for r in data.rows if r.name not in mapping]
        if missing:
            raise UserError(
                f"{missing[0].name} has no source in sources.csv",
                path=data.path,
                line=missing[0].line,
            )
        return [mapping[r.name] for r in data.rows]
    if cfg.name == "IQAD_CT":
        return ["sars-cov-2-ct" if q == 0 else "covid-ct" for q in data.quality]
    if cfg.name == "IQAD_CXR":
        adult = cfg.quality_names.index("LQ-A")
        return ["adult" if q == adult else "child" for q in data.quality]
    raise UserError(
        f"{cfg.name} has no natural sources here (no sources.csv); use iid or "
        "dirichlet-label/-quality",
        path=folder,
    )


def _assign(
    folder: Path,
    cfg: DatasetConfig,
    data: dict[str, SplitData],
    n_sites: int,
    scheme: Scheme,
    seed: int,
) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    everyone = list(range(n_sites))
    out = {s: np.full(len(d.rows), -1) for s, d in data.items()}
    if scheme.kind == "iid":
        for split, d in data.items():
            _iid(d, everyone, rng, out[split])
    elif scheme.kind == "source":
        names = sorted({s for d in data.values() for s in _sources(folder, cfg, d)})
        if n_sites < len(names):
            raise UserError(
                f"{cfg.name} has {len(names)} sources ({', '.join(names)}); "
                f"scheme 'source' needs at least that many sites, got {n_sites}"
            )
        owners = {
            name: [k for k in everyone if k % len(names) == i] for i, name in enumerate(names)
        }
        for split, d in data.items():
            src = np.array(_sources(folder, cfg, d))
            for name in names:
                sub = np.flatnonzero(src == name)
                for c in np.unique(d.joint[sub]):
                    _deal(sub[d.joint[sub] == c], owners[name], rng, out[split])
    else:
        by_quality = scheme.kind == "dirichlet-quality"
        n_classes = cfg.num_quality if by_quality else cfg.num_diagnosis
        for _ in range(MAX_DRAWS):
            shares = rng.dirichlet(np.full(n_sites, scheme.alpha), size=n_classes)
            for split, d in data.items():
                key = d.quality if by_quality else d.diagnosis
                for c in range(n_classes):
                    idx = np.flatnonzero(key == c)
                    rng.shuffle(idx)
                    start = 0
                    for site, count in enumerate(apportion(len(idx), shares[c])):
                        out[split][idx[start : start + count]] = site
                        start += count
            if all(np.isin(everyone, a).all() for a in out.values()):
                break
    for split, a in out.items():
        empty = [k for k in everyone if not (a == k).any()]
        if empty:
            raise UserError(
                f"site {empty[0]} has no samples in {split} after partitioning "
                f"{len(a)} images with scheme {scheme.kind}"
                f"{':' + str(scheme.alpha) if scheme.alpha else ''}; use fewer "
                "sites or a larger ALPHA",
                path=data[split].path,
            )
    return out


def _subset_csv(src: Path, dst: Path, names: set[str]) -> None:
    if not src.is_file():
        return
    lines = src.read_text(encoding="utf-8").splitlines()
    if not lines:
        return
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.split(",", 1)[0] in names]
    dst.write_text("\n".join(keep) + "\n", encoding="utf-8")


def partition(
    data_root: Path,
    dataset: str,
    sites: int,
    scheme: str = "iid",
    out: Path = Path("sites"),
    seed: int = 0,
    force: bool = False,
) -> list[Path]:
    """Write one dataset folder per site under OUT; returns [OUT/site_k/NAME, ...]."""
    cfg = preset(dataset).dataset
    if sites < 1:
        raise UserError(f"--sites must be at least 1, got {sites}")
    parsed = parse_scheme(scheme)
    folder = resolve_dataset_dir(Path(data_root), cfg.name)
    data = _load(folder, cfg)
    assign = _assign(folder, cfg, data, sites, parsed, seed)
    out = Path(out)
    table_lines = ["site\tsplit\tdiagnosis\tquality\tcount"]
    with staged_dir(out, force=force) as stage:
        for k in range(sites):
            site_dir = stage / f"site_{k}" / cfg.name
            names: set[str] = set()
            for split, d in data.items():
                rows = [r for r, a in zip(d.rows, assign[split], strict=True) if a == k]
                for r in rows:
                    dst = site_dir / r.name
                    if r.name not in names and not dst.exists():
                        link_file(folder / r.name, dst)
                    names.add(r.name)
                write_split(split_path(site_dir, split), rows)
                counts = np.zeros((cfg.num_diagnosis, cfg.num_quality), dtype=np.int64)
                sel = assign[split] == k
                np.add.at(counts, (d.diagnosis[sel], d.quality[sel]), 1)
                for dx in range(cfg.num_diagnosis):
                    for q in range(cfg.num_quality):
                        table_lines.append(
                            f"site_{k}\t{split}\t{cfg.diagnosis_names[dx]}\t"
                            f"{cfg.quality_names[q]}\t{counts[dx, q]}"
                        )
            for extra in ("lesions.csv", "sources.csv"):
                _subset_csv(folder / extra, site_dir / extra, names)
        (stage / "partition.tsv").write_text("\n".join(table_lines) + "\n")
        meta = {
            "dataset": cfg.name,
            "source": str(folder.resolve()),
            "sites": sites,
            "scheme": scheme,
            "seed": seed,
        }
        (stage / "partition.json").write_text(json.dumps(meta, indent=2) + "\n")
    return [out / f"site_{k}" / cfg.name for k in range(sites)]


def read_table(out: Path) -> dict[str, dict[str, np.ndarray]]:
    """partition.tsv back as {site: {split: [D, Q] counts}} (names in file order)."""
    table: dict[str, dict[str, dict[tuple[str, str], int]]] = defaultdict(lambda: defaultdict(dict))
    path = Path(out) / "partition.tsv"
    with open(path, encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            site, split, d, q, c = line.rstrip("\n").split("\t")
            table[site][split][(d, q)] = int(c)
    result: dict[str, dict[str, np.ndarray]] = {}
    for site, splits in table.items():
        result[site] = {}
        for split, cells in splits.items():
            ds = list(dict.fromkeys(d for d, _ in cells))
            qs = list(dict.fromkeys(q for _, q in cells))
            result[site][split] = np.array([[cells[(d, q)] for q in qs] for d in ds])
    return result
