"""`fediqad bench train-step`: images/s and peak memory of each kind of training step.

Times one optimisation step of each kind on random data: the vanilla step, MKCNet's
stage I and stage II (second order), the first-order stage II and the fused step.
"""

from __future__ import annotations

import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.table import Table

from shared.config import RunConfig, preset
from shared.meta_auxiliary import Batch
from shared.models import build_models
from shared.training import LocalTrainer, resolve_device


@dataclass
class BenchRow:
    step: str
    seconds_per_batch: float
    images_per_second: float
    peak_memory_mb: float


def _config(method: str, schedule: str, image_size: int, batch: int, backbone: str) -> RunConfig:
    cfg = preset("EYEQ")
    cfg.method = method  # type: ignore[assignment]
    cfg.schedule = schedule  # type: ignore[assignment]
    cfg.image_size = image_size
    cfg.model.backbone = backbone
    cfg.optim.batch_size = batch
    return cfg


def _random_batch(cfg: RunConfig, device: torch.device, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ds, n, s = cfg.dataset, cfg.optim.batch_size, cfg.image_size
    diagnosis = torch.randint(ds.num_diagnosis, (n,), generator=g)
    quality = torch.randint(ds.num_quality, (n,), generator=g)
    image = torch.randn(n, ds.channels, s, s, generator=g)
    joint = quality * ds.num_diagnosis + diagnosis
    return Batch.from_items((image, diagnosis, quality, joint), device)


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # whole process


def _time(step: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run_bench(
    image_size: int = 64,
    batch: int = 8,
    threads: int | None = 2,
    backbone: str = "vgg16_bn",
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 2,
    steps: list[str] | None = None,
) -> list[BenchRow]:
    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    kinds: dict[str, tuple[str, str, str]] = {
        # name: (method, schedule, trainer step attribute)
        "vanilla": ("vanilla", "paper", "_supervised_step"),
        "stage I": ("mkcnet", "paper", "stage_one_step"),
        "stage II (second order)": ("mkcnet", "paper", "stage_two_step"),
        "stage II (first order)": ("mkcnet-first-order", "paper", "stage_two_step"),
        "fused (second order)": ("mkcnet", "fused", "_fused_step"),
    }
    rows = []
    for name, (method, schedule, attr) in kinds.items():
        if steps and name not in steps:
            continue
        torch.manual_seed(0)
        cfg = _config(method, schedule, image_size, batch, backbone)
        trainer = LocalTrainer(cfg, build_models(cfg), dev)
        trainer.bundle.train()
        data = _random_batch(cfg, dev)
        step_fn = getattr(trainer, attr)
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        seconds = _time(lambda fn=step_fn, b=data: fn(b), dev, repeats, warmup)
        rows.append(BenchRow(name, seconds, batch / seconds, _peak_mb(dev)))
        del trainer
    return rows


def bench_table(rows: list[BenchRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("step", "s / batch", "images / s", "peak memory (MB)"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in rows:
        table.add_row(
            row.step,
            f"{row.seconds_per_batch:.3f}",
            f"{row.images_per_second:.1f}",
            f"{row.peak_memory_mb:.0f}",
        )
    return table


def default_settings() -> list[dict[str, object]]:
    """The issue's two settings: 64 px batch 8 on CPU; 256 px batch 16 when a GPU exists."""
    settings: list[dict[str, object]] = [
        {"image_size": 64, "batch": 8, "threads": 2, "device": "cpu"}
    ]
    if torch.cuda.is_available():
        settings.append({"image_size": 256, "batch": 16, "threads": None, "device": "cuda"})
    return settings


@dataclass
class DPBenchRow:
    step: str
    plain_seconds: float  # the same step without DP, same (GroupNorm) architecture
    dp_seconds: float
    batchnorm_seconds: float  # the paper's BatchNorm model without DP, for reference

    @property
    def ratio(self) -> float:
        return self.dp_seconds / self.plain_seconds


def run_dp_bench(
    image_size: int = 64,
    batch: int = 8,
    threads: int | None = 2,
    backbone: str = "vgg16_bn",
    device: str = "cpu",
    repeats: int = 5,
    warmup: int = 2,
) -> list[DPBenchRow]:
    """Seconds per DP step vs the non-DP step: Task Net (stage I), baseline, Meta Learner."""
    from shared.privacy.budget import PrivacyLedger
    from shared.privacy.trainer import DPLocalTrainer

    if threads:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    kinds = {
        "Task Net (stage I)": ("mkcnet", "stage_one_step"),
        "Meta Learner (stage II, second order)": ("mkcnet", "stage_two_step"),
        "baseline (vanilla)": ("vanilla", "_supervised_step"),
    }
    rows = []
    for name, (method, attr) in kinds.items():
        steps = {}
        for variant in ("batch", "group", "dp"):
            torch.manual_seed(0)
            cfg = _config(method, "paper", image_size, batch, backbone)
            if variant == "group":
                cfg.model.norm = "group"
            trainer: LocalTrainer
            if variant == "dp":
                cfg.privacy.mode = "sample"
                cfg.privacy.noise_multiplier = 1.0
                cfg.privacy.noise_seed = 0
                ledger = PrivacyLedger("rdp", 1e-5, 1.0, 0.01)
                trainer = DPLocalTrainer(cfg, build_models(cfg), dev, ledger)
            else:
                trainer = LocalTrainer(cfg, build_models(cfg), dev)
            trainer.bundle.train()
            data = _random_batch(cfg, dev)
            step_fn = getattr(trainer, attr)
            steps[variant] = lambda fn=step_fn, b=data: fn(b)
            for _ in range(warmup):
                steps[variant]()
        # interleaved repeats: a load change on a shared machine hits every variant alike
        times: dict[str, list[float]] = {v: [] for v in steps}
        for _ in range(repeats):
            for variant, step in steps.items():
                times[variant].append(_time(step, dev, 1, 0))
        med = {v: statistics.median(t) for v, t in times.items()}
        rows.append(DPBenchRow(name, med["group"], med["dp"], med["batch"]))
    return rows


def dp_bench_table(rows: list[DPBenchRow], title: str) -> Table:
    table = Table(title=title)
    for column in ("step", "non-DP s (GroupNorm)", "DP s", "DP / non-DP", "non-DP s (BatchNorm)"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in rows:
        table.add_row(
            row.step,
            f"{row.plain_seconds:.3f}",
            f"{row.dp_seconds:.3f}",
            f"{row.ratio:.2f}x",
            f"{row.batchnorm_seconds:.3f}",
        )
    return table
