"""Report commands: report (HTML + Markdown of a run), explain (Grad-CAM), embed (t-SNE).

Thin wiring: options -> `fediqad.report` / `shared.explain`. What cannot be drawn is
said in one line per part while the rest is still written; a command exits non-zero
(UserError, exit 2) only when its main output could not be produced at all or some
input images were unreadable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fediqad.commands.options import BatchOpt, ThreadsOpt, torch_device
from shared.errors import UserError

console = Console()
err_console = Console(stderr=True)

DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda or auto.")]
CheckpointOpt = Annotated[Path, typer.Option("--checkpoint", help="A fediqad checkpoint.")]


def _left_out(items: list[str]) -> None:
    for item in items:
        err_console.print(f"[yellow]left out:[/] {item}", highlight=False, soft_wrap=True)


# ------------------------------------------------------------------------- report
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (fediqad train / simulate).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Output folder (default RUN_DIR/report).")
    ] = None,
    data_root: Annotated[
        Path | None,
        typer.Option(
            "--data-root",
            help="Data to evaluate the checkpoint on for ROC curves "
            "and confusion matrices (default: what the run "
            "recorded, e.g. the server's held-out set).",
        ),
    ] = None,
    split: Annotated[
        str | None, typer.Option("--split", help="Split for ROC / confusion (default test).")
    ] = None,
    evaluate: Annotated[
        bool,
        typer.Option(
            "--eval/--no-eval", help="Evaluate the checkpoint for ROC / confusion figures."
        ),
    ] = True,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """One self-contained HTML page (and Markdown with PNGs) for a training or federated run."""
    from fediqad.report.build import build_report

    dev = torch_device(device, threads)
    report = build_report(
        run_dir,
        out,
        data_root=data_root,
        split=split,
        device=dev,
        batch_size=batch_size,
        evaluate=evaluate,
    )
    _left_out(report.problems)
    console.print(
        f"wrote {report.html} (self-contained) and {report.markdown} with "
        f"{len(report.figures)} figure(s) in {report.markdown.parent / 'figures'}",
        highlight=False,
    )


# ------------------------------------------------------------------------ explain
def explain_cmd(
    images: Annotated[list[Path], typer.Argument(help="Image files.", show_default=False)],
    checkpoint: CheckpointOpt,
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs.")],
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Grad-CAM of the diagnosis head and, for MKCNet, the quality and auxiliary branches."""
    from fediqad.report.gradcam_figure import explain_images
    from shared.checkpoint import load_checkpoint

    dev = torch_device(device, threads)
    ck = load_checkpoint(checkpoint)
    result = explain_images(ck, list(images), out, dev)
    for path in result.written:
        console.print(f"wrote {path}", highlight=False)
    if result.errors:
        _left_out(result.errors)
        raise UserError(
            f"{len(result.errors)} of {len(images)} image(s) could not be "
            f"explained (first: {result.errors[0]})"
        )


# -------------------------------------------------------------------------- embed
def embed_cmd(
    checkpoint: CheckpointOpt,
    dataset: Annotated[
        str, typer.Option("--dataset", help="EYEQ, DEEPDR, DRAC, IQAD_CT or IQAD_CXR.")
    ],
    data_root: Annotated[
        Path, typer.Option("--data-root", help="Folder holding NAME/Images and NAME/*.txt.")
    ],
    out: Annotated[Path, typer.Option("--out", help="PNG file to write.")],
    split: Annotated[
        str | None,
        typer.Option(
            "--split", help="Split to embed (default test, else the protocol's last split)."
        ),
    ] = None,
    max_images: Annotated[
        int, typer.Option("--max-images", help="Random subset size (t-SNE is O(n log n)).")
    ] = 1000,
    perplexity: Annotated[
        float | None,
        typer.Option("--perplexity", help="t-SNE perplexity (default min(30, (n-1)/3))."),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="Subset and t-SNE seed.")] = 0,
    batch_size: BatchOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """t-SNE of the Meta Learner's outputs and the diagnosis features (MKCNet's Fig. 8)."""
    from fediqad.report.embed import embed

    if out.suffix.lower() != ".png":
        raise UserError("--out must name a .png file", path=out)
    if max_images < 3:
        raise UserError(f"--max-images must be at least 3, got {max_images}")
    dev = torch_device(device, threads)
    result = embed(
        checkpoint,
        dataset,
        data_root,
        out,
        split=split,
        max_images=max_images,
        perplexity=perplexity,
        seed=seed,
        device=dev,
        batch_size=batch_size,
    )
    _left_out(result.notes)
    console.print(f"wrote {result.path}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("report")(report_cmd)
    app.command("explain")(explain_cmd)
    app.command("embed")(embed_cmd)
