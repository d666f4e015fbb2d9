"""`fediqad bench evidence`: measured evidence with seeds (docs/evidence.md).

Thin wiring over `simulations.evidence.report.run_evidence`; writes OUT/evidence.json
(every row, the settings, seconds per part) and OUT/evidence.md (the tables).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from fediqad.commands.options import bench_group
from shared.errors import UserError

console = Console()
err_console = Console(stderr=True)
Opt = typer.Option


def _ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{flag} must be integers like 0,1,2, got {text!r}") from None
    if not values or min(values) < 0:
        raise UserError(f"{flag} must list non-negative integers, got {text!r}")
    return values


def bench_evidence(
    out: Annotated[Path, Opt(help="Folder for data, runs and results.")] = Path("runs/evidence"),
    seeds: Annotated[str, Opt(help="Seeds, comma separated (at least 3 for an sd).")] = "0,1,2",
    parts: Annotated[
        str, Opt(help="Parts, comma separated: signal, methods, federated, comcl.")
    ] = "signal,methods,federated,comcl",
    n: Annotated[int, Opt("--n", help="Images per data set for (a) and (b).")] = 240,
    image_size: Annotated[int, Opt(help="Image side for (a); (b) uses 32.")] = 64,
    epochs: Annotated[int, Opt(help="Training epochs in (a).")] = 10,
    rounds: Annotated[int, Opt(help="Federated rounds in (b).")] = 4,
    local_epochs: Annotated[
        int, Opt(help="Local epochs per round in (b); alone / centralised: rounds x this.")
    ] = 4,
    comcl_n: Annotated[int, Opt("--comcl-n", help="Images per CoMCL data set.")] = 200,
    threads: Annotated[int, Opt(help="CPU threads (1 is fastest on a busy 2-core box).")] = 1,
) -> None:
    """MKCNet vs baselines, federated vs local vs centralised, CoMCL vs scratch; mean ± sd."""
    from simulations.evidence.settings import PARTS

    chosen = tuple(p.strip() for p in parts.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PARTS]
    if unknown or not chosen:
        raise UserError(
            f"--parts: unknown {', '.join(unknown) or '(none)'}; choose from {', '.join(PARTS)}"
        )
    for flag, value, low in (
        ("--n", n, 30),
        ("--epochs", epochs, 1),
        ("--rounds", rounds, 1),
        ("--local-epochs", local_epochs, 1),
        ("--comcl-n", comcl_n, 30),
        ("--threads", threads, 1),
    ):
        if value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    if image_size < 32 or image_size % 32:
        raise UserError(f"--image-size must be a multiple of 32, got {image_size}")
    seed_list = _ints(seeds, "--seeds")

    from shared.atomic_write import write_text_atomic
    from shared.strict_json import dumps
    from simulations.evidence.report import run_evidence
    from simulations.evidence.settings import EvidenceSettings

    s = EvidenceSettings(
        seeds=seed_list, parts=chosen, n=n, image_size=image_size, epochs=epochs,
        rounds=rounds, local_epochs=local_epochs, comcl_n=comcl_n, threads=threads,
    )  # fmt: skip
    start = time.perf_counter()
    doc = run_evidence(out, s, say=lambda t: err_console.print(t, highlight=False))
    doc["total_seconds"] = time.perf_counter() - start
    write_text_atomic(out / "evidence.json", dumps(doc) + "\n")
    write_text_atomic(out / "evidence.md", doc["markdown"] + "\n")
    console.print(doc["markdown"], highlight=False, markup=False)
    console.print(f"{doc['total_seconds']:.0f} s; {out / 'evidence.json'}", highlight=False)


def register(app: typer.Typer) -> None:

    bench_group(app).command("evidence")(bench_evidence)
