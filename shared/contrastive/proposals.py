"""The unsupervised lesion-box fallback: a heuristic, not a trained detector.

Proposal fallback (no boxes, no detector): lesions are small spots that differ from
their surroundings. On the green channel (fundus) or the grey image, subtract a local
background (Gaussian blur, sigma = S/24); threshold the absolute residual at mean + 3
std inside the field of view (pixels brighter than 4 % of full scale, eroded by S/32 so
the rim's edge does not count); label connected components; drop components larger
than (S/8)^2 pixels (vessels, optic disc) and keep the strongest (summed residual).
It is a heuristic: it also proposes vessel crossings and artefact spots.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from shared.contrastive.box import Box


class ProposalBoxes:
    """The unsupervised fallback described in the module docstring."""

    name = "proposals"
    label = "proposals (unsupervised heuristic fallback, not a trained detector)"
    work_px = 512  # full-resolution photographs are searched at this size

    def __init__(self, max_boxes: int = 8, k_std: float = 3.0):
        self.max_boxes = max_boxes
        self.k_std = k_std

    def __call__(self, path: Path, image: torch.Tensor) -> list[Box]:
        height, width = image.shape[-2:]
        scale = self.work_px / max(height, width)
        if scale >= 1:
            return propose(image, self.max_boxes, self.k_std)
        from torchvision.transforms.v2 import functional as TF

        small = TF.resize(image, [round(height * scale), round(width * scale)], antialias=True)
        found = propose(small, self.max_boxes, self.k_std)
        return [b.scaled(width / small.shape[-1], height / small.shape[-2]) for b in found]


def propose(image: torch.Tensor, max_boxes: int = 8, k_std: float = 3.0) -> list[Box]:
    """Candidate lesion boxes in one uint8 [C, S, S] image (see module docstring)."""
    arr = image.numpy().astype(np.float32)
    size = max(arr.shape[-2:])
    grey = arr[1] if arr.shape[0] == 3 else arr[0]
    background = ndimage.gaussian_filter(grey, sigma=max(size / 24, 1.0))
    residual = np.abs(grey - background)
    fov = arr.max(axis=0) > 0.04 * 255
    fov = ndimage.binary_erosion(fov, iterations=max(1, size // 32))
    if fov.sum() < 16:
        return []
    inside = residual[fov]
    peaks = (residual > inside.mean() + k_std * inside.std()) & fov
    labels, count = ndimage.label(peaks)
    if count == 0:
        return []
    index = np.arange(1, count + 1)
    areas = ndimage.sum_labels(np.ones_like(grey), labels, index)
    strength = ndimage.sum_labels(residual, labels, index)
    slices = ndimage.find_objects(labels)
    limit = (size / 8) ** 2
    ranked = sorted((i for i in range(count) if areas[i] <= limit), key=lambda i: -strength[i])
    out = []
    for i in ranked[:max_boxes]:
        ys, xs = slices[i]
        out.append(Box(float(xs.start), float(ys.start), float(xs.stop), float(ys.stop)))
    return out
