"""`fediqad certs`: the federation's CA, the SuperLink's certificate and SuperNode keys.

The server operator runs both commands; each hospital receives only its own folder
`certs/nodes/NAME/` (CA certificate + node private key) over a channel they trust.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shared.certificates import (
    CA_KEY,
    ServerFiles,
    check_server_files,
    create_node_key,
    init_ca_and_server,
    load_certificate,
    sans,
)

console = Console()
Opt = typer.Option

CertsOpt = Annotated[Path, Opt("--certs", help="Certificates folder (the server's copy).")]

app = typer.Typer(
    help="TLS certificates and SuperNode keys (security is on by default).", no_args_is_help=True
)


@app.command("init")
def init(
    hosts: Annotated[
        list[str],
        Opt(
            "--host",
            help="Name or IP the hospitals use to reach the server (repeat or "
            "comma-separate); localhost and 127.0.0.1 are always added.",
        ),
    ],
    certs: CertsOpt = Path("certs"),
    days: Annotated[int, Opt("--days", help="Server certificate lifetime.", min=1)] = 825,
    ca_days: Annotated[int, Opt("--ca-days", help="CA certificate lifetime.", min=1)] = 3650,
    force: Annotated[bool, Opt("--force", help="Replace an existing CA and certificate.")] = False,
) -> None:
    """Create a CA and a server certificate with the server's host names as SANs."""
    files = init_ca_and_server(certs, hosts, days=days, ca_days=ca_days, force=force)
    days_left = check_server_files(files)
    names = ", ".join(sans(load_certificate(files.cert)))
    console.print(
        f"CA {files.ca} (key {certs / CA_KEY}, keep it offline), server certificate "
        f"{files.cert} for {names}, valid {days_left} days",
        highlight=False,
    )
    console.print(
        f"next: `fediqad certs node NAME --certs {certs}` for each hospital", highlight=False
    )


@app.command("node")
def node(
    name: Annotated[str, typer.Argument(help="The hospital's site name, e.g. hospital-a.")],
    certs: CertsOpt = Path("certs"),
    force: Annotated[bool, Opt("--force", help="Replace this node's key (rotation).")] = False,
) -> None:
    """Create a SuperNode key pair and add its public key to the server's allow-list."""
    files, entry = create_node_key(certs, name, force=force)
    console.print(
        f"node key {files.key} (private, give to {name} only), public key registered in {entry}",
        highlight=False,
    )
    console.print(
        f"send {files.key.parent}/ to {name}; a running server registers the new key "
        "within a minute",
        highlight=False,
    )


@app.command("show")
def show(certs: CertsOpt = Path("certs")) -> None:
    """Check the server's certificate files and list the allowed nodes."""
    files = ServerFiles.in_dir(certs)
    days = check_server_files(files)
    console.print(
        f"server certificate ok: {', '.join(sans(load_certificate(files.cert)))}; {days} days left",
        highlight=False,
    )
    for key in sorted(files.allowlist.glob("*.pub")):
        console.print(f"allowed node: {key.stem}", highlight=False)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="certs")
