"""Flower's fixed waits shortened in our own processes (shared/flower_waits.py), checked
against the pinned Flower: if an upgrade moves or renames a wait, these fail instead of
the deployment silently falling back to seconds of latency per message."""

from __future__ import annotations

import functools
import subprocess
import sys
import time
import types

import pytest
from flwr.supercore.inflatable import inflatable_utils
from flwr.superlink.grid import http_grid
from flwr.supernode import start_client_internal

from client.runtime import supernode_command
from client.supernode_launcher import POLL_ENV, poll_cap
from shared.flower_waits import (
    OBJECT_RETRY_CAP_S,
    OBJECT_RETRY_S,
    cap_supernode_waits,
    quick_object_pulls,
)


@pytest.fixture
def restored(monkeypatch):
    """Whatever the test patches in Flower's modules is put back afterwards."""
    monkeypatch.setattr(start_client_internal, "time", start_client_internal.time)
    monkeypatch.setattr(start_client_internal, "pull_objects", start_client_internal.pull_objects)
    monkeypatch.setattr(http_grid, "pull_objects", http_grid.pull_objects)


def test_the_supernode_loop_sleeps_at_most_the_cap(restored, monkeypatch):
    asked: list[float] = []
    assert cap_supernode_waits(0.2)
    monkeypatch.setattr(time, "sleep", asked.append)  # what the shim passes on
    start_client_internal.time.sleep(3)  # the idle wait when the SuperLink has nothing
    start_client_internal.time.sleep(0.5)  # the wait for a finished reply
    start_client_internal.time.sleep(0.05)
    assert asked == [0.2, 0.2, 0.05]
    assert start_client_internal.time.monotonic is time.monotonic  # the rest is untouched


def test_a_changed_supernode_loop_is_left_as_shipped(restored):
    start_client_internal.time = types.ModuleType("time")  # not the module we expect
    assert not cap_supernode_waits(0.2)


def test_part_retries_are_quick_where_flower_pulls_parts(restored):
    for module in (start_client_internal, http_grid):
        assert quick_object_pulls(module)
        patched = module.pull_objects
        assert isinstance(patched, functools.partial)
        assert patched.func is inflatable_utils.pull_objects
        assert patched.keywords["initial_backoff"] == OBJECT_RETRY_S
        assert patched.keywords["backoff_cap"] == OBJECT_RETRY_CAP_S
        assert quick_object_pulls(module) and module.pull_objects is patched  # idempotent
    assert not quick_object_pulls(types.ModuleType("elsewhere"))


def test_the_poll_setting_is_checked():
    assert poll_cap({}) == 0.2
    assert poll_cap({POLL_ENV: "off"}) is None
    assert poll_cap({POLL_ENV: "0.05"}) == 0.05
    for bad in ("-1", "5", "fast"):
        with pytest.raises(ValueError, match=POLL_ENV):
            poll_cap({POLL_ENV: bad})


def test_the_launcher_refuses_a_bad_setting_with_one_line(tmp_path):
    env = {"PATH": "/usr/bin:/bin", POLL_ENV: "fast", "HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "client.supernode_launcher", "--help"],
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": ":".join(sys.path)},
    )
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and POLL_ENV in out.stderr


def test_fediqad_client_runs_a_process_isolated_supernode_and_stock_stays_stock(tmp_path):
    ours = supernode_command("h:1", tmp_path, "s", 9094, None, served_by_worker=True)
    assert ours[1:3] == ["-m", "client.supernode_launcher"]
    assert ours[ours.index("--isolation") + 1] == "process"
    stock = supernode_command("h:1", tmp_path, "s", 9094, None)
    assert stock[0].endswith("flower-supernode") and "--isolation" not in stock


def test_each_lever_has_a_switch_that_is_checked(monkeypatch, tmp_path):
    from client.runtime import ISOLATION_ENV, isolation_mode
    from server.messaging import PACK_ENV, packing
    from shared.errors import UserError

    monkeypatch.delenv(ISOLATION_ENV, raising=False)
    monkeypatch.delenv(PACK_ENV, raising=False)
    assert isolation_mode() == "process" and packing()
    monkeypatch.setenv(ISOLATION_ENV, "subprocess")
    monkeypatch.setenv(PACK_ENV, "off")
    assert isolation_mode() == "subprocess" and not packing()
    monkeypatch.setenv(ISOLATION_ENV, "threads")
    with pytest.raises(UserError, match=ISOLATION_ENV):
        isolation_mode()
    relay = supernode_command("h:1", tmp_path, "s", 9094, None, launcher=True)
    assert relay[1:3] == ["-m", "client.supernode_launcher"] and "--isolation" not in relay
