"""CoMCL test fixtures: one tiny synthetic EYEQ set (64 px) and a 64 px config."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import RunConfig, preset


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


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ROOT with EYEQ/ (48 images at 64 px, 40 % LQ, with lesions.csv)."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("comcl")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FEDIQAD_CACHE_DIR", str(root / "cache"))
        synthesize("EYEQ", 48, 64, root / "data", seed=3, lq_ratio=0.4)
    return root / "data"


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDIQAD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
