"""CoMCL commands: `fediqad pretrain` and `fediqad bench pretrain-step`.

Thin wiring: options -> RunConfig (its `contrastive` section) ->
`shared.contrastive.central.run_pretraining` (OUT/encoder.pt, OUT/pretrain.json).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from fediqad.commands.gpu_options import ChannelsLastOpt, PrecisionOpt, precision_flags
from fediqad.commands.options import DataRootOpt, ThreadsOpt, bench_group
from shared.errors import UserError

console = Console()
err_console = Console(stderr=True)
Opt = typer.Option


def pretrain(
    data_root: DataRootOpt,
    dataset: Annotated[str | None, Opt("--dataset", help="Dataset preset (EYEQ, ...).")] = None,
    lesions: Annotated[
        Path | None, Opt("--lesions", help="Lesion boxes CSV (image,x0,y0,x1,y1[,kind]).")
    ] = None,
    detector: Annotated[
        Path | None,
        Opt("--detector", help="Lesion detector checkpoint (`fediqad detector train`)."),
    ] = None,
    proposals: Annotated[
        bool,
        Opt(
            "--proposals",
            help="Use the heuristic spot-proposal fallback even if lesions.csv exists.",
        ),
    ] = False,
    epochs: Annotated[int | None, Opt(help="Pretraining epochs (paper: 800).")] = None,
    out: Annotated[Path | None, Opt(help="Output folder (default runs/NAME-comcl).")] = None,
    backbone: Annotated[
        str | None, Opt(help="Encoder backbone (default: the paper's resnet50).")
    ] = None,
    width: Annotated[float | None, Opt(help="Channel width multiplier.")] = None,
    image_size: Annotated[int | None, Opt(help="Image size, multiple of 32.")] = None,
    batch_size: Annotated[int | None, Opt(help="Patches per step (paper: 400).")] = None,
    lr: Annotated[float | None, Opt(help="Adam learning rate (paper: 1e-3).")] = None,
    tau: Annotated[float | None, Opt(help="InfoNCE temperature (paper: 0.07).")] = None,
    multi_level: Annotated[
        bool,
        Opt(
            "--multi-level/--no-multi-level",
            help="The three CoMCL terms, or plain instance contrast.",
        ),
    ] = True,
    mining: Annotated[
        bool, Opt("--mining/--no-mining", help="Self-paced hard-negative mining.")
    ] = True,
    split: Annotated[str, Opt(help="Split whose images give the patches.")] = "train",
    config: Annotated[Path | None, Opt(help="Config file (.toml / .yaml).")] = None,
    set_items: Annotated[
        list[str] | None, Opt("--set", help="Override: section.field=value.")
    ] = None,
    seed: Annotated[int | None, Opt(help="Random seed.")] = None,
    device: Annotated[str | None, Opt(help="cpu, cuda or auto.")] = None,
    precision: PrecisionOpt = None,
    channels_last: ChannelsLastOpt = None,
    threads: ThreadsOpt = None,
    force: Annotated[bool, Opt("--force", help="Replace an earlier encoder.pt.")] = False,
) -> None:
    """CoMCL contrastive pretraining of the encoder on lesion / healthy, HQ / LQ patches."""
    from shared.config import build_config

    flags: dict[str, Any] = {
        "contrastive.epochs": epochs, "contrastive.backbone": backbone,
        "model.backbone": backbone, "model.width": width,
        "image_size": image_size, "contrastive.batch_size": batch_size,
        "contrastive.lr": lr, "contrastive.tau": tau, "seed": seed, "device": device,
        "threads": threads,
        "contrastive.multi_level": None if multi_level else False,
        "contrastive.hard_mining": None if mining else False,
        **precision_flags(precision, channels_last),
    }  # fmt: skip
    cfg = build_config(dataset, config, flags, set_items)
    from shared.contrastive.central import run_pretraining  # torch: after the settings
    from shared.contrastive.pretrain import encoder_backbone

    out = out or Path("runs") / f"{cfg.dataset.name}-comcl"
    result = run_pretraining(
        cfg,
        data_root,
        out,
        lesions=lesions,
        detector=detector,
        proposals=proposals,
        split=split,
        force=force,
        say=lambda text: err_console.print(text, highlight=False),
    )
    console.print(f"encoder {result.encoder}; history {result.history_file}", highlight=False)
    console.print(
        f"fine-tune: fediqad train --dataset {cfg.dataset.name} --data-root "
        f"{data_root} --backbone {encoder_backbone(cfg)} --image-size "
        f"{cfg.image_size} --init-encoder {result.encoder}",
        highlight=False,
    )


def bench_pretrain_step(
    backbone: Annotated[str, Opt(help="Encoder backbone.")] = "vgg16_bn_slim",
    patch_px: Annotated[int, Opt("--patch-px", help="Encoder input side.")] = 32,
    batch: Annotated[int, Opt(help="Patches per step.")] = 64,
    threads: Annotated[int | None, Opt(help="CPU threads (default 2).")] = 2,
    device: Annotated[str, Opt(help="cpu or cuda.")] = "cpu",
    repeats: Annotated[int, Opt(help="Timed steps (median reported).")] = 3,
) -> None:
    """Patches per second of one CoMCL pretraining step (views, forward, backward, Adam)."""
    from shared.contrastive.bench import run_pretrain_bench
    from shared.training.setup import pick_device

    if batch < 4:
        raise UserError(f"--batch must be at least 4, got {batch}")
    pick_device(device)
    row = run_pretrain_bench(backbone, patch_px, batch, device, threads, repeats)
    table = Table(title=f"CoMCL pretraining step ({row.device}, {row.threads} thread(s))")
    for column in ("backbone", "patch px", "batch", "s / step", "patches / s"):
        table.add_column(column, justify="right")
    table.add_row(
        row.backbone,
        str(row.patch_px),
        str(row.batch),
        f"{row.seconds_per_step:.3f}",
        f"{row.patches_per_second:.1f}",
    )
    console.print(table)


def bench_comcl_evidence(
    out: Annotated[Path, Opt(help="Folder for the synthetic data and results.")] = Path(
        "runs/comcl-evidence"
    ),
    ratios: Annotated[str, Opt(help="LQ ratios, comma separated.")] = "0.33,0.70,1.0",
    n: Annotated[int, Opt("--n", help="Images per data set.")] = 300,
    image_size: Annotated[int, Opt(help="Image size.")] = 64,
    backbone: Annotated[str, Opt(help="Encoder / classifier backbone.")] = "vgg16_bn_slim",
    pretrain_epochs: Annotated[int, Opt(help="CoMCL epochs per encoder.")] = 20,
    finetune_epochs: Annotated[int, Opt(help="Diagnosis epochs per model.")] = 15,
    seed: Annotated[int, Opt(help="Seed of data, pretraining and fine-tuning.")] = 0,
    threads: Annotated[int, Opt(help="CPU threads (1 is fastest on a busy 2-core box).")] = 1,
) -> None:
    """Kappa / ACC of scratch vs contrastive initialisations at several LQ ratios."""
    from fediqad.reporting import dumps, write_text_atomic
    from shared.contrastive.evidence import (
        EvidenceSettings,
        markdown_table,
        run_evidence,
        settings_dict,
    )

    try:
        values = tuple(float(x) for x in ratios.split(","))
    except ValueError:
        raise UserError(f"--ratios must be numbers like 0.33,0.7,1.0, got {ratios!r}") from None
    if not all(0.0 <= x <= 1.0 for x in values):
        raise UserError(f"--ratios must lie in [0, 1], got {ratios}")
    s = EvidenceSettings(
        values,
        n,
        image_size,
        backbone,
        pretrain_epochs,
        finetune_epochs=finetune_epochs,
        seed=seed,
        threads=threads,
    )
    start = time.perf_counter()
    rows = run_evidence(out, s, say=lambda text: err_console.print(text, highlight=False))
    table = markdown_table(rows)
    doc = {"settings": settings_dict(s), "seconds": time.perf_counter() - start, "rows": rows}
    write_text_atomic(out / "evidence.json", dumps(doc) + "\n")
    write_text_atomic(out / "evidence.md", table + "\n")
    console.print(table, highlight=False, markup=False)
    console.print(f"{doc['seconds']:.0f} s; {out / 'evidence.json'}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
    bench = bench_group(app)
    bench.command("pretrain-step")(bench_pretrain_step)
    bench.command("comcl-evidence")(bench_comcl_evidence)
