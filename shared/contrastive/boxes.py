"""Where the lesions are: boxes from an annotation CSV, a torchvision detector, or an
unsupervised proposal fallback. Every source answers in pixels of the image it is
given (the full-resolution file for CoMCL's patches).

Annotation CSV: header `image,x0,y0,x1,y1[,kind]`, one row per lesion, coordinates in
pixels of the image file, `image` relative to the dataset folder (the synthetic data's
`lesions.csv`) or absolute.

Detector checkpoint: the file `fediqad detector train` writes (`detector.py`: FCOS on a
slim backbone, arch `fcos_slim`), or a file written with `torch.save` holding either the
state dict of a torchvision detection model, or `{"arch": NAME, "num_classes": K,
"state_dict": ...}` (optionally `"score_threshold"`). NAME is one of DETECTOR_ARCHS; it
is inferred from the keys when absent. Only this file's weights are used; nothing is
downloaded.

Proposal fallback (no boxes, no detector): `proposals.py`, a labelled heuristic.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from shared.contrastive.box import Box, BoxSource
from shared.contrastive.detector import SLIM_ARCH, build_slim_detector
from shared.contrastive.proposals import ProposalBoxes, propose
from shared.errors import UserError

__all__ = [
    "Box",
    "BoxSource",
    "CsvBoxes",
    "DetectorBoxes",
    "ProposalBoxes",
    "choose_source",
    "propose",
]

DETECTOR_ARCHS: tuple[str, ...] = (
    "fasterrcnn_resnet50_fpn",
    "fasterrcnn_resnet50_fpn_v2",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
)


def _key(path: str | Path) -> str:
    return os.path.normcase(os.path.normpath(os.path.abspath(path)))


class CsvBoxes:
    """Boxes from an annotation file; coordinates scaled from the file's image size."""

    name = "annotations"

    def __init__(self, path: Path, dataset_dir: Path):
        self.path = Path(path)
        self.label = f"annotations ({self.path.name})"
        if not self.path.is_file():
            raise UserError("lesion annotation file not found", path=self.path)
        self.by_image: dict[str, list[Box]] = {}
        self.by_name: dict[str, list[Box]] = {}
        self._sizes: dict[str, tuple[int, int]] = {}
        self._read(Path(dataset_dir))

    def _read(self, dataset_dir: Path) -> None:
        with self.path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            need = {"image", "x0", "y0", "x1", "y1"}
            if reader.fieldnames is None or not need <= set(reader.fieldnames):
                raise UserError(
                    "lesion file needs the header image,x0,y0,x1,y1[,kind]", path=self.path
                )
            for line, row in enumerate(reader, start=2):
                try:
                    box = Box(*(float(row[k]) for k in ("x0", "y0", "x1", "y1")))
                except (TypeError, ValueError):
                    raise UserError(
                        "box coordinates must be numbers", path=self.path, line=line
                    ) from None
                if box.x1 <= box.x0 or box.y1 <= box.y0:
                    raise UserError("box has x1 <= x0 or y1 <= y0", path=self.path, line=line)
                image = Path(row["image"])
                full = image if image.is_absolute() else dataset_dir / image
                self.by_image.setdefault(_key(full), []).append(box)
                self.by_name.setdefault(image.name, []).append(box)

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_image.values())

    def _file_size(self, path: Path) -> tuple[int, int]:
        key = _key(path)
        if key not in self._sizes:
            with Image.open(path) as img:  # reads the header only
                self._sizes[key] = img.size
        return self._sizes[key]

    def __call__(self, path: Path, image: torch.Tensor) -> list[Box]:
        boxes = self.by_image.get(_key(path))
        if boxes is None:  # a site folder of links: match by file name
            boxes = self.by_name.get(Path(path).name, [])
        if not boxes:
            return []
        width, height = self._file_size(Path(path))
        size_y, size_x = image.shape[-2:]
        return [b.scaled(size_x / width, size_y / height) for b in boxes]


# ------------------------------------------------------------------------ detector
def _head_classes(state: dict[str, Any]) -> tuple[tuple[str, ...], int]:
    """Candidate archs and class count from the detection head's weights."""
    keys = set(state)
    if "roi_heads.box_predictor.cls_score.weight" in keys:
        classes = int(state["roi_heads.box_predictor.cls_score.weight"].shape[0])
        return tuple(a for a in DETECTOR_ARCHS if a.startswith("fasterrcnn")), classes
    if "head.classification_head.cls_logits.weight" in keys:
        out = int(state["head.classification_head.cls_logits.weight"].shape[0])
        if "head.regression_head.bbox_ctrness.weight" in keys:
            return ("fcos_resnet50_fpn",), out
        return ("retinanet_resnet50_fpn",), out // 9
    raise ValueError("no detection head keys")


def _mismatch(model: torch.nn.Module, state: dict[str, Any]) -> str:
    """'' when `state` fits `model` exactly, else a short count of what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unknown = [k for k in state if k not in own]
    shape = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if not (missing or unknown or shape):
        return ""
    example = (shape + missing + unknown)[0]
    return (
        f"{len(missing)} missing, {len(unknown)} unknown, {len(shape)} of another "
        f"shape, e.g. {example!r}"
    )


class DetectorBoxes:
    """Boxes from a torchvision detection model whose weights are in a local file."""

    name = "detector"

    def __init__(self, path: Path, score_threshold: float = 0.5, device: str = "cpu"):
        self.label = f"detector ({Path(path).name})"
        self.path = Path(path)
        self.device = torch.device(device)
        self.model, self.score_threshold = self._load(score_threshold)

    def _fail(self, why: str) -> UserError:
        return UserError(
            f"not a usable detector checkpoint: {why}; expected a torchvision detection "
            f"model's state_dict, or {{'arch', 'num_classes', 'state_dict'}} with arch one "
            f"of {', '.join((SLIM_ARCH, *DETECTOR_ARCHS))} (`fediqad detector train` "
            "writes one)",
            path=self.path,
        )

    def _load(self, score_threshold: float) -> tuple[torch.nn.Module, float]:
        from torchvision.models import detection

        if not self.path.is_file():
            raise UserError("detector checkpoint not found", path=self.path)
        try:
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as err:  # noqa: BLE001 - any unpickling failure is the file's fault
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise self._fail(
                f"cannot read it as tensors ({first[:160]}); save "
                "model.state_dict(), not the model object"
            ) from None
        if not isinstance(data, dict):
            raise self._fail(f"it holds a {type(data).__name__}")
        state = data.get("state_dict", data)
        if not isinstance(state, dict) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise self._fail("its state_dict is not a mapping of tensors")
        threshold = float(data.get("score_threshold", score_threshold))
        if data.get("arch") == SLIM_ARCH:
            model = build_slim_detector(
                int(data.get("input_size", 512)),
                int(data.get("num_classes", 2)),
                int(data.get("width", 32)),
                int(data.get("min_box", 8)),
            )
            why = _mismatch(model, state)
            if why:
                raise self._fail(f"weights do not fit {SLIM_ARCH} ({why})")
            model.load_state_dict(state)
            return model.eval().to(self.device), threshold
        if "arch" in data:
            archs, classes = (str(data["arch"]),), int(data.get("num_classes", 2))
            if archs[0] not in DETECTOR_ARCHS:
                raise self._fail(f"unknown arch {archs[0]!r}")
        else:
            try:
                archs, classes = _head_classes(state)
            except ValueError:
                raise self._fail("no detection-head weights found and no 'arch'") from None
        why = ""
        for arch in sorted(archs, key=lambda a: "mobilenet" not in a):  # cheap ones first
            model = getattr(detection, arch)(
                weights=None, weights_backbone=None, num_classes=classes
            )
            why = _mismatch(model, state)
            if not why:
                model.load_state_dict(state)
                break
        else:
            raise self._fail(
                f"weights do not fit {' or '.join(archs)} with {classes} classes ({why})"
            )
        return model.eval().to(self.device), threshold

    @torch.no_grad()
    def __call__(self, path: Path, image: torch.Tensor) -> list[Box]:
        x = image.to(self.device, torch.float32) / 255.0
        if x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        out = self.model([x])[0]
        keep = out["scores"] >= self.score_threshold
        return [Box(*map(float, b)) for b in out["boxes"][keep].cpu()]


def choose_source(
    dataset_dir: Path,
    lesions: Path | None = None,
    detector: Path | None = None,
    proposals: bool = False,
    device: str = "cpu",
    say: Callable[[str], None] | None = None,
) -> BoxSource:
    """The box source the user asked for; without one, DATASET/lesions.csv if present,
    else the proposal fallback (announced once through `say`)."""
    given = [
        name
        for name, v in (
            ("--lesions", lesions),
            ("--detector", detector),
            ("--proposals", proposals or None),
        )
        if v is not None
    ]
    if len(given) > 1:
        raise UserError(f"give at most one lesion box source, not {' and '.join(given)}")
    if lesions is not None:
        return CsvBoxes(lesions, dataset_dir)
    if detector is not None:
        return DetectorBoxes(detector, device=device)
    default = Path(dataset_dir) / "lesions.csv"
    if not proposals and default.is_file():
        if say is not None:
            say(f"lesion boxes from {default}")
        return CsvBoxes(default, dataset_dir)
    if say is not None and not proposals:
        say(
            "no lesion boxes (no --lesions, no --detector, no lesions.csv in the dataset "
            "folder): using the unsupervised proposal fallback (docs/comcl.md)"
        )
    return ProposalBoxes()


def source_label(source: BoxSource) -> str:
    """What logs and reports call this box source (the fallback says it is one)."""
    return str(getattr(source, "label", getattr(source, "name", "custom")))


def boxes_for(
    source: BoxSource, paths: Sequence[Path], images: Sequence[torch.Tensor]
) -> list[list[Box]]:
    return [source(p, img) for p, img in zip(paths, images, strict=True)]


def box_side(box: Box) -> float:
    return math.ceil(max(box.x1 - box.x0, box.y1 - box.y0))
