"""Federation commands: simulate (Ray), server (SuperLink + ServerApp), client (SuperNode).

Thin wiring: options -> `server.settings.federation_settings` (fresh or resumed) ->
`simulations` / `server.runtime` / `client.runtime`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fediqad.commands import privacy_options as dp_opts
from fediqad.commands import sweep as sweep_cmd
from fediqad.commands.gpu_options import (
    GpusPerSiteOpt,
    PrecisionOpt,
    SiteDeviceOpt,
    SitesDeviceOpt,
    check_precision,
    check_site_device,
)
from fediqad.commands.ray_options import BackendOpt, RayAddressOpt, RayStartupTimeoutOpt
from shared.errors import UserError
from shared.methods import methods_help

console = Console()
err_console = Console(stderr=True)

Opt = typer.Option


# Options shared by `simulate` and `server`.
RoundsOpt = Annotated[int | None, Opt("--rounds", help="Federated rounds (default 5).")]
EpochsOpt = Annotated[
    int | None, Opt("--local-epochs", help="Local epochs per round (1; 3 in the synthetic demo).")
]
StrategyOpt = Annotated[
    str | None,
    Opt(
        "--strategy",
        help="fedavg, fedprox, fedadam, fedavgm, fedbn, fedmedian, fedtrimmedavg, "
        "krum or multikrum.",
    ),
]
MethodOpt = Annotated[
    str | None,
    Opt(
        "--method",
        help=methods_help(),
    ),
]
DatasetOpt = Annotated[str | None, Opt("--dataset", help="EYEQ, DEEPDR, DRAC, IQAD_CT, IQAD_CXR.")]
ConfigOpt = Annotated[Path | None, Opt("--config", help="RunConfig file (.toml / .yaml).")]
SetOpt = Annotated[list[str] | None, Opt("--set", help="Override: section.field=value.")]
BackboneOpt = Annotated[str | None, Opt("--backbone", help="vgg16_bn, vgg16_bn_slim, ...")]
SizeOpt = Annotated[int | None, Opt("--image-size", help="Input size, multiple of 32.")]
BatchOpt = Annotated[int | None, Opt("--batch-size", help="Images per batch at each site.")]
DtypeOpt = Annotated[str | None, Opt("--transport-dtype", help="float32 or float16 arrays.")]
MinRepliesOpt = Annotated[
    int | None, Opt("--min-replies", help="Valid site updates needed to aggregate a round (1).")
]
TimeoutOpt = Annotated[float | None, Opt("--round-timeout", help="Seconds to wait per phase.")]
MuOpt = Annotated[float | None, Opt("--proximal-mu", help="FedProx mu (0.01).")]
SeedOpt = Annotated[int | None, Opt("--seed", help="Random seed.")]
ResumeOpt = Annotated[bool, Opt("--resume", help="Continue the run from its last checkpoint.")]
FedSetOpt = Annotated[
    list[str] | None,
    Opt(
        "--fed-set",
        help="Any federation setting: KEY=VALUE, e.g. trim-beta=0.1, server-lr=0.5 "
        "(see docs/federation.md).",
    ),
]


PretrainRoundsOpt = Annotated[
    int | None, Opt("--pretrain-rounds", help="CoMCL encoder rounds before diagnosis (0).")
]
PretrainEpochsOpt = Annotated[
    int | None, Opt("--pretrain-epochs", help="Local CoMCL epochs per pretraining round (1).")
]


def _run_flags(method, backbone, image_size, batch_size, seed, precision) -> dict[str, Any]:  # noqa: ANN001
    check_precision(precision)
    return {
        "method": method,
        "model.backbone": backbone,
        "image_size": image_size,
        "optim.batch_size": batch_size,
        "seed": seed,
        "precision": precision,
    }


def simulate(
    data_root: Annotated[
        Path | None,
        Opt("--data-root", help="Real data (ROOT/NAME/...); omit for the built-in synthetic run."),
    ] = None,
    dataset: DatasetOpt = None,
    sites: Annotated[int | None, Opt("--sites", help="Number of sites (default 3).")] = None,
    partition: Annotated[
        str | None,
        Opt("--partition", help="How real data is split over sites (see `fediqad data`)."),
    ] = None,
    rounds: RoundsOpt = None,
    local_epochs: EpochsOpt = None,
    pretrain_rounds: PretrainRoundsOpt = None,
    pretrain_epochs: PretrainEpochsOpt = None,
    method: MethodOpt = None,
    strategy: StrategyOpt = None,
    proximal_mu: MuOpt = None,
    backbone: BackboneOpt = None,
    image_size: SizeOpt = None,
    batch_size: BatchOpt = None,
    precision: PrecisionOpt = None,
    config: ConfigOpt = None,
    set_items: SetOpt = None,
    images_per_site: Annotated[
        int | None, Opt("--images-per-site", help="Synthetic run: images per hospital (400).")
    ] = None,
    transport_dtype: DtypeOpt = None,
    min_replies: MinRepliesOpt = None,
    round_timeout: TimeoutOpt = None,
    server_eval: Annotated[
        bool,
        Opt("--server-eval/--no-server-eval", help="Synthetic run: evaluate on a held-out set."),
    ] = True,
    cpus_per_site: Annotated[
        float | None, Opt("--cpus-per-site", help="Ray CPUs per site (default: share the cores).")
    ] = None,
    gpus_per_site: GpusPerSiteOpt = None,
    device: SitesDeviceOpt = None,
    max_parallel: Annotated[
        int, Opt("--max-parallel", help="Sites training at once when sharing the cores.")
    ] = 4,
    name: Annotated[str | None, Opt("--name", help="Run name: output in runs/NAME.")] = None,
    out: Annotated[Path, Opt("--out", help="Folder of runs.")] = Path("runs"),
    seed: SeedOpt = None,
    fed_set: FedSetOpt = None,
    resume: ResumeOpt = False,
    verbose: Annotated[bool, Opt("--verbose", help="Flower and Ray debug logs.")] = False,
    dp: dp_opts.DpOpt = None,
    target_epsilon: dp_opts.TargetEpsilonOpt = None,
    delta: dp_opts.DeltaOpt = None,
    noise_multiplier: dp_opts.NoiseMultiplierOpt = None,
    max_grad_norm: dp_opts.MaxGradNormOpt = None,
    site_epsilon_budget: Annotated[
        list[str] | None,
        Opt(
            "--site-epsilon-budget",
            help="NAME=EPS: a site's own epsilon limit (as node config epsilon-budget would).",
        ),
    ] = None,
    profile_memory: Annotated[
        bool,
        Opt("--profile-memory", help="Record peak RAM of all processes in RUN/resources.json."),
    ] = False,
    backend: BackendOpt = "auto",
    ray_startup_timeout: RayStartupTimeoutOpt = 180.0,
    ray_address: RayAddressOpt = None,
    sweep: sweep_cmd.SweepOpt = None,
) -> None:
    """Federated simulation (Flower's Simulation Engine on Ray, a Ray cluster, or in-process)."""
    if sweep is not None:  # the grid's runs, settings from the file
        return sweep_cmd.run_sweep_command(sweep, out)
    from server.settings import parse_fed_set, parse_site_budgets
    from simulations.launch import SimulationRequest, simulate

    dp_run, dp_fed = dp_opts.simulate_privacy_flags(
        dp, target_epsilon, delta, noise_multiplier, max_grad_norm
    )
    request = SimulationRequest(
        data_root=data_root, dataset=dataset, sites=sites, partition=partition, name=name,
        out=out, config=config, set_items=set_items,
        run_flags={**_run_flags(method, backbone, image_size, batch_size, seed, precision),
                   **dp_run},
        fed_flags={
            **dp_fed, "num_rounds": rounds, "local_epochs": local_epochs,
            "pretrain_rounds": pretrain_rounds, "pretrain_epochs": pretrain_epochs,
            "strategy": strategy, "proximal_mu": proximal_mu,
            "transport_dtype": transport_dtype, "min_replies": min_replies,
            "round_timeout": round_timeout, **parse_fed_set(fed_set),
        },
        images_per_site=images_per_site, server_eval=server_eval,
        cpus_per_site=cpus_per_site, gpus_per_site=gpus_per_site, device=device,
        max_parallel=max_parallel,
        epsilon_budgets=parse_site_budgets(site_epsilon_budget), resume=resume,
        verbose=verbose, profile_memory=profile_memory, backend=backend,
        ray_startup_timeout=ray_startup_timeout, ray_address=ray_address,
    )  # fmt: skip
    result = simulate(request, say=lambda text: console.print(text, highlight=False))
    run_dir = result.run_dir
    console.print(
        f"done: {run_dir / 'report.md'}, {run_dir / 'metrics.json'}, {run_dir / 'global.pt'}",
        highlight=False,
    )


INSECURE_WARNING = (
    "[bold yellow]WARNING: --insecure: plaintext connection without "
    "SuperNode authentication; use only on a closed test network.[/]"
)


def server(
    insecure: Annotated[
        bool, Opt("--insecure", help="Plaintext HTTP, no SuperNode authentication (tests only).")
    ] = False,
    certs: Annotated[
        Path,
        Opt(
            "--certs",
            help="Folder from `fediqad certs init`: ca.crt, server.crt, "
            "server.key, allowlist/*.pub.",
        ),
    ] = Path("certs"),
    host: Annotated[str, Opt("--host", help="Address the SuperLink binds.")] = "0.0.0.0",
    port: Annotated[int, Opt("--port", help="SuperLink port (Fleet, Control, runtime).")] = 9092,
    run_dir: Annotated[Path, Opt("--run-dir", help="Where checkpoints and reports go.")] = Path(
        "runs/federated"
    ),
    dataset: DatasetOpt = None,
    config: ConfigOpt = None,
    set_items: SetOpt = None,
    method: MethodOpt = None,
    backbone: BackboneOpt = None,
    image_size: SizeOpt = None,
    batch_size: BatchOpt = None,
    precision: PrecisionOpt = None,
    rounds: RoundsOpt = None,
    local_epochs: EpochsOpt = None,
    pretrain_rounds: PretrainRoundsOpt = None,
    pretrain_epochs: PretrainEpochsOpt = None,
    strategy: StrategyOpt = None,
    proximal_mu: MuOpt = None,
    min_nodes: Annotated[
        int | None, Opt("--min-nodes", help="Sites that must be connected before round 1 (2).")
    ] = None,
    min_replies: MinRepliesOpt = None,
    round_timeout: TimeoutOpt = None,
    transport_dtype: DtypeOpt = None,
    server_eval_data: Annotated[
        Path | None,
        Opt("--server-eval-data", help="Held-out data the server evaluates on each round."),
    ] = None,
    seed: SeedOpt = None,
    fed_set: FedSetOpt = None,
    resume: ResumeOpt = False,
) -> None:
    """Start a SuperLink and run the federation (this ServerApp) on it until it ends."""
    from server.runtime import serve
    from server.settings import federation_settings, parse_fed_set
    from shared.certificates import ServerFiles

    tls = None if insecure else ServerFiles.in_dir(certs.expanduser().resolve())
    if insecure:
        console.print(INSECURE_WARNING)
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    run_dir = run_dir.resolve()
    eval_data = server_eval_data.resolve() if server_eval_data else None
    fed = federation_settings(
        run_dir=run_dir, resume=resume, dataset=dataset, config=config, set_items=set_items,
        run_flags=_run_flags(method, backbone, image_size, batch_size, seed, precision),
        fed_flags={
            "num_rounds": rounds, "local_epochs": local_epochs,
            "pretrain_rounds": pretrain_rounds, "pretrain_epochs": pretrain_epochs,
            "strategy": strategy, "proximal_mu": proximal_mu, "min_nodes": min_nodes,
            "min_replies": min_replies, "round_timeout": round_timeout,
            "transport_dtype": transport_dtype, "server_eval_data": eval_data,
            **parse_fed_set(fed_set),
        },
    )  # fmt: skip
    code = serve(fed, host=host, port=port, console=console, tls=tls)
    raise typer.Exit(code)


def client(
    server_address: Annotated[str, Opt("--server", help="SuperLink HOST:PORT.")],
    data_path: Annotated[Path, Opt("--data-path", help="This site's data (ROOT/NAME/...).")],
    site_name: Annotated[str, Opt("--site-name", help="This site's name in reports.")],
    insecure: Annotated[
        bool,
        Opt(
            "--insecure",
            help="Plaintext, no node key (tests only; the server refuses "
            "it unless it runs --insecure too).",
        ),
    ] = False,
    certs: Annotated[
        Path,
        Opt("--certs", help="This node's folder from `fediqad certs node NAME`: ca.crt, node.key."),
    ] = Path("certs"),
    flwr_home: Annotated[
        Path | None,
        Opt("--flwr-home", help="SuperNode state folder (default ~/.fediqad/supernodes/NAME)."),
    ] = None,
    runtime_port: Annotated[
        int | None,
        Opt("--runtime-port", help="Local port for the ClientApp runtime API (default: free)."),
    ] = None,
    max_wait: Annotated[
        float | None, Opt("--max-wait", help="Give up after this many seconds without the server.")
    ] = None,
    device: SiteDeviceOpt = None,
) -> None:
    """Run this hospital's SuperNode (the ClientApp on its own data) until stopped."""
    from client.runtime import run_site
    from shared.certificates import NodeFiles

    check_site_device(device)
    tls = None if insecure else NodeFiles.in_dir(certs.expanduser().resolve())
    if insecure:
        console.print(INSECURE_WARNING)
    if ":" not in server_address:
        raise UserError(f"--server must look like HOST:PORT, got {server_address!r}")
    code = run_site(
        server_address,
        data_path,
        site_name,
        console=console,
        flwr_home=flwr_home,
        runtime_port=runtime_port,
        max_wait=max_wait,
        tls=tls,
        device=device,
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("server")(server)
    app.command("client")(client)
