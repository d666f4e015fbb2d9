"""Step benchmarks: `fediqad bench train-step`, `bench dp-step` and `bench loader`.

Thin wiring: options -> `shared.training_bench` / `shared.loader_bench` -> rich tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fediqad.commands.gpu_options import PrecisionOpt, check_precision
from fediqad.commands.options import ThreadsOpt, bench_group

console = Console()
err_console = Console(stderr=True)


def _bench_settings(
    image_size: int | None,
    batch: int | None,
    threads: int | None,
    device: str | None,
    precision: str | None,
) -> list[Any]:
    """The settings to time: the defaults (CPU, and 256 px on a GPU) when none is given."""
    check_precision(precision)
    import shared.training_bench as bench
    from shared.training.setup import pick_device

    if all(v is None for v in (image_size, batch, threads, device, precision)):
        return bench.default_settings()
    pick_device(device or "cpu")  # --device cuda without CUDA: one line, exit 2
    return [
        bench.BenchSettings(
            image_size=image_size or 64, batch=batch or 8,
            threads=threads if threads is not None else 2, device=device or "cpu",
            precision=precision or "auto",
        )
    ]  # fmt: skip


def bench_train_step(
    image_size: Annotated[int | None, typer.Option(help="Image size (default 64).")] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size (default 8).")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads (default 2).")] = None,
    backbone: Annotated[str, typer.Option(help="Backbone to time.")] = "vgg16_bn",
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default cpu).")] = None,
    precision: PrecisionOpt = None,
    peak_tflops: Annotated[
        float | None,
        typer.Option("--peak-tflops", help="Device peak for MFU (default: the device table)."),
    ] = None,
    comcl_backbone: Annotated[str, typer.Option(help="CoMCL encoder.")] = "resnet50",
    patch_px: Annotated[int, typer.Option(help="CoMCL patch side.")] = 128,
    comcl_batch: Annotated[
        int | None, typer.Option(help="CoMCL patches per step (default: --batch).")
    ] = None,
    step: Annotated[
        list[str] | None, typer.Option("--step", help="Only these rows (repeatable).")
    ] = None,
    repeats: Annotated[int, typer.Option(help="Timed repeats (median reported).")] = 5,
) -> None:
    """Images/s, peak memory, FLOPs per image and MFU of each training step (vanilla,
    stage I, stage II, fused, DP stage I, CoMCL)."""
    bench_settings = _bench_settings(image_size, batch, threads, device, precision)
    import shared.training_bench as bench

    bench.check_steps(step or [])

    for s in bench_settings:
        s.backbone, s.peak_tflops, s.comcl_backbone = backbone, peak_tflops, comcl_backbone
        s.patch_px, s.comcl_batch = patch_px, comcl_batch
        title = (
            f"train step, {backbone}, {s.image_size} px, batch {s.batch}, {s.device}, {s.precision}"
        )
        with err_console.status(f"timing {title} ..."):  # minutes on a busy CPU
            rows = bench.run_bench(s, repeats=repeats, steps=step)
        console.print(bench.bench_table(rows, title))


def bench_dp_step(
    image_size: Annotated[int, typer.Option(help="Image size.")] = 64,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 8,
    threads: Annotated[int, typer.Option(help="CPU threads.")] = 2,
    backbone: Annotated[str, typer.Option(help="Backbone to time.")] = "vgg16_bn",
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    repeats: Annotated[int, typer.Option(help="Timed repeats (median reported).")] = 5,
) -> None:
    """Seconds per DP step vs the same step without DP (Task Net, Meta Learner, baseline)."""
    from shared.training.setup import pick_device
    from shared.training_bench import dp_bench_table, run_dp_bench

    pick_device(device)  # --device cuda without CUDA: one line, exit 2
    rows = run_dp_bench(image_size, batch, threads, backbone, device, repeats=repeats)
    title = f"DP step, {backbone}, {image_size} px, batch {batch}, {device}, {threads} threads"
    console.print(dp_bench_table(rows, title))


def bench_loader(
    data_root: Annotated[
        Path | None,
        typer.Option("--data-root", help="ROOT/NAME to read (default: synthetic images)."),
    ] = None,
    dataset: Annotated[str, typer.Option(help="Dataset preset.")] = "EYEQ",
    split: Annotated[str, typer.Option(help="Split to read.")] = "train",
    image_size: Annotated[int, typer.Option(help="Image size.")] = 256,
    batch: Annotated[int, typer.Option(help="Batch size.")] = 16,
    num_workers: Annotated[
        int | None,
        typer.Option("--num-workers", help="Loader workers (default: up to 8 on CUDA, 0 on CPU)."),
    ] = None,
    backbone: Annotated[str, typer.Option(help="Backbone of the step.")] = "vgg16_bn",
    step: Annotated[str, typer.Option(help="Step to compare with.")] = "stage I",
    device: Annotated[str | None, typer.Option(help="cpu, cuda or auto (default).")] = None,
    precision: PrecisionOpt = None,
    threads: ThreadsOpt = None,
    images: Annotated[int, typer.Option(help="Synthetic images (no --data-root).")] = 256,
) -> None:
    """Images/s of the data loader alone vs the training step at the same settings: which
    one an epoch waits on."""
    check_precision(precision)
    from shared.loader_bench import loader_bench_config, loader_table, run_loader_bench
    from shared.training.setup import pick_device
    from shared.training_bench import check_steps

    check_steps([step], loader=True)
    dev = pick_device(device or "auto")  # --device cuda without CUDA: one line, exit 2
    cfg = loader_bench_config(dataset, image_size, batch, backbone, str(dev))
    cfg.num_workers, cfg.threads = num_workers, threads
    cfg.precision = precision or "auto"  # type: ignore[assignment]
    source = str(data_root) if data_root else f"{images} synthetic images"
    with err_console.status(f"reading {source} and timing the {step} step ..."):
        result = run_loader_bench(cfg, data_root, split=split, step=step, synthetic_images=images)
    console.print(loader_table(result, f"{dataset} {split} ({source}), {image_size} px, {dev}"))
    console.print(f"bottleneck: {result.advice()}", highlight=False)


def register(app: typer.Typer) -> None:
    bench = bench_group(app)
    bench.command("train-step")(bench_train_step)
    bench.command("dp-step")(bench_dp_step)
    bench.command("loader")(bench_loader)
