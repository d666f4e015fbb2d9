"""`fediqad explain`: one PNG per image with Grad-CAM of the diagnosis head and, for
MKCNet, of the quality and auxiliary branches (the paper's Fig. 9 compares them).

Maps are drawn over a grayscale copy of the image the model saw (resized to the
run's input size) with the perceptually uniform `inferno` map, so heat reads the
same in colour, in grayscale and for colour-blind readers.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from shared.checkpoint import Checkpoint
from shared.config import RunConfig
from shared.data.images import load_image, normalise
from shared.errors import UserError
from shared.explain import HEADS, Explanation, grad_cam
from shared.report.style import HEATMAP, new_mosaic, save

FIG_WIDTH, FIG_HEIGHT = 13.0, 4.4
PANEL_TITLES = {
    "diagnosis": "Diagnosis head",
    "quality": "Quality branch",
    "auxiliary": "Auxiliary branch",
}
CHUNK = 16


@dataclass
class ExplainResult:
    written: list[Path]
    errors: list[str]


def _name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else str(index)


def _target_text(head: str, target: int, cfg: RunConfig) -> str:
    ds = cfg.dataset
    if head == "diagnosis":
        return f"explains {_name(ds.diagnosis_names, target)}"
    if head == "quality":
        return f"explains {_name(ds.quality_names, target)}"
    d, q = target % ds.num_diagnosis, target // ds.num_diagnosis
    return f"explains joint {_name(ds.diagnosis_names, d)} / {_name(ds.quality_names, q)}"


def _grey(image: np.ndarray) -> np.ndarray:
    """[C, S, S] uint8 -> [S, S] float in 0-1 (ITU-R 601 luma for colour)."""
    x = image.astype(np.float32) / 255.0
    if x.shape[0] == 3:
        return 0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2]
    return x[0]


def _probabilities(names: list[str], probs: np.ndarray) -> str:
    return ", ".join(f"{_name(names, k)} {p:.3f}" for k, p in enumerate(probs))


def caption(path: Path, cfg: RunConfig, exp: Explanation, i: int) -> str:
    ds = cfg.dataset
    assert exp.diagnosis_prob is not None
    p_d = exp.diagnosis_prob[i]
    lines = [
        f"{path.name}: predicted diagnosis {_name(ds.diagnosis_names, int(p_d.argmax()))} "
        f"(p = {p_d.max():.3f})"
    ]
    if exp.quality_prob is not None:
        p_q = exp.quality_prob[i]
        lines[0] += (
            f", predicted quality {_name(ds.quality_names, int(p_q.argmax()))} "
            f"(p = {p_q.max():.3f})"
        )
    lines.append("diagnosis probabilities: " + _probabilities(ds.diagnosis_names, p_d))
    if exp.quality_prob is not None:
        lines.append(
            "quality probabilities: " + _probabilities(ds.quality_names, exp.quality_prob[i])
        )
    else:
        lines.append("quality: this model has no quality head")
    return "\n".join(lines)


def draw(
    path: Path, image: np.ndarray, cfg: RunConfig, exp: Explanation, i: int, out: Path
) -> Path:
    """The figure for image `i` of the batch `exp` explains."""
    fig, ax = new_mosaic(
        FIG_WIDTH, FIG_HEIGHT, [["input", *HEADS], ["text"] * 4], height_ratios=[3.3, 0.75]
    )
    size = image.shape[-1]
    shown = image.transpose(1, 2, 0) if image.shape[0] == 3 else image[0]
    ax["input"].imshow(shown, cmap=None if image.shape[0] == 3 else "gray", vmin=0, vmax=255)
    ax["input"].set_title(f"Input as the model sees it ({size} x {size} px)", fontsize=8)
    grey = _grey(image)
    drew_heat = False
    for head in HEADS:
        panel = ax[head]
        panel.imshow(grey, cmap="gray", vmin=0, vmax=1)
        if head in exp.maps:
            target = _target_text(head, int(exp.target[head][i]), cfg)
            panel.set_title(f"{PANEL_TITLES[head]}: {target}", fontsize=8)
            if exp.peak[head][i] > 0:
                panel.imshow(
                    exp.maps[head][i],
                    cmap=HEATMAP,
                    vmin=0,
                    vmax=1,
                    alpha=0.55,
                    interpolation="bilinear",
                )
                drew_heat = True
            else:
                panel.text(
                    0.5,
                    0.5,
                    "no positive evidence\n(Grad-CAM map is zero)",
                    ha="center",
                    va="center",
                    transform=panel.transAxes,
                    fontsize=8,
                    bbox={"facecolor": "white", "alpha": 0.8},
                )
        else:
            panel.set_title(f"{PANEL_TITLES[head]}: not available", fontsize=8)
            panel.text(
                0.5,
                0.5,
                exp.missing.get(head, "not computed"),
                ha="center",
                va="center",
                transform=panel.transAxes,
                fontsize=8,
                wrap=True,
                bbox={"facecolor": "white", "alpha": 0.8},
            )
    for name in ("input", *HEADS):
        ax[name].set_xlabel("x (pixels)")
        ax[name].set_ylabel("y (pixels)")
        ax[name].tick_params(labelsize=7)
    if drew_heat:
        scale = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=HEATMAP)
        bar = fig.colorbar(scale, ax=[ax[h] for h in HEADS], fraction=0.025, pad=0.01)
        bar.set_label("Grad-CAM relevance\n(normalised to map maximum, 0-1)", fontsize=8)
    ax["text"].axis("off")
    ax["text"].text(
        0.0,
        1.0,
        caption(path, cfg, exp, i),
        va="top",
        ha="left",
        fontsize=9,
        transform=ax["text"].transAxes,
        family="monospace",
    )
    fig.suptitle(
        f"Grad-CAM of {cfg.method} on {cfg.dataset.name} (weighted activation of "
        f"backbone layer {exp.layer}, the last convolutional block)",
        fontsize=10,
    )
    return save(fig, out)


def _out_names(images: list[Path], out_dir: Path) -> list[Path]:
    """<stem>_gradcam.png, with a counter where two inputs share a stem."""
    seen: dict[str, int] = {}
    names = []
    for path in images:
        count = seen.get(path.stem, 0)
        seen[path.stem] = count + 1
        stem = path.stem if count == 0 else f"{path.stem}_{count + 1}"
        names.append(out_dir / f"{stem}_gradcam.png")
    return names


def explain_images(
    ck: Checkpoint, images: list[Path], out_dir: Path, device: torch.device | str = "cpu"
) -> ExplainResult:
    """Write one figure per readable image; unreadable ones are listed in `errors`."""
    cfg = ck.cfg
    loaded: list[tuple[Path, Path, torch.Tensor]] = []
    errors: list[str] = []
    for path, target in zip(images, _out_names(images, out_dir), strict=True):
        try:
            if Path(path).is_dir():
                raise UserError("is a folder; pass image files", path=path)
            loaded.append(
                (Path(path), target, load_image(Path(path), cfg.dataset.channels, cfg.image_size))
            )
        except UserError as err:
            errors.append(str(err))
    net = ck.bundle.task_net.to(device)
    written = []
    for start in range(0, len(loaded), CHUNK):
        chunk = loaded[start : start + CHUNK]
        batch = torch.stack([normalise(img, cfg) for _, _, img in chunk]).to(device)
        exp = grad_cam(net, batch)
        for i, (path, target, img) in enumerate(chunk):
            written.append(draw(path, img.numpy(), cfg, exp, i, target))
    return ExplainResult(written, errors)
