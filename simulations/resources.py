"""Peak memory of a simulation: this process and every process it started (Ray included).

Sampled from /proc (Linux): the sum of RSS over the process tree over-counts pages the
processes share (torch's libraries); the sum of PSS divides shared pages among them and
is the honest "how much RAM does this need" figure. Both are reported.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any


def _tree(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def _kib(path: Path, field: str) -> int:
    try:
        for line in path.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def process_tree(root: int | None = None) -> list[int]:
    """`root` (default: this process) and every process below it."""
    return _tree(root or os.getpid())


def rss_bytes(pid: int) -> int:
    """Resident memory of one process now (0 if it is gone)."""
    return _kib(Path(f"/proc/{pid}/status"), "VmRSS") * 1024


def tree_memory(root: int | None = None) -> tuple[int, int, int]:
    """(RSS bytes, PSS bytes, process count) of `root` (default: this process) and below."""
    pids = _tree(root or os.getpid())
    rss = sum(_kib(Path(f"/proc/{p}/status"), "VmRSS") for p in pids)
    pss = sum(_kib(Path(f"/proc/{p}/smaps_rollup"), "Pss") for p in pids)
    return rss * 1024, pss * 1024, len(pids)


class PeakMemory:
    """Background sampler; `with PeakMemory() as peak: ...; peak.report()`."""

    def __init__(self, interval: float = 0.5):
        self.interval = interval
        self.peak_rss = self.peak_pss = self.peak_procs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = Path("/proc/self/status").exists()

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, pss, n = tree_memory()
            self.peak_rss, self.peak_pss = max(self.peak_rss, rss), max(self.peak_pss, pss)
            self.peak_procs = max(self.peak_procs, n)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=5)

    def report(self) -> dict[str, Any]:
        return {
            "peak_rss_gb_sum": self.peak_rss / 1e9,
            "peak_pss_gb_sum": self.peak_pss / 1e9,
            "peak_processes": self.peak_procs,
            "sampled_every_s": self.interval,
            "measured_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }

    def write(self, path: Path) -> dict[str, Any]:
        report = self.report()
        path.write_text(json.dumps(report, indent=2) + "\n")
        return report
