"""The trainable lesion detector: it finds the synthetic generator's lesions on held-out
images, its checkpoint is what `DetectorBoxes` (and so `pretrain --detector`) reads,
and bad input ends in one clear line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from fediqad.commands import detector as detector_cmd
from shared.config import preset
from shared.contrastive.boxes import DetectorBoxes, source_label
from shared.contrastive.detector import (
    DetectorSettings,
    build_slim_detector,
    pad_boxes,
    save_detector,
    score_detector,
    train_detector,
)
from shared.contrastive.detector_fit import load_samples
from shared.errors import UserError
from tests.conftest import cli_for

cli = cli_for(detector_cmd.register)
# 64 px files, detector input 128 px (stride 4 = 2 file pixels), boxes padded to 6 px
SETTINGS = dict(input_size=128, min_box=12, width=32, epochs=16, batch_size=4, lr=1e-3)


@pytest.fixture(scope="module")
def lesion_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("detector")
    synthesize("EYEQ", 100, 64, root / "data", seed=11, lq_ratio=0.3, workers=1)
    return root / "data"


def test_built_without_pretrained_weights_and_small() -> None:
    model = build_slim_detector(128)
    assert sum(p.numel() for p in model.parameters()) < 200_000  # trains on a CPU in a test
    assert type(model).__name__ == "FCOS"


def test_padding_keeps_centres_and_grows_small_boxes_only() -> None:
    boxes = torch.tensor([[10.0, 10.0, 12.0, 12.0], [0.0, 0.0, 20.0, 20.0]])
    padded = pad_boxes(boxes, 12, 2.0, 2.0)  # 12 px at 2x = 6 file pixels
    assert torch.allclose(padded[0], torch.tensor([8.0, 8.0, 14.0, 14.0]))
    assert torch.equal(padded[1], boxes[1])


@pytest.fixture(scope="module")
def trained(lesion_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple:
    """(model, settings, history, checkpoint path) trained once on the train split."""
    torch.set_num_threads(1)
    csv = lesion_root / "EYEQ" / "lesions.csv"
    train = load_samples(lesion_root, preset("EYEQ"), "train", csv)
    settings = DetectorSettings(**SETTINGS)
    model, history = train_detector(train, settings)
    path = save_detector(tmp_path_factory.mktemp("ckpt") / "detector.pt", model, settings)
    return model, settings, history, path


def test_detector_finds_held_out_lesions(lesion_root: Path, trained: tuple) -> None:
    """Recall at IoU 0.3 on the test split (never seen in training) above a floor, with
    most kept boxes on a lesion: a detector predicting everywhere or nowhere fails."""
    model, settings, history, _ = trained
    assert history[-1]["loss"] < history[0]["loss"]
    csv = lesion_root / "EYEQ" / "lesions.csv"
    test = load_samples(lesion_root, preset("EYEQ"), "test", csv)
    report = score_detector(model, test, settings, iou=0.3)
    assert report.gt_boxes > 50
    assert report.recall >= 0.5, report
    assert report.precision >= 0.4, report


def test_pretrain_uses_the_detector_and_says_so(
    lesion_root: Path, trained: tuple, tmp_path: Path
) -> None:
    from fediqad.commands import contrastive

    path = trained[3]
    pretrain = cli_for(contrastive.register)
    result = pretrain(
        "pretrain", "--data-root", lesion_root, "--backbone", "vgg16_bn_slim",
        "--image-size", "64", "--device", "cpu", "--threads", "1", "--epochs", "1",
        "--batch-size", "32", "--set", "contrastive.patch_size=16",
        "--detector", path, "--out", tmp_path,
    )  # fmt: skip
    assert "lesion box source: detector (detector.pt)" in result.output
    assert "fallback" not in result.output
    history = json.loads((tmp_path / "pretrain.json").read_text())
    assert history["box_source"] == "detector" and history["patches"]["L"] > 0


def test_cli_writes_a_checkpoint_pretrain_can_use(lesion_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "det.pt"
    args = ["detector", "train", "--data-root", lesion_root, "--out", out, "--threads", 1]
    for key, value in SETTINGS.items():
        if key not in ("lr",):
            args += [f"--{key.replace('_', '-')}", value]
    args[args.index("--epochs") + 1] = 2  # the format, not the quality, is under test here
    result = cli(*args)
    assert "recall" in result.output and out.is_file()
    source = DetectorBoxes(out)
    assert source_label(source).startswith("detector")
    image = load_samples(lesion_root, preset("EYEQ"), "test", lesion_root / "EYEQ" / "lesions.csv")
    boxes = source(Path("x.png"), image[0].image)
    assert all(0 <= b.x0 < b.x1 <= 64 and 0 <= b.y0 < b.y1 <= 64 for b in boxes)
    again = cli(*args, ok=False)
    assert isinstance(again.exception, UserError) and "--force" in str(again.exception)


def test_cli_without_annotations_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "EYEQ").mkdir()
    result = cli("detector", "train", "--data-root", tmp_path, "--out", tmp_path / "d.pt", ok=False)
    assert isinstance(result.exception, UserError)
    assert "--annotations" in str(result.exception) and "\n" not in str(result.exception)
