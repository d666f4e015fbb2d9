"""`fediqad deploy`: the container specs it would create (pure data, no engine needed),
the one-line exit 2 without an engine, and a real run where an engine is reachable."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest
from docker.types import Mount

from fediqad.commands import deploy as deploy_cmd
from fediqad.deployment.specs import (
    LABEL_ROLE,
    LABEL_SITE,
    hospital_spec,
    image_specs,
    server_spec,
)
from shared.errors import UserError
from tests.conftest import cli_for


def test_hospital_container_spec(tmp_path, pki):
    data = tmp_path / "data"
    data.mkdir()
    node = pki.nodes["site0"].key.parent
    spec = hospital_spec("site0", "fl.test:9092", data, node)
    assert spec.image == "fediqad-hospital:0.1.0" and spec.name == "fediqad-hospital-site0"
    assert spec.command == []  # the image's entrypoint script decides
    assert spec.environment == {
        "FEDIQAD_SITE_NAME": "site0",
        "FEDIQAD_SERVER": "fl.test:9092",
        "FEDIQAD_DATA_PATH": "/data",
        "FEDIQAD_CERTS": "/certs",
        "FEDIQAD_MAX_WAIT": "300",
        "FEDIQAD_INSECURE": "0",
    }
    assert {(m.source, m.target, m.read_only) for m in spec.mounts} == {
        (str(data.resolve()), "/data", True),
        (str(node.resolve()), "/certs", True),
    }
    assert spec.labels == {LABEL_ROLE: "hospital", LABEL_SITE: "site0"}
    assert not any("KEY" in k or "SECRET" in k for k in spec.environment)
    kwargs = spec.run_kwargs()
    assert kwargs["ports"] == {} and kwargs["user"] == "10001:10001"
    assert kwargs["read_only"] and kwargs["cap_drop"] == ["ALL"] and kwargs["init"]
    assert kwargs["restart_policy"]["Name"] == "on-failure"
    assert all(isinstance(m, Mount) and m["ReadOnly"] for m in kwargs["mounts"])
    assert "device_requests" not in kwargs
    cuda = hospital_spec("site0", "fl.test:9092", data, node, variant="cuda")
    assert cuda.image == "fediqad-hospital-cuda:0.1.0" and "device_requests" in cuda.run_kwargs()


def test_server_container_spec(tmp_path, pki):
    runs = tmp_path / "runs"
    runs.mkdir()
    spec = server_spec(pki.certs, runs, port=443, server_args=["--rounds", "20"])
    assert spec.image == "fediqad-server:0.1.0" and spec.command == ["--rounds", "20"]
    mounts = {m.target: m for m in spec.mounts}
    assert mounts["/certs"].read_only and not mounts["/runs"].read_only
    assert spec.ports == {"9092/tcp": 443}
    assert spec.environment["FEDIQAD_INSECURE"] == "0"
    insecure = server_spec(pki.certs, runs, insecure=True)
    assert "/certs" not in {m.target for m in insecure.mounts}


def test_specs_reject_bad_input(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        hospital_spec("a", "h:1", tmp_path / "missing", tmp_path)
    with pytest.raises(UserError, match="HOST:PORT"):
        hospital_spec("a", "nohost", tmp_path, tmp_path)
    with pytest.raises(UserError, match="node name"):
        hospital_spec("../a", "h:1", tmp_path, tmp_path)


def test_images_to_build():
    specs = image_specs(["server", "hospital"], "cuda")
    assert [(s.tag, s.dockerfile) for s in specs] == [
        ("fediqad-server:0.1.0", "deploy/Dockerfile.server"),
        ("fediqad-hospital-cuda:0.1.0", "deploy/Dockerfile.hospital"),
    ]
    assert specs[0].buildargs["TORCH_INDEX"].endswith("/cpu")
    assert specs[1].buildargs["TORCH_INDEX"].endswith("/cu128")


@pytest.mark.parametrize("args", [["status"], ["build"], ["down", "server"]])
def test_without_an_engine_one_line_and_exit_2(monkeypatch, args):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    cli = cli_for(deploy_cmd.register)
    res = cli("deploy", *args, ok=False)
    assert isinstance(res.exception, UserError) and res.exception.exit_code == 2
    message = str(res.exception)
    assert message.startswith("no Docker engine reachable at unix:///nonexistent/docker.sock")
    assert "\n" not in message


def test_cli_exit_code_is_2_in_a_real_process():
    env = {**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    done = subprocess.run(
        [sys.executable, "-m", "fediqad", "deploy", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error: no Docker engine reachable")
    assert len(done.stderr.strip().splitlines()) == 1


def test_up_and_down_on_a_real_engine(tmp_path, pki):
    try:
        client = deploy_cmd.docker_client()
    except UserError as err:
        pytest.skip(str(err))
    if not client.images.list(name="fediqad-hospital"):
        pytest.skip("fediqad-hospital image not built (fediqad deploy build hospital)")
    data = tmp_path / "data"
    data.mkdir()
    cli = cli_for(deploy_cmd.register)
    site = f"t-{uuid.uuid4().hex[:8]}"  # `up` replaces a container of the same name
    try:
        cli(
            "deploy",
            "up",
            "hospital",
            "--site-name",
            site,
            "--server",
            "127.0.0.1:1",
            "--data",
            data,
            "--certs",
            pki.nodes["site0"].key.parent,
        )
        container = client.containers.get(f"fediqad-hospital-{site}")
        mounts = {m["Destination"]: m for m in container.attrs["Mounts"]}
        assert mounts["/data"]["RW"] is False and mounts["/certs"]["RW"] is False
    finally:
        cli("deploy", "down", "hospital", "--site-name", site, ok=False)
