"""The torch Dataset over one split of one dataset folder, and its DataLoader."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from shared.config import RunConfig
from shared.data.cache import ImageCache, file_stamps
from shared.data.images import normalise
from shared.data.labels import joint_label
from shared.data.layout import resolve_dataset_dir, split_path
from shared.data.splits import SampleRecord, read_split
from shared.errors import UserError

Item = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class DataError(UserError):
    """An unreadable image met while loading.

    DataLoader workers re-raise exceptions as `type(err)(long multi-line text)`; this class
    recovers its original one-line message from that text so the CLI still prints one line.
    """

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None):
        marker = f"{type(self).__name__}: "
        if message.startswith("Caught ") and marker in message:
            message = message.rstrip().splitlines()[-1].split(marker, 1)[1]
        super().__init__(message, path=path, line=line)


class IQADDataset(Dataset):
    """Items are (image float32 [C,S,S] normalised, diagnosis, quality, joint) tensors."""

    def __init__(
        self,
        records: list[SampleRecord],
        cfg: RunConfig,
        augment: bool = False,
        cache: bool = True,
        cache_dir: Path | None = None,
        stamps: np.ndarray | None = None,
    ):
        self.records = records
        self.cfg = cfg
        self.augment = augment
        ds = cfg.dataset
        self.channels = ds.channels
        self.size = cfg.image_size
        self.diagnosis = torch.tensor([r.diagnosis for r in records], dtype=torch.int64)
        self.quality = torch.tensor([r.quality for r in records], dtype=torch.int64)
        self.joint = torch.tensor(
            [joint_label(r.diagnosis, r.quality, ds.num_diagnosis) for r in records],
            dtype=torch.int64,
        )
        self._mean = torch.tensor(ds.norm_mean, dtype=torch.float32).view(-1, 1, 1)
        self._std = torch.tensor(ds.norm_std, dtype=torch.float32).view(-1, 1, 1)
        paths = [r.image for r in records]
        self.cache = ImageCache(paths, self.channels, self.size, cache_dir, stamps)
        if not cache:
            self.cache.enabled = False

    def __len__(self) -> int:
        return len(self.records)

    def image_uint8(self, index: int) -> torch.Tensor:
        """The decoded, resized image before augmentation and normalisation."""
        return torch.from_numpy(self.cache.get(index))

    def __getitem__(self, index: int) -> Item:
        try:
            img = self.image_uint8(index)
        except UserError as err:
            where = f" (listed at line {self.records[index].line} of its split file)"
            raise DataError(f"{err}{where}") from None
        if self.augment:
            from shared.data.augment import augment_uint8

            img = augment_uint8(img)
        x = img.to(torch.float32).div_(255.0).sub_(self._mean).div_(self._std)
        return x, self.diagnosis[index], self.quality[index], self.joint[index]

    def counts(self) -> np.ndarray:
        """Images per (diagnosis, quality): the Table-1 view of this split."""
        ds = self.cfg.dataset
        table = np.zeros((ds.num_diagnosis, ds.num_quality), dtype=np.int64)
        np.add.at(table, (self.diagnosis.numpy(), self.quality.numpy()), 1)
        return table


def open_split(
    data_root: Path,
    cfg: RunConfig,
    split: str,
    augment: bool = False,
    *,
    cache: bool = True,
    cache_dir: Path | None = None,
) -> IQADDataset:
    """One split of ROOT/NAME as a Dataset; every listed image must exist."""
    ds = cfg.dataset
    folder = resolve_dataset_dir(Path(data_root), ds.name)
    path = split_path(folder, split)
    if not path.is_file():
        if split not in ds.splits:
            raise UserError(
                f"{ds.name} has no '{split}' split (its protocol has {', '.join(ds.splits)})",
                path=folder,
            )
        raise UserError(f"split file {path.name} missing", path=folder)
    records = read_split(path, ds)
    if not records:
        raise UserError("split file lists no images (empty dataset)", path=path)
    stamps = file_stamps([r.image for r in records])
    missing = np.flatnonzero(stamps[:, 1] == 0)
    for i in missing:
        if not records[i].image.is_file():
            rel = records[i].image
            raise UserError(
                f"image {rel} does not exist ({len(missing)} missing in all); "
                "run `fediqad data check` for the full list",
                path=path,
                line=records[i].line,
            )
    return IQADDataset(
        records, cfg, augment=augment, cache=cache, cache_dir=cache_dir, stamps=stamps
    )


def trains_on_cuda(cfg: RunConfig) -> bool:
    """Whether `cfg.device` ("auto" included) puts the step on a GPU."""
    if cfg.device == "auto":
        return torch.cuda.is_available()
    return cfg.device.startswith("cuda")


def loader_settings(cfg: RunConfig) -> dict[str, Any]:
    """DataLoader keywords that keep the step fed. On CUDA: worker processes (`num_workers`,
    default min(8, usable cores)) that stay alive across epochs with their memory maps,
    four batches prefetched per worker, and pinned memory so the non-blocking copies in
    `Batch.from_items` overlap the step. On the CPU the step is the bottleneck and workers
    would take its cores: loading stays in the main process unless `num_workers` is set."""
    cuda = trains_on_cuda(cfg)
    workers = cfg.num_workers
    if workers is None:
        workers = min(8, len(os.sched_getaffinity(0))) if cuda else 0
    settings: dict[str, Any] = {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": cuda,
    }
    if workers > 0:
        settings["prefetch_factor"] = 4 if cuda else 2
    return settings


def make_loader(
    dataset: IQADDataset,
    cfg: RunConfig,
    train: bool,
    batch_size: int | None = None,
    generator: torch.Generator | None = None,
) -> DataLoader:
    """DataLoader with the run's batch size and `loader_settings`.

    For training, a last batch of a single image is dropped: split sizes are arbitrary,
    and BatchNorm in training mode cannot normalise one value per channel.
    """
    size = batch_size or cfg.optim.batch_size
    return DataLoader(
        dataset,
        batch_size=size,
        shuffle=train,
        drop_last=train and len(dataset) > 1 and len(dataset) % size == 1,
        generator=generator,
        **loader_settings(cfg),
    )


__all__ = [
    "IQADDataset",
    "loader_settings",
    "make_loader",
    "normalise",
    "open_split",
    "resolve_dataset_dir",
]
