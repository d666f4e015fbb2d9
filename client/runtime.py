"""`fediqad client`: one hospital's site worker and SuperNode, supervised.

Starts the site worker (`client/worker.py`, restarted whenever it exits) and stock
`flower-supernode` with the site's node config (`data-path`, `site-name`,
`state-dir`); the thin ClientApp Flower spawns per message relays to the worker. A
SuperNode dropped by a restarted SuperLink is started again so the site rejoins.

By default over TLS (`--root-certificates`, the federation's CA) with
SuperNode authentication (`--auth-supernode-private-key`): the certificate files are
checked and the server's certificate is verified with a TLS handshake *before* the
SuperNode starts, so a wrong CA, an expired certificate or an unreachable server is
one line and exit code 2, not a retry loop. A SuperNode the SuperLink refuses (key not
in its allow-list) is recognised from Flower's exit message.

The ClientApp reports a fatal site problem (e.g. a data path that does not exist) to
the server in its error reply and, through a status file, to this supervisor, which
then stops the SuperNode and exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

from rich.console import Console

from client.channel import private_dir
from client.site import DEVICE_KEY, SiteError
from client.supervision import WorkerSupervisor
from client.worker_process import STATE_DIR_KEY, STATUS_ENV, WORKER_ENV
from shared.certificates import NodeFiles, check_node_files, probe_tls
from shared.errors import UserError
from shared.process_group import flower_tool, free_port, require_superexec, stop_process_group

REPORT_GRACE_S = 5.0  # time for the error reply to reach the SuperLink before we stop
REJOIN_PAUSE_S = 1.0


def supernode_command(
    server: str,
    data_path: Path,
    site_name: str,
    runtime_port: int,
    max_wait: float | None,
    tls: NodeFiles | None = None,
    state_dir: Path | None = None,
    device: str | None = None,
) -> list[str]:
    """Stock flower-supernode: TLS + node key when `tls` is given, plaintext otherwise."""
    node_config = f'data-path="{data_path}" site-name="{site_name}"'
    if state_dir is not None:
        node_config += f' {STATE_DIR_KEY}="{state_dir}"'
    if device is not None:
        node_config += f' {DEVICE_KEY}="{device}"'
    security = (
        ["--root-certificates", str(tls.ca), "--auth-supernode-private-key", str(tls.key)]
        if tls is not None
        else ["--insecure"]
    )
    cmd = [
        flower_tool("flower-supernode"),
        *security,
        "--superlink",
        server,
        "--node-config",
        node_config,
        "--host",
        "127.0.0.1",
        "--port",
        str(runtime_port),
    ]
    if max_wait is not None:
        cmd += ["--max-wait-time", str(max_wait)]
    return cmd


class OutputWatch:
    """Pass the SuperNode's output through and remember Flower's `Exit Code: N` message
    (Flower exits 1 for every error, so the code is only in the log)."""

    def __init__(self, stream: IO[bytes]):
        self.exit_code: int | None = None
        self.message: list[str] = []
        self._thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self._thread.start()

    def _pump(self, stream: IO[bytes]) -> None:
        collecting = 0
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            sys.stdout.write(line)
            sys.stdout.flush()
            text = line.strip()
            if "Exit Code:" in text:
                try:
                    self.exit_code = int(text.rsplit("Exit Code:", 1)[1].split()[0])
                except (ValueError, IndexError):
                    self.exit_code = -1
                self.message, collecting = [], 3
            elif collecting and text:
                self.message.append(text)
                collecting -= 1

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def reason(self, server: str, site_name: str) -> str:
        detail = " ".join(self.message[:2])
        if self.exit_code == 305 and "activate" in detail.lower():
            return (
                f"the server {server} refused this SuperNode: its public key is not in the "
                f"server's allow-list (register it with `fediqad certs node {site_name}` on "
                "the server) [Flower exit 305]"
            )
        if self.exit_code == 305:
            return f"no connection to the server {server}: {detail} [Flower exit 305]"
        if self.exit_code is not None:
            return f"the SuperNode stopped: {detail} [Flower exit {self.exit_code}]"
        return ""


def preflight(server: str, tls: NodeFiles, max_wait: float | None, console: Console) -> None:
    """Check the node's files and the server's certificate before Flower starts."""
    days = check_node_files(tls)
    if days < 30:
        console.print(f"[yellow]warning:[/] the CA certificate {tls.ca} expires in {days} days")
    probe_tls(server, tls.ca, wait=max_wait if max_wait is not None else 10 * 365 * 86400.0)


def supernode_env(home: Path, status: Path) -> dict[str, str]:
    """The SuperNode's environment: its own FLWR_HOME, this interpreter's bin first on
    PATH (flower-supernode starts `flower-superexec` by name), the supervised worker."""
    env = dict(os.environ)
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5")  # Flower default 1 s
    env.update(
        {
            "FLWR_HOME": str(home),
            STATUS_ENV: str(status),
            WORKER_ENV: "supervised",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    require_superexec(env["PATH"])
    return env


def site_state_dir(home: Path) -> Path:
    """The site worker's private state directory inside the SuperNode's home."""
    return home / "site-state"


def run_site(
    server: str,
    data_path: Path,
    site_name: str,
    *,
    console: Console,
    flwr_home: Path | None = None,
    runtime_port: int | None = None,
    max_wait: float | None = None,
    tls: NodeFiles | None = None,
    device: str | None = None,
) -> int:
    """Run the site worker and the SuperNode until stopped; SiteError when the site
    cannot take part. `device` (node config `device`) is what the site trains on,
    whatever the server's run config says. A SuperNode that the server drops (a
    restarted SuperLink answers its heartbeat with 401 and it exits 0) is started
    again, so the site rejoins.

    `tls=None` is plaintext without node authentication (tests, a closed lab network).
    """
    if '"' in site_name or '"' in str(data_path):
        raise UserError("--site-name and --data-path must not contain double quotes")
    data_path = data_path.expanduser().resolve()
    if not data_path.is_dir():
        console.print(
            f"[yellow]warning:[/] data path {data_path} does not exist; the server "
            "will be told at the first round and this client will then exit"
        )
    if tls is not None:
        console.print(f"checking certificates and the server {server} (TLS)")
        preflight(server, tls, max_wait, console)
    home = (flwr_home or Path.home() / ".fediqad" / "supernodes" / site_name).resolve()
    home.mkdir(parents=True, exist_ok=True)
    state_dir = private_dir(site_state_dir(home))
    status = Path(tempfile.mkstemp(prefix="fediqad-client-", suffix=".json")[1])
    status.write_text("")
    env = supernode_env(home, status)
    cmd = supernode_command(
        server, data_path, site_name, runtime_port or free_port(), max_wait, tls, state_dir, device
    )
    mode = ("TLS, node key " + str(tls.key)) if tls is not None else "plaintext, --insecure"
    worker = WorkerSupervisor(state_dir, console)
    proc: subprocess.Popen | None = None
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        worker.start()
        console.print(f"site worker for '{site_name}' starting (state {state_dir})")
        while True:
            console.print(f"site '{site_name}' connecting to {server} ({mode})")
            proc = subprocess.Popen(
                cmd,
                env=env,
                start_new_session=True,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            assert proc.stdout is not None
            watch = OutputWatch(proc.stdout)
            while proc.poll() is None:
                text = status.read_text() if status.exists() else ""
                if text.strip():
                    time.sleep(REPORT_GRACE_S)
                    stop_process_group(proc)
                    raise SiteError(json.loads(text).get("error", "site error"))
                worker.check()
                time.sleep(0.5)
            watch.join()
            if proc.returncode != 0:
                raise UserError(
                    watch.reason(server, site_name)
                    or f"the SuperNode exited with code {proc.returncode}"
                )
            console.print(
                "[yellow]the server dropped this SuperNode (was the SuperLink restarted?); "
                "rejoining"
            )
            time.sleep(REJOIN_PAUSE_S)
    finally:
        stop_process_group(proc)
        worker.stop()
        signal.signal(signal.SIGTERM, previous)
        status.unlink(missing_ok=True)
