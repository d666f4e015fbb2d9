"""Single-machine federated simulation on Flower's Simulation Engine (Ray backend).

N virtual SuperNodes run the project's ClientApp, node i on site folder i; the
ServerApp is the same code that runs in deployment. Per-site CPU / GPU shares are
Ray client resources: with `cpus_per_site` below 1, several sites train at once on
one core each share, so a round lasts about as long as its slowest site.

Backends: `ray` (Flower's Simulation Engine; Ray is started here with generous,
configurable start-up waits and a retry, `simulations.ray_startup`), `in-process`
(`simulations.in_process`: the sites one after another in this process) and `auto`,
Ray with the in-process backend as the fallback when Ray cannot start. With a
`ray_address` the sites run on that existing Ray cluster instead (`simulations.ray_cluster`).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from client.client_app import make_client_app
from client.site import Site
from server.config import FederationConfig
from server.server_app import make_server_app
from shared.errors import UserError
from shared.interrupt import (
    add_stop_hook,
    remove_stop_hook,
    request_stop,
    reset,
    stop_requested,
)
from simulations.backends import BACKENDS, Backend
from simulations.in_process import SiteHook, run_in_process
from simulations.ray_cluster import LOST, attach, cluster_backend
from simulations.ray_startup import (
    DEFAULT_STARTUP_TIMEOUT,
    RayProcesses,
    RayStartFailed,
    start_ray,
)


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

    @classmethod
    def on_cluster(cls, cpus_per_site: float, gpus_per_site: float = 0.0) -> Resources:
        """Shares of an existing cluster (its totals are its own); torch gets the
        site's whole cores."""
        threads = max(1, math.floor(cpus_per_site))
        return cls(cpus_per_site=cpus_per_site, gpus_per_site=gpus_per_site, torch_threads=threads)


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
    backend: Backend = "auto",
    startup_timeout: float = DEFAULT_STARTUP_TIMEOUT,
    say: Callable[[str], None] = lambda text: None,
    on_message: SiteHook | None = None,
    ray_address: str | None = None,
) -> Path:
    """Run the federation over `sites` on `backend`; the run dir.

    `epsilon_budgets` (site name -> epsilon) gives sites their own DP limit, as node
    config `epsilon-budget` does in deployment. `say` reports backend decisions
    (Ray retries, the fallback); `on_message` sees each message an in-process site
    handles. `ray_address` (HOST:PORT, see `ray_cluster.resolve_address`): run the sites
    on that Ray cluster, which is left running."""
    reset()  # a new run: an earlier run's stop request (tests, notebooks) is spent
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if len(sites) < fed.min_nodes:
        fed = fed.model_copy(
            update={"min_nodes": len(sites), "min_replies": min(fed.min_replies, len(sites))}
        )
    res = resources or Resources.auto(len(sites))
    if fed.run.privacy.mode != "off":
        # Opacus' import adds a root log handler (undone right after); imported later by
        # the ServerApp's thread, it would print the other threads' lines meanwhile
        import shared.privacy.opacus_import  # noqa: F401
    if ray_address:
        if backend == "in-process":
            raise UserError("--ray-address runs the sites on Ray; drop --backend in-process")
        _run_on_ray(fed, sites, res, verbose, epsilon_budgets, startup_timeout, say, ray_address)
        return fed.run_dir
    if backend != "in-process":
        try:
            _run_on_ray(fed, sites, res, verbose, epsilon_budgets, startup_timeout, say)
            return fed.run_dir
        except RayStartFailed as err:
            if backend == "ray":
                raise UserError(
                    f"Ray did not start within {startup_timeout:.0f} s ({err}); raise "
                    "--ray-startup-timeout or use --backend in-process"
                ) from None
            say(f"Ray did not start ({err}); running the sites in this process, one at a time")

    threads = res.total_cpus or os.cpu_count() or 1  # one site at a time: all the cores
    run_in_process(
        make_server_app(fed),
        make_client_app(list(sites), threads=threads, epsilon_budgets=epsilon_budgets),
        len(sites),
        on_message=on_message,
    )
    return fed.run_dir


def _run_on_ray(
    fed: FederationConfig,
    sites: Sequence[Site],
    res: Resources,
    verbose: bool,
    epsilon_budgets: dict[str, float] | None,
    startup_timeout: float,
    say: Callable[[str], None],
    address: str | None = None,
) -> None:
    """Start Ray (raises `RayStartFailed`) or join the cluster at `address`, then
    `flwr.simulation.run_simulation` on it. A Ray started here is stopped at the end,
    a cluster joined is only disconnected from."""
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO", "0")  # Ray's future default
    config = backend_config(res, verbose=verbose)
    if address:
        offer = attach(address, config["client_resources"], verbose=verbose)
        say(f"Ray cluster at {address}: {offer}")
    else:
        start_ray(config["init_args"], timeout=startup_timeout, say=say)
    from flwr.simulation import run_simulation

    flower_log = logging.getLogger("flwr")
    flower_log.addFilter(_quiet_flower)
    processes = RayProcesses()
    if not address:  # the cluster's processes are not ours to end
        add_stop_hook(processes.stop_actors)
    try:
        with cluster_backend() if address else nullcontext():
            run_simulation(
                server_app=make_server_app(fed),
                client_app=make_client_app(
                    list(sites), threads=res.torch_threads, epsilon_budgets=epsilon_budgets
                ),
                num_supernodes=len(sites),
                backend_name="ray",
                backend_config=config,  # type: ignore[arg-type]
                verbose_logging=verbose,
            )
    except BaseException:
        request_stop()  # the ServerApp thread must not wait on sites that are gone
        raise
    finally:
        if not address:
            remove_stop_hook(processes.stop_actors)
        import ray

        if ray.is_initialized():
            ray.shutdown()  # joined a cluster: this driver disconnects, the cluster stays
        if not address:
            processes.kill_leftovers()
        flower_log.removeFilter(_quiet_flower)


def _quiet_flower(record: logging.LogRecord) -> bool:
    """Drop Flower's notice that `run_simulation` is deprecated (it is for Flower app
    authors, this command is the user's interface), and after Ctrl-C Flower's errors
    about the actors and threads being stopped, and its error log and traceback of a
    site lost with its node (the round record and the server's warning say it)."""
    if stop_requested():
        return False
    message = record.getMessage()
    if message.startswith(LOST) or "SiteActorLost" in message:
        return False
    return "`run_simulation` function is deprecated" not in message
