"""`fediqad bench precision`: do bf16 / fp16 keep MKCNet's gradients? (vs fp32)"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fediqad.commands.options import ThreadsOpt, bench_group, torch_device

console = Console()
Opt = typer.Option


def bench_precision(
    backbone: Annotated[str, Opt(help="Backbone (vgg16_bn at 256 px: the paper's).")] = (
        "vgg16_bn_slim"
    ),
    image_size: Annotated[int, Opt(help="Image size, multiple of 32.")] = 64,
    batch: Annotated[int, Opt(help="Images in the one batch compared.")] = 4,
    method: Annotated[str, Opt(help="A method with a Meta Learner.")] = "mkcnet",
    dataset: Annotated[str, Opt(help="Dataset preset (class counts).")] = "EYEQ",
    device: Annotated[str, Opt(help="cpu, cuda or auto.")] = "cpu",
    channels_last: Annotated[
        bool, Opt("--channels-last/--no-channels-last", help="channels-last layout.")
    ] = False,
    threads: ThreadsOpt = 2,
    seed: Annotated[int, Opt(help="Seed of the weights and the batch.")] = 0,
) -> None:
    """Cosine and relative error vs fp32 of the exact meta-gradient and the stage-I gradient."""
    from shared.config import build_config
    from shared.training.precision_check import gradient_agreement

    flags = {"model.backbone": backbone, "image_size": image_size, "method": method}
    cfg = build_config(dataset, None, flags, None)
    dev = torch_device(device, threads)
    rows = gradient_agreement(
        cfg, batch_size=batch, device=dev, channels_last=channels_last, seed=seed
    )
    table = Table(title=f"vs fp32: {method}, {backbone}, {image_size} px, batch {batch}, {dev}")
    for column in ("precision", "gradient", "cosine", "rel. error", "seconds"):
        table.add_column(column, justify="left" if column in ("precision", "gradient") else "right")
    for r in rows:
        table.add_row(
            r.precision,
            r.quantity,
            f"{r.cosine:.6f}",
            f"{r.relative_error:.2e}",
            f"{r.seconds:.1f}",
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    bench_group(app).command("precision")(bench_precision)
