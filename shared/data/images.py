"""Decode one image file into a fixed-size uint8 tensor, and normalise it.

Channel policy (decided here, once):
- 3-channel datasets (fundus) need colour images; a grey image is refused, since a grey
  fundus photograph almost always means a file from another dataset.
- 1-channel datasets (OCTA, CT, CXR) take grey images, and colour files whose channels
  agree (a grey picture saved as RGB: at least 99 % of pixels within 8 grey levels
  across channels, which tolerates JPEG chroma noise); they are converted with ITU-R 601
  luma, as `PIL.Image.convert("L")` does. A colour image whose channels really differ
  is refused.
- Alpha channels are dropped; 16-bit grey is scaled to 8 bits; palette images are
  expanded first.
Images are resized to S x S (bilinear with antialiasing, aspect ratio not kept, as the
MKCNet authors' `Resize((256, 256))`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from shared.errors import UserError

if TYPE_CHECKING:  # torch is imported where tensors are made: `data check` does without
    import torch

GREY_TOLERANCE = 8
GREY_FRACTION = 0.99


def _to_basic_mode(img: Image.Image) -> Image.Image:
    """L or RGB, whatever the file stored."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode == "1":
        return img.convert("L")
    if mode == "LA" or mode == "La":
        return img.getchannel(0)
    if mode in ("RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"):
        return img.convert("RGB")
    if mode == "P" or mode == "PA":
        return _to_basic_mode(img.convert("RGBA"))
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") else max(float(arr.max()), 1.0)
        if mode == "F" and arr.max() <= 1.0:
            top = 1.0
        scaled = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(scaled, mode="L")
    return img.convert("RGB")


def channels_agree(rgb: np.ndarray) -> bool:
    """True when an H x W x 3 image is grey in disguise."""
    a = rgb.astype(np.int16)
    spread = np.maximum(np.abs(a[..., 0] - a[..., 1]), np.abs(a[..., 1] - a[..., 2]))
    return float(np.mean(spread <= GREY_TOLERANCE)) >= GREY_FRACTION


def decode(path: Path, channels: int, size: int) -> np.ndarray:
    """uint8 array, H x W (1 channel) or H x W x 3, resized to size x size (size 0: the
    file's own resolution, e.g. for CoMCL's full-resolution patches)."""
    path = Path(path)
    try:
        with Image.open(path) as opened:
            if opened.format == "JPEG" and size > 0:
                # decode at reduced scale (>= 2S): far faster for big photographs; the mode
                # is kept so the channel check below still sees colour files as colour
                opened.draft(opened.mode, (2 * size, 2 * size))
            opened.load()
            img = _to_basic_mode(opened)
            if img.mode == "RGB" and channels == 1:
                # test agreement on a reduced copy: cheap, and the same answer in practice
                probe = img if max(img.size) <= 512 else img.resize((256, 256))
                if not channels_agree(np.asarray(probe)):
                    raise UserError(
                        "colour image in a 1-channel dataset (its channels "
                        "differ); convert it to greyscale first",
                        path=path,
                    )
                img = img.convert("L")
            elif img.mode == "L" and channels == 3:
                raise UserError("greyscale image in a 3-channel (colour fundus) dataset", path=path)
            if size > 0 and img.size != (size, size):
                img = img.resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8).copy()
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError("image file not found", path=path) from None
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
    ) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise UserError(
            f"cannot read image ({reason}); the file is corrupt, truncated or not an image",
            path=path,
        ) from None


def load_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """uint8 tensor [C, S, S] of one image file; UserError for unreadable or wrong-channel
    files."""
    import torch

    arr = decode(path, channels, size)
    arr = arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))
    return torch.from_numpy(arr)


def _stats(cfg: Any) -> tuple[list[float], list[float]]:
    ds = getattr(cfg, "dataset", cfg)
    return list(ds.norm_mean), list(ds.norm_std)


def normalise(tensor_uint8: torch.Tensor, cfg: Any) -> torch.Tensor:
    """float32 (x / 255 - mean) / std per channel; works on [C,H,W] and [N,C,H,W]."""
    import torch

    mean, std = _stats(cfg)
    x = tensor_uint8.to(torch.float32).div_(255.0)
    shape = (-1, 1, 1)
    m = torch.tensor(mean, dtype=torch.float32).view(shape)
    s = torch.tensor(std, dtype=torch.float32).view(shape)
    return x.sub_(m).div_(s)
