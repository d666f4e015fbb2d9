"""What `fediqad deploy` asks Docker for, as plain data (testable without an engine).

The images, entrypoints, mounts and hardening here are the same as in
`deploy/*.compose.yaml`: one SuperLink container for the server, one SuperNode
container per hospital. Everything a site provides (data, certificates, node key) is a
read-only bind mount; nothing secret is passed in environment variables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from shared.errors import UserError

VERSION = "0.1.0"
LABEL_ROLE = "org.fediqad.role"
LABEL_SITE = "org.fediqad.site"
NETWORK = "fediqad"
SERVER_PORT = 9092
UID = "10001:10001"
TORCH_INDEX = {
    "cpu": "https://download.pytorch.org/whl/cpu",
    "cuda": "https://download.pytorch.org/whl/cu128",
}

Role = Literal["server", "hospital"]
Variant = Literal["cpu", "cuda"]


@dataclass(frozen=True)
class ImageSpec:
    """One image to build from the repository root."""

    tag: str
    dockerfile: str
    buildargs: dict[str, str]


@dataclass(frozen=True)
class MountSpec:
    source: str
    target: str
    read_only: bool


@dataclass(frozen=True)
class ContainerSpec:
    """Arguments for `docker.containers.run`, kept as data so tests can read them."""

    name: str
    image: str
    command: list[str]
    environment: dict[str, str]
    mounts: list[MountSpec]
    labels: dict[str, str]
    network: str = NETWORK
    ports: dict[str, int] = field(default_factory=dict)
    restart_policy: dict[str, Any] = field(
        default_factory=lambda: {"Name": "on-failure", "MaximumRetryCount": 5}
    )
    user: str = UID
    gpus: bool = False

    def run_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `DockerClient.containers.run(**kwargs)`."""
        from docker.types import DeviceRequest, Mount

        kwargs: dict[str, Any] = {
            "image": self.image,
            "command": self.command,
            "name": self.name,
            "environment": self.environment,
            "labels": self.labels,
            "mounts": [
                Mount(m.target, m.source, type="bind", read_only=m.read_only) for m in self.mounts
            ],
            "network": self.network,
            "ports": self.ports,
            "restart_policy": self.restart_policy,
            "user": self.user,
            "detach": True,
            "init": True,
            "read_only": True,
            "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges:true"],
            "tmpfs": {
                "/tmp": "",
                "/home/fediqad": f"uid={UID.split(':')[0]},gid={UID.split(':')[1]}",
            },
        }
        if self.gpus:
            kwargs["device_requests"] = [DeviceRequest(count=-1, capabilities=[["gpu"]])]
        return kwargs


def image_tag(role: Role, variant: Variant = "cpu") -> str:
    if role == "server":
        return f"fediqad-server:{VERSION}"
    return f"fediqad-hospital{'-cuda' if variant == 'cuda' else ''}:{VERSION}"


def image_specs(
    roles: list[Role],
    variant: Variant = "cpu",
    *,
    base_image: str | None = None,
    wheelhouse: bool = False,
) -> list[ImageSpec]:
    """The images `fediqad deploy build` builds (the server image is CPU only).

    `base_image` replaces the Dockerfiles' default `python:*-slim` base; `wheelhouse`
    installs every Python package from deploy/wheelhouse instead of the package indexes.
    """
    out = []
    for role in roles:
        v: Variant = "cpu" if role == "server" else variant
        args = {"TORCH_INDEX": TORCH_INDEX[v]}
        if base_image:
            args["BASE_IMAGE"] = base_image
        if wheelhouse:
            args["WHEEL_SOURCE"] = "wheelhouse"
        out.append(ImageSpec(image_tag(role, v), f"deploy/Dockerfile.{role}", args))
    return out


def _existing_dir(path: Path, what: str) -> str:
    path = path.expanduser().resolve()
    if not path.is_dir():
        raise UserError(f"{what} {path} is not a folder")
    return str(path)


def server_spec(
    certs: Path,
    runs: Path,
    *,
    port: int = SERVER_PORT,
    server_args: list[str] | None = None,
    insecure: bool = False,
) -> ContainerSpec:
    """The SuperLink container: certificates read-only, runs writable, one port published."""
    mounts = [MountSpec(_existing_dir(runs, "runs folder"), "/runs", read_only=False)]
    if not insecure:
        mounts.insert(
            0, MountSpec(_existing_dir(certs, "certificates folder"), "/certs", read_only=True)
        )
    return ContainerSpec(
        name="fediqad-server",
        image=image_tag("server"),
        command=list(server_args or []),
        environment={
            "FEDIQAD_CERTS": "/certs",
            "FEDIQAD_RUN_DIR": "/runs/federated",
            "FEDIQAD_PORT": str(SERVER_PORT),
            "FEDIQAD_INSECURE": "1" if insecure else "0",
        },
        mounts=mounts,
        labels={LABEL_ROLE: "server"},
        ports={f"{SERVER_PORT}/tcp": port},
        restart_policy={"Name": "on-failure", "MaximumRetryCount": 3},
    )


def hospital_spec(
    site: str,
    server: str,
    data: Path,
    certs: Path,
    *,
    variant: Variant = "cpu",
    max_wait: int = 300,
    insecure: bool = False,
) -> ContainerSpec:
    """One hospital's SuperNode container: data and node key read-only, no port published."""
    from shared.certificates import check_name

    check_name(site)
    if ":" not in server:
        raise UserError(f"--server must look like HOST:PORT, got {server!r}")
    mounts = [MountSpec(_existing_dir(data, "data folder"), "/data", read_only=True)]
    if not insecure:
        mounts.append(
            MountSpec(_existing_dir(certs, "node certificates folder"), "/certs", read_only=True)
        )
    return ContainerSpec(
        name=f"fediqad-hospital-{site}",
        image=image_tag("hospital", variant),
        command=[],
        environment={
            "FEDIQAD_SITE_NAME": site,
            "FEDIQAD_SERVER": server,
            "FEDIQAD_DATA_PATH": "/data",
            "FEDIQAD_CERTS": "/certs",
            "FEDIQAD_MAX_WAIT": str(max_wait),
            "FEDIQAD_INSECURE": "1" if insecure else "0",
        },
        mounts=mounts,
        labels={LABEL_ROLE: "hospital", LABEL_SITE: site},
        gpus=variant == "cuda",
    )
