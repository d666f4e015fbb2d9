"""Tiny run configurations and batches: the whole architecture, small enough for CPU tests."""

from __future__ import annotations

import torch

from shared.config import RunConfig, preset


def tiny_config(dataset: str = "EYEQ", method: str = "mkcnet", **model: object) -> RunConfig:
    """Slim VGG16-BN at 32 px, batch 8; `model` sets fields of `cfg.model`."""
    cfg = preset(dataset)
    cfg.method = method  # type: ignore[assignment]
    cfg.image_size = 32
    cfg.model.backbone = "vgg16_bn_slim"
    for key, value in model.items():
        setattr(cfg.model, key, value)
    cfg.optim.batch_size = 8
    return cfg


def fast_config(method: str = "mkcnet", width: float = 0.125, **model: object) -> RunConfig:
    """`tiny_config` at 1/8 of the slim width on one CPU thread: for tests that train
    several sites or rounds."""
    cfg = tiny_config(method=method, width=width, **model)
    cfg.device = "cpu"
    cfg.threads = 1
    return cfg


def dp_config(method: str = "mkcnet", width: float = 0.125, **privacy: object) -> RunConfig:
    """`fast_config` with sample-level DP (noise multiplier 1 unless given, seeded noise)."""
    cfg = fast_config(method=method, width=width)
    cfg.privacy.mode = "sample"
    cfg.privacy.noise_seed = 0
    for key, value in {"noise_multiplier": 1.0, **privacy}.items():
        setattr(cfg.privacy, key, value)
    return cfg


def comcl_config(**contrastive: object) -> RunConfig:
    """Slim VGG at 64 px images: 16 px patches (of the 64 px files) resized to a 32 px
    encoder input; the encoder is the diagnosis backbone."""
    cfg = preset("EYEQ")
    cfg.image_size = 64
    cfg.model.backbone = "vgg16_bn_slim"
    cfg.contrastive.backbone = None
    cfg.contrastive.patch_size = 16
    cfg.optim.batch_size = 8
    cfg.contrastive.batch_size = 32
    cfg.contrastive.epochs = 4
    for key, value in contrastive.items():
        setattr(cfg.contrastive, key, value)
    return cfg


def tiny_batch(cfg: RunConfig, n: int = 8, seed: int = 0, dtype=torch.float32):
    """A Batch of `n` random images cycling through every (diagnosis, quality) pair."""
    from shared.meta_auxiliary import Batch

    g = torch.Generator().manual_seed(seed)
    ds = cfg.dataset
    diagnosis = torch.arange(n) % ds.num_diagnosis
    quality = (torch.arange(n) // ds.num_diagnosis) % ds.num_quality
    image = torch.randn(n, ds.channels, cfg.image_size, cfg.image_size, generator=g, dtype=dtype)
    return Batch(image, diagnosis, quality, quality * ds.num_diagnosis + diagnosis)
