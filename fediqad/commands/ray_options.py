"""`fediqad simulate`'s options for where the sites run: a Ray of its own, this process,
or a Ray cluster the user runs (docs/ray-cluster.md)."""

from __future__ import annotations

from typing import Annotated

import typer

BackendOpt = Annotated[str, typer.Option(help="ray, in-process or auto (in-process if Ray fails).")]
RayStartupTimeoutOpt = Annotated[float, typer.Option(help="Seconds Ray may take to start.")]
RayAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--ray-address",
        help="Run the sites on this running Ray cluster: HOST:PORT of `ray start --head`, "
        "or auto (RAY_ADDRESS or the local cluster); it is left running "
        "(docs/ray-cluster.md).",
    ),
]
