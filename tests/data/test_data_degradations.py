"""Every degradation keeps shape and dtype, is the identity at severity 0, and changes the
image monotonically with severity; LQ-ratio test sets reach their ratio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from shared.config import preset
from shared.data.degradations import (
    DEGRADATIONS,
    LQ_PLAN,
    MODALITY_DEGRADATIONS,
    degrade,
)
from shared.data.lq_testset import degrade_to_ratio
from shared.data.stats import split_counts
from shared.data.synth import synthesize
from shared.errors import UserError

SEVERITIES = [0.0, 0.25, 0.5, 0.75, 1.0]


def _scene(channels: int) -> np.ndarray:
    """Texture plus a bright square: gives every artefact something to change."""
    rng = np.random.default_rng(0)
    img = 90 + 40 * rng.random((48, 48))
    img[12:30, 14:34] = 200
    out = img.astype(np.uint8)
    return (
        np.stack([out, (out * 0.6).astype(np.uint8), (out * 0.3).astype(np.uint8)], -1)
        if channels == 3
        else out
    )


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
@pytest.mark.parametrize("channels", [1, 3])
def test_shape_dtype_and_monotone_severity(name: str, channels: int) -> None:
    fn = DEGRADATIONS[name]
    img = _scene(channels)
    dist = []
    for s in SEVERITIES:
        out = fn(img, s, np.random.default_rng(7))
        assert out.shape == img.shape and out.dtype == np.uint8
        dist.append(float(np.abs(out.astype(float) - img).mean()))
    assert dist[0] == 0.0
    assert all(b >= a for a, b in zip(dist, dist[1:], strict=False)), dist
    assert dist[-1] > 1.0


@pytest.mark.parametrize("name", sorted(DEGRADATIONS))
def test_tensor_input_keeps_layout(name: str) -> None:
    img = torch.from_numpy(_scene(3).transpose(2, 0, 1).copy())
    out = DEGRADATIONS[name](img, 0.6, np.random.default_rng(0))
    assert isinstance(out, torch.Tensor) and out.shape == img.shape and out.dtype == torch.uint8
    grey = torch.from_numpy(_scene(1))
    assert DEGRADATIONS[name](grey, 0.6, np.random.default_rng(0)).shape == grey.shape


def test_severity_out_of_range() -> None:
    with pytest.raises(ValueError):
        DEGRADATIONS["blur"](_scene(1), 1.5, np.random.default_rng(0))


def test_every_modality_plan_uses_registered_degradations() -> None:
    for modality, (first, extras) in LQ_PLAN.items():
        assert set(first) | set(extras) <= set(DEGRADATIONS)
        assert set(first) | set(extras) <= set(MODALITY_DEGRADATIONS[modality])
        out, names = degrade(
            _scene(3 if modality == "fundus" else 1), modality, 0.7, np.random.default_rng(1)
        )
        assert names[0] in first and out.dtype == np.uint8


def test_degrade_to_ratio(tmp_path: Path) -> None:
    synthesize("IQAD_CT", 60, 32, tmp_path / "src", seed=0)
    cfg = preset("IQAD_CT").dataset
    before = split_counts(tmp_path / "src" / "IQAD_CT", cfg)["train"]
    for ratio in (0.7, 1.0):
        out = degrade_to_ratio(
            tmp_path / "src", "IQAD_CT", "train", ratio, tmp_path / f"lq{ratio}", seed=0
        )
        after = split_counts(out, cfg)["train"]
        assert after.sum() == before.sum()
        assert (after.sum(1) == before.sum(1)).all()  # diagnoses unchanged
        assert abs(after[:, 1:].sum() / after.sum() - ratio) < 1.0 / after.sum() + 1e-9
        assert any(p.is_symlink() for p in (out / "Images").iterdir()) or ratio == 1.0
    with pytest.raises(UserError, match="already has"):
        degrade_to_ratio(tmp_path / "src", "IQAD_CT", "train", 0.0, tmp_path / "none")
    assert not (tmp_path / "none").exists()
