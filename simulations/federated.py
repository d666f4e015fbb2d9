"""Single-machine federated simulation on Flower's Simulation Engine (Ray backend).

N virtual SuperNodes run the project's ClientApp, node i on site folder i; the
ServerApp is the same code that runs in deployment. Per-site CPU / GPU shares are
Ray client resources: with `cpus_per_site` below 1, several sites train at once on
one core each share, so a round lasts about as long as its slowest site.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.client_app import make_client_app
from client.site import Site
from server.config import FederationConfig
from server.server_app import make_server_app


@dataclass(frozen=True)
class Resources:
    """Ray resources: per-site shares and the totals Ray may use."""

    cpus_per_site: float
    gpus_per_site: float = 0.0
    total_cpus: int | None = None
    total_gpus: int | None = None
    torch_threads: int = 1

    @classmethod
    def auto(
        cls,
        n_sites: int,
        *,
        max_parallel: int = 4,
        gpus_per_site: float = 0.0,
        total_cpus: int | None = None,
    ) -> Resources:
        """Run up to `max_parallel` sites at once, sharing this machine's cores."""
        cpus = total_cpus or os.cpu_count() or 1
        parallel = max(1, min(n_sites, max(cpus, max_parallel)))
        share = math.floor(1000 * cpus / parallel) / 1000  # never round up: 3 x 0.667 > 2
        return cls(
            cpus_per_site=share,
            gpus_per_site=gpus_per_site,
            total_cpus=cpus,
            torch_threads=max(1, math.floor(share)),
        )


def backend_config(res: Resources, *, verbose: bool = False) -> dict[str, Any]:
    init: dict[str, Any] = {
        "include_dashboard": False,
        "logging_level": logging.INFO if verbose else logging.ERROR,
        "log_to_driver": verbose,
    }
    if res.total_cpus is not None:
        init["num_cpus"] = res.total_cpus
    if res.total_gpus is not None:
        init["num_gpus"] = res.total_gpus
    return {
        "client_resources": {"num_cpus": res.cpus_per_site, "num_gpus": res.gpus_per_site},
        "init_args": init,
    }


def run_federated_simulation(
    fed: FederationConfig,
    sites: Sequence[Site],
    resources: Resources | None = None,
    *,
    verbose: bool = False,
    epsilon_budgets: dict[str, float] | None = None,
) -> Path:
    """Run the federation over `sites` with `flwr.simulation.run_simulation`; the run dir.

    `epsilon_budgets` (site name -> epsilon) gives sites their own DP limit, as node
    config `epsilon-budget` does in deployment."""
    from flwr.simulation import run_simulation

    if len(sites) < fed.min_nodes:
        fed = fed.model_copy(
            update={"min_nodes": len(sites), "min_replies": min(fed.min_replies, len(sites))}
        )
    res = resources or Resources.auto(len(sites))
    if fed.run.privacy.mode != "off":
        # Opacus' import adds a root log handler (undone right after); imported later by
        # the ServerApp's thread, it would print the other threads' lines meanwhile
        import shared.privacy.opacus_import  # noqa: F401
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's future default
    run_simulation(
        server_app=make_server_app(fed),
        client_app=make_client_app(
            list(sites), threads=res.torch_threads, epsilon_budgets=epsilon_budgets
        ),
        num_supernodes=len(sites),
        backend_name="ray",
        backend_config=backend_config(res, verbose=verbose),  # type: ignore[arg-type]
        verbose_logging=verbose,
    )
    return fed.run_dir
