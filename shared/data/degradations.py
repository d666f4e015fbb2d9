"""Image degradations with a severity in [0, 1]: one library used to synthesise
low-quality images, to augment, and to build test sets at a chosen LQ ratio.

Every function takes (image, severity, rng) and returns an image of the same shape and
dtype (uint8 numpy H x W, H x W x C, or a torch tensor C x H x W / H x W). Severity 0
returns the image unchanged and the change grows monotonically with severity: each
function draws the same random numbers whatever the severity, so with one seed a higher
severity only strengthens the same artefact.
"""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from typing import Any

import numpy as np
from PIL import Image, ImageFilter

Degradation = Callable[[Any, float, np.random.Generator], Any]


def _to_hwc(image: Any) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """uint8 H x W x C view of any accepted input, and how to give the result back."""
    torch = sys.modules.get("torch")  # a tensor can only exist once torch is imported
    if torch is not None and isinstance(image, torch.Tensor):
        arr = image.detach().cpu().numpy()
        if arr.ndim == 3:

            def back_t(out: np.ndarray) -> Any:
                return torch.from_numpy(np.array(out.transpose(2, 0, 1), order="C"))

            return np.ascontiguousarray(arr.transpose(1, 2, 0)), back_t
        return arr[..., None], lambda out: torch.from_numpy(np.array(out[..., 0], order="C"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise TypeError(f"degradations work on uint8 images, got {arr.dtype}")
    if arr.ndim == 2:
        return arr[..., None], lambda out: np.array(out[..., 0], order="C")
    return arr, lambda out: out


def _u8(x: np.ndarray) -> np.ndarray:
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def _pil(hwc: np.ndarray) -> Image.Image:
    return Image.fromarray(hwc[..., 0] if hwc.shape[2] == 1 else hwc)


def _from_pil(img: Image.Image, channels: int) -> np.ndarray:
    arr = np.array(img, dtype=np.uint8)  # a writable copy
    return arr[..., None] if channels == 1 else arr


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy / max(h - 1, 1), xx / max(w - 1, 1)


def _check(severity: float) -> float:
    if not 0.0 <= severity <= 1.0:
        raise ValueError(f"severity must be in [0, 1], got {severity}")
    return float(severity)


def blur(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Defocus: Gaussian blur up to sigma = 3 % of the image side (hides microlesions)."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    if s == 0:
        return back(hwc.copy())
    sigma = s * 0.03 * max(hwc.shape[:2])
    out = _pil(hwc).filter(ImageFilter.GaussianBlur(radius=sigma))
    return back(_from_pil(out, hwc.shape[2]))


def uneven_illumination(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Light falling off across the image from a random side."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    h, w = hwc.shape[:2]
    theta = rng.uniform(0, 2 * np.pi)
    gamma = rng.uniform(0.8, 1.6)
    yy, xx = _grid(h, w)
    ramp = (np.cos(theta) * (xx - 0.5) + np.sin(theta) * (yy - 0.5)) / 0.71 * 0.5 + 0.5
    field = 1.0 - 0.85 * s * np.clip(ramp, 0, 1) ** gamma
    return back(_u8(hwc * field[..., None]))


def shadow(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """A soft dark blob (eyelash, floater, poor pupil): can hide or mimic dark lesions."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    h, w = hwc.shape[:2]
    cy, cx = rng.uniform(0.15, 0.85, size=2)
    ry, rx = rng.uniform(0.15, 0.4, size=2)
    yy, xx = _grid(h, w)
    d2 = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2
    blob = np.exp(-d2 * 1.5)
    field = 1.0 - 0.85 * s * blob
    return back(_u8(hwc * field[..., None]))


def low_contrast(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Contrast squeezed towards the mean grey level (cataract haze, wrong windowing)."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    x = hwc.astype(np.float32)
    mean = x.mean(axis=(0, 1), keepdims=True)
    return back(_u8(mean + (x - mean) * (1.0 - 0.85 * s)))


def noise(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Additive Gaussian noise, sigma up to 50 grey levels (low dose, sensor noise)."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    field = rng.standard_normal(hwc.shape[:2] + (1,)).astype(np.float32)
    if hwc.shape[2] > 1:  # mostly luminance noise, some colour noise
        field = field + 0.3 * rng.standard_normal(hwc.shape).astype(np.float32)
    return back(_u8(hwc + field * 50.0 * s))


def spots(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Dust and reflection spots: dark and bright blobs that look like lesions."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    h, w = hwc.shape[:2]
    n_max = 12
    cy = rng.uniform(0.1, 0.9, n_max)
    cx = rng.uniform(0.1, 0.9, n_max)
    radius = rng.uniform(0.012, 0.035, n_max) * max(h, w)
    dark = rng.uniform(size=n_max) < 0.65
    strength = rng.uniform(0.6, 1.0, n_max)
    k = int(np.ceil(s * n_max))
    x = hwc.astype(np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for i in range(k):
        r = radius[i]
        y0, y1 = int(max(cy[i] * h - 3 * r, 0)), int(min(cy[i] * h + 3 * r + 1, h))
        x0, x1 = int(max(cx[i] * w - 3 * r, 0)), int(min(cx[i] * w + 3 * r + 1, w))
        d2 = (yy[y0:y1, x0:x1] - cy[i] * h) ** 2 + (xx[y0:y1, x0:x1] - cx[i] * w) ** 2
        a = (strength[i] * (0.3 + 0.7 * s) * np.exp(-d2 / (2 * r * r)))[..., None]
        patch = x[y0:y1, x0:x1]
        if dark[i]:
            x[y0:y1, x0:x1] = patch * (1 - 0.8 * a)
        else:
            x[y0:y1, x0:x1] = patch + (255 - patch) * 0.8 * a
    return back(_u8(x))


def overexposure(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Too much light: gain and haze, bright areas clip and washed-out detail is lost."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    x = hwc.astype(np.float32)
    return back(_u8(x * (1.0 + 1.5 * s) + 50.0 * s))


def jpeg(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """JPEG compression, quality 95 down to 5 (blocks, ringing, lost fine texture)."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    if s == 0:
        return back(hwc.copy())
    buf = io.BytesIO()
    _pil(hwc).save(buf, format="JPEG", quality=int(round(95 - 90 * s)))
    buf.seek(0)
    with Image.open(buf) as img:
        out = img.convert("L" if hwc.shape[2] == 1 else "RGB")
        return back(_from_pil(out, hwc.shape[2]))


def downsample(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Bicubic down-sampling by up to 8x and back (the CXR-IQAD simulation of low dose)."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    if s == 0:
        return back(hwc.copy())
    h, w = hwc.shape[:2]
    factor = 1.0 + 7.0 * s
    small = (max(2, int(round(w / factor))), max(2, int(round(h / factor))))
    img = _pil(hwc).resize(small, Image.Resampling.BICUBIC)
    img = img.resize((w, h), Image.Resampling.BICUBIC)
    return back(_from_pil(img, hwc.shape[2]))


def motion_lines(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """OCTA motion artefacts: displaced rows and bright / dark horizontal stripes."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    h, w = hwc.shape[:2]
    n_max = max(2, int(0.2 * h))
    rows = rng.integers(0, h, n_max)
    heights = rng.integers(1, max(2, h // 32) + 1, n_max)
    shifts = rng.uniform(-1, 1, n_max)
    levels = rng.uniform(-1, 1, n_max)
    k = int(np.ceil(s * n_max))
    x = hwc.astype(np.float32)
    for i in range(k):
        y0, y1 = int(rows[i]), int(min(rows[i] + heights[i], h))
        band = x[y0:y1]
        band = np.roll(band, int(round(shifts[i] * 0.1 * w * s)), axis=1)
        x[y0:y1] = band + levels[i] * 120.0 * s
    return back(_u8(x))


def low_signal(image: Any, severity: float, rng: np.random.Generator) -> Any:
    """Weak signal: the image dims and noise takes over (mimics reduced vessel density)."""
    s = _check(severity)
    hwc, back = _to_hwc(image)
    field = rng.standard_normal(hwc.shape[:2] + (1,)).astype(np.float32)
    x = hwc.astype(np.float32) * (1.0 - 0.7 * s) + field * 15.0 * s
    return back(_u8(x))


DEGRADATIONS: dict[str, Degradation] = {
    "blur": blur,
    "uneven_illumination": uneven_illumination,
    "shadow": shadow,
    "low_contrast": low_contrast,
    "noise": noise,
    "spots": spots,
    "overexposure": overexposure,
    "jpeg": jpeg,
    "downsample": downsample,
    "motion_lines": motion_lines,
    "low_signal": low_signal,
}

# For LQ images: one artefact that hides lesions or looks like one, then one or two
# extras. Fundus and OCTA get lesion-like artefacts (spots, shadows, low signal); CT and
# CXR images are down-sampled first (COVID-CT's figures from papers; low-dose CXR).
LQ_PLAN: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fundus": (
        ("spots", "shadow", "uneven_illumination", "blur"),
        ("blur", "low_contrast", "overexposure", "jpeg", "noise", "uneven_illumination"),
    ),
    "octa": (("shadow", "low_signal", "spots"), ("motion_lines", "blur", "noise")),
    "ct": (("downsample",), ("jpeg", "low_contrast", "overexposure", "noise", "spots", "blur")),
    "cxr": (("downsample",), ("low_contrast", "overexposure", "blur", "uneven_illumination")),
}


# Which artefacts each modality suffers in practice (the LQ plan's, in one list).
MODALITY_DEGRADATIONS: dict[str, tuple[str, ...]] = {
    m: tuple(dict.fromkeys(first + extras + (("noise",) if m == "cxr" else ())))
    for m, (first, extras) in LQ_PLAN.items()
}


def plan(modality: str, rng: np.random.Generator) -> list[str]:
    """Names of the degradations an LQ image of this modality gets, in order."""
    first, extras = LQ_PLAN[modality]
    names = [str(rng.choice(first))]
    pool = [e for e in extras if e not in names]
    k = int(rng.integers(1, 3))
    names += [str(n) for n in rng.choice(pool, size=min(k, len(pool)), replace=False)]
    if modality == "octa" and "motion_lines" not in names and rng.uniform() < 0.6:
        names.append("motion_lines")
    if modality == "cxr":
        names.append("noise")  # low dose is noisy
    return names


def degrade(
    image: Any,
    modality: str,
    severity: float,
    rng: np.random.Generator,
    names: list[str] | None = None,
) -> tuple[Any, list[str]]:
    """Make a low-quality image: the modality's plan (or `names`), each at about
    `severity`. Returns the image and the degradations applied, in order."""
    if names is None:
        names = plan(modality, rng)
    out = image
    for name in names:
        sev = float(np.clip(severity * rng.uniform(0.85, 1.15), 0.0, 1.0))
        out = DEGRADATIONS[name](out, sev, rng)
    if modality == "fundus":  # the camera's black surround stays black
        hwc, back = _to_hwc(image)
        out_hwc, _ = _to_hwc(out)
        keep = (hwc.max(axis=2, keepdims=True) > 8).astype(np.uint8)
        out = back(out_hwc * keep)
    return out, names
