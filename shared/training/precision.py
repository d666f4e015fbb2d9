"""Numeric precision and memory layout of a training step (`--precision`, channels-last).

One place decides what "auto" means, so train, pretrain, simulate, the site worker and
the benchmarks agree: bf16 on a GPU that supports it, fp32 everywhere else (CPU bf16 is
available on request, and is what the CPU tests use to check the mixed-precision paths).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, Literal, get_args

import torch
from torch import nn

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


_HALF = (torch.float16, torch.bfloat16)


def fp32_region(device: torch.device | str) -> contextlib.AbstractContextManager[None]:
    """Autocast switched off: what runs inside computes in its inputs' dtype (fp32)."""
    return torch.autocast(device_type=torch.device(device).type, enabled=False)


def kept_in_fp32(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run `fn` (a loss, a softmax) in fp32 whatever autocast is on: half-precision tensor
    arguments are cast up and autocast is off inside. A focal loss computed in bf16 is
    off by ~3e-4 relative (softmax, log, the focal weight), and the meta-gradient would
    inherit it; float64 inputs (the gradient checks) are left as they are."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = next(a.device for a in args if isinstance(a, torch.Tensor))
        args = tuple(
            a.float() if isinstance(a, torch.Tensor) and a.dtype in _HALF else a for a in args
        )
        with fp32_region(device):
            return fn(*args, **kwargs)

    return wrapper


def fused_optimizer_options(device: torch.device | str) -> dict[str, bool]:
    """`fused=True` for SGD/Adam on CUDA (one kernel for the whole update); {} elsewhere."""
    return {"fused": True} if torch.device(device).type == "cuda" else {}


class StepPrecision:
    """The precision and memory layout one trainer's steps run in, and fp16's loss scaler.

    Parameters, gradients and optimiser state stay fp32 in every precision: autocast
    only lowers the forward's matmuls and convolutions. fp16 needs loss scaling (its
    exponent range loses small gradients); bf16 has fp32's range and does not.
    """

    def __init__(self, precision: Precision, device: torch.device | str, channels_last: bool):
        self.precision = precision
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.scaler = torch.amp.GradScaler(self.device.type) if precision == "fp16" else None

    @classmethod
    def for_run(cls, setting: str, channels_last: bool | None, device: torch.device | str):
        """From the config's `precision` and `channels_last` ("auto"/None resolved here)."""
        return cls(
            resolve_precision(setting, device), device, resolve_channels_last(channels_last, device)
        )

    def describe(self) -> dict[str, Any]:
        """What ran, for metrics.json and reports."""
        return {"precision": self.precision, "channels_last": self.channels_last}

    def autocast(self) -> contextlib.AbstractContextManager[None]:
        return autocast(self.precision, self.device)

    def module(self, module: nn.Module) -> nn.Module:
        """`module` in the run's memory layout (in place, like `.to`)."""
        if self.channels_last:
            module.to(memory_format=torch.channels_last)
        return module

    def images(self, x: torch.Tensor) -> torch.Tensor:
        """An image batch [B, C, H, W] in the run's memory layout."""
        if self.channels_last and x.dim() == 4:
            return x.contiguous(memory_format=torch.channels_last)
        return x

    @property
    def loss_scale(self) -> float:
        """The factor fp16 losses are multiplied by before a backward pass (1 otherwise)."""
        return float(self.scaler.get_scale()) if self.scaler is not None else 1.0

    def backward_step(self, optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> None:
        """zero_grad, backward, step: through the scaler in fp16 (an overflowing step is
        skipped and the scale lowered)."""
        optimizer.zero_grad(set_to_none=True)
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

    def step_with_grads(
        self, updates: list[tuple[torch.optim.Optimizer, nn.Module, dict[str, torch.Tensor]]]
    ) -> None:
        """Step each optimiser on gradients computed by hand (the meta steps, which run in
        bf16 or fp32 only: `precision_rules`)."""
        for optimizer, module, grads in updates:
            for name, p in module.named_parameters():
                p.grad = grads[name]
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def state_dict(self) -> dict[str, Any]:
        return self.scaler.state_dict() if self.scaler is not None else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """A saved scale continues an fp16 run; anything else (a run that changed its
        precision on resume) starts from the scaler's defaults."""
        if self.scaler is not None and state:
            self.scaler.load_state_dict(state)
