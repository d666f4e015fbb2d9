"""`fediqad bench pretrain-step`: patches per second of one CoMCL pretraining step.

A step is: two augmented views of every patch (CPU, torchvision), the encoder forward
and backward on both views, the three InfoNCE terms with mining, one Adam update.
Patches are random uint8 crops split evenly over the four subsets, so the timing does
not depend on any data set.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch

from shared.config import RunConfig, preset
from shared.contrastive.pretrain import ContrastivePretrainer, build_contrastive_model


@dataclass
class PretrainBenchRow:
    backbone: str
    patch_px: int
    batch: int
    device: str
    threads: int
    seconds_per_step: float
    patches_per_second: float


def bench_config(backbone: str, patch_px: int, batch: int) -> RunConfig:
    cfg = preset("EYEQ")
    cfg.model.backbone = backbone
    cfg.contrastive.backbone = backbone
    cfg.image_size = 32 * max(1, -(-patch_px // 32))
    cfg.contrastive.patch_size = cfg.image_size
    cfg.contrastive.batch_size = batch
    return cfg


def run_pretrain_bench(
    backbone: str = "vgg16_bn_slim",
    patch_px: int = 32,
    batch: int = 64,
    device: str = "cpu",
    threads: int | None = 2,
    repeats: int = 3,
    warmup: int = 1,
) -> PretrainBenchRow:
    if threads is not None and device == "cpu":
        torch.set_num_threads(threads)
    cfg = bench_config(backbone, patch_px, batch)
    torch.manual_seed(0)
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), device, total_epochs=10)
    size = cfg.image_size
    patches = torch.randint(0, 256, (batch, cfg.dataset.channels, size, size), dtype=torch.uint8)
    subset = torch.arange(batch) % 4
    ids = torch.arange(batch)
    dev = torch.device(device)

    def step() -> None:
        trainer.step(patches, subset, ids, step=0)
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return PretrainBenchRow(
        backbone, size, batch, device, torch.get_num_threads(), median, batch / median
    )
