"""The scale of `fediqad bench evidence`: tiny by default (2 busy CPU cores)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PARTS = ("signal", "methods", "federated", "comcl")


@dataclass
class EvidenceSettings:
    seeds: tuple[int, ...] = (0, 1, 2)
    parts: tuple[str, ...] = PARTS
    # data for (a) and (b): EyeQ-like synthetic images, this share low quality
    n: int = 240
    lq_ratio: float = 0.5
    backbone: str = "vgg16_bn_slim"
    batch_size: int = 16
    lr: float = 0.05  # SGD, halved after half the epochs
    # (a): 64 px (at 32 px the slim VGG's map is 1x1 and MKCNet stays at the majority
    # class); the fused schedule (one pass per epoch) halves MKCNet's cost
    image_size: int = 64
    epochs: int = 10
    schedule: str = "fused"
    methods: tuple[str, ...] = ("mkcnet", "vanilla", "multitask")
    # (b): 32 px; centralised and each site alone train rounds x local epochs
    fed_image_size: int = 32
    sites: int = 3
    rounds: int = 4
    local_epochs: int = 4
    strategies: tuple[str, ...] = ("fedavg", "fedprox", "fedbn")
    federated_method: str = "vanilla"
    dirichlet_alpha: float = 0.3
    proximal_mu: float = 0.01
    # (c)
    comcl_ratios: tuple[float, ...] = (0.33, 0.70, 1.00)
    comcl_n: int = 200
    comcl_image_size: int = 64
    comcl_patch: int = 16
    comcl_pretrain_epochs: int = 10
    comcl_finetune_epochs: int = 8
    threads: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out
