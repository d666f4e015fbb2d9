"""The shipped path as separate hosts: the server and each hospital in its own network
namespace (a bridge in the server's namespace, one veth per host, 10.213.7.0/24),
started through the very entrypoint scripts the images run (deploy/entrypoint-*.sh),
TLS and SuperNode authentication on. While two hospitals train two rounds, a third
"host" tries every bad input: an unregistered key, a foreign CA, plaintext, an
unreachable server, a missing data mount. Each of those ends with one line and a
non-zero code; the federation finishes regardless.

Needs root (or CAP_NET_ADMIN + CAP_SYS_ADMIN) for `ip netns`; skips with the reason
otherwise. Namespaces, links and processes are removed even when the test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.checkpoint import load_checkpoint
from simulations.deploy_bench import SMALL_MODEL_ARGS
from tests.process_registry import ProcessRegistry, cleaned_up

pytestmark = [pytest.mark.deployment, pytest.mark.timeout(1800)]  # a hang guard only

REPO = Path(__file__).resolve().parents[2]
SERVER_ENTRYPOINT = REPO / "deploy" / "entrypoint-server.sh"
HOSPITAL_ENTRYPOINT = REPO / "deploy" / "entrypoint-hospital.sh"
PORT = 9092
SERVER_IP = "10.213.7.1"  # must be among the test PKI's SANs (tests/deploy/conftest.py)
SUBNET_PREFIX = SERVER_IP.rsplit(".", 1)[0]


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=20)


@dataclass
class Hosts:
    """Network namespace name per host role."""

    ns: dict[str, str]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    """server + three hospital hosts on one private subnet; removed afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    tag = uuid.uuid4().hex[:6]
    ns = {role: f"fq-{tag}-{role}" for role in ("server", "h0", "h1", "bad")}
    created: list[str] = []
    try:
        first = _ip("netns", "add", ns["server"])
        if first.returncode != 0:
            pytest.skip(f"network namespaces not permitted here: {first.stderr.strip()}")
        created.append(ns["server"])
        for role in ("h0", "h1", "bad"):
            _checked("netns", "add", ns[role])
            created.append(ns[role])
        _checked("-n", ns["server"], "link", "add", "br0", "type", "bridge")
        _checked("-n", ns["server"], "addr", "add", f"{SERVER_IP}/24", "dev", "br0")
        _checked("-n", ns["server"], "link", "set", "br0", "up")
        for i, role in enumerate(("h0", "h1", "bad"), start=2):
            port = f"v{role}"
            _checked(
                "link",
                "add",
                port,
                "netns",
                ns["server"],
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns[role],
            )
            _checked("-n", ns["server"], "link", "set", port, "master", "br0")
            _checked("-n", ns["server"], "link", "set", port, "up")
            _checked("-n", ns[role], "addr", "add", f"{SUBNET_PREFIX}.{i}/24", "dev", "eth0")
            _checked("-n", ns[role], "link", "set", "eth0", "up")
        for name in ns.values():
            _checked("-n", name, "link", "set", "lo", "up")  # Flower's local runtime APIs
        yield Hosts(ns)
    finally:
        for name in reversed(created):  # deleting a namespace deletes its veth ends
            _ip("netns", "del", name)


def _checked(*args: str) -> None:
    done = _ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


class Processes(ProcessRegistry):
    """Entrypoint scripts, each run inside a network namespace."""

    def start(
        self,
        name: str,
        netns: str,
        entrypoint: Path,  # type: ignore[override]
        env: dict[str, str],
        *args: str,
    ) -> subprocess.Popen:
        return super().start(name, ["ip", "netns", "exec", netns, str(entrypoint), *args], env)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    with cleaned_up(Processes(tmp_path, grace=10.0)) as procs:
        yield procs


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(tmp_path / "home")
    env["PYTHONUNBUFFERED"] = "1"
    env["FEDIQAD_CACHE_DIR"] = str(tmp_path / "cache")
    env.update(settings)
    return env


def _hospital_env(tmp_path: Path, site: str, data: Path, certs: Path, **extra: str) -> dict:
    settings = {
        "FEDIQAD_SERVER": f"{SERVER_IP}:{PORT}",
        "FEDIQAD_SITE_NAME": site,
        "FEDIQAD_DATA_PATH": str(data),
        "FEDIQAD_CERTS": str(certs),
        "FEDIQAD_STATE_DIR": str(tmp_path / "state" / site),
        "FEDIQAD_MAX_WAIT": "120",
    }
    return _env(tmp_path, **{**settings, **extra})


def _post_statuses(netns: str, ca: Path, *paths: str) -> list[int]:
    """HTTP status of an empty POST to each path of the public port, from `netns`."""
    script = (
        "import httpx, sys\n"
        "for path in sys.argv[3:]:\n"
        "    r = httpx.post(sys.argv[1] + path, content=b'', verify=sys.argv[2])\n"
        "    print(r.status_code)\n"
    )
    done = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            netns,
            sys.executable,
            "-c",
            script,
            f"https://{SERVER_IP}:{PORT}",
            str(ca),
            *paths,
        ],
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a Python start on a busy machine
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [int(line) for line in done.stdout.split()]


def _error_line(text: str) -> str:
    """The one error line a failed start-up must leave (Flower's own log may surround it)."""
    lines = [line for line in text.splitlines() if line.startswith(("error:", "fediqad-hospital:"))]
    assert len(lines) == 1, text[-3000:]
    return lines[0]


def test_two_hospitals_on_separate_hosts_tls_and_node_auth(
    hosts, processes, pki, tiny_sites, tmp_path
):
    assert pki.server_ip == SERVER_IP
    run_dir = tmp_path / "run"
    server_env = _env(
        tmp_path,
        FEDIQAD_CERTS=str(pki.certs),
        FEDIQAD_RUN_DIR=str(run_dir),
        FEDIQAD_PORT=str(PORT),
        FEDIQAD_HOST="0.0.0.0",
    )
    server = processes.start(
        "server",
        hosts.ns["server"],
        SERVER_ENTRYPOINT,
        server_env,
        "--rounds",
        "2",
        "--min-nodes",
        "2",
        *SMALL_MODEL_ARGS,
        "--round-timeout",
        "900",  # a liveness bound, not a verdict
    )
    while "started; waiting" not in processes.log("server"):  # keys registered, run submitted
        assert server.poll() is None, processes.log("server")
        time.sleep(0.5)
    assert processes.log("server").count("registered (node") == 2
    # From another host the public port is the Fleet API only: the Control API (which
    # could register keys or submit runs) and the runtime API are not reachable.
    codes = _post_statuses(
        hosts.ns["bad"],
        pki.server.ca,
        "/v1/control/list-runs",
        "/v1/control/register-node",
        "/v1/runtime/get-run",
        "/v1/fleet/get-run",
    )
    assert codes[:3] == [404, 404, 404], codes
    assert codes[3] not in (404, 200), codes  # forwarded; Flower refuses the unsigned call

    for i, site in enumerate(("site0", "site1")):
        processes.start(
            site,
            hosts.ns[f"h{i}"],
            HOSPITAL_ENTRYPOINT,
            _hospital_env(tmp_path, site, tiny_sites[i], pki.nodes[site].ca.parent),
        )

    # The third host tries every mistake while the federation runs.
    bad = hosts.ns["bad"]
    data = tiny_sites[0]
    processes.start(
        "wrong-ca",
        bad,
        HOSPITAL_ENTRYPOINT,
        _hospital_env(tmp_path, "wrong-ca", data, pki.wrong_ca.ca.parent),
    )
    processes.start(
        "no-data",
        bad,
        HOSPITAL_ENTRYPOINT,
        _hospital_env(tmp_path, "no-data", tmp_path / "missing", pki.certs),
    )
    processes.start(
        "unreachable",
        bad,
        HOSPITAL_ENTRYPOINT,
        _hospital_env(
            tmp_path,
            "unreachable",
            data,
            pki.nodes["site0"].ca.parent,
            FEDIQAD_SERVER=f"{SUBNET_PREFIX}.99:{PORT}",
            FEDIQAD_MAX_WAIT="3",
        ),
    )
    assert processes.wait("wrong-ca") == 2
    assert "does not verify against" in _error_line(processes.log("wrong-ca"))
    assert processes.wait("no-data") == 2
    assert "does not exist" in _error_line(processes.log("no-data"))
    assert processes.wait("unreachable") == 2
    assert "unreachable" in _error_line(processes.log("unreachable"))

    processes.start(
        "rogue",
        bad,
        HOSPITAL_ENTRYPOINT,
        _hospital_env(tmp_path, "rogue", data, pki.unregistered.ca.parent),
    )
    assert processes.wait("rogue") == 2, processes.log("rogue")[-2000:]
    assert "refused this SuperNode" in _error_line(processes.log("rogue"))

    processes.start(
        "plaintext",
        bad,
        HOSPITAL_ENTRYPOINT,
        _hospital_env(
            tmp_path, "plaintext", data, pki.certs, FEDIQAD_INSECURE="1", FEDIQAD_MAX_WAIT="5"
        ),
    )
    assert processes.wait("plaintext") != 0, processes.log("plaintext")[-2000:]
    plain = processes.log("plaintext")
    assert "WARNING: --insecure" in plain
    assert "no connection to the server" in _error_line(plain)
    assert "SuperNode ID" not in plain  # never admitted

    assert processes.wait("server") == 0, processes.log("server")[-4000:]
    final = load_checkpoint(run_dir / "global.pt")
    assert final.round == 2
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert [r["status"] for r in doc["rounds"]] == ["ok", "ok"]
    for record in doc["rounds"]:
        assert set(record["sites"]) == {"site0", "site1"}  # nobody else got in
    superlink_log = (run_dir / "superlink.log").read_text(errors="replace")
    assert "TLS" in processes.log("server") and "--insecure" not in processes.log("server")
    assert "https://" in superlink_log
