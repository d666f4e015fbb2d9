"""Numeric precision and memory layout of a training step (`--precision`, channels-last).

One place decides what "auto" means, so train, pretrain, simulate, the site worker and
the benchmarks agree: bf16 on a GPU that supports it, fp32 everywhere else (CPU bf16 is
available on request, and is what the CPU tests use to check the mixed-precision paths).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal, get_args

import torch

from shared.config import PrecisionName

Precision = Literal["fp32", "bf16", "fp16"]
PRECISION_NAMES: tuple[str, ...] = get_args(PrecisionName)
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_precision(name: str, device: torch.device | str) -> Precision:
    """The concrete precision for `name` on `device` ("auto": bf16 on capable GPUs)."""
    device = torch.device(device)
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if name not in _DTYPES and name != "fp32":
        raise ValueError(f"unknown precision {name!r}; use one of {', '.join(PRECISION_NAMES)}")
    return name  # type: ignore[return-value]


def autocast_dtype(precision: Precision) -> torch.dtype | None:
    """The dtype autocast runs matmuls and convolutions in; None for fp32."""
    return _DTYPES.get(precision)


@contextlib.contextmanager
def autocast(precision: Precision, device: torch.device | str) -> Iterator[None]:
    """Mixed precision for the forward pass; a no-op for fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=dtype):
        yield


def resolve_channels_last(setting: bool | None, device: torch.device | str) -> bool:
    """channels-last memory format: on by default on CUDA, where cuDNN's fast kernels want it."""
    if setting is None:
        return torch.device(device).type == "cuda"
    return setting
