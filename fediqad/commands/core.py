"""Core commands: train, evaluate, predict, import-reference.

Thin wiring only: options -> config -> `shared.training.central` / `shared.evaluation` /
`fediqad.inference` / `shared.reference_import`, and rich output. Every mistake a
user can make ends as a `UserError` (one line, exit 2; see `fediqad.cli`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from fediqad.commands import privacy_options as dp_opts
from fediqad.commands.gpu_options import ChannelsLastOpt, PrecisionOpt, precision_flags
from fediqad.commands.options import BatchOpt, DataRootOpt, ThreadsOpt, torch_device
from fediqad.reporting import compat_line, dumps, metrics_table, write_text_atomic
from shared.config import preset
from shared.errors import UserError
from shared.methods import methods_help
from shared.report.format import number

console = Console()
err_console = Console(stderr=True)

DatasetOpt = Annotated[
    str, typer.Option("--dataset", help="EYEQ, DEEPDR, DRAC, IQAD_CT or IQAD_CXR.")
]
DeviceOpt = Annotated[str | None, typer.Option("--device", help="cpu, cuda or auto.")]


# --------------------------------------------------------------------------- train
def train(
    data_root: DataRootOpt,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset preset (default: config's, EYEQ).")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(help=methods_help()),
    ] = None,
    schedule: Annotated[str | None, typer.Option(help="paper (two passes) or fused.")] = None,
    backbone: Annotated[str | None, typer.Option(help="vgg16_bn, vgg16_bn_slim, ...")] = None,
    width: Annotated[float | None, typer.Option(help="Channel width multiplier.")] = None,
    gab: Annotated[str | None, typer.Option(help="pooled (authors' code) or spatial.")] = None,
    image_size: Annotated[
        int | None, typer.Option(help="Square input size, multiple of 32.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs to train (in total).")] = None,
    batch_size: BatchOpt = None,
    lr: Annotated[float | None, typer.Option(help="Task Net learning rate.")] = None,
    augment: Annotated[
        bool | None,
        typer.Option(
            "--augment/--no-augment",
            help="Training augmentation (flip, affine, brightness); off as in the paper.",
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (.toml / .yaml).")] = None,
    set_items: Annotated[
        list[str] | None, typer.Option("--set", help="Override: section.field=value.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default runs/DATASET-METHOD).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    device: DeviceOpt = None,
    precision: PrecisionOpt = None,
    channels_last: ChannelsLastOpt = None,
    threads: ThreadsOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from last.ckpt.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace checkpoints of an earlier run.")
    ] = False,
    init_encoder: Annotated[
        Path | None,
        typer.Option("--init-encoder", help="CoMCL encoder (`fediqad pretrain`) for the backbone."),
    ] = None,
    dp: dp_opts.DpOpt = None,
    target_epsilon: dp_opts.TargetEpsilonOpt = None,
    delta: dp_opts.DeltaOpt = None,
    noise_multiplier: dp_opts.NoiseMultiplierOpt = None,
    max_grad_norm: dp_opts.MaxGradNormOpt = None,
) -> None:
    """Train one model centrally; writes OUT/best.ckpt, OUT/last.ckpt and OUT/metrics.json."""
    from shared.training.start import start_training

    flags = {
        "method": method, "schedule": schedule, "model.backbone": backbone,
        "model.width": width, "model.gab": gab, "image_size": image_size,
        "optim.batch_size": batch_size, "optim.lr": lr, "seed": seed, "augment": augment,
        "model.pretrained_weights": init_encoder,
        **dp_opts.privacy_flags(dp, target_epsilon, delta, noise_multiplier, max_grad_norm),
        "optim.epochs": epochs, "device": device, "threads": threads,
        **precision_flags(precision, channels_last),
    }  # fmt: skip
    run = start_training(
        data_root, dataset=dataset, config_file=config, flags=flags, set_items=set_items,
        out=out, resume=resume, force=force,
    )  # fmt: skip
    cfg, out = run.cfg, run.out
    if resume:
        console.print(
            f"resuming {out} at epoch {run.start_epoch} of {cfg.optim.epochs} "
            f"(last.ckpt holds epoch {run.start_epoch - 1})",
            highlight=False,
        )
    result = _run_with_progress(run)
    sections = [(f"{result.eval_split} (epoch {result.best_epoch})", result.best)]
    if result.test is not None:
        sections.append(("test", result.test))
    title = f"{cfg.dataset.name} {cfg.method}: selected by {result.selection}"
    console.print(metrics_table(sections, title, cfg.dataset))
    console.print(compat_line(result.test or result.best), highlight=False)
    if run.ledger is not None:
        console.print(_dp_line(run.ledger), highlight=False)
    console.print(
        f"checkpoints {out / 'best.ckpt'} and {out / 'last.ckpt'}; history {out / 'metrics.json'}",
        highlight=False,
    )


def _dp_line(led: Any) -> str:
    return (
        f"differential privacy: epsilon {led.epsilon():.3f} at delta {led.delta:g} "
        f"(sigma {led.noise_multiplier:.3f}, q {led.sample_rate:.4f}, "
        f"{led.steps} noisy steps, {led.accountant} accountant)"
    )


def _run_with_progress(run: Any) -> Any:
    from shared.training.central import EpochHooks

    cfg = run.cfg
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console) as progress:
        epochs = progress.add_task("epochs", total=cfg.optim.epochs, completed=run.start_epoch - 1)
        batches = progress.add_task("batches", total=run.batches_per_epoch())

        def start_epoch(epoch: int, total: int) -> None:
            progress.reset(batches, total=total, description=f"epoch {epoch}")

        def end_epoch(epoch: int, m: dict[str, float]) -> None:
            progress.advance(epochs)
            if not m:  # selection.every_epochs: not validated this epoch
                progress.console.print(f"epoch {epoch}/{cfg.optim.epochs}", highlight=False)
                return
            mark = " (selected)" if epoch == run.best_epoch else ""
            progress.console.print(
                f"epoch {epoch}/{cfg.optim.epochs} {run.eval_split}: AUC {number(m['auc'])} "
                f"ACC {number(m['acc'])} F1 {number(m['f1'])} "
                f"(HQ AUC {number(m['auc_hq'])}, LQ AUC {number(m['auc_lq'])}){mark}",
                highlight=False,
            )

        hooks = EpochHooks(
            start_epoch=start_epoch,
            batch=lambda stage: progress.update(batches, advance=1, description=stage),
            end_epoch=end_epoch,
        )
        return run.run(hooks)


# ------------------------------------------------------------------------ evaluate
def evaluate_cmd(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A fediqad checkpoint.")],
    dataset: DatasetOpt,
    data_root: DataRootOpt,
    split: Annotated[
        str | None, typer.Option(help="Split to score (default test; train for DRAC).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Score a checkpoint on one split: AUC, ACC, F1, kappa overall, on HQ and on LQ images."""
    preset(dataset)  # an unknown name is refused before torch starts
    from shared.evaluation import evaluate_checkpoint

    dev = torch_device(device, threads)
    score = evaluate_checkpoint(
        checkpoint, data_root, dataset=dataset, split=split, device=dev, batch_size=batch_size
    )
    wanted, split, metrics = score.dataset, score.split, score.metrics
    if as_json:
        doc = {"checkpoint": str(checkpoint), "dataset": wanted, "split": split}
        sys.stdout.write(dumps({**doc, "metrics": metrics}) + "\n")
        return
    title = f"{wanted} {score.method} ({checkpoint})"
    console.print(metrics_table([(split, metrics)], title, preset(wanted).dataset))
    console.print(compat_line(metrics), highlight=False)


# ------------------------------------------------------------------------- predict
def predict(
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="A fediqad checkpoint.")],
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    out: Annotated[Path | None, typer.Option(help="CSV file to write (default: stdout).")] = None,
    batch_size: BatchOpt = None,
    device: DeviceOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Diagnosis and quality of each image, with class probabilities, as CSV."""
    from fediqad.inference import predict_rows, to_csv
    from shared.checkpoint import load_checkpoint, require_usable_batchnorm

    dev = torch_device(device, threads)
    ck = load_checkpoint(checkpoint)
    require_usable_batchnorm(ck.extra, checkpoint)
    head, rows = predict_rows(ck, images, dev, batch_size or 16)
    text = to_csv(head, rows)
    if out is None:
        sys.stdout.write(text)
        return
    write_text_atomic(out, text)
    err_console.print(f"wrote {len(rows)} predictions to {out}", highlight=False)


# ---------------------------------------------------------------- import-reference
def import_reference_cmd(
    dataset: DatasetOpt,
    task_net: Annotated[
        Path, typer.Option("--task-net", help="The authors' Task Net (best_model.pth).")
    ],
    out: Annotated[Path, typer.Option(help="fediqad checkpoint to write.")],
    meta_learner: Annotated[
        Path | None,
        typer.Option("--meta-learner", help="The authors' Meta Learner (best_model_LG.pth)."),
    ] = None,
    set_items: Annotated[
        list[str] | None, typer.Option("--set", help="Override, e.g. image_size=512.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing --out file.")] = False,
) -> None:
    """Convert the MKCNet authors' checkpoints (torch.save(state_dict)) into one fediqad file."""
    from shared.reference_import import import_reference

    if out.exists() and not force:
        raise UserError("already exists; pass --force to replace it", path=out)
    path, cfg = import_reference(dataset, task_net, meta_learner, out, set_items)
    parts = "Task Net and Meta Learner" if meta_learner is not None else "Task Net only"
    console.print(
        f"imported {parts} for {cfg.dataset.name} ({cfg.model.backbone}, gab "
        f"{cfg.model.gab}) into {path}",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate_cmd)
    app.command("predict")(predict)
    app.command("import-reference")(import_reference_cmd)
