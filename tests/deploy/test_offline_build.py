"""Offline image builds without an engine: which Debian release and mirror, which wheels,
the build arguments, the wheelhouse reused while its pins hold, and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from fediqad.commands import deploy as deploy_cmd
from fediqad.deployment import offline
from fediqad.deployment.specs import image_specs
from shared.errors import UserError
from tests.conftest import cli_for

REPO = Path(__file__).resolve().parents[2]


def test_apt_source_reads_deb822_and_one_line_sources(tmp_path):
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb-src\nURIs: http://src.example/debian\nSuites: trixie\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert offline.apt_source(tmp_path) == offline.DebianSource(
        "bookworm", "http://mirror.example/debian"
    )
    (tmp_path / "sources.list.d" / "debian.sources").unlink()
    (tmp_path / "sources.list").write_text(
        "# deb http://old.example/debian buster main\n"
        "deb [signed-by=/k.gpg] http://ftp.example/debian trixie main contrib\n"
    )
    assert offline.apt_source(tmp_path) == offline.DebianSource(
        "trixie", "http://ftp.example/debian"
    )
    (tmp_path / "sources.list").write_text("deb https://packages.example/apt stable main\n")
    with pytest.raises(UserError, match="--release and --mirror"):
        offline.apt_source(tmp_path)


def _wheel(folder: Path, name: str) -> Path:
    path = folder / name
    path.write_bytes(b"")
    return path


def test_a_cpu_torch_is_used_only_with_its_cpu_torchvision(tmp_path):
    tag = f"cp{os.sys.version_info.major}{os.sys.version_info.minor}"
    torch = _wheel(tmp_path, f"torch-2.13.0+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl")
    # PyPI's torchvision is linked against CUDA torch: no pair without a +cpu torchvision.
    _wheel(tmp_path, f"torchvision-0.28.0-{tag}-{tag}-manylinux_2_28_x86_64.whl")
    assert offline.cpu_torch_wheels([tmp_path]) is None
    _wheel(tmp_path, f"torchvision-0.29.1+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl")
    assert offline.cpu_torch_wheels([tmp_path]) is None  # 0.29 belongs to torch 2.14
    vision = _wheel(tmp_path, f"torchvision-0.28.0+cpu-{tag}-{tag}-manylinux_2_28_x86_64.whl")
    assert offline.cpu_torch_wheels([tmp_path, tmp_path / "missing"]) == (torch, vision)
    pins = offline.wheelhouse_pins(REPO / "pyproject.toml", (torch, vision))
    assert pins[:2] == ["torch==2.13.0+cpu", "torchvision==0.28.0+cpu"]
    assert not any(p.startswith(("torch>", "torchvision>")) for p in pins)
    assert "setuptools>=69" in pins  # the build backend, for the editable install offline
    assert offline.matching_torchvision("2.14.1") == "0.29.*"


def test_wheelhouse_is_reused_while_its_pins_hold(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        (tmp_path / "wh" / "x-1-py3-none-any.whl").write_bytes(b"")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(offline.subprocess, "run", fake_run)
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[build-system]\nrequires = ["setuptools>=69"]\n[project]\ndependencies = ["numpy>=1"]\n'
    )
    offline.prepare_wheelhouse(tmp_path / "wh", pyproject, print)
    assert calls and calls[0][3:5] == ["wheel", "--quiet"] and "numpy>=1" in calls[0]
    manifest = json.loads((tmp_path / "wh" / offline.MANIFEST).read_text())
    assert manifest["requirements"] == ["numpy>=1", "setuptools>=69"]
    offline.prepare_wheelhouse(tmp_path / "wh", pyproject, print)
    assert len(calls) == 1  # same pins: nothing downloaded
    pyproject.write_text(pyproject.read_text().replace("numpy>=1", "numpy>=2"))
    offline.prepare_wheelhouse(tmp_path / "wh", pyproject, print)
    assert len(calls) == 2 and "numpy>=2" in calls[1]


def test_pip_failure_is_one_line(tmp_path, monkeypatch):
    def failing(cmd, **kwargs):
        return subprocess.CompletedProcess(cmd, 1, "", "noise\nERROR: No matching dist for x\n")

    monkeypatch.setattr(offline.subprocess, "run", failing)
    with pytest.raises(UserError, match="pip wheel into .* failed: ERROR: No matching dist"):
        offline.prepare_wheelhouse(tmp_path / "wh", REPO / "pyproject.toml", print)
    assert not (tmp_path / "wh" / offline.MANIFEST).exists()


def test_offline_build_arguments():
    online = image_specs(["server", "hospital"])
    assert all(
        "BASE_IMAGE" not in s.buildargs and "WHEEL_SOURCE" not in s.buildargs for s in online
    )
    specs = image_specs(
        ["server", "hospital"], base_image="fediqad-base:bookworm-python3", wheelhouse=True
    )
    for spec in specs:
        assert spec.buildargs["BASE_IMAGE"] == "fediqad-base:bookworm-python3"
        assert spec.buildargs["WHEEL_SOURCE"] == "wheelhouse"
    ignored = (REPO / ".dockerignore").read_text().splitlines()
    assert "!deploy/wheelhouse/" in ignored and "!deploy/install-python.sh" in ignored


def _install(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO / "deploy" / "install-python.sh")],
        env={"PATH": os.environ["PATH"], "VENV": str(tmp_path / "venv"), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_install_script_refuses_an_empty_wheelhouse_and_an_unknown_source(tmp_path):
    done = _install(tmp_path, WHEEL_SOURCE="nowhere")
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "install-python: WHEEL_SOURCE must be 'index' or 'wheelhouse', got 'nowhere'"
    )
    (tmp_path / "wheels").mkdir()
    done = _install(tmp_path, WHEEL_SOURCE="wheelhouse", WHEELS=str(tmp_path / "wheels"))
    assert done.returncode == 2 and "has no wheels" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "venv").exists()  # refused before anything was made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["build", "--release", "trixie"], "only apply with --offline"),
        (["build", "--offline", "--cpu-wheels", "/nonexistent"], "no matching torch-*+cpu"),
        (["up", "server", "--restart", "sometimes"], "--restart must be one of"),
    ],
)
def test_build_and_up_options_are_checked_before_the_engine(monkeypatch, args, message):
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    res = cli_for(deploy_cmd.register)("deploy", *args, ok=False)
    assert isinstance(res.exception, UserError) and message in str(res.exception)


def test_offline_cuda_is_refused_with_the_online_command(monkeypatch):
    from fediqad.deployment.images import build_images

    with pytest.raises(UserError, match="--offline builds CPU images"):
        build_images(object(), REPO, ["hospital"], "cuda", print, offline=True)


class _FakeApi:
    def __init__(self, fail_at: str | None = None):
        self.builds: list[dict] = []
        self.fail_at = fail_at

    def build(self, **kwargs):
        self.builds.append(kwargs)
        yield {"stream": "Step 1/2 : FROM base\n"}
        if self.fail_at == kwargs["tag"]:
            yield {"stream": "Step 2/2 : RUN install-python.sh\n"}
            yield {"error": "The command '/bin/sh -c install' returned a non-zero code: 2"}


class _FakeClient:
    def __init__(self, api):
        self.api = api
        self.images = self

    def get(self, tag):
        return type("Image", (), {"attrs": {"Size": 123_000_000}})()


def test_offline_build_uses_no_network_and_the_prepared_base(monkeypatch, tmp_path):
    from fediqad.deployment import images

    prepared = []
    monkeypatch.setattr(images, "build_base_image", lambda c, s, log: "fediqad-base:x-python3")
    monkeypatch.setattr(images, "cpu_torch_wheels", lambda folders: None)
    monkeypatch.setattr(
        images, "prepare_wheelhouse", lambda dest, pyproject, log, cpu_pair: prepared.append(dest)
    )
    api = _FakeApi()
    built = images.build_images(
        _FakeClient(api),
        tmp_path,
        ["server", "hospital"],
        "cpu",
        print,
        offline=True,
        source=offline.DebianSource("x", "http://m/debian"),
    )
    assert prepared == [tmp_path / "deploy" / "wheelhouse"]
    assert [b.tag for b in built] == ["fediqad-server:0.1.0", "fediqad-hospital:0.1.0"]
    assert all(b.size_bytes == 123_000_000 for b in built)
    for call in api.builds:
        assert call["network_mode"] == "none" and call["pull"] is False
        assert call["buildargs"]["BASE_IMAGE"] == "fediqad-base:x-python3"
        assert call["buildargs"]["WHEEL_SOURCE"] == "wheelhouse"
    online = _FakeApi()
    images.build_images(_FakeClient(online), tmp_path, ["hospital"], "cpu", print)
    assert online.builds[0]["network_mode"] is None and online.builds[0]["pull"] is True
    assert "BASE_IMAGE" not in online.builds[0]["buildargs"]


def test_a_failed_build_step_is_one_line(tmp_path):
    from fediqad.deployment import images

    api = _FakeApi(fail_at="fediqad-server:0.1.0")
    with pytest.raises(UserError) as err:
        images.build_images(_FakeClient(api), tmp_path, ["server"], "cpu", print)
    message = str(err.value)
    assert "\n" not in message and "Step 2/2 : RUN install-python.sh" in message
    assert message.endswith("returned a non-zero code: 2")
