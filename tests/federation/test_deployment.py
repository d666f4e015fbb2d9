"""Deployment runtime end to end: `fediqad server` (a real SuperLink running this
ServerApp) and `fediqad client` (real SuperNodes, site workers and the thin ClientApp),
each a separate process tree on 127.0.0.1 with free ports, cleaned up even on failure.

Every wait is for an event (a process exit, a line in a worker's log, a round record);
no verdict depends on how fast the machine is. pytest-timeout only guards against a
hang, generously, so the tests pass on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from client.runtime import supernode_command
from shared.checkpoint import load_checkpoint
from shared.process_group import free_port
from simulations.deploy_bench import SMALL_MODEL_ARGS
from tests.process_registry import ProcessRegistry, cleaned_up, kill_tree

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1800)]  # a hang guard only


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
        *SMALL_MODEL_ARGS,
        "--round-timeout",
        "900",  # a liveness bound: a site that is lost is noticed by its heartbeat
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
        "900",
    ]


def env_for(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["HOME"] = str(tmp_path / "home")  # nothing of ours lands in the real home
    env["FEDIQAD_CACHE_DIR"] = str(tmp_path / "cache")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def state_dir(home: Path) -> Path:
    """Where `fediqad client --flwr-home HOME` keeps its site worker's state."""
    return home / "site-state"


def wait_exit(f: Fleet, name: str, *, alive: tuple[str, ...] = ()) -> int:
    """NAME's exit code; fails at once if a process in `alive` exits first."""
    proc = f.procs[name]
    while proc.poll() is None:
        f.remember()
        for other in alive:
            code = f.procs[other].poll()
            assert code is None, f"{other} exited ({code}) before {name}:\n{f.log(other)}"
        time.sleep(0.3)
    return proc.returncode


def wait_for_line(path: Path, line: str, f: Fleet, alive: tuple[str, ...], count: int = 1) -> None:
    """Until `line` appears `count` times in the file at `path`."""
    while not path.is_file() or path.read_text(errors="replace").count(line) < count:
        for other in alive:
            assert f.procs[other].poll() is None, f"{other} exited:\n{f.log(other)}"
        time.sleep(0.2)


def test_two_supernodes_two_rounds_to_a_final_checkpoint(tmp_path, site_dirs):
    """site0 through `fediqad client` (supervised worker); site1 a stock
    `flower-supernode` whose first ClientApp starts the site worker on demand."""
    port, run_dir, env = free_port(), tmp_path / "run", env_for(tmp_path)
    stock = supernode_command(f"127.0.0.1:{port}", site_dirs[1], "site1", free_port(), 900)
    stock_env = {**env, "FLWR_HOME": str(tmp_path / "n1")}
    stock_env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    with fleet(tmp_path) as f:
        f.start("server", server_args(port, run_dir, rounds=2), env)
        f.start("site0", client_args(port, site_dirs[0], "site0", tmp_path / "n0"), env)
        ProcessRegistry.start(f, "site1", stock, stock_env)
        rc = wait_exit(f, "server", alive=("site0", "site1"))
        assert rc == 0, f.log("server") + f.log("site0") + f.log("site1")
    final = load_checkpoint(run_dir / "global.pt")
    assert final.round == 2
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert [r["status"] for r in doc["rounds"]] == ["ok", "ok"]
    for record in doc["rounds"]:
        assert set(record["sites"]) == {"site0", "site1"}
        assert all(s["eval"]["n"] > 0 and s["bytes_up"] > 0 for s in record["sites"].values())
    on_demand = tmp_path / "home" / ".fediqad" / "sites" / "site1"  # the default state dir
    assert (on_demand / "worker.log").read_text().count(" ready on ") == 1
    pid = int((on_demand / "worker.pid").read_text())
    while Path(f"/proc/{pid}").exists():  # it ends with the stock SuperNode it served
        time.sleep(0.2)


def test_a_site_killed_mid_round_does_not_stop_the_federation(tmp_path, site_dirs):
    port, run_dir, env = free_port(), tmp_path / "run", env_for(tmp_path)
    with fleet(tmp_path) as f:
        f.start("server", server_args(port, run_dir, rounds=2), env)
        f.start("site0", client_args(port, site_dirs[0], "site0", tmp_path / "n0"), env)
        victim = f.start("site1", client_args(port, site_dirs[1], "site1", tmp_path / "n1"), env)
        # round 1 training has begun at site1
        wait_for_line(state_dir(tmp_path / "n1") / "worker.log", "handling train", f, ("server",))
        kill_tree(victim.pid)  # the hospital's machine dies: SuperNode, worker, ClientApp
        rc = wait_exit(f, "server", alive=("site0",))
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
        f.start("server", server_args(port, run_dir, rounds=1), env)
        f.start("site0", client_args(port, site_dirs[0], "site0", tmp_path / "n0"), env)
        f.start("lost", client_args(port, tmp_path / "no-such-dir", "lost", tmp_path / "n1"), env)
        rc_client = wait_exit(f, "lost", alive=("server",))
        assert rc_client == 2, f.log("lost")
        assert "does not exist" in f.log("lost")
        rc = wait_exit(f, "server", alive=("site0",))
        assert rc == 0, f.log("server")
    record = json.loads((run_dir / "metrics.json").read_text())["rounds"][0]
    reasons = " ".join(item["reason"] for item in record["failures"])
    assert "site 'lost': data path" in reasons and "does not exist" in reasons


def test_a_site_worker_killed_mid_round_is_restarted_and_loses_nothing_saved(tmp_path, site_dirs):
    """site1's worker is killed once it starts evaluating round 1 (after its round-1
    training state was saved): `fediqad client` restarts the worker, and round 2 trains on
    the new worker from the saved state (its epoch count continues). An evaluation this
    small can finish before the kill lands, so round 1's evaluate may or may not have
    failed; where it did, the record says why (the in-process worker test kills a train
    handler for the recorded-failure case)."""
    port, run_dir, env = free_port(), tmp_path / "run", env_for(tmp_path)
    worker_log = state_dir(tmp_path / "n1") / "worker.log"
    with fleet(tmp_path) as f:
        f.start("server", server_args(port, run_dir, rounds=2), env)
        f.start("site0", client_args(port, site_dirs[0], "site0", tmp_path / "n0"), env)
        f.start("site1", client_args(port, site_dirs[1], "site1", tmp_path / "n1"), env)
        wait_for_line(worker_log, "handling evaluate", f, ("server", "site0", "site1"))
        first_pid = int((state_dir(tmp_path / "n1") / "worker.pid").read_text())
        os.kill(first_pid, signal.SIGKILL)
        assert wait_exit(f, "server", alive=("site0", "site1")) == 0, f.log("server")
        assert "site worker exited" in f.log("site1")
        second_pid = int((state_dir(tmp_path / "n1") / "worker.pid").read_text())
    assert second_pid != first_pid
    doc = json.loads((run_dir / "metrics.json").read_text())
    first, second = doc["rounds"]
    assert first["replies"]["train_ok"] == 2
    failed = [x for x in first["failures"] if x["site"] == "site1"]
    assert all("site worker stopped while handling a evaluate" in x["reason"] for x in failed)
    assert second["status"] == "ok" and second["replies"]["train_ok"] == 2
    assert first["sites"]["site1"]["train"]["site_epochs"] == 1
    assert second["sites"]["site1"]["train"]["site_epochs"] == 2  # round 1's state kept
    assert load_checkpoint(run_dir / "global.pt").round == 2
