"""Process set-up for a training run: seeds, the torch device, DataLoader worker errors."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

from shared.errors import UserError
from shared.training.local import resolve_device


@contextmanager
def plain_worker_errors() -> Iterator[None]:
    """A UserError raised in a DataLoader worker comes back wrapped in its traceback
    text; keep only the original one-line message."""
    try:
        yield
    except UserError as err:
        text = str(err)
        if "Original Traceback" not in text:
            raise
        last = text.strip().splitlines()[-1]
        raise UserError(last.split("UserError: ", 1)[-1]) from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    """The torch device for `name`; on CUDA, with cuDNN's autotuner on."""
    device = resolve_device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available here; use cpu or auto")
    enable_fast_kernels(device)
    return device


def enable_fast_kernels(device: torch.device) -> None:
    """cuDNN benchmark mode on CUDA: each convolution shape is timed once and its
    fastest algorithm kept (training batches have fixed shapes, so this pays off)."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
