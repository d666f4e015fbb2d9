"""Finding, starting and waiting for a site's worker process (no torch here).

One worker per site state directory. The running worker holds `worker.lock` (flock)
for its whole life, so "is a worker alive?" never depends on a pid file; whoever
starts one holds `start.lock` meanwhile, so two ClientApps arriving together start
one worker, not two. A worker that cannot start writes one line to `worker.failed`.

Under `fediqad client` (env FEDIQAD_WORKER=supervised) the supervisor starts and
restarts the worker and the ClientApp only waits for it; under a stock
`flower-supernode` the first ClientApp starts it, watching the SuperNode's pid.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from pathlib import Path

import client
from client.channel import connect, private_dir

WORKER_ENV = "FEDIQAD_WORKER"  # "supervised": `fediqad client` runs the worker
START_TIMEOUT_ENV = "FEDIQAD_WORKER_START_TIMEOUT"  # seconds (default 900)
PARENT_ENV = "FEDIQAD_WORKER_PARENT_PID"  # whose exit ends an on-demand worker
STATUS_ENV = "FEDIQAD_CLIENT_STATUS"  # file where `fediqad client` learns of fatal errors
STATE_DIR_KEY = "state-dir"  # node config
FAILED = "worker.failed"
LOG = "worker.log"


class SiteWorkerError(RuntimeError):
    """The site worker could not be reached or started (one line, sent to the server)."""


def report_fatal(message: str) -> None:
    """Tell a supervising `fediqad client` process that this site cannot go on."""
    target = os.environ.get(STATUS_ENV)
    if target:
        Path(target).write_text(json.dumps({"error": message}))


def site_state_dir(node_config: Mapping[str, object]) -> Path:
    """Node config `state-dir`; else ~/.fediqad/sites/<site-name or data folder name>."""
    given = node_config.get(STATE_DIR_KEY)
    if given not in (None, ""):
        return Path(str(given)).expanduser()
    name = str(node_config.get("site-name") or "")
    if not name and node_config.get("data-path"):
        name = Path(str(node_config["data-path"])).name
    return Path.home() / ".fediqad" / "sites" / (name or "default")


@contextmanager
def _flock(path: Path, blocking: bool = True):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def hold_worker_lock(state_dir: Path) -> int | None:
    """For the worker: an fd holding `worker.lock` for the process's life; None when
    another worker holds it."""
    fd = os.open(private_dir(state_dir) / "worker.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def worker_alive(state_dir: Path) -> bool:
    with _flock(state_dir / "worker.lock", blocking=False) as free:
        return not free


def failure(state_dir: Path) -> str | None:
    try:
        text = (state_dir / FAILED).read_text().strip()
    except OSError:
        return None
    return text or None


def worker_command(state_dir: Path, parent_pid: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "client.worker",
        "--state-dir",
        str(state_dir),
        "--parent-pid",
        str(parent_pid),
    ]


def spawn_worker(state_dir: Path, parent_pid: int) -> subprocess.Popen:
    """Start a worker for `state_dir` in its own session; its output goes to worker.log."""
    private_dir(state_dir)
    (state_dir / FAILED).unlink(missing_ok=True)
    env = dict(os.environ)
    root = str(Path(client.__file__).resolve().parents[1])  # the code this app runs
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.pop(STATUS_ENV, None)
    with open(state_dir / LOG, "ab") as log:
        return subprocess.Popen(
            worker_command(state_dir, parent_pid),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _start_timeout() -> float:
    return float(os.environ.get(START_TIMEOUT_ENV, "900"))


def wait_for_worker(
    state_dir: Path, timeout: float, gone: Callable[[], bool] = lambda: False
) -> socket.socket:
    """Poll until the worker accepts; fail on its failure line, on `gone()` or timeout."""
    deadline = time.monotonic() + timeout
    while True:
        sock = connect(state_dir)
        if sock is not None:
            return sock
        line = failure(state_dir)
        if line is not None:
            raise SiteWorkerError(f"the site worker could not start: {line}")
        if gone():
            raise SiteWorkerError(f"the site worker exited at start-up; see {state_dir / LOG}")
        if time.monotonic() > deadline:
            raise SiteWorkerError(
                f"the site worker did not start within {timeout:.0f} s "
                f"(set {START_TIMEOUT_ENV}); see {state_dir / LOG}"
            )
        time.sleep(0.05)


def ensure_worker(state_dir: Path, *, parent_pid: int | None = None) -> socket.socket:
    """A connection to the site's worker, starting one if this node has no supervisor."""
    sock = connect(state_dir)
    if sock is not None:
        return sock
    private_dir(state_dir)
    if os.environ.get(WORKER_ENV) == "supervised":
        return wait_for_worker(state_dir, _start_timeout())
    with _flock(state_dir / "start.lock"):
        sock = connect(state_dir)
        if sock is not None:
            return sock
        if worker_alive(state_dir):  # started by someone else, still importing
            return wait_for_worker(state_dir, _start_timeout(), lambda: not worker_alive(state_dir))
        # by default the worker lives as long as the process that started this ClientApp
        parent = parent_pid or int(os.environ.get(PARENT_ENV) or os.getppid())
        proc = spawn_worker(state_dir, parent)
        return wait_for_worker(state_dir, _start_timeout(), lambda: proc.poll() is not None)
