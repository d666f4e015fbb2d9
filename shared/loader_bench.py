"""`fediqad bench loader`: images/s of the data loader alone vs the training step.

The loader is timed the way training uses it (`make_loader`: workers, prefetching,
pinned memory, then the non-blocking copy to the device in `Batch.from_items`), over
two passes of a split: the first decodes the images into the cache unless the cache
already holds them, the second reads the cache as every later epoch does. The step is
`shared.training_bench`'s, at the same image size, batch, device and precision. The
slower of the two is what an epoch waits on.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.table import Table

from shared.config import RunConfig, preset
from shared.data.dataset import loader_settings, make_loader, open_split
from shared.meta_auxiliary import Batch
from shared.training import resolve_device
from shared.training_bench import BenchSettings, run_bench


@dataclass
class LoaderBenchResult:
    images: int  # in the split
    workers: int
    pin_memory: bool
    cached_before: float  # fraction of the split the cache held before pass 1
    pass_rates: list[float]  # images/s of the loader alone, pass 1 and pass 2
    step: str
    step_rate: float  # images/s of the training step

    @property
    def bottleneck(self) -> str:
        """What an epoch after the first waits on: the cached loader or the step."""
        return "loader" if self.pass_rates[-1] < self.step_rate else "step"

    def advice(self) -> str:
        loader, step = self.pass_rates[-1], self.step_rate
        if self.bottleneck == "step":
            return f"the training step ({step:.1f} images/s; the loader gives {loader:.1f})"
        return (
            f"the loader ({loader:.1f} images/s < the step's {step:.1f}); raise "
            f"--num-workers (now {self.workers}) or keep the cache warm"
        )


def _loader_pass(loader: torch.utils.data.DataLoader, device: torch.device) -> float:
    seen, start = 0, time.perf_counter()
    for items in loader:
        seen += len(Batch.from_items(items, device).image)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def run_loader_bench(
    cfg: RunConfig,
    data_root: Path | None,
    *,
    split: str = "train",
    step: str = "stage I",
    synthetic_images: int = 256,
    repeats: int = 3,
) -> LoaderBenchResult:
    """Time `cfg`'s loader on ROOT/NAME's `split` (synthetic images when no root) and
    `step` at the same settings; `cfg.device` says where batches are copied to."""
    dev = resolve_device(cfg.device)
    with tempfile.TemporaryDirectory(prefix="fediqad-loader-bench-") as tmp:
        if data_root is None:
            from shared.data.synth import synthesize

            data_root = Path(tmp) / "data"
            synthesize(cfg.dataset.name, synthetic_images, cfg.image_size, data_root, seed=0)
            dataset = open_split(data_root, cfg, split, cache_dir=Path(tmp) / "cache")
        else:
            dataset = open_split(data_root, cfg, split)
        cached = dataset.cache.cached_fraction()
        loader = make_loader(dataset, cfg, train=True, generator=torch.Generator().manual_seed(0))
        rates = [_loader_pass(loader, dev) for _ in range(2)]
        del loader  # stops the persistent workers
    settings = loader_settings(cfg)
    bench = BenchSettings(
        image_size=cfg.image_size,
        batch=cfg.optim.batch_size,
        threads=cfg.threads,
        backbone=cfg.model.backbone,
        device=str(dev),
        precision=cfg.precision,
    )
    row = run_bench(bench, repeats=repeats, warmup=1, steps=[step])[0]
    return LoaderBenchResult(
        len(dataset),
        settings["num_workers"],
        settings["pin_memory"],
        cached,
        rates,
        step,
        row.images_per_second,
    )


def loader_bench_config(
    dataset: str, image_size: int, batch: int, backbone: str, device: str
) -> RunConfig:
    cfg = preset(dataset)
    cfg.image_size, cfg.optim.batch_size = image_size, batch
    cfg.model.backbone, cfg.device = backbone, device
    return cfg


def loader_table(result: LoaderBenchResult, title: str) -> Table:
    table = Table(title=title)
    for column in ("what", "images / s", "settings"):
        table.add_column(column, justify="left" if column != "images / s" else "right")
    loader = f"{result.workers} workers, pin_memory {result.pin_memory}, {result.images} images"
    first = f"loader, pass 1 ({100 * result.cached_before:.0f} % cached before)"
    table.add_row(first, f"{result.pass_rates[0]:.1f}", loader)
    table.add_row("loader, pass 2 (cached)", f"{result.pass_rates[1]:.1f}", loader)
    table.add_row(f"training step ({result.step})", f"{result.step_rate:.1f}", "random batch")
    return table
