"""Site partitions: every sample in exactly one site, the scheme's shape, linked files,
and a clear error (with nothing written) when a site would be empty."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from shared.config import preset
from shared.data.dataset import open_split
from shared.data.splits import parse_split
from shared.data.synth import synthesize
from shared.errors import UserError
from simulations.site_partition import parse_scheme, partition, read_table


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("part")
    out = {}
    for name, n in (("EYEQ", 300), ("IQAD_CXR", 120), ("IQAD_CT", 80)):
        synthesize(name, n, 32, base / name, seed=1)
        out[name] = base / name
    return out


def _rows(folder: Path) -> dict[str, list[tuple[str, int, int]]]:
    return {
        s: [(r.name, r.diagnosis, r.quality) for r in parse_split(folder / f"{s}.txt")]
        for s in ("train", "val", "test")
        if (folder / f"{s}.txt").is_file()
    }


@pytest.mark.parametrize("scheme", ["iid", "dirichlet-label:0.5", "dirichlet-quality:0.5"])
def test_every_sample_exactly_once(roots: dict[str, Path], tmp_path: Path, scheme: str) -> None:
    sites = partition(roots["EYEQ"], "EYEQ", 3, scheme, tmp_path / "out", seed=2)
    assert sites == [tmp_path / "out" / f"site_{k}" / "EYEQ" for k in range(3)]
    original = _rows(roots["EYEQ"] / "EYEQ")
    for split, rows in original.items():
        union = [row for s in sites for row in _rows(s)[split]]
        assert Counter(union) == Counter(rows)
    for s in sites:
        link = next((s / "Images").iterdir())
        assert link.is_symlink() and link.resolve().is_file()
        cfg = preset("EYEQ")
        cfg.image_size = 32
        assert len(open_split(s.parent, cfg, "train")) > 0
    table = read_table(tmp_path / "out")
    assert sum(int(c.sum()) for site in table.values() for c in site.values()) == sum(
        len(r) for r in original.values()
    )


def test_iid_sites_look_alike(roots: dict[str, Path], tmp_path: Path) -> None:
    partition(roots["EYEQ"], "EYEQ", 3, "iid", tmp_path / "out", seed=0)
    table = read_table(tmp_path / "out")
    sizes = [int(t["train"].sum()) for t in table.values()]
    assert max(sizes) - min(sizes) <= 9  # one per (diagnosis, quality) class at most
    shares = np.array([t["train"].sum(1) / t["train"].sum() for t in table.values()])
    assert np.ptp(shares, axis=0).max() < 0.1


def test_dirichlet_alpha_controls_skew(roots: dict[str, Path], tmp_path: Path) -> None:
    def spread(alpha: float, key: int) -> float:
        kind = "label" if key == 1 else "quality"
        out = tmp_path / f"{kind}{alpha}"
        partition(roots["EYEQ"], "EYEQ", 3, f"dirichlet-{kind}:{alpha}", out, seed=4)
        table = read_table(out)
        mix = np.array([t["train"].sum(key) / t["train"].sum() for t in table.values()])
        return float(np.abs(mix - mix.mean(0)).mean())

    assert spread(0.3, 1) > spread(100.0, 1)
    assert spread(0.3, 0) > spread(100.0, 0)


def test_source_scheme_keeps_children_and_adults_apart(
    roots: dict[str, Path], tmp_path: Path
) -> None:
    sites = partition(roots["IQAD_CXR"], "IQAD_CXR", 4, "source", tmp_path / "cxr", seed=0)
    cfg = preset("IQAD_CXR").dataset
    adult = cfg.quality_names.index("LQ-A")
    kinds = []
    for s in sites:
        qualities = {q for rows in _rows(s).values() for _, _, q in rows}
        lq_a_code = 2  # file code of LQ-A
        kinds.append("adult" if qualities == {lq_a_code} else "child")
        assert qualities == {lq_a_code} or lq_a_code not in qualities
        assert (s / "sources.csv").is_file()
    assert sorted(kinds) == ["adult", "adult", "child", "child"] and adult == 2
    ct_sites = partition(roots["IQAD_CT"], "IQAD_CT", 2, "source", tmp_path / "ct", seed=0)
    assert [{q for rows in _rows(s).values() for _, _, q in rows} for s in ct_sites] in (
        [{0}, {1}],
        [{1}, {0}],
    )
    # without sources.csv the two CT releases are told apart by their quality label
    bare = tmp_path / "bare"
    shutil.copytree(roots["IQAD_CT"], bare, symlinks=True)
    (bare / "IQAD_CT" / "sources.csv").unlink()
    again = partition(bare, "IQAD_CT", 2, "source", tmp_path / "ct2", seed=0)
    assert [_rows(s) for s in again] == [_rows(s) for s in ct_sites]


def test_errors_leave_nothing_behind(roots: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(UserError, match="site .* has no samples"):
        partition(roots["IQAD_CT"], "IQAD_CT", 40, "iid", out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="at least that many sites"):
        partition(roots["IQAD_CXR"], "IQAD_CXR", 1, "source", out)
    with pytest.raises(UserError, match="no natural sources"):
        partition(roots["EYEQ"], "EYEQ", 2, "source", out)
    with pytest.raises(UserError, match="unknown scheme"):
        parse_scheme("random")
    with pytest.raises(UserError, match="ALPHA must be a positive number"):
        parse_scheme("dirichlet-label:-1")
    assert not out.exists()
