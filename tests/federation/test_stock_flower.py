"""Stock Flower without traps: the pinned Flower minor, PATH and `flower-superexec`, the
dependency-installation flag, the ServerApp's run directory, and SuperNodes that rejoin
a restarted SuperLink when `fediqad client` runs them.
"""

from __future__ import annotations

import os
import re
import sys
import time
import tomllib
from pathlib import Path

import flwr
import pytest
from packaging.specifiers import SpecifierSet

from client.runtime import supernode_env
from server.config import FederationConfig
from server.runtime import child_env, superlink_command
from server.server_app import SERVER_HOME_ENV, resolve_run_dir
from shared.errors import UserError
from shared.process_group import flower_tool, free_port, require_superexec
from tests.process_registry import ProcessRegistry, cleaned_up

REPO = Path(__file__).resolve().parents[2]


def test_the_installed_flower_is_the_pinned_minor_and_the_one_the_docs_name():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pin = next(d for d in deps if d.startswith("flwr"))
    spec = SpecifierSet(pin.split("]", 1)[1])
    assert flwr.__version__ in spec, (flwr.__version__, pin)
    minor = ".".join(flwr.__version__.split(".")[:2])
    assert f"<{minor.split('.')[0]}.{int(minor.split('.')[1]) + 1}" in pin  # one minor only
    for doc in ("docs/deployment.md", "docs/federation.md"):
        named = set(re.findall(r"flwr (\d+\.\d+)", (REPO / doc).read_text()))
        assert named == {minor}, (doc, named)


def test_launchers_put_flower_superexec_on_path_and_refuse_without_it(tmp_path):
    for env in (child_env(tmp_path), supernode_env(tmp_path, tmp_path / "status")):
        assert env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    with pytest.raises(UserError, match="flower-superexec is not on PATH"):
        require_superexec(str(tmp_path))


def test_the_superlink_never_installs_dependencies_at_run_time():
    assert "--disable-runtime-dependency-installation" in superlink_command("127.0.0.1", 9092, None)


def test_a_relative_run_dir_lands_in_the_server_state_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(SERVER_HOME_ENV, str(tmp_path / "srv"))
    monkeypatch.chdir(tmp_path)
    fed = resolve_run_dir(FederationConfig(run_dir=Path("runs/study")))
    assert fed.run_dir == tmp_path / "srv" / "runs" / "study"
    absolute = tmp_path / "elsewhere"
    assert resolve_run_dir(FederationConfig(run_dir=absolute)).run_dir == absolute


@pytest.mark.deployment
@pytest.mark.timeout(900)  # a hang guard; every wait below is for an event
def test_fediqad_client_rejoins_a_restarted_superlink(tmp_path, site_dirs):
    port = free_port()
    env = {**os.environ, "HOME": str(tmp_path / "home"), "PYTHONUNBUFFERED": "1"}
    link = [flower_tool("flower-superlink"), "--insecure", "--host", "127.0.0.1"]
    link += ["--port", str(port), "--disable-runtime-dependency-installation"]
    link_env = child_env(tmp_path / "link-home")
    client = [sys.executable, "-m", "fediqad", "client", "--insecure"]
    client += ["--server", f"127.0.0.1:{port}", "--data-path", str(site_dirs[0])]
    client += ["--site-name", "site0", "--flwr-home", str(tmp_path / "n0")]
    with cleaned_up(ProcessRegistry(tmp_path)) as procs:
        procs.start("link1", link, link_env)
        site = procs.start("site0", client, env)

        def joined(times: int) -> None:
            while procs.log("site0").count("SuperNode ID") < times:
                assert site.poll() is None, procs.log("site0")
                procs.remember()
                time.sleep(0.3)

        joined(1)
        procs.procs["link1"].kill()
        procs.procs["link1"].wait()
        procs.start("link2", link, link_env)
        joined(2)  # dropped (401 -> exit 0), started again, admitted by the new SuperLink
        assert "rejoining" in procs.log("site0")
        assert site.poll() is None
