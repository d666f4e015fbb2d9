"""Decoding: channel policy, odd modes, corrupt files; normalisation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from shared.config import preset
from shared.data.images import load_image, normalise
from shared.errors import UserError
from tests.support.files import write_image


def test_rgb_image_for_fundus(tmp_path: Path) -> None:
    t = load_image(write_image(tmp_path / "a.jpg", "RGB", 50), 3, 32)
    assert t.dtype == torch.uint8 and t.shape == (3, 32, 32)


@pytest.mark.parametrize("mode", ["L", "GREY_AS_RGB", "RGBA", "I;16"])
def test_grey_like_images_for_one_channel_datasets(tmp_path: Path, mode: str) -> None:
    path = write_image(tmp_path / "a.png", mode if mode != "RGBA" else "RGBA", 40)
    if mode == "RGBA":  # colour with alpha is colour: make it grey first
        arr = np.asarray(Image.open(path)).copy()
        arr[..., 1] = arr[..., 0]
        arr[..., 2] = arr[..., 0]
        Image.fromarray(arr, "RGBA").save(path)
    t = load_image(path, 1, 32)
    assert t.dtype == torch.uint8 and t.shape == (1, 32, 32)


def test_grey_jpeg_stored_as_rgb_is_accepted(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.jpeg", "GREY_AS_RGB", 64, fmt="JPEG")
    assert load_image(path, 1, 64).shape == (1, 64, 64)


def test_colour_image_in_grey_dataset_is_refused(tmp_path: Path) -> None:
    path = write_image(tmp_path / "a.png", "RGB", 32)
    with pytest.raises(UserError, match="colour image in a 1-channel dataset") as err:
        load_image(path, 1, 32)
    assert err.value.path == path


def test_grey_image_in_colour_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="greyscale image in a 3-channel"):
        load_image(write_image(tmp_path / "a.png", "L", 32), 3, 32)


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(UserError, match="cannot read image") as err:
        load_image(junk, 3, 32)
    assert err.value.path == junk
    good = write_image(tmp_path / "t.jpg", "RGB", 64, fmt="JPEG")
    data = good.read_bytes()
    good.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="cannot read image"):
        load_image(good, 3, 32)
    with pytest.raises(UserError, match="not found"):
        load_image(tmp_path / "absent.png", 3, 32)


def test_normalise_uses_dataset_statistics() -> None:
    cfg = preset("EYEQ")
    x = torch.full((3, 4, 4), 255, dtype=torch.uint8)
    y = normalise(x, cfg)
    want = (1 - torch.tensor(cfg.dataset.norm_mean)) / torch.tensor(cfg.dataset.norm_std)
    assert y.dtype == torch.float32
    assert torch.allclose(y[:, 0, 0], want)
    assert normalise(x[None], cfg.dataset).shape == (1, 3, 4, 4)
