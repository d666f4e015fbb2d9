"""`fediqad deploy build|up|down|status`: the deploy/ images through the Docker SDK.

For sites that prefer one command to compose; it creates the same containers as
`deploy/server.compose.yaml` and `deploy/hospital.compose.yaml` (see
`fediqad.deployment.specs`). Without a reachable Docker engine every sub-command says
so in one line and exits 2.
"""

from __future__ import annotations

import os
from contextlib import suppress
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console

from fediqad.deployment.specs import (
    LABEL_ROLE,
    LABEL_SITE,
    NETWORK,
    SERVER_PORT,
    ContainerSpec,
    Role,
    Variant,
    hospital_spec,
    server_spec,
)
from shared.errors import UserError

if TYPE_CHECKING:
    from docker import DockerClient

console = Console()
Opt = typer.Option
app = typer.Typer(
    help="Build and run the server / hospital containers (Docker SDK).", no_args_is_help=True
)

RESTART_POLICIES: dict[str, dict[str, Any] | None] = {
    "on-failure": None,  # the spec's own (a few tries, then the container stays down)
    "always": {"Name": "always"},
    "no": {"Name": "no"},
}

RoleArg = Annotated[str, typer.Argument(help="server or hospital.")]


def docker_client() -> DockerClient:
    """A connected Docker client, or one line saying why there is none."""
    import docker
    from docker.errors import DockerException

    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except DockerException as err:
        reason = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
        raise UserError(
            f"no Docker engine reachable at {where} ({reason}); start Docker or set DOCKER_HOST"
        ) from err
    return client


def _role(value: str) -> Role:
    if value not in ("server", "hospital"):
        raise UserError(f"role must be 'server' or 'hospital', got {value!r}")
    return value  # type: ignore[return-value]


def _variant(value: str) -> Variant:
    if value not in ("cpu", "cuda"):
        raise UserError(f"--variant must be 'cpu' or 'cuda', got {value!r}")
    return value  # type: ignore[return-value]


def repo_root() -> Path:
    root = Path(__file__).resolve().parents[2]
    if not (root / "deploy" / "Dockerfile.server").is_file():
        raise UserError(
            f"the Dockerfiles are not next to this installation ({root}/deploy); "
            "run from a fediqad checkout"
        )
    return root


@app.command("build")
def build(
    role: Annotated[str | None, typer.Argument(help="server or hospital (default both).")] = None,
    variant: Annotated[str, Opt("--variant", help="Hospital image: cpu or cuda.")] = "cpu",
    offline: Annotated[
        bool,
        Opt(
            "--offline",
            help="Base image from Debian packages (debootstrap) and Python packages from "
            "deploy/wheelhouse; the build itself uses no network. Both are made on first use.",
        ),
    ] = False,
    release: Annotated[
        str | None, Opt("--release", help="--offline: Debian release (default: the host's).")
    ] = None,
    mirror: Annotated[
        str | None, Opt("--mirror", help="--offline: Debian mirror (default: the host's).")
    ] = None,
    cpu_wheels: Annotated[
        Path | None,
        Opt(
            "--cpu-wheels",
            help="--offline: a folder with a CPU-only torch and torchvision wheel pair "
            "(default: pip's find-links folders).",
        ),
    ] = None,
) -> None:
    """Build the images from deploy/Dockerfile.* (repository root as context)."""
    from fediqad.deployment.images import build_images
    from fediqad.deployment.offline import DebianSource, apt_source, cpu_torch_wheels

    roles: list[Role] = [_role(role)] if role else ["server", "hospital"]
    kind = _variant(variant)
    if (release or mirror or cpu_wheels) and not offline:
        raise UserError("--release, --mirror and --cpu-wheels only apply with --offline")
    pair = None
    if cpu_wheels is not None:
        pair = cpu_torch_wheels([cpu_wheels])
        if pair is None:
            raise UserError(
                f"--cpu-wheels {cpu_wheels} has no matching torch-*+cpu and "
                "torchvision-*+cpu wheels for this Python"
            )
    source = None
    if offline and (release or mirror):
        host = apt_source() if not (release and mirror) else None
        source = DebianSource(release or host.release, mirror or host.mirror)  # type: ignore[union-attr]
    client = docker_client()
    built = build_images(
        client,
        repo_root(),
        roles,
        kind,
        lambda line: console.print(line, highlight=False, markup=False),
        offline=offline,
        source=source,
        cpu_pair=pair,
    )
    for image in built:
        console.print(
            f"{image.tag}: {image.size_bytes / 1e6:.0f} MB, built in {image.seconds:.0f} s",
            highlight=False,
        )


def _ensure_network(client: Any) -> None:
    if not client.networks.list(names=[NETWORK]):
        client.networks.create(NETWORK, driver="bridge")


def start(client: Any, spec: ContainerSpec) -> Any:
    """Create and start the container; an old one of the same name is replaced."""
    from docker.errors import NotFound

    _ensure_network(client)
    with suppress(NotFound):
        client.containers.get(spec.name).remove(force=True)
    return client.containers.run(**spec.run_kwargs())


@app.command("up")
def up(
    role: RoleArg,
    site_name: Annotated[str | None, Opt("--site-name", help="Hospital: its name.")] = None,
    server: Annotated[str | None, Opt("--server", help="Hospital: server HOST:PORT.")] = None,
    data: Annotated[Path | None, Opt("--data", help="Hospital: data folder (read-only).")] = None,
    certs: Annotated[
        Path, Opt("--certs", help="Server: certs folder; hospital: its node folder (read-only).")
    ] = Path("certs"),
    runs: Annotated[Path, Opt("--runs", help="Server: runs folder (writable).")] = Path("runs"),
    port: Annotated[int, Opt("--port", help="Server: published port.")] = SERVER_PORT,
    variant: Annotated[str, Opt("--variant", help="Hospital: cpu or cuda.")] = "cpu",
    insecure: Annotated[bool, Opt("--insecure", help="Plaintext (closed test networks).")] = False,
    server_args: Annotated[
        list[str] | None, Opt("--arg", help="Server: an argument for `fediqad server` (repeat).")
    ] = None,
    restart: Annotated[
        str, Opt("--restart", help="Restart policy: on-failure (5 tries), always or no.")
    ] = "on-failure",
) -> None:
    """Start the server's SuperLink or this hospital's SuperNode container."""
    kind = _role(role)
    if restart not in RESTART_POLICIES:
        raise UserError(f"--restart must be one of {', '.join(RESTART_POLICIES)}, got {restart!r}")
    if kind == "server":
        spec = server_spec(certs, runs, port=port, server_args=server_args, insecure=insecure)
    else:
        if not (site_name and server and data):
            raise UserError("deploy up hospital needs --site-name, --server and --data")
        spec = hospital_spec(
            site_name, server, data, certs, variant=_variant(variant), insecure=insecure
        )
    spec = replace(spec, restart_policy=RESTART_POLICIES[restart] or spec.restart_policy)
    if insecure:
        console.print("[bold yellow]WARNING: --insecure: plaintext, no node authentication[/]")
    container = start(docker_client(), spec)
    console.print(f"started {spec.name} ({spec.image}), id {container.short_id}", highlight=False)


@app.command("down")
def down(
    role: RoleArg,
    site_name: Annotated[str | None, Opt("--site-name", help="Hospital: its name.")] = None,
) -> None:
    """Stop and remove the server's or a hospital's container(s)."""
    kind = _role(role)
    labels = [f"{LABEL_ROLE}={kind}"] + ([f"{LABEL_SITE}={site_name}"] if site_name else [])
    client = docker_client()
    found = client.containers.list(all=True, filters={"label": labels})
    for container in found:
        container.stop(timeout=30)
        container.remove()
        console.print(f"removed {container.name}", highlight=False)
    if not found:
        console.print(f"no {kind} container", highlight=False)


@app.command("status")
def status() -> None:
    """The fediqad containers on this host, their state and health."""
    client = docker_client()
    found = client.containers.list(all=True, filters={"label": LABEL_ROLE})
    if not found:
        console.print("no fediqad containers", highlight=False)
    for container in found:
        state = container.attrs.get("State", {})
        health = state.get("Health", {}).get("Status", "-")
        status = container.status
        if status == "exited":
            status = f"exited (code {state.get('ExitCode')})"
        console.print(
            f"{container.name}: {status}, health {health}, image {', '.join(container.image.tags)}",
            highlight=False,
        )


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="deploy")
