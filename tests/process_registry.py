"""Processes a deployment test starts: logged, awaited, and all killed at the end.

Flower detaches some of its children (the SuperExec's `flwr-clientapp`, `flwr-serverapp`),
so killing a process group is not enough: every descendant seen while the test ran is
remembered and killed too. A SIGTERM to pytest (a CI timeout) still runs the cleanup.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with suppress(OSError, IndexError, ValueError):
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def process_tree(pid: int) -> list[int]:
    """`pid` and every process it started, transitively."""
    tree, out, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        todo.extend(tree.get(current, []))
    return out


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def kill_tree(pid: int, sig: int = signal.SIGKILL) -> None:
    for p in reversed(process_tree(pid)):
        with suppress(ProcessLookupError):
            os.kill(p, sig)


class ProcessRegistry:
    """Named processes, each in its own session, its output in LOGS/NAME.log."""

    def __init__(self, logs: Path, grace: float = 15.0):
        self.logs = logs
        self.grace = grace
        self.procs: dict[str, subprocess.Popen] = {}
        self.seen: set[int] = set()

    def start(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen:
        log = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - lives with the process
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.procs[name] = proc
        return proc

    def log(self, name: str, tail: int | None = None) -> str:
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return text[-tail:] if tail else text

    def remember(self) -> None:
        for proc in self.procs.values():
            self.seen.update(process_tree(proc.pid))

    def wait(self, name: str, timeout: float | None = None) -> int:
        """The exit code of NAME; with `timeout`, the test fails with its log if NAME runs
        past it (for a bound the test itself sets, e.g. --max-wait); without, pytest's
        timeout is the only guard, so the verdict does not depend on machine speed."""
        deadline = time.monotonic() + timeout if timeout is not None else float("inf")
        while time.monotonic() < deadline:
            self.remember()
            code = self.procs[name].poll()
            if code is not None:
                return code
            time.sleep(0.5)
        pytest.fail(f"{name} still running after {timeout} s:\n{self.log(name, 3000)}")

    def cleanup(self) -> None:
        self.remember()
        for proc in self.procs.values():
            if proc.poll() is None:
                with suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(p.poll() is None for p in self.procs.values()):
            time.sleep(0.3)
        self.remember()
        for pid in self.seen:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs.values():
            with suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)


@contextmanager
def cleaned_up(registry: ProcessRegistry) -> Iterator[ProcessRegistry]:
    """`registry`, cleaned up at the end even when pytest is stopped by SIGTERM."""

    def stop_on_sigterm(signum: int, frame: object) -> None:
        raise SystemExit(f"terminated by signal {signum}")  # so that the cleanup runs

    previous = signal.signal(signal.SIGTERM, stop_on_sigterm)
    try:
        yield registry
    finally:
        registry.cleanup()
        signal.signal(signal.SIGTERM, previous)
