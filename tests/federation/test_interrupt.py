"""Ctrl-C and Ray start-up failures: a simulation stops with what it saved, never hangs.

The SIGINT tests wait for events (round 1's checkpoint appearing, the process ending),
never for a wall-clock budget.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flwr.app import RecordDict

from client.site import Site
from server.config import FederationConfig
from server.messaging import exchange
from shared import interrupt
from shared.errors import UserError
from simulations import federated
from simulations.ray_startup import RayStartFailed, start_ray
from tests.support.configs import fast_config

TINY = ["--images-per-site", "16", "--image-size", "32", "--local-epochs", "1"]


@pytest.fixture(autouse=True)
def fresh_stop_flag():
    interrupt.reset()
    yield
    interrupt.reset()


def wait_for(predicate, proc: subprocess.Popen, what: str, limit: float = 900) -> None:
    """Poll `predicate` until true; fail if the process ends first (limit: a hang guard)."""
    deadline = time.monotonic() + limit
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"fediqad ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {limit:.0f} s")
        time.sleep(0.2)


def start_simulate(tmp_path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "fediqad", "simulate", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "300"},
        start_new_session=True,  # a terminal's Ctrl-C reaches the whole process group
    )


def interrupt_after_round_1(tmp_path: Path, backend: str) -> tuple[int, str, Path, int]:
    out = tmp_path / "runs"
    proc = start_simulate(tmp_path, "--backend", backend, "--rounds", "3", *TINY, "--out", "runs")
    wait_for(lambda: (out / "default" / "state.json").is_file(), proc, "round 1's checkpoint")
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C
    try:
        _, err = proc.communicate(timeout=120)  # a hang guard, not a speed check
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise AssertionError("fediqad simulate did not exit after Ctrl-C") from None
    return proc.returncode, err, out / "default", proc.pid


def check_interrupted(code: int, err: str, run_dir: Path) -> list[str]:
    assert code == 130, err
    assert "Traceback" not in err and "Exception ignored" not in err, err
    line = next(x for x in err.splitlines() if x.startswith("interrupted"))
    assert "Resume with: fediqad simulate --backend" in line and line.endswith("--resume")
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["rounds"] and not doc["finished"]
    assert (run_dir / "report.md").is_file()  # written after every round
    assert json.loads((run_dir / "state.json").read_text())["round"] >= 1
    return shlex.split(line.split("Resume with: ", 1)[1])


def test_ctrl_c_after_round_1_in_process_then_resume_finishes(tmp_path):
    code, err, run_dir, _ = interrupt_after_round_1(tmp_path, "in-process")
    resume = check_interrupted(code, err, run_dir)
    assert resume[:2] == ["fediqad", "simulate"]
    done = subprocess.run(
        [sys.executable, "-m", "fediqad", *resume[1:]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, done.stderr
    assert "resuming after round" in done.stdout + done.stderr
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["finished"] and [r["round"] for r in doc["rounds"]] == [1, 2, 3]


def process_group(pgid: int) -> list[int]:
    """Processes still in process group `pgid` (Ray's raylet, GCS and actors join it)."""
    members = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


@pytest.mark.ray
@pytest.mark.timeout(1200)
def test_ctrl_c_under_ray_exits_130_and_leaves_no_ray_process(tmp_path):
    code, err, run_dir, pgid = interrupt_after_round_1(tmp_path, "ray")
    check_interrupted(code, err, run_dir)
    assert process_group(pgid) == [], "Ray processes outlived the interrupted run"


def test_a_stop_request_ends_a_server_waiting_on_sites():
    """The ServerApp thread must not wait out the round timeout for sites that are gone."""

    class SilentGrid:
        def push_messages(self, messages):
            return [f"m{i}" for i, _ in enumerate(messages)]

        def pull_messages(self, ids):
            interrupt.request_stop()  # Ctrl-C arrives while the server waits
            return []

    meta = type("Meta", (), {"dst_node_id": 7})()
    msg = type("Msg", (), {"metadata": meta, "content": RecordDict()})()
    with pytest.raises(interrupt.StopRequested):
        exchange(SilentGrid(), [msg], timeout=3600)  # type: ignore[arg-type]


def test_ray_start_is_retried_then_reported_in_one_line():
    attempts, said = [], []

    def failing_init(**kwargs):
        attempts.append(kwargs)
        raise Exception("The current node timed out during startup.\nmore\nlines")

    with pytest.raises(RayStartFailed, match=r"^The current node timed out during startup\.$"):
        start_ray({"num_cpus": 1}, timeout=1, attempts=2, say=said.append, init=failing_init)
    assert len(attempts) == 2 and len(said) == 2
    assert attempts[0]["include_dashboard"] is False and "runtime_env" in attempts[0]


def test_auto_falls_back_to_in_process_where_ray_cannot_start(tmp_path, site_dirs, monkeypatch):
    def no_ray(*args, **kwargs):
        raise RayStartFailed("The current node timed out during startup.")

    monkeypatch.setattr(federated, "start_ray", no_ray)
    fed = FederationConfig(run=fast_config(), run_dir=tmp_path / "run", num_rounds=1, min_nodes=2)
    sites = [Site("north", site_dirs[0]), Site("south", site_dirs[1])]
    said: list[str] = []
    handled: list[int] = []
    federated.run_federated_simulation(
        fed,
        sites,
        federated.Resources(cpus_per_site=1.0, total_cpus=1),
        say=said.append,
        on_message=lambda site, msg: handled.append(site),
    )
    assert any("running the sites in this process" in line for line in said)
    doc = json.loads((fed.run_dir / "metrics.json").read_text())
    assert doc["finished"] and doc["rounds"][0]["status"] == "ok"
    assert set(doc["rounds"][0]["sites"]) == {"north", "south"}
    assert sorted(set(handled)) == [0, 1]
    assert (fed.run_dir / "report.md").is_file() and (fed.run_dir / "global.pt").is_file()

    monkeypatch.setattr(federated, "start_ray", no_ray)
    with pytest.raises(UserError, match="use --backend in-process$"):
        federated.run_federated_simulation(
            fed.model_copy(update={"run_dir": tmp_path / "other"}), sites, backend="ray"
        )


def test_interrupted_message_gives_the_exact_resume_command(monkeypatch, tmp_path):
    from fediqad.cli import interrupted_message

    argv = ["simulate", "--rounds", "3", "--out", "my runs"]
    assert interrupted_message(argv).startswith("interrupted before the first checkpoint")
    interrupt.note_saved(tmp_path / "round_0001.pt")
    text = interrupted_message(argv)
    assert text.endswith("Resume with: fediqad simulate --rounds 3 --out 'my runs' --resume")
    assert "interrupted; files already written are kept" in interrupted_message(["pretrain"])


def test_ctrl_c_during_a_commit_is_raised_when_the_commit_is_whole():
    interrupt.install_sigint_handler()
    try:
        written = []
        with pytest.raises(KeyboardInterrupt), interrupt.deferred_interrupt():
            os.kill(os.getpid(), signal.SIGINT)
            written.append("checkpoint")  # still runs: the signal waits
            written.append("metrics.json")
        assert written == ["checkpoint", "metrics.json"] and interrupt.stop_requested()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def test_train_resume_line_names_the_run_folder(tmp_path):
    from fediqad.cli import interrupted_message

    interrupt.note_saved(tmp_path / "EYEQ-mkcnet" / "last.ckpt")
    text = interrupted_message(["train", "--data-root", "data"])
    out = tmp_path / "EYEQ-mkcnet"
    assert text.endswith(f"Resume with: fediqad train --data-root data --out {out} --resume")
