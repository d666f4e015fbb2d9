"""The images on a real Docker engine, driven by `fediqad deploy` as an operator would.

Builds the server and hospital images with `--offline` (Debian-package base image,
wheelhouse, no network in the build), runs the server and two hospitals (TLS and node
authentication on, read-only root, uid 10001) through `fediqad deploy up`, and waits for
2 rounds to a global checkpoint. Meanwhile hospitals with a wrong CA, without a data
mount and with an unregistered key each end their container with one line and a non-zero
code. Every wait is on an event (a log line, a container exit), never on a time budget.

Opt-in (minutes, needs root and an engine): `deploy/ci-engine.sh` starts dockerd and runs
it with FEDIQAD_ENGINE_TEST=1; `.ci/run` calls that script.
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
from contextlib import suppress
from pathlib import Path

import pytest

from fediqad.commands import deploy as deploy_cmd
from fediqad.deployment.specs import LABEL_ROLE, hospital_spec
from shared.certificates import create_node_key, init_ca_and_server
from shared.checkpoint import load_checkpoint
from shared.errors import UserError

pytestmark = [pytest.mark.engine, pytest.mark.timeout(3600)]

SERVER_NAME = "fediqad-server"  # the server container's name on the `fediqad` network
UID = 10001
TAG = uuid.uuid4().hex[:6]  # site names of this run: other users of the engine keep theirs
SITES = [f"e2e-{TAG}-{i}" for i in range(2)]
SERVER_ARGS = [
    "--dataset=EYEQ",
    "--rounds=2",
    "--min-nodes=2",
    "--image-size=32",
    "--backbone=vgg16_bn_slim",
    "--batch-size=8",
    "--set=model.width=0.125",
    "--set=device=cpu",
    "--set=threads=1",
    "--round-timeout=900",
]


def fediqad(*args: object, check: bool = True) -> subprocess.CompletedProcess:
    """`fediqad ...` in a real process, as an operator types it."""
    done = subprocess.run(
        [sys.executable, "-m", "fediqad", *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if check and done.returncode != 0:
        raise AssertionError(f"fediqad {args}: exit {done.returncode}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def engine():
    if os.environ.get("FEDIQAD_ENGINE_TEST") != "1":
        pytest.skip("real-engine test: run deploy/ci-engine.sh (or FEDIQAD_ENGINE_TEST=1)")
    if os.geteuid() != 0:
        pytest.skip("real-engine test needs root (bind mounts owned by the container user)")
    try:
        client = deploy_cmd.docker_client()
    except UserError as err:
        pytest.skip(f"ENGINE TEST SKIPPED: {err}")
    yield client
    _remove_ours(client)


def _remove_ours(client) -> None:
    """This test's containers only (its server name is fixed: `fediqad deploy` names it)."""
    for container in client.containers.list(all=True, filters={"label": LABEL_ROLE}):
        if TAG in container.name or container.name == SERVER_NAME:
            with suppress(Exception):
                container.remove(force=True)


@pytest.fixture(scope="module")
def images(engine) -> dict[str, int]:
    started = time.monotonic()
    done = fediqad("deploy", "build", "--offline")
    print(f"\nfediqad deploy build --offline: {time.monotonic() - started:.0f} s")
    print(done.stdout[-1500:])
    sizes = {}
    for tag in ("fediqad-server:0.1.0", "fediqad-hospital:0.1.0"):
        image = engine.images.get(tag)
        sizes[tag] = int(image.attrs["Size"])
        assert image.attrs["Config"]["User"] == f"{UID}:{UID}"
    base = engine.images.get(f"fediqad-base:{_release()}-python3")
    assert "python3" in json.dumps(base.attrs["Config"].get("Cmd"))
    return sizes


def _release() -> str:
    from fediqad.deployment.offline import apt_source

    return apt_source().release


def _owned_copy(src: Path, dest: Path) -> Path:
    """A copy the container user owns (keys stay 0600, readable by uid 10001 only)."""
    shutil.copytree(src, dest)
    for path in [dest, *dest.rglob("*")]:
        os.chown(path, UID, UID)
    return dest


@pytest.fixture
def federation(tmp_path: Path):
    """Certificates for the server's container name, two registered sites, the bad cases."""
    from shared.data.synth import synthesize

    certs = tmp_path / "certs"
    init_ca_and_server(certs, [SERVER_NAME])
    nodes = {site: create_node_key(certs, site)[0].key.parent for site in SITES}
    init_ca_and_server(tmp_path / "other", ["fl.other"])
    wrong_ca = create_node_key(tmp_path / "other", "site1")[0].key.parent
    rogue = tmp_path / "rogue"
    rogue.mkdir()
    shutil.copy(certs / "ca.crt", rogue / "ca.crt")
    shutil.copy(create_node_key(tmp_path / "other", "rogue")[0].key, rogue / "node.key")
    out = {"certs": _owned_copy(certs, tmp_path / "mounted" / "certs")}
    for i, folder in enumerate(nodes.values()):
        out[f"site{i}"] = _owned_copy(folder, tmp_path / "mounted" / f"site{i}")
    out["wrong-ca"] = _owned_copy(wrong_ca, tmp_path / "mounted" / "wrong-ca")
    out["rogue"] = _owned_copy(rogue, tmp_path / "mounted" / "rogue")
    for i, lq in enumerate((0.2, 0.6)):
        synthesize("EYEQ", 40, 32, tmp_path / "data" / f"site{i}", seed=i, lq_ratio=lq)
        out[f"data{i}"] = _owned_copy(
            tmp_path / "data" / f"site{i}", tmp_path / "mounted" / f"d{i}"
        )
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chown(runs, UID, UID)
    out["runs"] = runs
    return out


def _wait_for_line(container, text: str) -> str:
    """Follow the container's log until `text` appears (or the container ends)."""
    seen = ""
    for chunk in container.logs(stream=True, follow=True):
        seen += chunk.decode(errors="replace")
        if text in seen:
            return seen
    raise AssertionError(f"{container.name} ended before {text!r}:\n{seen[-3000:]}")


def _ends_with_one_line(container, expected: str) -> None:
    """The container stops by itself with a non-zero code and one error line."""
    code = container.wait()["StatusCode"]
    log = container.logs().decode(errors="replace")
    errors = [ln for ln in log.splitlines() if ln.startswith(("error:", "fediqad-hospital:"))]
    assert code != 0, log[-3000:]
    assert len(errors) == 1 and expected in errors[0], log[-3000:]


def _up_hospital(site: str, data: Path, certs: Path, *extra: str) -> None:
    fediqad(
        "deploy", "up", "hospital", "--site-name", site, "--server", f"{SERVER_NAME}:9092",
        "--data", data, "--certs", certs, *extra,
    )  # fmt: skip


@pytest.fixture
def cleanup(engine) -> Iterator[None]:
    yield
    _remove_ours(engine)


def test_server_and_two_hospitals_through_fediqad_deploy(engine, images, federation, cleanup):
    started = time.monotonic()
    f = federation
    port = _free_port()
    args = [f"--arg={a}" for a in SERVER_ARGS]
    fediqad(
        "deploy", "up", "server", "--certs", f["certs"], "--runs", f["runs"], "--port", port, *args
    )
    server = engine.containers.get("fediqad-server")
    _wait_for_line(server, "started; waiting")
    for i, site in enumerate(SITES):
        _up_hospital(site, f[f"data{i}"], f[f"site{i}"])
    status = fediqad("deploy", "status").stdout  # the run needs both sites: still going
    for name in (SERVER_NAME, *(f"fediqad-hospital-{site}" for site in SITES)):
        assert f"{name}: running" in status, status

    # While the two sites train, each mistake ends its own container with one line.
    _up_hospital(f"wrong-ca-{TAG}", f["data0"], f["wrong-ca"], "--restart", "no")
    _ends_with_one_line(
        engine.containers.get(f"fediqad-hospital-wrong-ca-{TAG}"), "does not verify"
    )
    nodata = hospital_spec(f"no-data-{TAG}", f"{SERVER_NAME}:9092", f["data0"], f["site0"])
    kwargs = nodata.run_kwargs() | {"restart_policy": {"Name": "no"}}
    kwargs["mounts"] = [m for m in kwargs["mounts"] if m["Target"] != "/data"]
    _ends_with_one_line(engine.containers.run(**kwargs), "does not exist in the container")
    missing = fediqad(
        "deploy", "up", "hospital", "--site-name", "x", "--server", f"{SERVER_NAME}:9092",
        "--data", f["runs"] / "missing", "--certs", f["site0"], check=False,
    )  # fmt: skip
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    _up_hospital(f"rogue-{TAG}", f["data0"], f["rogue"], "--restart", "no")
    _ends_with_one_line(
        engine.containers.get(f"fediqad-hospital-rogue-{TAG}"), "refused this SuperNode"
    )

    status = fediqad("deploy", "status").stdout
    assert f"fediqad-hospital-rogue-{TAG}: exited (code 2)" in status, status
    assert f"fediqad-hospital-wrong-ca-{TAG}: exited (code 2)" in status, status

    code = server.wait()["StatusCode"]  # `fediqad server` returns when the run is over
    server_log = server.logs().decode(errors="replace")
    assert code == 0, server_log[-4000:]
    run_dir = f["runs"] / "federated"
    assert load_checkpoint(run_dir / "global.pt").round == 2
    doc = json.loads((run_dir / "metrics.json").read_text())
    assert [r["status"] for r in doc["rounds"]] == ["ok", "ok"]
    for record in doc["rounds"]:
        assert set(record["sites"]) == set(SITES)
    for site in SITES:
        attrs = engine.containers.get(f"fediqad-hospital-{site}").attrs
        assert attrs["HostConfig"]["ReadonlyRootfs"] and attrs["Config"]["User"] == f"{UID}:{UID}"

    for site in SITES:
        down = fediqad("deploy", "down", "hospital", "--site-name", site).stdout
        assert f"removed fediqad-hospital-{site}" in down
    assert f"removed {SERVER_NAME}" in fediqad("deploy", "down", "server").stdout
    status = fediqad("deploy", "status").stdout
    assert SERVER_NAME not in status and not any(site in status for site in SITES), status
    print(f"\nengine test: 2 rounds with 2 hospitals in {time.monotonic() - started:.0f} s")
    print("image sizes: " + ", ".join(f"{t} {s / 1e6:.0f} MB" for t, s in images.items()))


def _free_port() -> int:
    from shared.process_group import free_port

    return free_port()
