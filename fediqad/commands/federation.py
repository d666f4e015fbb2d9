"""Federation commands: simulate (Ray), server (SuperLink + ServerApp), client (SuperNode).

Thin wiring: options -> FederationConfig -> `simulations` / `server.runtime` /
`client.runtime`. Settings of a run are stored in RUN_DIR/federation.json, so
`--resume` continues with them (only rounds, timeouts and resources may change).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from fediqad.commands.privacy_options import (
    DeltaOpt,
    DpOpt,
    MaxGradNormOpt,
    NoiseMultiplierOpt,
    TargetEpsilonOpt,
    privacy_flags,
)
from shared.errors import UserError, did_you_mean

console = Console()
err_console = Console(stderr=True)

Opt = typer.Option


def _federation(
    *,
    run_dir: Path,
    resume: bool,
    dataset: str | None,
    config: Path | None,
    set_items: list[str] | None,
    run_flags: dict[str, Any],
    fed_flags: dict[str, Any],
    defaults: Any = None,
) -> Any:
    """Fresh settings from the flags, or on --resume the stored ones plus allowed changes."""
    from server.config import FederationConfig, validated
    from shared.config import build_config

    stored = run_dir / "federation.json"
    if resume and stored.is_file():
        fixed = [k for k, v in run_flags.items() if v is not None]
        if fixed or config is not None or set_items:
            raise UserError(
                "--resume continues with the stored settings; drop "
                f"{', '.join(fixed) or '--config/--set'}"
            )
        base = FederationConfig.model_validate_json(stored.read_text()).model_dump()
        base.update({k: v for k, v in fed_flags.items() if v is not None})
        base.update(resume=True, run_dir=run_dir)
        return validated(**base)
    if resume:
        raise UserError(f"nothing to resume: {stored} does not exist")
    if (run_dir / "state.json").exists():
        raise UserError(
            f"{run_dir} already holds a federated run; pass --resume to continue "
            "it or --name / --run-dir for a new one"
        )
    if defaults is not None and dataset is None and config is None:
        run = defaults
        run_tree = run.model_dump()
        for dotted, value in run_flags.items():
            if value is not None:
                node = run_tree
                *sections, leaf = dotted.split(".")
                for section in sections:
                    node = node[section]
                node[leaf] = value
        run = build_config(run.dataset.name, None, _flatten(run_tree), set_items)
    else:
        run = build_config(dataset, config, run_flags, set_items)
    fed = validated(
        run=run, run_dir=run_dir, **{k: v for k, v in fed_flags.items() if v is not None}
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    stored.write_text(fed.model_dump_json(indent=2))
    return fed


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


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
        help="mkcnet, mkcnet-first-order, vanilla, multitask, mkcnet-no-meta, mkcnet-no-mab.",
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


def _fed_set(items: list[str] | None) -> dict[str, Any]:
    """`--fed-set key=value` pairs as FederationConfig fields (values parsed as YAML)."""
    import yaml

    from server.config import FederationConfig

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise UserError(f"--fed-set {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        field = key.strip().replace("-", "_")
        if field not in FederationConfig.model_fields or field == "run":
            known = [f.replace("_", "-") for f in FederationConfig.model_fields if f != "run"]
            raise UserError(
                f"--fed-set: unknown federation setting {key!r}{did_you_mean(key, known)}"
            )
        out[field] = yaml.safe_load(raw) if raw else ""
    return out


PretrainRoundsOpt = Annotated[
    int | None, Opt("--pretrain-rounds", help="CoMCL encoder rounds before diagnosis (0).")
]
PretrainEpochsOpt = Annotated[
    int | None, Opt("--pretrain-epochs", help="Local CoMCL epochs per pretraining round (1).")
]


def _run_flags(method, backbone, image_size, batch_size, seed, device=None) -> dict[str, Any]:  # noqa: ANN001
    return {
        "method": method,
        "model.backbone": backbone,
        "image_size": image_size,
        "optim.batch_size": batch_size,
        "seed": seed,
        "device": device,
    }


def _simulate_privacy(
    dp: str | None,
    target_epsilon: float | None,
    delta: float | None,
    noise_multiplier: float | None,
    max_grad_norm: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """RunConfig and FederationConfig overrides of simulate's DP flags: under --dp client
    the noise and clipping norm are the server's (per site update), else per sample."""
    run = privacy_flags(dp, target_epsilon, delta, noise_multiplier, max_grad_norm)
    fed: dict[str, Any] = {}
    if dp == "client":
        fed = {"dp_noise_multiplier": noise_multiplier, "dp_clipping_norm": max_grad_norm}
        run["privacy.noise_multiplier"] = run["privacy.max_grad_norm"] = None
    return run, fed


def _site_budgets(items: list[str] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for item in items or []:
        name, _, value = item.partition("=")
        try:
            out[name.strip()] = float(value)
        except ValueError:
            raise UserError(f"--site-epsilon-budget {item!r} must look like NAME=EPS") from None
    return out


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
    gpus_per_site: Annotated[float, Opt("--gpus-per-site", help="Ray GPUs per site.")] = 0.0,
    max_parallel: Annotated[
        int, Opt("--max-parallel", help="Sites training at once when sharing the cores.")
    ] = 4,
    name: Annotated[str | None, Opt("--name", help="Run name: output in runs/NAME.")] = None,
    out: Annotated[Path, Opt("--out", help="Folder of runs.")] = Path("runs"),
    seed: SeedOpt = None,
    fed_set: FedSetOpt = None,
    resume: ResumeOpt = False,
    verbose: Annotated[bool, Opt("--verbose", help="Flower and Ray debug logs.")] = False,
    dp: DpOpt = None,
    target_epsilon: TargetEpsilonOpt = None,
    delta: DeltaOpt = None,
    noise_multiplier: NoiseMultiplierOpt = None,
    max_grad_norm: MaxGradNormOpt = None,
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
    backend: Annotated[
        str,
        Opt(
            "--backend",
            help="ray, in-process (sites one after another in this process) or auto "
            "(Ray, in-process if Ray cannot start).",
        ),
    ] = "auto",
    ray_startup_timeout: Annotated[
        float, Opt("--ray-startup-timeout", help="Seconds Ray may take to start (Ray's own: 30).")
    ] = 180.0,
) -> None:
    """Federated simulation on one machine (Flower Simulation Engine on Ray, or in-process)."""
    from simulations.federated import Resources, run_federated_simulation
    from simulations.scenarios import (
        DEFAULT_LOCAL_EPOCHS,
        default_run_config,
        default_sites,
        partitioned_sites,
    )

    synthetic = data_root is None
    if synthetic and (dataset or partition):
        raise UserError("--dataset and --partition describe real data; add --data-root")
    n_sites = sites or 3
    if n_sites < 1:
        raise UserError(f"--sites must be at least 1, got {n_sites}")
    name = name or (
        "default"
        if synthetic
        else f"{(dataset or 'EYEQ').upper()}-{strategy or 'fedavg'}-{n_sites}sites"
    )
    run_dir = (out / name).resolve()
    dp_run, dp_fed = _simulate_privacy(dp, target_epsilon, delta, noise_multiplier, max_grad_norm)
    own = _site_budgets(site_epsilon_budget)
    budgets = {"epsilon_budgets": own} if own else {}
    fed = _federation(
        run_dir=run_dir,
        resume=resume,
        dataset=dataset,
        config=config,
        set_items=set_items,
        run_flags={**_run_flags(method, backbone, image_size, batch_size, seed), **dp_run},
        fed_flags={
            **dp_fed,
            "num_rounds": rounds,
            "local_epochs": local_epochs
            if local_epochs is not None or resume or not synthetic
            else DEFAULT_LOCAL_EPOCHS,
            "pretrain_rounds": pretrain_rounds,
            "pretrain_epochs": pretrain_epochs,
            "strategy": strategy,
            "proximal_mu": proximal_mu,
            "transport_dtype": transport_dtype,
            "min_replies": min_replies,
            "round_timeout": round_timeout,
            "min_nodes": n_sites if not resume else None,
            **_fed_set(fed_set),
        },
        defaults=default_run_config() if synthetic else None,
    )
    if synthetic:
        site_list, held_out = default_sites(
            run_dir / "data",
            images_per_site=images_per_site or 400,
            image_size=fed.run.image_size,
            seed=fed.run.seed,
            n_sites=n_sites,
        )
        if server_eval and fed.server_eval_data is None:
            fed = fed.model_copy(update={"server_eval_data": held_out})
    else:
        assert data_root is not None
        site_list = partitioned_sites(
            data_root, fed.run.dataset.name, n_sites, partition, run_dir / "sites", fed.run.seed
        )
    unknown = sorted(set(own) - {site.name for site in site_list})
    if unknown:
        raise UserError(
            f"--site-epsilon-budget: no site named {', '.join(unknown)}; the sites "
            f"are {', '.join(site.name for site in site_list)}"
        )
    res = (
        Resources(cpus_per_site=cpus_per_site, gpus_per_site=gpus_per_site)
        if cpus_per_site
        else Resources.auto(len(site_list), max_parallel=max_parallel, gpus_per_site=gpus_per_site)
    )
    console.print(
        f"simulating {len(site_list)} site(s) x {fed.num_rounds} round(s), {fed.strategy}, "
        f"{fed.run.method} on {fed.run.model.backbone} @ {fed.run.image_size}px; "
        f"{res.cpus_per_site:g} CPU per site -> {run_dir}",
        highlight=False,
    )
    from contextlib import nullcontext

    from simulations.resources import PeakMemory

    with PeakMemory() if profile_memory else nullcontext() as peak:
        run_federated_simulation(
            fed,
            site_list,
            res,
            verbose=verbose,
            backend=backend,  # type: ignore[arg-type]
            startup_timeout=ray_startup_timeout,
            say=lambda text: err_console.print(text, highlight=False),
            **budgets,
        )
    if peak is not None:
        report = peak.write(run_dir / "resources.json")
        console.print(
            f"peak memory (all processes): {report['peak_pss_gb_sum']:.2f} GB PSS, "
            f"{report['peak_rss_gb_sum']:.2f} GB RSS summed, "
            f"{report['peak_processes']} processes",
            highlight=False,
        )
    doc = json.loads((run_dir / "metrics.json").read_text())
    if not doc.get("rounds"):
        raise UserError(f"no round completed; see the log above and {run_dir}")
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
    from shared.certificates import ServerFiles

    tls = None if insecure else ServerFiles.in_dir(certs.expanduser().resolve())
    if insecure:
        console.print(INSECURE_WARNING)
    if not 0 < port < 65536:
        raise UserError(f"--port must be between 1 and 65535, got {port}")
    run_dir = run_dir.resolve()
    fed = _federation(
        run_dir=run_dir,
        resume=resume,
        dataset=dataset,
        config=config,
        set_items=set_items,
        run_flags=_run_flags(method, backbone, image_size, batch_size, seed),
        fed_flags={
            "num_rounds": rounds,
            "local_epochs": local_epochs,
            "pretrain_rounds": pretrain_rounds,
            "pretrain_epochs": pretrain_epochs,
            "strategy": strategy,
            "proximal_mu": proximal_mu,
            "min_nodes": min_nodes,
            "min_replies": min_replies,
            "round_timeout": round_timeout,
            "transport_dtype": transport_dtype,
            "server_eval_data": server_eval_data.resolve() if server_eval_data else None,
            **_fed_set(fed_set),
        },
    )
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
) -> None:
    """Run this hospital's SuperNode (the ClientApp on its own data) until stopped."""
    from client.runtime import run_site
    from shared.certificates import NodeFiles

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
    )
    raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
    app.command("server")(server)
    app.command("client")(client)
