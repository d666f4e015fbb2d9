"""Training-time augmentation on uint8 tensors: small geometric changes and mild
brightness / contrast jitter that keep both the diagnosis and the quality label true."""

from __future__ import annotations

import torch
from torchvision.transforms import v2

_GEOMETRIC = v2.Compose(
    [
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, translate=(0.04, 0.04), scale=(0.95, 1.05)),
        v2.ColorJitter(brightness=0.1, contrast=0.1),
    ]
)


def augment_uint8(img: torch.Tensor) -> torch.Tensor:
    """A randomly transformed copy of a uint8 [C, S, S] image."""
    return _GEOMETRIC(img)
