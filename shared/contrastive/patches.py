"""A site's four CoMCL patch subsets: lesion-HQ (L), lesion-LQ (L~), healthy-HQ (H),
healthy-LQ (H~), held in memory as uint8 crops, and balanced batches over them.

Lesion patches: each lesion box of an image with a disease label (diagnosis > 0) is
expanded to a square of `patch_px` around its centre (a larger box keeps its own size),
shifted inside the image; boxes whose centre falls in an already chosen patch are
skipped, largest boxes first, up to `lesions_per_image`. Healthy patches: random
`patch_px` crops of images labelled healthy (diagnosis 0), mostly inside the field of
view. Quality 0 is HQ, any other quality LQ. Crops are resized to the encoder input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from shared.config import RunConfig
from shared.contrastive.boxes import Box, BoxSource

LESION_HQ, LESION_LQ, HEALTHY_HQ, HEALTHY_LQ = 0, 1, 2, 3
SUBSETS: tuple[str, ...] = ("L", "L~", "H", "H~")
SUBSET_NAMES: tuple[str, ...] = ("lesion-HQ", "lesion-LQ", "healthy-HQ", "healthy-LQ")
# CoMCL's three terms (anchor subset, negative subset): (L vs L~), (L vs H), (L~ vs H~).
TERMS: tuple[tuple[str, str], ...] = (("L", "L~"), ("L", "H"), ("L~", "H~"))
FOV_LEVEL = 0.04 * 255  # darker pixels are outside the camera's field of view
FOV_FRACTION = 0.75
CROP_TRIES = 10


def patch_px(cfg: RunConfig) -> int:
    """The paper's patch side scaled from its reference image size to the size in use."""
    c = cfg.contrastive
    side = round(c.patch_size * cfg.image_size / c.patch_reference_size)
    return int(min(max(side, 8), cfg.image_size))


def input_px(cfg: RunConfig) -> int:
    """Encoder input side: the patch side rounded up to a multiple of 32 (five poolings)."""
    return max(32, 32 * math.ceil(patch_px(cfg) / 32))


@dataclass
class PatchBank:
    """Crops [N, C, S, S] uint8 with their subset (0-3), source image and unique id."""

    patches: torch.Tensor
    subset: torch.Tensor
    source: torch.Tensor

    def __len__(self) -> int:
        return int(self.patches.shape[0])

    @property
    def ids(self) -> torch.Tensor:
        return torch.arange(len(self))

    def counts(self) -> dict[str, int]:
        got = torch.bincount(self.subset, minlength=len(SUBSETS)).tolist()
        return {name: int(n) for name, n in zip(SUBSETS, got, strict=True)}

    def empty_subsets(self) -> list[str]:
        return [name for name, n in self.counts().items() if n == 0]

    def steps_per_epoch(self, batch_size: int) -> int:
        return max(1, math.ceil(len(self) / batch_size))

    def batches(self, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One epoch of index batches; each non-empty subset gets an equal share of the
        batch (capped at its size, so no patch appears twice in a batch), cycling
        through its own shuffled order."""
        members = [torch.nonzero(self.subset == s).flatten() for s in range(len(SUBSETS))]
        present = [m for m in members if len(m)]
        if not present:
            return
        quota = max(1, batch_size // len(present))
        orders = [m[torch.randperm(len(m), generator=generator)] for m in present]
        cursors = [0] * len(present)
        for _ in range(self.steps_per_epoch(batch_size)):
            picks = []
            for k, order in enumerate(orders):
                take = min(quota, len(order))
                idx = (cursors[k] + torch.arange(take)) % len(order)
                picks.append(order[idx])
                cursors[k] = (cursors[k] + take) % len(order)
                if cursors[k] < take:  # wrapped: reshuffle for the next pass
                    perm = torch.randperm(len(order), generator=generator)
                    orders[k] = order[perm]
            yield torch.cat(picks)


def lesion_squares(
    boxes: Sequence[Box], side: int, size: int, limit: int
) -> list[tuple[int, int, int]]:
    """(x0, y0, side) squares around boxes: largest first, no centre inside an earlier
    square, each shifted to lie inside the image."""
    out: list[tuple[int, int, int]] = []
    for box in sorted(boxes, key=lambda b: -b.area):
        if len(out) >= limit:
            break
        cx, cy = (box.x0 + box.x1) / 2, (box.y0 + box.y1) / 2
        if not (0 <= cx < size and 0 <= cy < size):
            continue
        if any(x <= cx < x + s and y <= cy < y + s for x, y, s in out):
            continue
        s = int(min(max(side, math.ceil(box.x1 - box.x0), math.ceil(box.y1 - box.y0)), size))
        x0 = int(min(max(round(cx - s / 2), 0), size - s))
        y0 = int(min(max(round(cy - s / 2), 0), size - s))
        out.append((x0, y0, s))
    return out


def healthy_squares(
    image: torch.Tensor, side: int, count: int, rng: np.random.Generator
) -> list[tuple[int, int, int]]:
    """Random squares, each retried until mostly inside the field of view."""
    size = image.shape[-1]
    bright = image.max(dim=0).values > FOV_LEVEL
    out = []
    for _ in range(count):
        x0 = y0 = 0
        for _ in range(CROP_TRIES):
            x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
            if bright[y0 : y0 + side, x0 : x0 + side].float().mean() >= FOV_FRACTION:
                break
        out.append((x0, y0, side))
    return out


def _crop(image: torch.Tensor, square: tuple[int, int, int], out_px: int) -> torch.Tensor:
    x0, y0, s = square
    crop = image[:, y0 : y0 + s, x0 : x0 + s]
    if s != out_px:
        crop = TF.resize(crop, [out_px, out_px], antialias=True)
    return crop


def build_bank(
    images: Sequence[torch.Tensor] | Callable[[int], torch.Tensor],
    paths: Sequence[Path],
    diagnosis: Sequence[int],
    quality: Sequence[int],
    source: BoxSource,
    cfg: RunConfig,
    seed: int = 0,
) -> PatchBank:
    """The four subsets of one site from its images (uint8 [C, S, S], by index)."""
    c = cfg.contrastive
    side, out_px = patch_px(cfg), input_px(cfg)
    get = images if callable(images) else images.__getitem__
    rng = np.random.default_rng([seed, 5])
    crops: list[torch.Tensor] = []
    subsets: list[int] = []
    sources: list[int] = []
    for i, path in enumerate(paths):
        image = get(i)
        hq = int(quality[i]) == 0
        if int(diagnosis[i]) > 0:
            squares = lesion_squares(
                source(Path(path), image), side, image.shape[-1], c.lesions_per_image
            )
            kind = LESION_HQ if hq else LESION_LQ
        else:
            squares = healthy_squares(image, side, c.healthy_per_image, rng)
            kind = HEALTHY_HQ if hq else HEALTHY_LQ
        for square in squares:
            crops.append(_crop(image, square, out_px))
            subsets.append(kind)
            sources.append(i)
    channels = cfg.dataset.channels
    patches = (
        torch.stack(crops) if crops else torch.zeros(0, channels, out_px, out_px, dtype=torch.uint8)
    )
    return PatchBank(
        patches, torch.tensor(subsets, dtype=torch.int64), torch.tensor(sources, dtype=torch.int64)
    )


def split_bank(
    data_root: Path, cfg: RunConfig, source: BoxSource, split: str = "train", seed: int = 0
) -> PatchBank:
    """The patch bank of one split of ROOT/NAME (a site's training data)."""
    from shared.data.dataset import open_split

    data = open_split(data_root, cfg, split)
    paths = [r.image for r in data.records]
    return build_bank(
        data.image_uint8, paths, data.diagnosis.tolist(), data.quality.tolist(), source, cfg, seed
    )


def describe(bank: PatchBank) -> str:
    return ", ".join(f"{name} {n}" for name, n in bank.counts().items())


def skipped_terms(bank: PatchBank, multi_level: bool) -> list[str]:
    """Warnings for the loss terms this bank cannot form (an empty subset)."""
    if not multi_level:
        return [] if len(bank) >= 2 else ["fewer than 2 patches: nothing to contrast"]
    counts = bank.counts()
    out = []
    for anchor, negative in TERMS:
        empty = [s for s in (anchor, negative) if counts[s] == 0]
        if empty:
            names = " and ".join(f"{s} ({SUBSET_NAMES[SUBSETS.index(s)]})" for s in empty)
            out.append(f"no {names} patches: term ({anchor} vs {negative}) is skipped")
    return out
