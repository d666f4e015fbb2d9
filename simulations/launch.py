"""`fediqad simulate` as a library call: settings, sites, resources, run, outcome.

`simulate(request)` is what the command runs; a notebook builds a `SimulationRequest`
and calls it the same way. Progress lines go to `say`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared.errors import UserError, unknown_choice
from simulations.backends import BACKENDS


@dataclass
class SimulationRequest:
    """What a simulation is asked for; None means "not given" (defaults, or the stored
    settings of a resumed run)."""

    data_root: Path | None = None  # None: the built-in synthetic hospitals
    dataset: str | None = None
    sites: int | None = None
    partition: str | None = None
    name: str | None = None
    out: Path = Path("runs")
    config: Path | None = None
    set_items: list[str] | None = None
    run_flags: dict[str, Any] = field(default_factory=dict)  # dotted RunConfig overrides
    fed_flags: dict[str, Any] = field(default_factory=dict)  # FederationConfig fields
    images_per_site: int | None = None
    server_eval: bool = True
    cpus_per_site: float | None = None
    gpus_per_site: float | None = None  # None: share the GPUs when the sites train on them
    device: str | None = None  # cpu, cuda or auto (simulations.gpu)
    max_parallel: int = 4
    epsilon_budgets: dict[str, float] = field(default_factory=dict)
    resume: bool = False
    verbose: bool = False
    profile_memory: bool = False
    backend: str = "auto"  # ray, in-process, or auto (Ray, in-process where Ray cannot start)
    ray_startup_timeout: float = 180.0
    ray_address: str | None = None  # an existing Ray cluster: HOST:PORT or auto (ray_cluster)

    @property
    def synthetic(self) -> bool:
        return self.data_root is None


@dataclass
class SimulationResult:
    run_dir: Path
    rounds: int
    peak_memory: dict[str, Any] | None = None


def run_dir_of(req: SimulationRequest) -> Path:
    """OUT/NAME; NAME defaults to `default` (synthetic) or DATASET-STRATEGY-Nsites."""
    if req.name:
        return (req.out / req.name).resolve()
    if req.synthetic:
        return (req.out / "default").resolve()
    strategy = req.fed_flags.get("strategy") or "fedavg"
    return (
        req.out / f"{(req.dataset or 'EYEQ').upper()}-{strategy}-{req.sites or 3}sites"
    ).resolve()


def _cluster_address(configured: str, backend: str) -> str | None:
    """HOST:PORT of the Ray cluster the run is set to use (checked now, before torch
    loads), None for a Ray of its own."""
    if not configured:
        return None
    if backend == "in-process":
        raise UserError("--ray-address runs the sites on a Ray cluster; drop --backend in-process")
    from simulations.ray_cluster import resolve_address

    return resolve_address(configured)


def simulate(req: SimulationRequest, say: Callable[[str], None] = print) -> SimulationResult:
    """Run (or resume) a federated simulation; raises UserError if no round completed."""
    from server.settings import committed_round, federation_settings
    from simulations import scenarios
    from simulations.gpu import check_gpu_flags, site_placement

    if req.backend not in BACKENDS:
        raise unknown_choice("--backend", req.backend, BACKENDS)
    if req.synthetic and (req.dataset or req.partition):
        raise UserError("--dataset and --partition describe real data; add --data-root")
    n_sites = req.sites or 3
    if n_sites < 1:
        raise UserError(f"--sites must be at least 1, got {n_sites}")
    check_gpu_flags(req.device, req.gpus_per_site)
    run_dir = run_dir_of(req)
    fed_flags = dict(req.fed_flags)
    if fed_flags.get("local_epochs") is None and req.synthetic and not req.resume:
        fed_flags["local_epochs"] = scenarios.DEFAULT_LOCAL_EPOCHS
    if not req.resume:
        fed_flags.setdefault("min_nodes", n_sites)
    if req.ray_address is not None:  # checked first: an unreachable cluster fails fast
        fed_flags["ray_address"] = req.ray_address
        _cluster_address(req.ray_address, req.backend)
    fed = federation_settings(
        run_dir=run_dir,
        resume=req.resume,
        dataset=req.dataset,
        config=req.config,
        set_items=req.set_items,
        run_flags={**req.run_flags, "device": req.device},
        fed_flags=fed_flags,
        defaults=scenarios.default_run_config() if req.synthetic else None,
        simulation=True,
    )
    address = _cluster_address(fed.ray_address, req.backend)  # also a stored / --fed-set one
    from simulations import federated  # torch: only once the settings are valid
    from simulations.ray_cluster import cluster_placement
    from simulations.resources import PeakMemory

    gpu = (  # on a cluster the driver's own GPUs say nothing about the nodes'
        cluster_placement(fed.run.device, req.gpus_per_site)
        if address
        else site_placement(fed.run.device, req.gpus_per_site, min(n_sites, req.max_parallel))
    )
    fed = fed.model_copy(update={"run": fed.run.model_copy(update={"device": gpu.device})})

    if req.data_root is None:
        site_list, held_out = scenarios.default_sites(
            run_dir / "data",
            images_per_site=req.images_per_site or 400,
            image_size=fed.run.image_size,
            seed=fed.run.seed,
            n_sites=n_sites,
            on_nodes=address is not None,  # each node builds the sites it runs
        )
        if req.server_eval and fed.server_eval_data is None:
            fed = fed.model_copy(update={"server_eval_data": held_out})
    else:
        site_list = scenarios.partitioned_sites(
            req.data_root,
            fed.run.dataset.name,
            n_sites,
            req.partition,
            run_dir / "sites",
            fed.run.seed,
        )
        if address:
            say(
                f"the sites read {run_dir / 'sites'} (split from {req.data_root}): every node "
                "of the cluster must see both at these paths (a shared filesystem)"
            )
    unknown = sorted(set(req.epsilon_budgets) - {site.name for site in site_list})
    if unknown:
        raise UserError(
            f"--site-epsilon-budget: no site named {', '.join(unknown)}; the sites "
            f"are {', '.join(site.name for site in site_list)}"
        )
    if address:  # a core per site unless told, on whichever node Ray finds one
        res = federated.Resources.on_cluster(req.cpus_per_site or 1.0, gpu.gpus_per_site)
    else:
        res = replace(
            federated.Resources(cpus_per_site=req.cpus_per_site)
            if req.cpus_per_site
            else federated.Resources.auto(len(site_list), max_parallel=req.max_parallel),
            gpus_per_site=gpu.gpus_per_site,
            total_gpus=gpu.total_gpus,
        )
    done = committed_round(run_dir) if req.resume else None
    resuming = f" (resuming after round {done})" if done else ""
    say(
        f"simulating {len(site_list)} site(s) x {fed.num_rounds} round(s){resuming}, "
        f"{fed.strategy}, {fed.run.method} on {fed.run.model.backbone} @ {fed.run.image_size}px; "
        f"{res.cpus_per_site:g} CPU{gpu_share(res.gpus_per_site)} per site -> {run_dir}"
    )
    budgets = {"epsilon_budgets": req.epsilon_budgets} if req.epsilon_budgets else {}
    peak_report = None
    with PeakMemory() if req.profile_memory else nullcontext() as peak:
        federated.run_federated_simulation(
            fed,
            site_list,
            res,
            verbose=req.verbose,
            backend=req.backend,  # type: ignore[arg-type]
            startup_timeout=req.ray_startup_timeout,
            ray_address=address,
            say=say,
            on_message=lambda i, msg: say(  # in-process: which site works on what, now
                f"round {msg.metadata.group_id}: {site_list[i].name}, {msg.metadata.message_type}"
            ),
            **budgets,
        )
    if peak is not None:
        peak_report = peak.write(run_dir / "resources.json")
        say(
            f"peak memory (all processes): {peak_report['peak_pss_gb_sum']:.2f} GB PSS, "
            f"{peak_report['peak_rss_gb_sum']:.2f} GB RSS summed, "
            f"{peak_report['peak_processes']} processes"
        )
    doc = json.loads((run_dir / "metrics.json").read_text())
    if not doc.get("rounds"):
        raise UserError(f"no round completed; see the log above and {run_dir}")
    return SimulationResult(run_dir, len(doc["rounds"]), peak_report)


def gpu_share(gpus: float) -> str:
    return f" and {gpus:g} GPU" if gpus else ""
