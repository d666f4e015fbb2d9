"""`fediqad bench deploy-round`: a deployed round's cost beyond the sites' work."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fediqad.commands.options import bench_group
from shared.errors import UserError

console = Console()
Opt = typer.Option


def bench_deploy_round(
    rounds: Annotated[int, Opt(help="Rounds to run (round 1 includes start-up).")] = 3,
    keep: Annotated[
        Path | None, Opt("--keep", help="Keep data, logs and the run in this folder.")
    ] = None,
    compare: Annotated[
        bool,
        Opt(
            "--compare",
            help="Also run with each of fediqad's levers off (Flower's SuperNode waits, "
            "one object per tensor, a ClientApp process per message) and all off.",
        ),
    ] = False,
) -> None:
    """Two sites + server on 127.0.0.1: round time, slowest handler, time outside handlers."""
    from simulations.deploy_bench import bench_deploy_round as run

    if rounds < 1:
        raise UserError(f"--rounds must be at least 1, got {rounds}")
    result = run(rounds, keep, compare)
    load = ", ".join(f"{x:.2f}" for x in result.load)
    table = Table(title=f"deployed round, 2 sites on 127.0.0.1 (load average {load})")
    columns = ("round", "round s", "handler s", "outside s", "outside %")
    for column in (*columns, "Flower s", "hand-over s", "server s"):
        table.add_column(column, justify="right")
    for cost in result.rounds:
        table.add_row(
            str(cost.round),
            f"{cost.round_s:.2f}",
            f"{cost.handler_s:.2f}",
            f"{cost.outside_s:.2f}",
            f"{cost.outside_pct:.1f}",
            f"{cost.flower_s:.2f}",
            f"{cost.relay_s:.2f}",
            f"{cost.server_s:.2f}",
        )
    console.print(table)
    console.print(
        "handler: the slowest site's train + evaluate handlers; outside = Flower "
        "(SuperLink <-> SuperNode, polls included) + hand-over (taking each message "
        "to the worker) + server (sampling, aggregation); round 1 "
        "includes waiting for the sites"
    )
    if compare:
        console.print(compare_table(result))
    console.print(
        f"cold import: flwr {result.import_flwr_s:.3f} s, client.client_app "
        f"{result.import_clientapp_s:.3f} s (ratio {result.import_ratio:.2f}; target <= 1.5)"
    )
    console.print("target: outside handlers <= 20 % of a round on an idle machine")


def compare_table(result) -> Table:  # type: ignore[no-untyped-def]
    """One line per variant: mean of rounds 2.. (round 1 includes start-up)."""
    table = Table(title="levers off one at a time (mean of rounds after the first)")
    for column in ("variant", "load at start", "round s", "handler s", "outside %"):
        table.add_column(column, justify="right")
    for name, costs in result.variants.items():
        later = costs[1:] or costs
        round_s = sum(c.round_s for c in later) / len(later)
        handler_s = sum(c.handler_s for c in later) / len(later)
        share = 100.0 * (round_s - handler_s) / round_s if round_s > 0 else 0.0
        table.add_row(
            name,
            f"{result.loads[name][0]:.1f}",
            f"{round_s:.2f}",
            f"{handler_s:.2f}",
            f"{share:.1f}",
        )
    return table


def register(app: typer.Typer) -> None:
    bench_group(app).command("deploy-round")(bench_deploy_round)
