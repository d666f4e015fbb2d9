"""FLOP counting and MFU arithmetic (`shared.training.flops`) against hand-counted layers."""

from __future__ import annotations

import pytest
import torch

from shared.training import flops


def test_linear_forward_and_backward_flops() -> None:
    layer = torch.nn.Linear(16, 8, bias=False)
    x = torch.randn(4, 16, requires_grad=True)
    forward = 2 * 4 * 16 * 8  # one multiply-add per weight per sample
    assert flops.count_flops(lambda: layer(x)) == forward
    # backward: the input's gradient and the weight's gradient, each as big as the forward
    assert flops.count_flops(lambda: layer(x).sum().backward()) == 3 * forward


def test_conv_flops() -> None:
    conv = torch.nn.Conv2d(3, 8, kernel_size=3, padding=1, bias=False)
    x = torch.randn(2, 3, 10, 10)
    # every output value (2 x 8 x 10 x 10) is a 3 x 3 x 3 dot product
    assert flops.count_flops(lambda: conv(x)) == 2 * (2 * 8 * 10 * 10) * (3 * 3 * 3)


def test_second_order_gradient_is_counted() -> None:
    """A gradient of a gradient (the meta step's double backward) costs more than one."""
    layer = torch.nn.Linear(16, 16, bias=False)
    x = torch.randn(4, 16)

    def first() -> None:
        torch.autograd.grad(layer(x).pow(2).sum(), layer.weight)

    def second() -> None:
        (g,) = torch.autograd.grad(layer(x).pow(2).sum(), layer.weight, create_graph=True)
        g.pow(2).sum().backward()

    assert flops.count_flops(second) > flops.count_flops(first)


def test_mfu_arithmetic() -> None:
    # 2 TFLOP in 0.5 s is 4 TFLOP/s: half of an 8 TFLOP/s peak
    assert flops.mfu(2e12, 0.5, 8.0) == pytest.approx(0.5)
    assert flops.mfu(2e12, 0.5, None) is None


@pytest.mark.parametrize(
    ("name", "kind", "peak"),
    [
        ("NVIDIA H200", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "bf16", 989.4),
        ("NVIDIA H100 80GB HBM3", "tf32", 494.7),
        ("NVIDIA H100 PCIe", "bf16", 756.0),
        ("NVIDIA A100-SXM4-80GB", "fp32", 19.5),
        ("NVIDIA A100 80GB PCIe", "bf16", 312.0),
        ("NVIDIA GeForce RTX 3090", "bf16", None),
        ("cpu", "fp32", None),
    ],
)
def test_device_peaks(name: str, kind: str, peak: float | None) -> None:
    assert flops.device_peak_tflops(name, kind) == peak


def test_fp32_uses_the_tf32_peak_only_on_cuda_with_tf32_convolutions(monkeypatch) -> None:
    assert flops.arithmetic("bf16", torch.device("cpu")) == "bf16"
    assert flops.arithmetic("fp32", torch.device("cpu")) == "fp32"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", True)
    assert flops.arithmetic("fp32", torch.device("cuda")) == "tf32"
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    assert flops.arithmetic("fp32", torch.device("cuda")) == "fp32"
