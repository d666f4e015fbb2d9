"""Stopping a run on Ctrl-C without losing what it saved.

The first SIGINT sets a process-wide stop flag and interrupts the main thread
(`KeyboardInterrupt`); loops running in other threads (the ServerApp thread of a Ray
simulation) call `check_stop()` and end with `StopRequested`. Files are written
atomically, so whatever was saved before the signal is complete. A second SIGINT ends
the process at once. Torch-free: the CLI imports it before anything heavy.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

INTERRUPTED_EXIT = 130

_stop = threading.Event()
_saved: list[Path] = []
_hooks: list[Callable[[], None]] = []
_held = {"depth": 0, "pending": False}  # main thread only: see `deferred_interrupt`


class StopRequested(Exception):  # noqa: N818 - it is a request, not an error
    """Raised by `check_stop()` in loops once the run was asked to stop."""


def request_stop() -> None:
    _stop.set()


def stop_requested() -> bool:
    return _stop.is_set()


def check_stop() -> None:
    """End the calling loop (any thread) if a stop was requested."""
    if _stop.is_set():
        raise StopRequested("stopped on request")


def reset() -> None:
    """Forget an earlier stop request and saved files (a new run in this process)."""
    _stop.clear()
    _saved.clear()
    _held.update(depth=0, pending=False)


def note_saved(path: Path) -> None:
    """Remember the latest file a run committed (what an interrupted run keeps)."""
    _saved.append(Path(path))
    del _saved[:-1]


def last_saved() -> Path | None:
    return _saved[-1] if _saved else None


def add_stop_hook(hook: Callable[[], None]) -> None:
    """Call `hook` (quick, signal-safe work) the moment Ctrl-C arrives."""
    _hooks.append(hook)


def remove_stop_hook(hook: Callable[[], None]) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


def _on_sigint(signum: int, frame: object) -> None:
    del signum, frame
    if _stop.is_set():  # second Ctrl-C: the user wants out now
        sys.stderr.write("\ninterrupted again; exiting now\n")
        sys.stderr.flush()
        os._exit(INTERRUPTED_EXIT)
    _stop.set()
    for hook in list(_hooks):
        with contextlib.suppress(Exception):
            hook()
    if _held["depth"]:
        _held["pending"] = True  # raised when the commit in progress is complete
        return
    raise KeyboardInterrupt


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """A block Ctrl-C does not cut in two (checkpoint, state file and log of a round):
    the KeyboardInterrupt is raised when the block ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _held["depth"] += 1
    try:
        yield
    finally:
        _held["depth"] -= 1
        if not _held["depth"] and _held["pending"]:
            _held["pending"] = False
            raise KeyboardInterrupt


def install_sigint_handler() -> None:
    """First Ctrl-C: stop (KeyboardInterrupt in the main thread); second: exit at once."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _on_sigint)


def exit_now(code: int, grace: float = 5.0, *, hard: bool = False) -> None:
    """Exit with `code`. Threads still running after `grace` seconds (a ServerApp thread
    waiting on sites that are gone) must not keep the process alive; with `hard` (after
    Ctrl-C) the interpreter's native tear-down is skipped too - Ray's and gRPC's can
    take 10 s on a busy machine - once the exit handlers have run."""
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.daemon:
            continue
        thread.join(max(0.0, deadline - time.monotonic()))
    lingering = [
        t for t in threading.enumerate() if t is not threading.current_thread() and not t.daemon
    ]
    if not (lingering or hard):
        sys.exit(code)
    atexit._run_exitfuncs()  # logging, weakref finalizers, Ray's own shutdown
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
