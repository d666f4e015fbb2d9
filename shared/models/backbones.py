"""Backbone registry: every backbone maps an image to a feature map [B, C, h, w].

`vgg16_bn` is the MKCNet authors' VGG16 with BatchNorm built from scratch (their
names `blockN.i`, their xavier init), `width` scales its channels for CPU work;
`resnet18` / `resnet50` come from torchvision (CoMCL's encoder is ResNet-50).
ImageNet weights are only ever read from a local file.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision import models as tv_models

from shared.errors import UserError
from shared.torch_io import load_torch_file

VGG_WIDTHS = (64, 128, 256, 512, 512)
VGG_DEPTHS = (2, 2, 3, 3, 3)


class Backbone(nn.Module):
    feature_size: int


class VGG16BN(Backbone):
    """Five conv blocks (2,2,3,3,3 convs), each ending in a 2x2 max-pool."""

    def __init__(self, in_channels: int = 3, width: float = 1.0):
        super().__init__()
        widths = [max(int(round(w * width)), 4) for w in VGG_WIDTHS]
        prev = in_channels
        for index, (out, depth) in enumerate(zip(widths, VGG_DEPTHS, strict=True), start=1):
            layers: list[nn.Module] = []
            for _ in range(depth):
                layers += [
                    nn.Conv2d(prev, out, 3, padding=1),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                prev = out
            layers.append(nn.MaxPool2d(2, 2))
            setattr(self, f"block{index}", nn.Sequential(*layers))
        self.feature_size = widths[-1]
        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for index in range(1, 6):
            x = getattr(self, f"block{index}")(x)
        return x


class TorchvisionResNet(Backbone):
    """A torchvision ResNet without avgpool/fc; the stem adapts to 1-channel input."""

    def __init__(self, arch: str, in_channels: int = 3):
        super().__init__()
        net = getattr(tv_models, arch)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, 7, stride=2, padding=3, bias=False)
        self.body = nn.Sequential(
            net.conv1,
            net.bn1,
            net.relu,
            net.maxpool,
            net.layer1,
            net.layer2,
            net.layer3,
            net.layer4,
        )
        self.feature_size = net.fc.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def xavier_init(module: nn.Module) -> None:
    """The authors' init: xavier-uniform conv/linear weights, zero biases, BN 1/0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


BACKBONES: dict[str, Callable[[int, float], Backbone]] = {
    "vgg16_bn": lambda c, w: VGG16BN(c, w),
    # Slim VGG16-BN (8,16,32,64,64 channels) for CPU tests and the built-in demo.
    "vgg16_bn_slim": lambda c, w: VGG16BN(c, w / 8),
    "resnet18": lambda c, w: TorchvisionResNet("resnet18", c),
    "resnet50": lambda c, w: TorchvisionResNet("resnet50", c),
}


def build_backbone(
    name: str, in_channels: int, width: float = 1.0, weights: Path | None = None
) -> Backbone:
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    backbone = BACKBONES[name](in_channels, width)
    if weights is not None:
        load_local_weights(backbone, Path(weights))
    return backbone


def load_local_weights(backbone: Backbone, path: Path) -> None:
    """Load weights (e.g. ImageNet or a CoMCL encoder) from a file; nothing is downloaded.

    Strict: the file must hold every tensor of this backbone with its shape and nothing
    else (a torchvision classifier head `fc.*` is ignored)."""
    state = load_torch_file(
        path,
        "backbone weights file not found; pass a local .pth file (nothing is downloaded)",
        "cannot read backbone weights",
    )
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError("backbone weights file holds no state dict", path=path)
    if isinstance(backbone, TorchvisionResNet):
        state = _torchvision_resnet_keys(state)
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_strict(backbone, state, path)


def load_strict(module: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """Load `state` only if it fits `module` exactly; else one UserError naming the missing,
    unexpected and wrongly shaped keys (a partial load would train from a silent mix)."""
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(own[k].shape)
    ]
    if missing or unexpected or wrong:
        parts = [
            f"{label} {len(keys)} ({_some(keys)})"
            for label, keys in (
                ("missing", missing),
                ("unexpected", unexpected),
                ("other shape", wrong),
            )
            if keys
        ]
        raise UserError(
            f"weights do not fit backbone {type(module).__name__}: {'; '.join(parts)}; "
            "use weights saved from the same backbone, width and channels",
            path=source,
        )
    module.load_state_dict(dict(state))


def _some(keys: list[str], most: int = 3) -> str:
    more = f", ... {len(keys) - most} more" if len(keys) > most else ""
    return ", ".join(keys[:most]) + more


def _torchvision_resnet_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map torchvision's `conv1/bn1/layerN` names onto `body.i` positions."""
    order = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"]
    out = {}
    for key, value in state.items():
        head, _, rest = key.partition(".")
        if head in order:
            out[f"body.{order.index(head)}.{rest}"] = value
        else:
            out[key] = value
    return out
