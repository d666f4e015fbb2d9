"""What `fediqad client` keeps running next to the SuperNode: the site worker.

The worker is started before the SuperNode (its torch import overlaps the connection
to the server) and restarted whenever it exits; it continues from the site's state
directory. A worker that fails at start-up is retried with a growing pause, during
which its one-line reason (`worker.failed`) is what waiting ClientApps report.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from rich.console import Console

from client.worker_process import failure, spawn_worker, worker_alive
from shared.process_group import stop_process_group

MAX_PAUSE_S = 30.0


class WorkerSupervisor:
    def __init__(self, state_dir: Path, console: Console):
        self.state_dir, self.console = state_dir, console
        self.proc: subprocess.Popen | None = None
        self.failures = 0
        self.restart_at = 0.0
        self.starts = 0

    def start(self) -> None:
        self.proc = spawn_worker(self.state_dir, os.getpid())
        self.starts += 1

    def check(self) -> None:
        """Restart the worker if it is gone (call this often)."""
        if self.proc is not None and self.proc.poll() is None:
            return
        if worker_alive(self.state_dir):  # another worker serves this state dir
            return
        now = time.monotonic()
        if self.proc is not None and self.restart_at == 0.0:
            line = failure(self.state_dir)
            detail = f": {line}" if line else ""
            self.failures = self.failures + 1 if line else 0
            pause = min(MAX_PAUSE_S, 2.0**self.failures) if line else 0.0
            self.console.print(
                f"[yellow]site worker exited (code {self.proc.returncode}){detail}; "
                f"restarting it{f' in {pause:.0f} s' if pause else ''} from {self.state_dir}"
            )
            self.restart_at = now + pause
        if now >= self.restart_at:
            self.restart_at = 0.0
            self.start()

    def stop(self) -> None:
        stop_process_group(self.proc)
