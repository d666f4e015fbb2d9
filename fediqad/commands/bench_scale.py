"""`fediqad bench scale`: round time and memory at 10, 50, 100 sites, to size a cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from fediqad.commands.options import bench_group

console = Console()
Opt = typer.Option


def bench_scale(
    sites: Annotated[str, Opt("--sites", help="Site counts, comma-separated.")] = "10,50,100",
    rounds: Annotated[int, Opt("--rounds", help="Rounds per site count.")] = 3,
    backend: Annotated[str, Opt("--backend", help="ray or in-process.")] = "ray",
    images_per_site: Annotated[int, Opt("--images-per-site", help="Synthetic images.")] = 16,
    ray_address: Annotated[
        str | None, Opt("--ray-address", help="Run on this existing Ray cluster.")
    ] = None,
    json_file: Annotated[Path | None, Opt("--json", help="Also write the numbers here.")] = None,
    keep: Annotated[Path | None, Opt("--keep", help="Keep the runs and logs here.")] = None,
) -> None:
    """Synthetic sites on the smallest model: round, aggregation and memory per site count."""
    from simulations.scale_bench import bench_scale as run
    from simulations.scale_bench import parse_sites

    counts = parse_sites(sites)
    console.print(f"{len(counts)} simulation(s) of {rounds} round(s) on {backend}", highlight=False)
    result = run(
        counts, rounds=rounds, backend=backend, images_per_site=images_per_site,
        ray_address=ray_address, keep=keep,
        on_point=lambda p: console.print(f"{p.sites} sites: {p.error or 'done'}", highlight=False),
    )  # fmt: skip
    load = ", ".join(f"{x:.2f}" for x in result.load_before)
    table = Table(title=f"{backend}, {result.cpus} CPUs, load average before {load}")
    heads = ("sites", "round s", "round 1 s", "aggregate s", "driver peak MB", "per-site MB")
    for column in (*heads, "site workers", "all procs PSS MB"):
        table.add_column(column, justify="right")
    for p in result.points:
        if p.error:
            table.add_row(str(p.sites), f"failed: {p.error}", *[""] * 6)
            continue
        nums = (p.round_s, p.first_round_s, p.aggregate_s, p.driver_peak_mb, p.site_mb)
        row = [f"{p.round_s:.2f}", f"{p.first_round_s:.2f}", f"{p.aggregate_s:.3f}"]
        row += [f"{x:.0f}" for x in nums[3:]] + [str(p.site_workers), f"{p.total_pss_mb:.0f}"]
        table.add_row(str(p.sites), *row)
    console.print(table)
    how = next((p.site_memory for p in result.points if not p.error), "")
    console.print(f"per-site MB: {how}; round s: mean of rounds 2+", highlight=False)
    if json_file is not None:
        json_file.write_text(json.dumps(result.to_json(), indent=2) + "\n")
        console.print(f"wrote {json_file}", highlight=False)


def register(app: typer.Typer) -> None:
    bench_group(app).command("scale")(bench_scale)
