"""Starting Ray on a busy machine: generous start-up waits, a retry, one-line failures.

Ray 2.55 gives a new node's raylet a hard-coded 30 s to register with the GCS
(`raylet_start_wait_time_s` in `ray._private.node.Node.__init__`) and the driver 20
one-second tries to reach the GCS (`RAY_NUM_REDIS_GET_RETRIES`). On a 2-core machine
that other work is using, both run out and `ray.init` raises "The current node timed
out during startup". Here the node lookup that loop polls keeps retrying until our own
deadline, the GCS tries scale with it, and a failed start is cleaned up and tried
again. Flower's Ray backend then finds Ray running and uses it as it is.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

DEFAULT_STARTUP_TIMEOUT = 180.0  # seconds Ray may take to start on a loaded machine
DEFAULT_ATTEMPTS = 2


class RayStartFailed(Exception):  # noqa: N818 - reads as what happened
    """Ray could not start within the start-up timeout, after every attempt."""


def one_line(err: BaseException) -> str:
    """The first meaningful line of an exception (Ray's carry pages of log tails)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return (lines[0] if lines else type(err).__name__)[:300]


@contextmanager
def patient_startup(timeout: float) -> Iterator[None]:
    """While Ray starts: wait up to `timeout` s for the raylet and the GCS (not 30 / 20)."""
    import ray._private.ray_constants as constants
    import ray._private.services as services

    original = services.get_node
    deadline = time.monotonic() + timeout

    def get_node(gcs_address: str, node_id: str) -> Any:
        while True:
            try:
                return original(gcs_address, node_id)
            except RuntimeError:  # node not registered yet: wait, up to our deadline
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.5)

    saved = {
        "NUM_REDIS_GET_RETRIES": constants.NUM_REDIS_GET_RETRIES,
        "GCS_SERVER_REQUEST_TIMEOUT_SECONDS": constants.GCS_SERVER_REQUEST_TIMEOUT_SECONDS,
    }
    services.get_node = get_node
    constants.NUM_REDIS_GET_RETRIES = max(saved["NUM_REDIS_GET_RETRIES"], int(timeout))
    constants.GCS_SERVER_REQUEST_TIMEOUT_SECONDS = max(
        saved["GCS_SERVER_REQUEST_TIMEOUT_SECONDS"], int(timeout)
    )
    try:
        yield
    finally:
        services.get_node = original
        for name, value in saved.items():
            setattr(constants, name, value)


@contextmanager
def _terminal_sigint_ignored() -> Iterator[None]:
    """Ray's processes inherit SIGINT ignored: a terminal Ctrl-C (sent to the whole
    process group) reaches this driver only, which then shuts Ray down in order,
    instead of killing the raylet first and orphaning the sites' actor processes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _init_args(init_args: dict[str, Any]) -> dict[str, Any]:
    """What Flower's Ray backend would pass: the driver's sys.path for the actors."""
    pythonpath = os.pathsep.join(sys.path)
    if os.environ.get("PYTHONPATH"):
        pythonpath = f"{pythonpath}{os.pathsep}{os.environ['PYTHONPATH']}"
    os.environ["PYTHONPATH"] = pythonpath
    # a Ray of its own even where RAY_ADDRESS names a cluster (that is `--ray-address auto`)
    args = {"include_dashboard": False, "address": "local", **init_args}
    args.setdefault("runtime_env", {"env_vars": {"PYTHONPATH": pythonpath}})
    return args


def start_ray(
    init_args: dict[str, Any],
    *,
    timeout: float = DEFAULT_STARTUP_TIMEOUT,
    attempts: int = DEFAULT_ATTEMPTS,
    say: Callable[[str], None] = lambda text: None,
    init: Callable[..., Any] | None = None,
) -> None:
    """Start a local Ray instance for the simulation, or raise `RayStartFailed`.

    `init` replaces `ray.init` (tests). Each failed attempt is shut down before the next.
    """
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if ray.is_initialized():
        return
    start = init or ray.init
    last: BaseException | None = None
    for attempt in range(1, attempts + 1):
        try:
            with patient_startup(timeout), _terminal_sigint_ignored():
                start(**_init_args(init_args))
            return
        except Exception as err:  # Ray raises bare Exception / RuntimeError here
            last = err
            with contextlib.suppress(Exception):  # nothing more to clean up
                ray.shutdown()  # stop the GCS / raylet a failed start left behind
            say(f"Ray did not start (attempt {attempt} of {attempts}): {one_line(err)}")
    assert last is not None
    raise RayStartFailed(one_line(last))


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a Linux process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return int(fields[1]), fields[19]


def _descendants() -> dict[int, str]:
    """This process's descendants, pid -> start time (Linux /proc; {} elsewhere)."""
    parents: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        stat = _proc_stat(int(entry.name))
        if stat is not None:
            parents[int(entry.name)] = stat
    family, out = {os.getpid()}, {}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, start) in parents.items():
            if ppid in family and pid not in family:
                family.add(pid)
                out[pid] = start
                grew = True
    return out


class RayProcesses:
    """The processes Ray started for this run, so that none outlives it.

    On a terminal Ctrl-C the sites' actor processes are busy in torch and keep
    computing after the raylet is gone; `stop_actors` (a Ctrl-C hook) ends them at
    once, `kill_leftovers` ends whatever `ray.shutdown()` left behind."""

    def __init__(self) -> None:
        self.known: dict[int, str] = {}

    def stop_actors(self) -> None:
        self.known.update(_descendants())
        for pid in self.known:
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::"):  # worker / actor processes, not raylet or GCS
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def kill_leftovers(self) -> None:
        for pid, start in self.known.items():
            stat = _proc_stat(pid)
            if stat is not None and stat[1] == start:  # the same process, still there
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)
