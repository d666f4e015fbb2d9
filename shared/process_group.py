"""Starting and stopping the Flower processes a launcher runs, on either side of the
federation."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

from shared.errors import UserError


def flower_tool(name: str) -> str:
    """A Flower executable from this interpreter's environment (else found on PATH)."""
    path = Path(sys.executable).parent / name
    return str(path) if path.exists() else name


def require_superexec(path: str) -> None:
    """flower-superlink and flower-supernode start `flower-superexec` by name: without it
    on PATH the SuperLink exits and the SuperNode hangs, so refuse to start instead."""
    if shutil.which("flower-superexec", path=path) is None:
        raise UserError(
            "flower-superexec is not on PATH; Flower's SuperLink and SuperNode start it by "
            f"name. Install flwr into this environment or put {Path(sys.executable).parent} "
            "on PATH"
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on now, for a process about to bind it."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def start_process_group(
    command: list[str], log: IO[bytes], env: dict[str, str], cwd: Path | None = None
) -> subprocess.Popen:
    """A child leading its own process group (for `stop_process_group`), its output
    appended to `log`."""
    return subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )


def stop_process_group(proc: subprocess.Popen | None, grace: float = 10.0) -> None:
    """SIGTERM the process group we started, SIGKILL it after `grace` seconds."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)
    except ProcessLookupError:
        pass
