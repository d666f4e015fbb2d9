"""`fediqad bench train-step`: images/s, peak memory, FLOPs and MFU of each training step.

Times one optimisation step of each kind on random data: the vanilla step, MKCNet's
stage I and stage II (second order), the first-order stage II, the fused step, DP
stage I (Opacus per-sample gradients, sample-level DP) and a CoMCL pretraining step
(its own encoder and patch size). FLOPs per image are counted over one whole step
(`shared.training.flops`); MFU is the achieved FLOP/s over the device's peak for the
step's precision, "—" where the peak is unknown (CPU, a GPU not in the table).
"""

from __future__ import annotations

import math
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from rich.table import Table

from shared.config import RunConfig, preset
from shared.errors import UserError, unknown_choice
from shared.meta_auxiliary import Batch
from shared.models import build_models
from shared.training import LocalTrainer, resolve_device
from shared.training.flops import arithmetic, count_flops, device_name, device_peak_tflops, mfu
from shared.training.precision import resolve_precision

STEP_KINDS: dict[str, tuple[str, str, str]] = {
    # row name: (method, schedule, trainer step attribute)
    "vanilla": ("vanilla", "paper", "_supervised_step"),
    "stage I": ("mkcnet", "paper", "stage_one_step"),
    "stage II (second order)": ("mkcnet", "paper", "stage_two_step"),
    "stage II (first order)": ("mkcnet-first-order", "paper", "stage_two_step"),
    "fused (second order)": ("mkcnet", "fused", "_fused_step"),
    "DP stage I": ("mkcnet", "paper", "stage_one_step"),
}
COMCL_ROW = "CoMCL"
ROWS = (*STEP_KINDS, COMCL_ROW)


@dataclass
class BenchRow:
    step: str
    seconds_per_batch: float
    images_per_second: float
    peak_memory_mb: float
    flops_per_image: float = 0.0  # forward + backward (+ meta step), counted
    mfu: float | None = None  # fraction of the device peak; None: peak unknown
    images_per_batch: int = 0
    image_px: int = 0
    refused: str | None = None  # why this step cannot run at the asked precision


@dataclass
class BenchSettings:
    """What `run_bench` times; CoMCL has its own encoder, patch side and batch."""

    image_size: int = 64
    batch: int = 8
    threads: int | None = 2
    backbone: str = "vgg16_bn"
    device: str = "cpu"
    precision: str = "fp32"
    peak_tflops: float | None = None  # overrides the device table
    comcl_backbone: str = "resnet50"
    patch_px: int = 128
    comcl_batch: int | None = None  # default: batch


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


def _dp_trainer(cfg: RunConfig, dev: torch.device) -> LocalTrainer:
    """Sample-level DP-SGD (Opacus) on `cfg`'s models, as a site runs it."""
    from shared.privacy.budget import PrivacyLedger
    from shared.privacy.trainer import DPLocalTrainer

    cfg.privacy.mode = "sample"
    cfg.privacy.noise_multiplier = 1.0
    cfg.privacy.noise_seed = 0
    ledger = PrivacyLedger("rdp", 1e-5, 1.0, 0.01)
    return DPLocalTrainer(cfg, build_models(cfg), dev, ledger)


def _training_step(name: str, s: BenchSettings, dev: torch.device) -> Callable[[], object]:
    method, schedule, attr = STEP_KINDS[name]
    cfg = _config(method, schedule, s.image_size, s.batch, s.backbone)
    cfg.precision = s.precision  # type: ignore[assignment]
    trainer = (
        _dp_trainer(cfg, dev)
        if name.startswith("DP")
        else LocalTrainer(cfg, build_models(cfg), dev)
    )
    trainer.bundle.train()
    data = _random_batch(cfg, dev)
    step_fn = getattr(trainer, attr)
    return lambda: step_fn(data)


def _comcl_step(s: BenchSettings, dev: torch.device) -> tuple[Callable[[], object], int, int]:
    """A CoMCL step (two augmented views, encoder forward/backward, Adam); (step, patches, px)."""
    from shared.contrastive.bench import bench_config
    from shared.contrastive.pretrain import ContrastivePretrainer, build_contrastive_model

    n = s.comcl_batch or s.batch
    cfg = bench_config(s.comcl_backbone, s.patch_px, n)
    cfg.precision = s.precision  # type: ignore[assignment]
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), dev, total_epochs=10)
    px = cfg.image_size
    patches = torch.randint(0, 256, (n, cfg.dataset.channels, px, px), dtype=torch.uint8)
    subset, ids = torch.arange(n) % 4, torch.arange(n)
    return lambda: trainer.step(patches, subset, ids, step=0), n, px


def check_steps(steps: list[str], loader: bool = False) -> None:
    """--step names a row (the loader bench compares with a training step, not CoMCL's)."""
    known = list(STEP_KINDS) if loader else list(ROWS)
    for name in steps:
        if name not in known:
            raise unknown_choice("--step", name, known)


def run_bench(
    settings: BenchSettings | None = None,
    repeats: int = 5,
    warmup: int = 2,
    steps: list[str] | None = None,
) -> list[BenchRow]:
    """One row per step kind in `steps` (default: all of ROWS)."""
    s = settings or BenchSettings()
    if s.threads:
        torch.set_num_threads(s.threads)
    dev = resolve_device(s.device)
    precision = resolve_precision(s.precision, dev)
    s = BenchSettings(**{**s.__dict__, "precision": precision})
    peak = s.peak_tflops or device_peak_tflops(device_name(dev), arithmetic(precision, dev))
    rows = []
    for name in ROWS:
        if steps and name not in steps:
            continue
        torch.manual_seed(0)
        try:  # the trainers apply the precision themselves, as in a real run
            if name == COMCL_ROW:
                step, n, px = _comcl_step(s, dev)
            else:
                step, n, px = _training_step(name, s, dev), s.batch, s.image_size
        except UserError as refusal:  # e.g. fp16 for the meta step: say so, time the rest
            rows.append(BenchRow(name, math.nan, math.nan, math.nan, refused=str(refusal)))
            continue
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        flops = count_flops(step)  # also the first warm-up step
        seconds = _time(step, dev, repeats, warmup)
        rate = mfu(flops, seconds, peak)
        rows.append(BenchRow(name, seconds, n / seconds, _peak_mb(dev), flops / n, rate, n, px))
    return rows


def bench_table(rows: list[BenchRow], title: str) -> Table:
    table = Table(title=title)
    columns = ("step", "px", "batch", "s / batch", "images / s", "peak memory (MB)",
               "GFLOP / image", "MFU")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="left" if column == "step" else "right")
    for row in rows:
        if row.refused:
            table.add_row(f"{row.step}: {row.refused}", *["—"] * (len(columns) - 1))
            continue
        table.add_row(
            row.step,
            str(row.image_px),
            str(row.images_per_batch),
            f"{row.seconds_per_batch:.3f}",
            f"{row.images_per_second:.1f}",
            f"{row.peak_memory_mb:.0f}",
            f"{row.flops_per_image / 1e9:.2f}",
            "—" if row.mfu is None else f"{100 * row.mfu:.1f} %",
        )
    return table


def default_settings() -> list[BenchSettings]:
    """64 px batch 8 on CPU; 256 px batch 16 (CoMCL: 128-px patches) when a GPU exists."""
    settings = [BenchSettings(image_size=64, batch=8, threads=2, device="cpu")]
    if torch.cuda.is_available():
        settings.append(
            BenchSettings(image_size=256, batch=16, threads=None, device="cuda", precision="auto")
        )
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
            trainer = (
                _dp_trainer(cfg, dev)
                if variant == "dp"
                else LocalTrainer(cfg, build_models(cfg), dev)
            )
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
