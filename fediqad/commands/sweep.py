"""`fediqad simulate --sweep sweep.toml`: the grid's runs, then one summary table."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import click
import typer
from rich.console import Console
from rich.table import Table

from shared.errors import UserError

console = Console()
SweepOpt = Annotated[
    Path | None,
    typer.Option("--sweep", help="TOML grid of runs (docs/sweep.md), each in --out/NAME."),
]
# simulate options that may come with --sweep; the rest belong in the sweep file
# --resume: a sweep always resumes; --ray-address (where simulate has it) overrides the file's
WITH_SWEEP = {"sweep", "out", "resume", "ray_address"}


def refuse_other_options() -> None:
    """--sweep takes its settings from the file: a flag given as well is one line."""
    ctx = click.get_current_context()
    given = [
        name
        for name in ctx.params
        if name not in WITH_SWEEP
        and ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT
    ]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise UserError(f"{flag}: with --sweep, put simulate settings in the file's [simulate]")


def run_sweep_command(sweep_file: Path, out: Path) -> None:
    """Check the file (one line on a bad key), run the grid, print the summary."""
    from simulations.sweep_file import load_sweep

    refuse_other_options()
    sweep = load_sweep(sweep_file)  # torch-free: errors come before heavy imports
    address = click.get_current_context().params.get("ray_address")
    if address:  # every run on this cluster, whatever the file says
        sweep = replace(sweep, settings=sweep.settings.model_copy(update={"ray_address": address}))
    from simulations.sweep import FINAL_METRICS, run_sweep

    n = len(sweep.points())
    console.print(f"sweep {sweep_file}: {n} run(s) -> {out}", highlight=False)
    try:
        rows = run_sweep(sweep, out, say=lambda text: console.print(text, highlight=False))
    except KeyboardInterrupt:
        console.print(
            f"sweep stopped; finished runs are kept. Run the same command again to "
            f"continue (it skips them): fediqad simulate --sweep {sweep_file} --out {out}",
            highlight=False,
        )
        raise
    table = Table(title=f"sweep {sweep_file.name}: final round, site-weighted")
    for column in ("run", "status", "rounds", *(h for h, _ in FINAL_METRICS), "server AUC"):
        table.add_column(column, justify="left" if column in ("run", "status") else "right")
    for row in rows:
        values = [row.metrics.get(key) for _, key in FINAL_METRICS] + [row.server_auc]
        cells = ["-" if v is None else f"{v:.3f}" for v in values]
        table.add_row(row.name, row.status, str(row.rounds), *cells)
    console.print(table)
    console.print(f"summary: {out / 'sweep-summary.md'}, {out / 'sweep-summary.json'}")
    failed = [row.name for row in rows if row.status.startswith("failed")]
    if failed:
        raise UserError(f"{len(failed)} of {n} run(s) failed: {', '.join(failed)}; see above")
