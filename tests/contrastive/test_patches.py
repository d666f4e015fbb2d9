"""Patch subsets and box sources: CSV scaling, square expansion, the four subsets,
the proposal fallback, detector checkpoints good and bad."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.contrastive.boxes import (
    Box,
    CsvBoxes,
    DetectorBoxes,
    ProposalBoxes,
    choose_source,
    propose,
)
from shared.contrastive.patches import (
    HEALTHY_HQ,
    HEALTHY_LQ,
    LESION_HQ,
    LESION_LQ,
    build_bank,
    input_px,
    lesion_squares,
    patch_px,
    skipped_terms,
    split_bank,
)
from shared.data.dataset import open_split
from shared.errors import UserError
from tests.support.configs import comcl_config


def test_patches_are_cut_from_the_full_resolution_file(tmp_path: Path) -> None:
    """128 px files, a run at 64 px images: a 32 px patch is the file's own pixels,
    not a crop of the image resized to 64 (which would cover twice the area)."""
    from shared.data.synth import synthesize

    synthesize("EYEQ", 12, 128, tmp_path / "data", seed=5, lq_ratio=0.5, workers=1)
    root, folder = tmp_path / "data", tmp_path / "data" / "EYEQ"
    cfg = comcl_config(patch_size=32)
    assert (patch_px(cfg), input_px(cfg), cfg.image_size) == (32, 32, 64)
    source = CsvBoxes(folder / "lesions.csv", folder)
    bank = split_bank(root, cfg, source)
    data = open_split(root, cfg, "train")
    lesion = int(torch.nonzero(bank.subset <= LESION_LQ)[0])
    record = data.records[int(bank.source[lesion])]
    full = torch.from_numpy(np.asarray(Image.open(record.image))).permute(2, 0, 1)
    x, y, side = lesion_squares(source(record.image, full), 32, (128, 128), 4)[0]
    assert side == 32
    assert torch.equal(bank.patches[lesion], full[:, y : y + 32, x : x + 32])


def test_csv_boxes_scale_to_the_loaded_size(tmp_path: Path) -> None:
    (tmp_path / "Images").mkdir()
    Image.fromarray(np.zeros((128, 128, 3), np.uint8)).save(tmp_path / "Images" / "a.png")
    (tmp_path / "boxes.csv").write_text("image,x0,y0,x1,y1,kind\nImages/a.png,20,40,30,60,ma\n")
    source = CsvBoxes(tmp_path / "boxes.csv", tmp_path)
    got = source(tmp_path / "Images" / "a.png", torch.zeros(3, 64, 64, dtype=torch.uint8))
    assert got == [Box(10, 20, 15, 30)]
    assert source(tmp_path / "Images" / "other.png", torch.zeros(3, 64, 64)) == []
    (tmp_path / "bad.csv").write_text("image,x0,y0\nImages/a.png,1,2\n")
    with pytest.raises(UserError, match="header"):
        CsvBoxes(tmp_path / "bad.csv", tmp_path)


def test_lesion_squares_expand_shift_and_deduplicate() -> None:
    boxes = [Box(1, 1, 3, 3), Box(2, 2, 4, 4), Box(40, 40, 60, 62), Box(30, 5, 32, 7)]
    squares = lesion_squares(boxes, side=16, size=64, limit=10)
    assert squares[0] == (39, 40, 22)  # the big box first, keeping its own size
    for x, y, s in squares:
        assert min(x, y) >= 0 and max(x, y) + s <= 64 and s >= 16
    near_corner = [sq for sq in squares if sq[0] == 0 and sq[1] == 0]
    assert len(near_corner) == 1  # the second corner box falls inside the first square
    assert len(lesion_squares(boxes, 16, 64, limit=1)) == 1


def test_four_subsets_follow_labels(synth_root: Path) -> None:
    cfg = comcl_config()
    folder = synth_root / "EYEQ"
    bank = split_bank(synth_root, cfg, CsvBoxes(folder / "lesions.csv", folder))
    counts = bank.counts()
    assert all(counts[s] > 0 for s in ("L", "L~", "H", "H~")), counts
    assert bank.patches.shape[1:] == (3, 32, 32) and bank.patches.dtype == torch.uint8
    data = open_split(synth_root, cfg, "train")
    diagnosis, quality = data.diagnosis[bank.source], data.quality[bank.source]
    lesion = (bank.subset == LESION_HQ) | (bank.subset == LESION_LQ)
    assert (diagnosis[lesion] > 0).all() and (diagnosis[~lesion] == 0).all()
    hq = (bank.subset == LESION_HQ) | (bank.subset == HEALTHY_HQ)
    assert (quality[hq] == 0).all() and (quality[~hq] > 0).all()
    assert skipped_terms(bank, True) == []
    # balanced batches: every subset present, no patch twice in a batch
    for index in bank.batches(32, torch.Generator().manual_seed(0)):
        assert len(set(index.tolist())) == len(index)
        assert set(bank.subset[index].tolist()) == {0, 1, 2, 3}


def test_empty_subset_is_reported(synth_root: Path) -> None:
    cfg = comcl_config()
    images = [torch.full((3, 64, 64), 120, dtype=torch.uint8)] * 4
    boxes = lambda path, image: [Box(20, 20, 24, 24)]  # noqa: E731
    bank = build_bank(
        images, [Path(f"{i}.png") for i in range(4)], [1, 1, 0, 0], [0, 0, 0, 0], boxes, cfg
    )
    assert bank.counts()["L~"] == 0 and bank.counts()["H~"] == 0
    warnings = skipped_terms(bank, True)
    assert len(warnings) == 2 and all("skipped" in w for w in warnings)
    assert set(bank.subset.tolist()) == {LESION_HQ, HEALTHY_HQ}
    assert HEALTHY_LQ not in bank.subset.tolist()


def test_proposals_find_a_planted_spot() -> None:
    image = np.full((64, 64, 3), 140, np.uint8)
    yy, xx = np.mgrid[0:64, 0:64]
    image[(yy - 30) ** 2 + (xx - 40) ** 2 <= 4] = 30  # a dark microaneurysm-like spot
    boxes = propose(torch.from_numpy(image).permute(2, 0, 1).contiguous())
    assert boxes, "the spot should be proposed"
    best = boxes[0]
    assert best.x0 <= 40 < best.x1 and best.y0 <= 30 < best.y1
    assert propose(torch.zeros(3, 64, 64, dtype=torch.uint8)) == []


def test_fallback_is_used_and_announced_once(synth_root: Path, tmp_path: Path) -> None:
    said: list[str] = []
    source = choose_source(tmp_path, say=said.append)
    assert isinstance(source, ProposalBoxes)
    assert len(said) == 1 and "fallback" in said[0]
    said.clear()
    assert isinstance(choose_source(synth_root / "EYEQ", say=said.append), CsvBoxes)
    assert "lesions.csv" in said[0]
    with pytest.raises(UserError, match="at most one"):
        choose_source(tmp_path, lesions=tmp_path / "a.csv", detector=tmp_path / "b.pt")
    bank = split_bank(synth_root, comcl_config(), ProposalBoxes())
    assert bank.counts()["L"] > 0


def test_detector_checkpoint_of_wrong_format_is_a_clear_error(tmp_path: Path) -> None:
    bad = {
        "list.pt": [1, 2, 3],
        "dict.pt": {"weight": torch.zeros(3)},
        "arch.pt": {"arch": "yolo", "state_dict": {"x": torch.zeros(1)}},
    }
    for name, obj in bad.items():
        torch.save(obj, tmp_path / name)
        with pytest.raises(UserError, match="detector checkpoint") as err:
            DetectorBoxes(tmp_path / name)
        assert "\n" not in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="detector checkpoint"):
        DetectorBoxes(tmp_path / "junk.pt")
    with pytest.raises(UserError, match="not found"):
        DetectorBoxes(tmp_path / "missing.pt")


def _confident_detector():
    """A torchvision detector whose heads call every proposal a lesion (score ~1) and
    keep the proposal's box: an untrained one may find nothing, and a test passing on
    zero boxes proves nothing."""
    from torchvision.models import detection

    torch.manual_seed(0)
    model = detection.fasterrcnn_mobilenet_v3_large_320_fpn(
        weights=None, weights_backbone=None, num_classes=2
    )
    with torch.no_grad():
        model.rpn.head.cls_logits.bias.fill_(5.0)  # every anchor is an object
        predictor = model.roi_heads.box_predictor
        predictor.cls_score.weight.zero_()
        predictor.cls_score.bias.copy_(torch.tensor([-10.0, 10.0]))  # ... and a lesion
        predictor.bbox_pred.weight.zero_()
        predictor.bbox_pred.bias.zero_()
    return model


def test_torchvision_detector_checkpoint_gives_boxes(tmp_path: Path) -> None:
    model = _confident_detector()
    torch.save(model.state_dict(), tmp_path / "bare.pt")
    assert DetectorBoxes(tmp_path / "bare.pt").model is not None  # arch inferred from keys
    torch.save(
        {
            "arch": "fasterrcnn_mobilenet_v3_large_320_fpn",
            "num_classes": 2,
            "state_dict": model.state_dict(),
            "score_threshold": 0.9,
        },
        tmp_path / "d.pt",
    )
    source = DetectorBoxes(tmp_path / "d.pt")
    g = torch.Generator().manual_seed(0)
    for channels in (3, 1):  # fundus, and a grey modality expanded to three channels
        image = torch.randint(0, 255, (channels, 64, 64), dtype=torch.uint8, generator=g)
        boxes = source(Path("x.png"), image)
        assert boxes, "a detector sure of every proposal must give boxes"
        # in the loaded image's pixels (64), not the detector's internal 320 px
        assert all(0 <= b.x0 < b.x1 <= 64 and 0 <= b.y0 < b.y1 <= 64 for b in boxes)
        assert max(b.x1 - b.x0 for b in boxes) > 16
    # the score threshold decides: lesion scores of 0.5 pass 0.4, not 0.6
    assert source.score_threshold == 0.9  # the checkpoint's own
    with torch.no_grad():
        source.model.roi_heads.box_predictor.cls_score.bias.zero_()
    for threshold, found in ((0.4, True), (0.6, False)):
        source.score_threshold = threshold
        assert bool(source(Path("x.png"), image)) is found
    torch.save(
        {
            "arch": "fasterrcnn_mobilenet_v3_large_320_fpn",
            "num_classes": 5,
            "state_dict": model.state_dict(),
        },
        tmp_path / "classes.pt",
    )
    with pytest.raises(UserError, match="do not fit"):
        DetectorBoxes(tmp_path / "classes.pt")
