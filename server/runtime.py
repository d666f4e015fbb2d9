"""`fediqad server`: a SuperLink plus one run of this ServerApp on Flower's deployment runtime.

Stock Flower tools only: `flower-superlink` (Fleet, Control and runtime APIs on one
port in flwr 1.42), then `flwr run <project> <connection>` with the federation
settings as run config. The connection lives in a private FLWR_HOME inside the run
directory, so the operator's ~/.flwr is left alone. Progress is read from the run's
own `metrics.json`; the SuperLink is stopped when the run ends.

Security by default (flwr 1.42): the SuperLink serves HTTPS (`--ssl-ca-certfile
--ssl-certfile --ssl-keyfile`) with SuperNode authentication (`--enable-supernode-auth`),
and every public key in the certificates folder's allow-list is registered through the
Control API (`flwr supernode register KEY`) before the run starts; keys added to the
allow-list while the run is going are registered at the next status poll. Certificates
are checked (present, current, issued by the CA, key matches) before anything starts.
With TLS the SuperLink itself listens on 127.0.0.1 only; the public port is the
Fleet-only gateway (`server/gateway.py`), because flwr 1.42 serves its unauthenticated
Control API (run submission, node registration) on the same port as the Fleet API.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import tomli_w
import yaml
from rich.console import Console

from server.config import FederationConfig, to_user_config
from server.flwr_cli import CONNECTION, NodeRegistry, flwr_json
from server.report import METRICS_FILE, print_round
from shared.certificates import (
    EXPIRY_WARN_DAYS,
    ServerFiles,
    allowlisted_keys,
    check_server_files,
    load_certificate,
    sans,
)
from shared.errors import UserError
from shared.process_group import (
    flower_tool,
    free_port,
    require_superexec,
    start_process_group,
    stop_process_group,
)


def project_root() -> Path:
    """The folder whose pyproject.toml declares this Flower App (what `flwr run` bundles)."""
    root = Path(__file__).resolve().parents[1]
    pyproject = root / "pyproject.toml"
    if not pyproject.is_file() or "[tool.flwr.app]" not in pyproject.read_text():
        raise UserError(
            "fediqad server needs the fediqad source folder (its pyproject.toml declares the "
            f"Flower App); none found at {root}. Install with `pip install -e <checkout>`"
        )
    return root


def child_env(flwr_home: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["FLWR_HOME"] = str(flwr_home)
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5")  # Flower default 1 s
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    require_superexec(env["PATH"])  # flower-superlink starts it by name
    return env


def wait_for_port(
    host: str, port: int, timeout: float, proc: subprocess.Popen, what: str = "the SuperLink"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise UserError(
                f"{what} exited with code {proc.returncode} at start-up; "
                "is the port already in use?"
            )
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.3)
    raise UserError(f"{what} did not open {host}:{port} within {timeout:.0f} s")


def prepare_run_dir(
    fed: FederationConfig, host: str, port: int, tls: ServerFiles | None = None
) -> tuple[Path, Path]:
    """Write the RunConfig, the run-config overrides and the Flower connection."""
    run_dir = fed.run_dir
    flwr_home = run_dir / ".flwr"
    flwr_home.mkdir(parents=True, exist_ok=True)
    config_file = run_dir / "run-config.yaml"
    config_file.write_text(yaml.safe_dump(fed.run.model_dump(mode="json"), sort_keys=False))
    overrides = run_dir / "flwr-run-config.toml"
    overrides.write_text(tomli_w.dumps(to_user_config(fed, config_file=config_file)))
    connect = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    security: dict[str, object] = (
        {"root-certificates": str(tls.ca.resolve())} if tls is not None else {"insecure": True}
    )
    (flwr_home / "config.toml").write_text(
        tomli_w.dumps(
            {
                "superlink": {
                    "default": CONNECTION,
                    CONNECTION: {"address": f"{connect}:{port}", **security},
                }
            }
        )
    )
    return flwr_home, overrides


def superlink_command(host: str, port: int, tls: ServerFiles | None) -> list[str]:
    """Stock flower-superlink; HTTPS + SuperNode authentication unless `tls` is None."""
    security = (
        [
            "--ssl-ca-certfile",
            str(tls.ca),
            "--ssl-certfile",
            str(tls.cert),
            "--ssl-keyfile",
            str(tls.key),
            "--enable-supernode-auth",
        ]
        if tls is not None
        else ["--insecure"]
    )
    return [
        flower_tool("flower-superlink"),
        *security,
        "--host",
        host,
        "--port",
        str(port),
        "--disable-runtime-dependency-installation",
    ]


def check_tls(tls: ServerFiles, host: str, console: Console) -> list[Path]:
    """Certificates usable and at least one node key allowed; the allow-list's keys."""
    days = check_server_files(tls)
    if days < EXPIRY_WARN_DAYS:
        console.print(
            f"[yellow]warning:[/] the server certificate {tls.cert} expires in {days} days"
        )
    names = sans(load_certificate(tls.cert))
    if host not in ("0.0.0.0", "::", "") and host not in names:
        raise UserError(
            f"--host {host} is not among the server certificate's names "
            f"({', '.join(names)}); reissue it with `fediqad certs init --host "
            f"{host} --force`",
            path=tls.cert,
        )
    return allowlisted_keys(tls.allowlist)


def serve(
    fed: FederationConfig,
    *,
    host: str,
    port: int,
    console: Console,
    tls: ServerFiles | None = None,
    startup_timeout: float = 90.0,
    poll: float = 2.0,
    status_every: float = 30.0,
) -> int:
    """Start the SuperLink, submit the run, follow it to the end; the process exit code.

    `tls=None` is plaintext without node authentication (tests, a closed lab network).
    """
    app_dir = project_root()
    if tls is not None:
        check_tls(tls, host, console)
    # With TLS the SuperLink listens on 127.0.0.1 only and the public port is the
    # Fleet-only gateway (server/gateway.py): the Control API stays private.
    link_host, link_port = ("127.0.0.1", free_port()) if tls is not None else (host, port)
    flwr_home, overrides = prepare_run_dir(fed, link_host, link_port, tls)
    env = child_env(flwr_home)
    registry = NodeRegistry(tls.allowlist, env, console) if tls is not None else None
    log_path = fed.run_dir / "superlink.log"
    connect = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    procs: list[subprocess.Popen] = []
    with open(log_path, "ab") as log:
        try:
            superlink = start_process_group(
                superlink_command(link_host, link_port, tls), log, env, fed.run_dir
            )
            procs.append(superlink)
            wait_for_port(
                link_host if tls is not None else connect, link_port, startup_timeout, superlink
            )
            if registry is not None:
                registry.sync()
            if tls is not None:
                gateway = start_process_group(
                    gateway_command(host, port, link_port, tls), log, env, fed.run_dir
                )
                procs.append(gateway)
                wait_for_port(connect, port, startup_timeout, gateway, "the Fleet gateway")
            mode = (
                "TLS, SuperNode authentication, Fleet API only"
                if tls is not None
                else "plaintext, --insecure, any SuperNode may join"
            )
            console.print(f"SuperLink listening on {host}:{port} ({mode}); log {log_path}")
            started = flwr_json(
                ["run", str(app_dir), CONNECTION, "--run-config", str(overrides)], env
            )
            run_id = started.get("run-id")
            if not run_id:
                raise UserError(f"the SuperLink did not start the run: {started}")
            console.print(f"run {run_id} started; waiting for {fed.min_nodes} site(s)")
            return _follow(fed, run_id, env, procs, console, poll, status_every, registry)
        finally:
            for proc in reversed(procs):
                stop_process_group(proc)


def gateway_command(host: str, port: int, upstream_port: int, tls: ServerFiles) -> list[str]:
    return [
        sys.executable,
        "-m",
        "server.gateway",
        "--listen",
        f"{host}:{port}",
        "--upstream-port",
        str(upstream_port),
        "--ca",
        str(tls.ca),
        "--cert",
        str(tls.cert),
        "--key",
        str(tls.key),
    ]


def _follow(
    fed: FederationConfig,
    run_id: str,
    env: dict[str, str],
    procs: list[subprocess.Popen],
    console: Console,
    poll: float,
    status_every: float,
    registry: NodeRegistry | None = None,
) -> int:
    """Show rounds as the run commits them; ask the SuperLink for the run status now and
    then (each `flwr ls` is a Python start-up, CPU the sites would rather have)."""
    shown = 0
    metrics = fed.run_dir / METRICS_FILE
    next_status = time.monotonic() + status_every
    while True:
        for name, proc in zip(("SuperLink", "Fleet gateway"), procs, strict=False):
            if proc.poll() is not None:
                raise UserError(
                    f"the {name} stopped (exit {proc.returncode}); rerun with "
                    "--resume to continue from the last checkpoint"
                )
        try:
            doc = json.loads(metrics.read_text())
        except (OSError, ValueError):
            doc = {}
        rounds = doc.get("rounds", [])
        for record in rounds[shown:]:
            print_round(record, console)
        shown = max(shown, len(rounds))
        if doc.get("finished") or time.monotonic() >= next_status:
            next_status = time.monotonic() + status_every
            if registry is not None:
                registry.sync(strict=False)
            try:
                runs = flwr_json(["ls", CONNECTION, "--run-id", str(run_id)], env).get("runs", [])
            except UserError as err:  # a status poll: ask again at the next one
                console.print(f"[yellow]warning:[/] {err}")
                runs = []
            status = runs[0].get("status", "") if runs else ""
            if status.startswith("finished"):
                if status.endswith("completed"):
                    console.print(
                        f"run {run_id} completed; global model {fed.run_dir / 'global.pt'}"
                    )
                    return 0
                details = runs[0].get("status-details") or ""
                raise UserError(
                    f"run {run_id} {status}: {details}".strip()
                    + f"; see {fed.run_dir / 'superlink.log'}"
                )
        time.sleep(poll)
