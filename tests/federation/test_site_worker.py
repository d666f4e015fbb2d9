"""The thin ClientApp and the warm site worker, without a SuperNode: the real relay app
in an in-process Grid, the real worker processes behind it (started on demand, as under
a stock `flower-supernode`). Waits on events (log lines, process exits), not on time.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from flwr.app import Context, RecordDict

from client.client_app import METRICS as RELAY_METRICS
from client.client_app import make_relay_app
from client.worker_process import LOG, PARENT_ENV, ensure_worker, worker_alive
from server.federation import Federation
from shared.records import METRICS
from tests.federation.test_rounds import make_fed
from tests.support.flower import InProcessGrid

pytestmark = pytest.mark.timeout(600)


def test_the_clientapp_module_imports_no_torch():
    code = (
        "import sys, client.client_app\n"
        "heavy = ('torch', 'torchvision', 'opacus', 'sklearn')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert RELAY_METRICS == METRICS


def _pid(state_dir: Path) -> int:
    return int((state_dir / "worker.pid").read_text())


@pytest.fixture
def workers(tmp_path, monkeypatch):
    """State dirs of two sites; their workers are killed at the end whatever happens."""
    monkeypatch.setenv(PARENT_ENV, str(os.getpid()))
    dirs = [tmp_path / f"state{i}" for i in range(2)]
    yield dirs
    for d in dirs:
        if (d / "worker.pid").exists() and worker_alive(d):
            os.kill(_pid(d), signal.SIGKILL)


def relay_grid(site_dirs: list[Path], state_dirs: list[Path], **kw) -> InProcessGrid:
    app = make_relay_app()
    contexts = {
        100 + i: Context(
            run_id=7,
            node_id=100 + i,
            node_config={
                "data-path": str(site_dirs[i]),
                "site-name": f"site{i}",
                "state-dir": str(state_dirs[i]),
            },
            state=RecordDict(),
            run_config={},
        )
        for i in range(2)
    }
    return InProcessGrid({n: (app, c) for n, c in contexts.items()}, **kw)


def kill_on_log_line(log: Path, line: str, nth: int, pid_of) -> threading.Thread:
    """SIGKILL the worker when `line` appears for the `nth` time in its log."""

    def watch() -> None:
        while not log.exists() or log.read_text().count(line) < nth:
            time.sleep(0.05)
        os.kill(pid_of(), signal.SIGKILL)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_round_is_recorded_restarted_and_loses_no_saved_state(
    tmp_path, site_dirs, workers
):
    """Round 2: site0's worker dies inside its train handler -> that site's failure is
    recorded; round 3 runs on a new worker that continued from round 1's saved state."""
    fed = make_fed(tmp_path, num_rounds=3)
    killer = kill_on_log_line(workers[0] / LOG, "handling train", 2, lambda: _pid(workers[0]))
    grid = relay_grid(site_dirs, workers)
    doc = Federation(fed).run(grid)
    killer.join(timeout=1)
    assert not killer.is_alive()
    first, second, third = doc["rounds"]
    assert first["replies"]["train_ok"] == 2
    assert second["replies"]["train_ok"] == 1
    reasons = " ".join(f["reason"] for f in second["failures"])
    assert "site worker stopped while handling a train message" in reasons
    assert third["replies"]["train_ok"] == 2 and third["status"] == "ok"
    # site0 trained in rounds 1 and 3: its schedule continued from round 1's saved state
    assert first["sites"]["site0"]["train"]["site_epochs"] == 1
    assert third["sites"]["site0"]["train"]["site_epochs"] == 2
    assert third["sites"]["site1"]["train"]["site_epochs"] == 3
    assert third["sites"]["site0"]["train"]["relay_seconds"] >= 0
    log = (workers[0] / LOG).read_text()
    assert log.count(" ready on ") == 2, log  # one restart, started on demand
    for d in workers:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700
        assert stat.S_IMODE((d / "worker.sock").stat().st_mode) == 0o600
        assert list((d / "runs").glob("7.state"))


def test_two_clientapps_arriving_together_start_one_worker(tmp_path, workers):
    socks = []

    def connect() -> None:
        socks.append(ensure_worker(workers[0]))

    threads = [threading.Thread(target=connect) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(socks) == 3
    for s in socks:
        s.close()
    log = (workers[0] / LOG).read_text()
    assert log.count(" ready on ") == 1 and "another worker" not in log, log


def test_a_worker_that_cannot_start_fails_the_message_with_one_line(tmp_path, site_dirs, workers):
    workers[0].mkdir(mode=0o700)
    (workers[0] / "runs").write_text("not a folder")  # the worker cannot keep its state
    fed = make_fed(tmp_path, num_rounds=1, min_replies=1)
    record = Federation(fed).run(relay_grid(site_dirs, workers))["rounds"][0]
    reasons = [f["reason"] for f in record["failures"] if "site worker" in f["reason"]]
    assert reasons and "could not start" in reasons[0] and "\n" not in reasons[0]
    assert json.dumps(record)  # the failure is in the round record


def test_a_kept_model_trains_exactly_like_a_fresh_one(tmp_path, site_dirs):
    """The worker keeps each site's model between messages; no state may leak through it."""
    from flwr.clientapp import ClientApp

    from client.handlers import _KEPT, handler_table
    from client.site import Site

    finals = []
    for keep in (False, True):
        table = handler_table([Site(f"site{i}", site_dirs[i]) for i in range(2)], 1, None, keep)
        app = ClientApp()
        app.train()(table["train"])
        app.evaluate()(table["evaluate"])
        contexts = {
            100 + i: Context(
                run_id=1,
                node_id=100 + i,
                node_config={"partition-id": i},
                state=RecordDict(),
                run_config={},
            )
            for i in range(2)
        }
        grid = InProcessGrid({n: (app, c) for n, c in contexts.items()})
        fed = make_fed(tmp_path / f"keep-{keep}", num_rounds=2)
        federation = Federation(fed)
        federation.run(grid)
        finals.append(federation.globals.arrays)
        assert bool(_KEPT) == keep
    for model, arrays in finals[0].items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, finals[1][model][key], err_msg=key)
