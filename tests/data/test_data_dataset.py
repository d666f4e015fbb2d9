"""open_split: items, layout spellings, missing splits and images, and the memmap cache."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from shared.config import preset
from shared.data import cache as cache_module
from shared.data.dataset import make_loader, open_split
from shared.data.synth import synthesize
from shared.errors import UserError
from tests.support.files import write_image, write_split


@pytest.fixture(scope="module")
def eyeq_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("syn")
    synthesize("EYEQ", 40, 32, root, seed=0)
    return root


def _cfg(name: str = "EYEQ", size: int = 32):
    cfg = preset(name)
    cfg.image_size = size
    return cfg


def test_items(eyeq_root: Path) -> None:
    cfg = _cfg()
    ds = open_split(eyeq_root, cfg, "train")
    x, d, q, j = ds[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert d.dtype == q.dtype == j.dtype == torch.int64
    assert int(j) == int(q) * 3 + int(d)
    assert len(ds.records) == len(ds) and ds.records[0].image.is_file()
    raw = ds.image_uint8(0).float() / 255
    mean = torch.tensor(cfg.dataset.norm_mean).view(3, 1, 1)
    std = torch.tensor(cfg.dataset.norm_std).view(3, 1, 1)
    assert torch.allclose(x, (raw - mean) / std, atol=1e-5)
    aug = open_split(eyeq_root, cfg, "train", augment=True)[0][0]
    assert aug.shape == x.shape
    loader = make_loader(ds, cfg, train=True, batch_size=8)
    xb, db, qb, jb = next(iter(loader))
    assert xb.shape == (8, 3, 32, 32) and db.shape == (8,)


def test_authors_folder_spelling_and_dataset_folder_as_root(tmp_path: Path) -> None:
    synthesize("IQAD_CT", 12, 32, tmp_path, seed=1)
    (tmp_path / "IQAD_CT").rename(tmp_path / "IQAD-CT")
    cfg = _cfg("IQAD_CT")
    assert len(open_split(tmp_path, cfg, "train")) > 0
    assert len(open_split(tmp_path / "IQAD-CT", cfg, "train")) > 0
    with pytest.raises(UserError, match="no dataset folder IQAD_CT or IQAD-CT"):
        open_split(tmp_path / "IQAD-CT" / "Images", cfg, "train")


def test_split_not_in_protocol(tmp_path: Path) -> None:
    synthesize("DRAC", 10, 32, tmp_path, seed=0)
    with pytest.raises(UserError, match="DRAC has no 'val' split"):
        open_split(tmp_path, _cfg("DRAC"), "val")


def test_missing_image_and_empty_split(tmp_path: Path) -> None:
    folder = tmp_path / "EYEQ"
    write_image(folder / "Images" / "a.png", "RGB", 20)
    split = write_split(folder / "train.txt", ["Images/a.png,0,0", "Images/gone.png,1,0"])
    with pytest.raises(UserError) as err:
        open_split(tmp_path, _cfg(), "train")
    assert err.value.path == split and err.value.line == 3
    assert "gone.png does not exist" in str(err.value)
    write_split(folder / "train.txt", [])
    with pytest.raises(UserError, match="empty dataset"):
        open_split(tmp_path, _cfg(), "train")


def test_cache_serves_second_pass_and_notices_changed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "EYEQ"
    for i in range(3):
        write_image(folder / "Images" / f"{i}.png", "RGB", 20, seed=i)
    write_split(folder / "train.txt", [f"Images/{i}.png,0,0" for i in range(3)])
    cache_dir = tmp_path / "cache"
    first = open_split(tmp_path, _cfg(), "train", cache_dir=cache_dir)
    a = [first[i][0] for i in range(3)]
    assert first.cache.cached_fraction() == 1.0
    calls = []
    real = cache_module.decode
    monkeypatch.setattr(cache_module, "decode", lambda *a, **k: calls.append(a) or real(*a, **k))
    second = open_split(tmp_path, _cfg(), "train", cache_dir=cache_dir)
    b = [second[i][0] for i in range(3)]
    assert calls == [] and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    time.sleep(0.01)
    write_image(folder / "Images" / "1.png", "RGB", 20, seed=99)
    os.utime(folder / "Images" / "1.png", ns=(time.time_ns(), time.time_ns()))
    third = open_split(tmp_path, _cfg(), "train", cache_dir=cache_dir)
    c = third[1][0]
    assert len(calls) == 1 and not torch.equal(c, a[1])
    assert torch.equal(third[0][0], a[0])


def test_cache_shared_with_loader_workers(eyeq_root: Path, tmp_path: Path) -> None:
    cfg = _cfg()
    cfg.num_workers = 2
    ds = open_split(eyeq_root, cfg, "train", cache_dir=tmp_path)
    seen = sum(x.shape[0] for x, *_ in make_loader(ds, cfg, train=False, batch_size=4))
    assert seen == len(ds)
    assert ds.cache.cached_fraction() == 1.0  # rows filled by the workers, seen here


def test_unwritable_cache_falls_back_to_decoding(eyeq_root: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ds = open_split(eyeq_root, _cfg(), "train", cache_dir=blocker / "sub")
    assert not ds.cache.enabled
    assert ds[0][0].shape == (3, 32, 32)


@pytest.mark.parametrize("workers", [0, 2])
def test_corrupt_image_met_while_loading_is_one_line(tmp_path: Path, workers: int) -> None:
    folder = tmp_path / "EYEQ"
    write_image(folder / "Images" / "a.png", "RGB", 20)
    (folder / "Images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\ntruncated")
    write_split(folder / "train.txt", ["Images/a.png,0,0", "Images/b.png,1,0"])
    cfg = _cfg()
    cfg.num_workers = workers
    ds = open_split(tmp_path, cfg, "train")
    with pytest.raises(UserError) as err:
        for _ in make_loader(ds, cfg, train=False, batch_size=2):
            pass
    text = str(err.value)
    assert "\n" not in text and "b.png" in text and "cannot read image" in text
    assert "line 3 of its split file" in text


def test_training_loader_never_yields_a_one_image_batch(eyeq_root: Path) -> None:
    cfg = _cfg()
    ds = open_split(eyeq_root, cfg, "train")
    size = len(ds) - 1  # leaves exactly one image over
    sizes = [len(b[0]) for b in make_loader(ds, cfg, train=True, batch_size=size)]
    assert sizes == [size]  # BatchNorm in training mode cannot take one image
    sizes = [len(b[0]) for b in make_loader(ds, cfg, train=False, batch_size=size)]
    assert sizes == [size, 1]  # evaluation keeps every image


def test_loader_feeds_a_gpu_with_workers_prefetch_and_pinned_memory(
    eyeq_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA (faked here: only the DataLoader's settings are checked) the loader gets
    persistent workers, prefetching and pinned memory; on the CPU it stays in-process."""
    cfg = _cfg()
    ds = open_split(eyeq_root, cfg, "train")
    cfg.device = "cpu"
    plain = make_loader(ds, cfg, train=True)
    assert (plain.num_workers, plain.pin_memory, plain.persistent_workers) == (0, False, False)
    cfg.device = "cuda"
    fed = make_loader(ds, cfg, train=True)
    cores = len(os.sched_getaffinity(0))
    assert fed.num_workers == min(8, cores) and fed.pin_memory and fed.persistent_workers
    assert fed.prefetch_factor == 4
    cfg.num_workers = 0  # an explicit setting wins
    assert make_loader(ds, cfg, train=True).num_workers == 0
    cfg.device, cfg.num_workers = "auto", None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert make_loader(ds, cfg, train=True).pin_memory  # auto on a GPU machine is CUDA
