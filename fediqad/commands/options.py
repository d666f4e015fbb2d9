"""Option types and the torch set-up that several command modules share, so one flag
reads and behaves the same in every command that takes it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from shared.errors import UserError

DataRootOpt = Annotated[
    Path, typer.Option("--data-root", help="Folder holding NAME/Images and NAME/train.txt.")
]
ThreadsOpt = Annotated[int | None, typer.Option("--threads", help="CPU threads for torch.")]
BatchOpt = Annotated[int | None, typer.Option("--batch-size", help="Images per batch.")]


def bench_group(app: typer.Typer) -> typer.Typer:
    """The `bench` group: whichever command module registers first creates it, the others
    add their benchmarks to it (module order in COMMAND_MODULES does not matter)."""
    for group in app.registered_groups:
        if group.name == "bench" and group.typer_instance is not None:
            return group.typer_instance
    bench = typer.Typer(help="Benchmarks.", no_args_is_help=True)
    app.add_typer(bench, name="bench")
    return bench


def torch_device(device: str | None, threads: int | None) -> Any:
    """The torch device for --device (default auto), after applying --threads."""
    import torch

    from shared.training.setup import pick_device

    if threads is not None:
        if threads < 1:
            raise UserError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)
    return pick_device(device or "auto")
