"""`fediqad simulate --ray-address` on a real 2-node Ray cluster on 127.0.0.1.

The test starts the cluster as a user would (`ray start --head`, `ray start --address`,
separate processes with private temp dirs, free ports, `head_node` / `worker_node`
resource labels), runs the simulation as a separate driver, and stops only the
processes it started (by process group: `ray stop` would stop every Ray on the machine).
Every wait is for an event (a log line, a round record, a process exit); pytest-timeout
is only a hang guard.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.site import Site, where_this_runs
from shared.data.synth.recipe import NODE_DATA_ENV, SynthRecipe
from shared.process_group import free_port
from simulations.ray_cluster import LOST
from simulations.ray_startup import start_ray
from tests.process_registry import ProcessRegistry, cleaned_up, cmdline, process_tree
from tests.support.cli import run_fediqad

pytestmark = [pytest.mark.ray, pytest.mark.timeout(1200)]  # a hang guard only

REPO = Path(__file__).resolve().parents[2]
RAY = Path(sys.executable).parent / "ray"
STARTED = "Ray runtime started"
SITES = 6
# A tiny model on one thread per site: the cluster, not the science, is under test.
TINY = [
    "--sites", str(SITES), "--images-per-site", "24", "--image-size", "32",
    "--backbone", "vgg16_bn_slim", "--batch-size", "8", "--local-epochs", "1",
    "--set", "model.width=0.125", "--set", "device=cpu", "--no-server-eval",
    "--cpus-per-site", "1",
]  # fmt: skip


@dataclass
class Cluster:
    procs: ProcessRegistry
    address: str
    data: dict[str, Path]  # node name -> where it builds its synthetic sites

    def raylet_of(self, node: str) -> int:
        self.procs.remember()
        for pid in process_tree(self.procs.procs[node].pid):
            if "/raylet/raylet" in cmdline(pid).split(" ")[0]:
                return pid
        raise AssertionError(f"no raylet under the {node} node")

    def alive(self, node: str) -> bool:
        return self.procs.procs[node].poll() is None


def _wait_started(procs: ProcessRegistry, node: str) -> None:
    """Until NODE's `ray start` says the node runs. If it ends instead: the head is a
    failure; a second node is a skip, with its log (some sandboxes allow one raylet)."""
    deadline = time.monotonic() + 600  # a hang guard
    while STARTED not in procs.log(node):
        if procs.procs[node].poll() is not None or time.monotonic() > deadline:
            why = f"Ray could not start the {node} node here: {procs.log(node, 1500)}"
            if node == "head":
                pytest.fail(why)
            pytest.skip(why)
        time.sleep(0.3)


def _ray_start(name: str, tmp: Path, *args: str) -> list[str]:
    return [
        str(RAY), "start", *args, "--block", "--disable-usage-stats",
        "--node-ip-address=127.0.0.1", "--num-cpus=2", f"--temp-dir={tmp / name}",
        "--object-store-memory=150000000",
        f"--dashboard-agent-listen-port={free_port()}",
        f"--resources={json.dumps({f'{name}_node': 1})}",
    ]  # fmt: skip


@pytest.fixture
def ray_tmp() -> Iterator[Path]:
    """A short private folder for the nodes' temp dirs (Ray's socket paths must stay
    under 107 bytes; pytest's tmp_path is too deep)."""
    path = Path(tempfile.mkdtemp(prefix="fqray-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cluster(tmp_path: Path, ray_tmp: Path) -> Iterator[Cluster]:
    if not RAY.is_file():
        pytest.skip(f"no `ray` script next to {sys.executable}")
    logs = tmp_path / "logs"
    logs.mkdir()
    port = free_port()
    data = {"head": tmp_path / "head-data", "worker": tmp_path / "worker-data"}
    with cleaned_up(ProcessRegistry(logs)) as procs:

        def env(node: str) -> dict[str, str]:
            return {
                **os.environ,
                "PYTHONPATH": str(REPO),  # the nodes' actors import this checkout
                "FEDIQAD_NODE_DATA": str(data[node]),
                "RAY_USAGE_STATS_ENABLED": "0",
            }

        head = _ray_start("head", ray_tmp, "--head", f"--port={port}")
        head += [
            "--include-dashboard=false",
            f"--dashboard-port={free_port()}",
            f"--ray-client-server-port={free_port()}",
        ]
        procs.start("head", head, env("head"))
        _wait_started(procs, "head")
        address = f"127.0.0.1:{port}"
        procs.start("worker", _ray_start("worker", ray_tmp, f"--address={address}"), env("worker"))
        _wait_started(procs, "worker")
        yield Cluster(procs, address, data)


def _simulate(cluster: Cluster, tmp_path: Path, *args: str) -> str:
    """Start `fediqad simulate` (a separate driver); its registry name."""
    name = f"simulate-{len(cluster.procs.procs)}"
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "300"}
    env.pop("RAY_ADDRESS", None)
    argv = [sys.executable, "-m", "fediqad", "simulate", *TINY, "--out", str(tmp_path), *args]
    cluster.procs.start(name, argv, env)
    return name


def _rounds(run_dir: Path) -> list[dict]:
    try:
        return json.loads((run_dir / "metrics.json").read_text())["rounds"]
    except (OSError, ValueError, KeyError):
        return []


def _wait_for_rounds(cluster: Cluster, driver: str, run_dir: Path, n: int) -> None:
    """Until RUN's metrics.json records N rounds; fails if the driver ends first."""
    deadline = time.monotonic() + 900  # a hang guard
    while len(_rounds(run_dir)) < n:
        assert cluster.procs.procs[driver].poll() is None, cluster.procs.log(driver, 4000)
        assert time.monotonic() < deadline, f"round {n} never finished"
        time.sleep(0.2)


def test_sites_run_on_both_nodes_and_the_cluster_outlives_the_run(cluster, tmp_path):
    run_dir = tmp_path / "c"
    driver = _simulate(
        cluster, tmp_path, "--ray-address", cluster.address, "--rounds", "2", "--name", "c"
    )
    log = cluster.procs.log
    assert cluster.procs.wait(driver) == 0, log(driver, 4000)
    assert "2 node(s), 4 CPU" in log(driver), log(driver, 4000)

    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["finished"] and [r["round"] for r in doc["rounds"]] == [1, 2]
    nodes = set()
    for record in doc["rounds"]:
        assert record["failures"] == [] and len(record["sites"]) == SITES
        for site in record["sites"].values():
            assert site["status"] == "ok" and site["train"]["num-examples"] > 0
            nodes.add(site["train_on"]["ray-node"])
            nodes.add(site["eval_on"]["ray-node"])
    assert len(nodes) == 2, nodes  # sites ran on the head and on the worker
    # each node built the synthetic sites it ran, from the recipe (nothing shipped)
    for node, folder in cluster.data.items():
        built = list(folder.glob("*/*/EYEQ/synth.json"))
        assert built, f"the {node} node built no site data in {folder}"
    assert not (run_dir / "data" / "hospital-a").exists()  # not on the driver
    assert json.loads((run_dir / "federation.json").read_text())["ray_address"] == cluster.address

    # the cluster is left running; a resumed run finds it again from the stored settings,
    # and Ctrl-C ends only the driver
    assert cluster.alive("head") and cluster.alive("worker")
    resumed = _simulate(cluster, tmp_path, "--name", "c", "--resume", "--rounds", "6")
    _wait_for_rounds(cluster, resumed, run_dir, 3)
    os.killpg(cluster.procs.procs[resumed].pid, signal.SIGINT)  # as a terminal's Ctrl-C
    assert cluster.procs.wait(resumed) == 130, log(resumed, 4000)
    assert "resuming after round 2" in log(resumed) and "Traceback" not in log(resumed)
    assert "Resume with: fediqad simulate" in log(resumed)
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert [r["round"] for r in doc["rounds"]][:3] == [1, 2, 3]
    assert (run_dir / "report.md").is_file() and (run_dir / "global.pt").is_file()
    assert cluster.alive("head") and cluster.alive("worker")
    assert cluster.raylet_of("worker") and cluster.raylet_of("head")


def test_a_lost_worker_node_fails_its_sites_for_that_round_not_the_run(cluster, tmp_path):
    run_dir = tmp_path / "lost"
    rounds = 4
    driver = _simulate(
        cluster, tmp_path, "--ray-address", cluster.address, "--rounds", str(rounds), "--name",
        "lost",
    )  # fmt: skip
    _wait_for_rounds(cluster, driver, run_dir, 1)  # round 1 recorded: round 2 under way
    before = _rounds(run_dir)
    assert len(before) == 1 and not before[0]["failures"]
    worker_nodes = {
        s["train_on"]["ray-node"]
        for s in before[0]["sites"].values()
        if s["train_on"]["host"].split(":")[-1]
        in {str(p) for p in process_tree(cluster.procs.procs["worker"].pid)}
    }
    os.kill(cluster.raylet_of("worker"), signal.SIGKILL)  # the worker node is lost

    assert cluster.procs.wait(driver) == 0, cluster.procs.log(driver, 4000)
    assert "Traceback" not in cluster.procs.log(driver), cluster.procs.log(driver, 4000)
    assert "Ray actor(s) lost" in cluster.procs.log(driver)
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert doc["finished"] and [r["round"] for r in doc["rounds"]] == list(range(1, rounds + 1))
    hit = [r for r in doc["rounds"] if r["failures"]]
    assert hit and hit[0]["round"] in (2, 3), [(r["round"], r["failures"]) for r in hit]
    for failure in hit[0]["failures"]:
        assert LOST in failure["reason"], failure
    assert hit[0]["status"] == "ok"  # aggregated with the sites that replied
    last = doc["rounds"][-1]  # the remaining rounds: every site, on the surviving node
    assert last["failures"] == [] and len(last["sites"]) == SITES
    on = {s["train_on"]["ray-node"] for s in last["sites"].values()}
    assert len(on) == 1 and not on & worker_nodes, (on, worker_nodes)
    assert worker_nodes, "no site ran on the worker node in round 1"
    assert cluster.alive("head")


@pytest.mark.parametrize(
    "address, fragment",
    [
        ("127.0.0.1:{free}", "no Ray cluster answers at 127.0.0.1:"),
        ("ray://127.0.0.1:10001", "Ray Client (ray://) addresses are not supported"),
        ("headnode", "expected HOST:PORT"),
    ],
)
def test_a_wrong_address_is_one_line_naming_the_flag(tmp_path, address, fragment):
    address = address.format(free=free_port())
    result = run_fediqad("simulate", "--ray-address", address, "--out", tmp_path, "--name", "x")
    line = result.one_line_error(fragment)
    assert line.startswith("error: --ray-address")
    assert not (tmp_path / "x").exists()  # refused before anything was written


def test_auto_reads_ray_address_and_in_process_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{free_port()}")
    run_fediqad("simulate", "--ray-address", "auto", "--out", tmp_path).one_line_error(
        "no Ray cluster answers"
    )
    both = ["--ray-address", "auto", "--backend", "in-process", "--out", tmp_path]
    run_fediqad("simulate", *both).one_line_error("drop --backend in-process")


def test_a_recipe_site_is_built_on_the_node_that_uses_it(tmp_path, monkeypatch):
    monkeypatch.setenv(NODE_DATA_ENV, str(tmp_path / "node"))
    recipe = SynthRecipe("EYEQ", 20, 32, seed=3, lq_ratio=0.5)
    site = Site("hospital-a", Path("hospital-a") / recipe.key, recipe)
    built = site.local_path()
    meta = built / "EYEQ" / "synth.json"
    assert built == tmp_path / "node" / "hospital-a" / recipe.key and meta.is_file()
    stamp = meta.stat().st_mtime_ns
    assert site.local_path() == built and meta.stat().st_mtime_ns == stamp  # built once
    assert where_this_runs() == {}  # outside Ray (a deployed site): no host names sent


def test_a_ray_of_our_own_ignores_ray_address_in_the_environment(monkeypatch):
    """Without --ray-address the run starts its own Ray even where RAY_ADDRESS names a
    cluster (ray.init would join it and refuse num_cpus; `auto` is the way to join)."""
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    seen: dict = {}
    start_ray({"num_cpus": 2}, init=lambda **kwargs: seen.update(kwargs))
    assert seen["address"] == "local" and seen["num_cpus"] == 2
