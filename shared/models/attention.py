"""CBAM attention (Woo et al. 2018) as MKCNet uses it for its GABs and its MAB.

Submodule names follow the MKCNet authors' code (`ChannelGate.mlp.1`,
`SpatialGate.spatial.conv`, ...) so their checkpoints load without renaming.
"""

from __future__ import annotations

import torch
from torch import nn


class ChannelGate(nn.Module):
    """Shared MLP over the avg- and max-pooled descriptors, summed, sigmoid."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(channels // reduction, 1)
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(channels, hidden), nn.ReLU(), nn.Linear(hidden, channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = x.mean(dim=(2, 3), keepdim=True)
        mx = x.amax(dim=(2, 3), keepdim=True)
        scale = torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        return x * scale[:, :, None, None]


class _SpatialConv(nn.Module):
    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class SpatialGate(nn.Module):
    """[max, mean] over channels -> 7x7 conv -> BN -> sigmoid, applied per position."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.spatial = _SpatialConv(kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.amax(dim=1, keepdim=True), x.mean(dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.spatial(pooled))


class CBAM(nn.Module):
    def __init__(self, channels: int, reduction: int = 16, spatial: bool = True):
        super().__init__()
        self.ChannelGate = ChannelGate(channels, reduction)
        self.SpatialGate = SpatialGate() if spatial else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ChannelGate(x)
        if self.SpatialGate is not None:
            x = self.SpatialGate(x)
        return x
