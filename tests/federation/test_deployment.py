"""Deployment runtime end to end: `fediqad server` (a real SuperLink running this
ServerApp) and `fediqad client` (real SuperNodes running this ClientApp), each a separate
process tree on 127.0.0.1 with free ports, bounded in time, cleaned up even on failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from shared.checkpoint import load_checkpoint
from shared.process_group import free_port
from tests.process_registry import ProcessRegistry, cleaned_up, cmdline, kill_tree, process_tree

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(480)]


class Fleet(ProcessRegistry):
    """`fediqad` commands, each a separate process tree."""

    def start(self, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
        return super().start(name, [sys.executable, "-m", "fediqad", *args], env)


def fleet(tmp_path: Path) -> AbstractContextManager[Fleet]:
    return cleaned_up(Fleet(tmp_path))


def server_args(port: int, run_dir: Path, rounds: int, min_nodes: int = 2) -> list[str]:
    return [
        "server",
        "--insecure",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--run-dir",
        str(run_dir),
        "--rounds",
        str(rounds),
        "--min-nodes",
        str(min_nodes),
        "--image-size",
        "32",
        "--backbone",
        "vgg16_bn_slim",
        "--batch-size",
        "8",
        "--set",
        "model.width=0.125",
        "--set",
        "device=cpu",
        "--set",
        "threads=1",
        "--round-timeout",
        "240",
    ]


def client_args(port: int, data: Path, name: str, home: Path) -> list[str]:
    return [
        "client",
        "--server",
        f"127.0.0.1:{port}",
        "--data-path",
        str(data),
        "--site-name",
        name,
        "--insecure",
        "--flwr-home",
        str(home),
        "--max-wait",
        "120",
    ]


def env_for(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")  # nothing of ours lands in the real home
    env["FEDIQAD_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait(proc: subprocess.Popen, timeout: float, what: str, f: Fleet, name: str) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"{what} did not finish within {timeout:.0f} s:\n{f.log(name)}")


def test_two_supernodes_two_rounds_to_a_final_checkpoint(tmp_path, site_dirs):
    port, run_dir, env = free_port(), tmp_path / "run", env_for(tmp_path)
    with fleet(tmp_path) as f:
        server = f.start("server", server_args(port, run_dir, rounds=2), env)
        for i in range(2):
            f.start(
                f"site{i}", client_args(port, site_dirs[i], f"site{i}", tmp_path / f"n{i}"), env
            )
        rc = wait(server, 360, "the federation", f, "server")
        assert rc == 0, f.log("server") + f.log("site0")
    final = load_checkpoint(run_dir / "global.pt")
    assert final.round == 2
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert [r["status"] for r in doc["rounds"]] == ["ok", "ok"]
    for record in doc["rounds"]:
        assert set(record["sites"]) == {"site0", "site1"}
        assert all(s["eval"]["n"] > 0 and s["bytes_up"] > 0 for s in record["sites"].values())


def _clientapp_running(pid: int) -> bool:
    return any("flwr-clientapp" in cmdline(p) for p in process_tree(pid)[1:])


def test_a_site_killed_mid_round_does_not_stop_the_federation(tmp_path, site_dirs):
    port, run_dir, env = free_port(), tmp_path / "run", env_for(tmp_path)
    with fleet(tmp_path) as f:
        server = f.start("server", server_args(port, run_dir, rounds=2), env)
        f.start("site0", client_args(port, site_dirs[0], "site0", tmp_path / "n0"), env)
        victim = f.start("site1", client_args(port, site_dirs[1], "site1", tmp_path / "n1"), env)
        deadline = time.monotonic() + 180
        while not _clientapp_running(victim.pid):  # round 1 training has begun at site1
            assert time.monotonic() < deadline, f.log("server") + f.log("site1")
            assert server.poll() is None, f.log("server")
            time.sleep(0.2)
        kill_tree(victim.pid)  # the hospital's machine dies: SuperNode and ClientApp at once
        rc = wait(server, 360, "the federation", f, "server")
        assert rc == 0, f.log("server")
    doc = json.loads((run_dir / "metrics.json").read_text())
    first, second = doc["rounds"]
    assert first["status"] == "ok" and first["replies"]["train_ok"] == 1
    assert first["failures"], "the lost site must be recorded"
    assert second["status"] == "ok"
    assert load_checkpoint(run_dir / "global.pt").round == 2


def test_a_site_with_a_missing_data_path_tells_the_server_and_exits_nonzero(tmp_path, site_dirs):
    port, run_dir, env = free_port(), tmp_path / "run", env_for(tmp_path)
    with fleet(tmp_path) as f:
        server = f.start("server", server_args(port, run_dir, rounds=1), env)
        f.start("site0", client_args(port, site_dirs[0], "site0", tmp_path / "n0"), env)
        lost = f.start(
            "lost", client_args(port, tmp_path / "no-such-dir", "lost", tmp_path / "n1"), env
        )
        rc_client = wait(lost, 240, "the misconfigured client", f, "lost")
        assert rc_client == 2, f.log("lost")
        assert "does not exist" in f.log("lost")
        rc = wait(server, 240, "the federation", f, "server")
        assert rc == 0, f.log("server")
    record = json.loads((run_dir / "metrics.json").read_text())["rounds"][0]
    reasons = " ".join(item["reason"] for item in record["failures"])
    assert "site 'lost': data path" in reasons and "does not exist" in reasons
