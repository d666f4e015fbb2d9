"""A lesion detector users can train: torchvision's FCOS on a slim convolutional
backbone, built without any pretrained weights, trained on box annotations.

CoMCL's lesion patches come from a detector trained on IDRiD. This module trains one on
the user's own boxes (IDRiD-style: one box per lesion, in pixels of the image file; see
docs/comcl.md "Training a lesion detector") and writes a checkpoint that
`fediqad pretrain --detector FILE` uses for patch extraction (`boxes.DetectorBoxes`).

Lesions are tiny (a microaneurysm is a few pixels), so boxes narrower than `min_box`
pixels at the detector's input size are padded around their centre to `min_box`, in
training and in scoring: a lesion patch is much larger than that, only its centre
matters. Images listed in the split file without any box are lesion-free negatives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import box_iou

from shared.checkpoint import atomic_torch_save

FORMAT = "fediqad-detector"
SLIM_ARCH = "fcos_slim"
STRIDE = 4  # feature map stride of the slim backbone


class SlimDetectorBackbone(nn.Module):
    """Four 3x3 conv-GroupNorm-ReLU blocks, stride 4, `out_channels` features (FCOS
    needs the attribute). GroupNorm, as in FCOS's head: small batches of images with
    few lesions made BatchNorm's running statistics swing the scores."""

    def __init__(self, in_channels: int = 3, width: int = 32):
        super().__init__()
        half = max(width // 2, 4)

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.GroupNorm(min(8, cout // 2), cout),
                nn.ReLU(inplace=True),
            ]

        self.body = nn.Sequential(
            *block(in_channels, half, 1),
            *block(half, half, 2),
            *block(half, width, 1),
            *block(width, width, 2),
        )
        self.out_channels = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def build_slim_detector(
    input_size: int, num_classes: int = 2, width: int = 32, min_box: int = 8
) -> FCOS:
    """FCOS (torchvision) on the slim backbone; one feature level of stride 4, points
    every 4 px with an anchor size of `min_box`. Images are resized to `input_size`."""
    anchors = AnchorGenerator(sizes=((min_box,),), aspect_ratios=((1.0,),))
    return FCOS(
        SlimDetectorBackbone(3, width),
        num_classes=num_classes,
        min_size=input_size,
        max_size=input_size,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.25, 0.25, 0.25],
        anchor_generator=anchors,
        score_thresh=0.05,
        detections_per_img=50,
        topk_candidates=200,
        nms_thresh=0.3,
    )


@dataclass
class DetectorSettings:
    input_size: int = 512
    width: int = 32
    min_box: int = 8
    epochs: int = 30
    batch_size: int = 4
    lr: float = 1e-3
    seed: int = 0
    score_threshold: float = 0.5

    def check(self) -> None:
        """UserError naming the `fediqad detector train` flag that is out of range."""
        from shared.errors import UserError

        for flag, value, low in (
            ("--epochs", self.epochs, 1),
            ("--batch-size", self.batch_size, 1),
            ("--width", self.width, 4),
            ("--min-box", self.min_box, 1),
            ("--input-size", self.input_size, 16),
        ):
            if value < low:
                raise UserError(f"{flag} must be at least {low}, got {value}")
        if not 0.0 <= self.score_threshold <= 1.0:
            raise UserError(f"--score-threshold must lie in [0, 1], got {self.score_threshold}")


@dataclass
class DetectionSample:
    image: torch.Tensor  # uint8 [C, H, W] as in the file (3 channels)
    boxes: torch.Tensor  # float [N, 4] x0, y0, x1, y1 in its pixels


@dataclass
class DetectorReport:
    recall: float
    precision: float
    gt_boxes: int
    predicted: int
    images: int
    iou: float
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


def pad_boxes(boxes: torch.Tensor, min_side: float, scale_x: float, scale_y: float) -> torch.Tensor:
    """Boxes padded around their centre so each side is at least `min_side` pixels of
    the detector input (the image is scaled by (scale_x, scale_y) there)."""
    if boxes.numel() == 0:
        return boxes.reshape(0, 4)
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    w = torch.clamp(boxes[:, 2] - boxes[:, 0], min=min_side / scale_x)
    h = torch.clamp(boxes[:, 3] - boxes[:, 1], min=min_side / scale_y)
    return torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1)


def _rgb(image: torch.Tensor) -> torch.Tensor:
    x = image.to(torch.float32) / 255.0
    return x.expand(3, -1, -1) if x.shape[0] == 1 else x


def _target(sample: DetectionSample, s: DetectorSettings) -> dict[str, torch.Tensor]:
    h, w = sample.image.shape[-2:]
    boxes = pad_boxes(sample.boxes.float(), s.min_box, s.input_size / w, s.input_size / h)
    return {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


def train_detector(
    samples: Sequence[DetectionSample],
    s: DetectorSettings,
    on_epoch: Callable[[int, float], None] | None = None,
) -> tuple[FCOS, list[dict[str, float]]]:
    """Adam on FCOS's own losses (focal classification, GIoU boxes, centre-ness)."""
    torch.manual_seed(s.seed)
    model = build_slim_detector(s.input_size, 2, s.width, s.min_box)
    optimizer = torch.optim.Adam(model.parameters(), lr=s.lr)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(s.epochs, 1))
    generator = torch.Generator().manual_seed(s.seed)
    targets = [_target(x, s) for x in samples]
    history = []
    for epoch in range(s.epochs):
        model.train()
        order = torch.randperm(len(samples), generator=generator).tolist()
        total, steps = 0.0, 0
        for start in range(0, len(order), s.batch_size):
            batch = order[start : start + s.batch_size]
            images, batch_targets = [], []
            for i in batch:
                image, target = _rgb(samples[i].image), dict(targets[i])
                if torch.rand((), generator=generator) < 0.5:  # horizontal flip
                    image = image.flip(-1)
                    width = image.shape[-1]
                    b = target["boxes"].clone()
                    b[:, [0, 2]] = width - target["boxes"][:, [2, 0]]
                    target["boxes"] = b
                images.append(image)
                batch_targets.append(target)
            losses = model(images, batch_targets)
            loss = sum(losses.values())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            total += float(loss.detach())
            steps += 1
        scheduler.step()
        history.append({"epoch": epoch + 1, "loss": total / max(steps, 1)})
        if on_epoch is not None:
            on_epoch(epoch + 1, total / max(steps, 1))
    return model.eval(), history


@torch.no_grad()
def predict(model: nn.Module, image: torch.Tensor, score_threshold: float) -> torch.Tensor:
    """Boxes [N, 4] in the image's own pixels with score >= `score_threshold`."""
    model.eval()
    out = model([_rgb(image)])[0]
    return out["boxes"][out["scores"] >= score_threshold]


def score_detector(
    model: nn.Module,
    samples: Sequence[DetectionSample],
    s: DetectorSettings,
    iou: float = 0.3,
) -> DetectorReport:
    """Recall (annotated lesions hit by a kept box at IoU >= `iou`) and precision (kept
    boxes that hit a lesion), both on boxes padded to `min_box` as in training."""
    hit = total = good = predicted = 0
    for sample in samples:
        gt = _target(sample, s)["boxes"]
        pred = predict(model, sample.image, s.score_threshold)
        total += len(gt)
        predicted += len(pred)
        if len(gt) and len(pred):
            overlap = box_iou(gt, pred)
            hit += int((overlap.max(dim=1).values >= iou).sum())
            good += int((overlap.max(dim=0).values >= iou).sum())
    return DetectorReport(
        recall=hit / total if total else float("nan"),
        precision=good / predicted if predicted else float("nan"),
        gt_boxes=total,
        predicted=predicted,
        images=len(samples),
        iou=iou,
    )


def save_detector(
    path: Path, model: nn.Module, s: DetectorSettings, extra: dict[str, Any] | None = None
) -> Path:
    """The checkpoint `boxes.DetectorBoxes` reads (weights_only-safe: tensors and plain
    values)."""
    payload = {
        "format": FORMAT,
        "arch": SLIM_ARCH,
        "num_classes": 2,
        "input_size": int(s.input_size),
        "width": int(s.width),
        "min_box": int(s.min_box),
        "score_threshold": float(s.score_threshold),
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        **(extra or {}),
    }
    return atomic_torch_save(payload, Path(path))
