"""`fediqad client`: one hospital's SuperNode running this project's ClientApp.

Starts stock `flower-supernode` with the site's node config (`data-path`,
`site-name`). The ClientApp reports a fatal site problem (e.g. a data path that does
not exist) to the server in its error reply and, through a status file, to this
supervisor, which then stops the SuperNode and exits non-zero.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console

from client.site import STATUS_ENV, SiteError
from shared.errors import UserError
from shared.process_group import stop_process_group

REPORT_GRACE_S = 5.0  # time for the error reply to reach the SuperLink before we stop


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def supernode_command(server: str, data_path: Path, site_name: str, runtime_port: int,
                      max_wait: float | None) -> list[str]:
    node_config = f'data-path="{data_path}" site-name="{site_name}"'
    cmd = [_tool("flower-supernode"), "--insecure", "--superlink", server,
           "--node-config", node_config, "--host", "127.0.0.1", "--port", str(runtime_port)]
    if max_wait is not None:
        cmd += ["--max-wait-time", str(max_wait)]
    return cmd


def run_site(server: str, data_path: Path, site_name: str, *, console: Console,
             flwr_home: Path | None = None, runtime_port: int | None = None,
             max_wait: float | None = None) -> int:
    """Run the SuperNode until it stops; SiteError when the site cannot take part."""
    if '"' in site_name or '"' in str(data_path):
        raise UserError("--site-name and --data-path must not contain double quotes")
    data_path = data_path.expanduser().resolve()
    if not data_path.is_dir():
        console.print(f"[yellow]warning:[/] data path {data_path} does not exist; the server "
                      "will be told at the first round and this client will then exit")
    home = flwr_home or Path.home() / ".fediqad" / "supernodes" / site_name
    home.mkdir(parents=True, exist_ok=True)
    status = Path(tempfile.mkstemp(prefix="fediqad-client-", suffix=".json")[1])
    status.write_text("")
    env = dict(os.environ)
    env.setdefault("FLWR_SUPEREXEC_TASK_POLL_INTERVAL", "0.5")  # Flower default 1 s
    env.update({"FLWR_HOME": str(home), STATUS_ENV: str(status),
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"})
    cmd = supernode_command(server, data_path, site_name, runtime_port or free_port(),
                            max_wait)
    console.print(f"site '{site_name}' connecting to {server} (plaintext, --insecure)")
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        while proc.poll() is None:
            text = status.read_text() if status.exists() else ""
            if text.strip():
                time.sleep(REPORT_GRACE_S)
                stop_process_group(proc)
                raise SiteError(json.loads(text).get("error", "site error"))
            time.sleep(0.5)
        if proc.returncode != 0:
            raise UserError(f"the SuperNode exited with code {proc.returncode}")
        return 0
    finally:
        stop_process_group(proc)
        signal.signal(signal.SIGTERM, previous)
        status.unlink(missing_ok=True)
