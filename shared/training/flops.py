"""FLOPs of a training step and model FLOP utilisation (MFU) against the device's peak.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` over one whole step:
forward, backward and, for MKCNet's stage II, the second-order meta step (the
double backward through the pseudo-update), plus Opacus' per-sample gradient work
under DP. Only matmuls and convolutions are counted (element-wise work is a rounding
error next to them), so MFU = counted FLOPs per second / the device's dense
tensor-core peak for the precision the step runs in.

Peaks (dense, no structured sparsity: half the "with sparsity" datasheet figure), in
TFLOP/s, from NVIDIA's datasheets: H100 Tensor Core GPU datasheet (SXM, PCIe, NVL),
H200 Tensor Core GPU datasheet (same compute as H100 SXM), A100 Tensor Core GPU
datasheet. "fp32" on a GPU runs cuDNN convolutions in TF32 unless
`torch.backends.cudnn.allow_tf32` is off (PyTorch's default is on), so its peak is
the TF32 one then.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

# device-name fragment (checked in this order) -> peak TFLOP/s by arithmetic
PEAK_TFLOPS: dict[str, dict[str, float]] = {
    "H200": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},
    "H100 PCIe": {"bf16": 756.0, "fp16": 756.0, "tf32": 378.0, "fp32": 51.2},
    "H100 NVL": {"bf16": 835.5, "fp16": 835.5, "tf32": 417.5, "fp32": 60.0},
    "H100": {"bf16": 989.4, "fp16": 989.4, "tf32": 494.7, "fp32": 66.9},  # SXM
    "A100": {"bf16": 312.0, "fp16": 312.0, "tf32": 156.0, "fp32": 19.5},
}


def count_flops(step: Callable[[], object]) -> int:
    """FLOPs (multiply-add = 2) of the matmuls and convolutions `step()` runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step()
    return int(counter.get_total_flops())


def arithmetic(precision: str, device: torch.device) -> str:
    """The peak that applies: bf16 / fp16 tensor cores, or TF32 / plain FP32 for fp32."""
    if precision in ("bf16", "fp16"):
        return precision
    if device.type == "cuda" and torch.backends.cudnn.allow_tf32:
        return "tf32"
    return "fp32"


def device_peak_tflops(device_name: str, arithmetic_name: str) -> float | None:
    """The datasheet peak of a device by its name (`torch.cuda.get_device_name`), or None
    for a device not in the table (and for CPUs)."""
    for fragment, peaks in PEAK_TFLOPS.items():
        if fragment.lower() in device_name.lower():
            return peaks.get(arithmetic_name)
    return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def mfu(flops_per_step: float, seconds_per_step: float, peak_tflops: float | None) -> float | None:
    """Achieved FLOP/s over the peak (a fraction), or None when the peak is unknown."""
    if peak_tflops is None or seconds_per_step <= 0:
        return None
    return flops_per_step / seconds_per_step / (peak_tflops * 1e12)
