"""Grad-CAM (Selvaraju et al., ICCV 2017) for every head of a Task Net.

All heads share one backbone, so the maps differ only through each head's channel
weights: comparing them shows where the quality and auxiliary branches look
compared with the diagnosis head (MKCNet's Fig. 9).

The hooked layer is the backbone's last convolutional activation at full
resolution (VGG: the last ReLU of block 5, before its max-pool; ResNet: layer 4),
never the 1x1 map that `TaskNet.features` returns for `gab="pooled"`: a pooled map
has no spatial extent to explain.

Targets: diagnosis and quality explain their predicted class. The auxiliary head
outputs D*Q blocks of L soft-label positions; it is explained for the joint block
it rates highest (log-sum-exp over the block's L logits).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared.models.backbones import VGG16BN, TorchvisionResNet
from shared.models.outputs import TaskOutputs

HEADS = ("diagnosis", "quality", "auxiliary")
_EPS = 1e-12


@dataclass
class Explanation:
    """Grad-CAM maps per head for a batch of images.

    `maps[head]` is float32 [N, S, S] (the model's input size), finite, in [0, 1]
    (each map divided by its own maximum); `peak[head]` is that maximum before
    normalising (0 means the head found no positive evidence). `missing` says why a
    head could not be explained (e.g. a model without quality branch).
    """

    layer: str
    maps: dict[str, np.ndarray] = field(default_factory=dict)
    peak: dict[str, np.ndarray] = field(default_factory=dict)
    target: dict[str, np.ndarray] = field(default_factory=dict)
    diagnosis_prob: np.ndarray | None = None
    quality_prob: np.ndarray | None = None
    missing: dict[str, str] = field(default_factory=dict)


def target_layer(task_net: nn.Module) -> tuple[str, nn.Module]:
    """The layer whose activation Grad-CAM weighs: (dotted name, module)."""
    backbone = getattr(task_net, "model", None)
    if backbone is None:
        raise ValueError(f"{type(task_net).__name__} has no backbone attribute `model`")
    if isinstance(backbone, VGG16BN):
        block = backbone.block5
        index = max(i for i, m in enumerate(block) if isinstance(m, nn.ReLU))
        return f"model.block5.{index}", block[index]
    if isinstance(backbone, TorchvisionResNet):
        return f"model.body.{len(backbone.body) - 1}", backbone.body[-1]
    return "model", backbone


def _head_scores(
    out: TaskOutputs,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Per head: the score per image whose gradient is taken, and the class it explains."""
    scores: dict[str, torch.Tensor] = {}
    targets: dict[str, torch.Tensor] = {}
    rows = torch.arange(out.diagnosis.shape[0])
    targets["diagnosis"] = out.diagnosis.argmax(1)
    scores["diagnosis"] = out.diagnosis[rows, targets["diagnosis"]]
    if out.quality is not None:
        targets["quality"] = out.quality.argmax(1)
        scores["quality"] = out.quality[rows, targets["quality"]]
    if out.auxiliary is not None and out.quality is not None:
        joint = out.diagnosis.shape[1] * out.quality.shape[1]
        blocks = out.auxiliary.reshape(out.auxiliary.shape[0], joint, -1).logsumexp(dim=2)
        targets["auxiliary"] = blocks.argmax(1)
        scores["auxiliary"] = blocks[rows, targets["auxiliary"]]
    return scores, targets


def _why_missing(head: str, task_net: nn.Module) -> str:
    kind = type(task_net).__name__
    if head == "quality":
        return f"this model ({kind}) has no quality branch"
    return f"this model ({kind}) has no auxiliary (meta-knowledge) branch"


def _cam(activation: torch.Tensor, grad: torch.Tensor, size: int) -> torch.Tensor:
    """ReLU(sum_c mean(grad_c) * A_c), upsampled bilinearly to size x size."""
    weights = grad.mean(dim=(2, 3), keepdim=True)
    cam = torch.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=(size, size), mode="bilinear", align_corners=False)
    cam = torch.nan_to_num(cam.clamp_min(0.0)[:, 0], nan=0.0, posinf=0.0)
    return cam


def grad_cam(
    task_net: nn.Module, images: torch.Tensor, heads: tuple[str, ...] = HEADS
) -> Explanation:
    """Grad-CAM maps of `heads` for normalised images [N, C, S, S] (eval mode, no training
    state is changed; BatchNorm uses its running statistics)."""
    name, layer = target_layer(task_net)
    was_training = task_net.training
    task_net.eval()
    captured: list[torch.Tensor] = []
    handle = layer.register_forward_hook(lambda _m, _i, output: captured.append(output))
    try:
        with torch.enable_grad():
            x = images.detach().clone().requires_grad_(True)
            out = task_net(x)
            activation = captured[-1]
            scores, targets = _head_scores(out)
            result = Explanation(layer=name)
            wanted = [h for h in heads if h in scores]
            for index, head in enumerate(wanted):
                grad = torch.autograd.grad(
                    scores[head].sum(), activation, retain_graph=index < len(wanted) - 1
                )[0]
                cam = _cam(activation.detach(), grad.detach(), images.shape[-1])
                peak = cam.flatten(1).amax(dim=1)
                result.maps[head] = (cam / peak.clamp_min(_EPS)[:, None, None]).float().numpy()
                result.peak[head] = peak.float().numpy()
                result.target[head] = targets[head].numpy()
            for head in heads:
                if head not in scores:
                    result.missing[head] = _why_missing(head, task_net)
            result.diagnosis_prob = torch.softmax(out.diagnosis.detach().float(), 1).numpy()
            if out.quality is not None:
                result.quality_prob = torch.softmax(out.quality.detach().float(), 1).numpy()
    finally:
        handle.remove()
        task_net.train(was_training)
    for head, cam_map in result.maps.items():
        result.maps[head] = np.clip(np.nan_to_num(cam_map, nan=0.0), 0.0, 1.0)
    return result
