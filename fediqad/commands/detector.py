"""`fediqad detector train`: a lesion detector for CoMCL's patches, from box annotations.

Thin wiring over `shared.contrastive.detector.fit_detector`; the checkpoint it writes is
what `fediqad pretrain --detector FILE` reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fediqad.commands.options import DataRootOpt, ThreadsOpt

console = Console()
err_console = Console(stderr=True)
Opt = typer.Option


def train_detector(
    data_root: DataRootOpt,
    dataset: Annotated[str, Opt("--dataset", help="Dataset preset (EYEQ, ...).")] = "EYEQ",
    annotations: Annotated[
        Path | None,
        Opt(
            "--annotations",
            help="Lesion boxes CSV image,x0,y0,x1,y1[,kind] in pixels of the image files "
            "(default NAME/lesions.csv).",
        ),
    ] = None,
    out: Annotated[Path, Opt(help="Checkpoint to write.")] = Path("runs/detector.pt"),
    input_size: Annotated[
        int, Opt(help="Side the detector resizes images to (512 for photographs).")
    ] = 512,
    epochs: Annotated[int, Opt(help="Training epochs.")] = 30,
    batch_size: Annotated[int, Opt(help="Images per step.")] = 4,
    lr: Annotated[float, Opt(help="Adam learning rate.")] = 1e-3,
    width: Annotated[int, Opt(help="Backbone channels.")] = 32,
    min_box: Annotated[int, Opt(help="Smallest box side (px at the input size).")] = 8,
    score_threshold: Annotated[float, Opt(help="Score a box needs to be kept.")] = 0.5,
    seed: Annotated[int, Opt(help="Random seed.")] = 0,
    threads: ThreadsOpt = None,
    force: Annotated[bool, Opt("--force", help="Replace an existing checkpoint.")] = False,
) -> None:
    """Train a lesion detector (torchvision FCOS, slim backbone, no pretrained weights)."""
    import torch

    from shared.config import preset
    from shared.contrastive.detector import DetectorSettings
    from shared.contrastive.detector_fit import fit_detector

    if threads:
        torch.set_num_threads(threads)
    settings = DetectorSettings(
        input_size, width, min_box, epochs, batch_size, lr, seed, score_threshold
    )
    say = lambda text: err_console.print(text, highlight=False)  # noqa: E731
    report = fit_detector(
        data_root, preset(dataset), annotations, settings, out, force=force, say=say
    )
    console.print(
        f"detector {out}: recall {report.recall:.3f}, precision {report.precision:.3f} at IoU "
        f"{report.iou} on {report.images} held-out images ({report.gt_boxes} lesions), "
        f"{report.seconds:.0f} s",
        highlight=False,
    )
    console.print(f"use it: fediqad pretrain ... --detector {out}", highlight=False)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help="Lesion detector for CoMCL patches.", no_args_is_help=True)
    group.command("train")(train_detector)
    app.add_typer(group, name="detector")
