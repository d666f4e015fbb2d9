"""`fediqad simulate --sweep`: one folder per grid point, reruns skip, bad files are one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.errors import UserError
from simulations import launch
from simulations.sweep import check_sweep, run_state, run_sweep
from simulations.sweep_file import load_sweep

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "docs" / "examples" / "sweep.toml"
TINY = """
[grid]
strategy = ["fedavg", "fedprox"]
seed = [0, 1]

[simulate]
sites = 2
rounds = 1
local_epochs = 1
images_per_site = 16
image_size = 32
batch_size = 8
server_eval = false
backend = "in-process"
set = ["model.width=0.125", "device=cpu", "threads=1"]
"""


def write(tmp_path: Path, text: str, name: str = "sweep.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_grid_runs_once_each_into_its_folder_and_a_rerun_skips_them(tmp_path, monkeypatch):
    sweep, out = load_sweep(write(tmp_path, TINY)), tmp_path / "runs"
    said: list[str] = []
    rows = run_sweep(sweep, out, say=said.append)

    names = {"fedavg-seed0", "fedavg-seed1", "fedprox-seed0", "fedprox-seed1"}
    assert {row.name for row in rows} == names
    assert {p.name for p in out.iterdir() if p.is_dir()} == names
    for row in rows:
        run_dir = out / row.name
        settings = json.loads((run_dir / "federation.json").read_text())
        assert (settings["strategy"], settings["run"]["seed"]) == (row.strategy, row.seed)
        doc = json.loads((run_dir / "metrics.json").read_text())
        assert doc["finished"] and row.status == "finished" and row.rounds == 1
        assert row.metrics["auc"] == doc["rounds"][-1]["global"]["auc"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished run was run again")

    monkeypatch.setattr(launch, "simulate", must_not_run)
    again = run_sweep(sweep, out, say=said.append)
    assert [row.status for row in again] == ["skipped (finished before)"] * 4
    summary = json.loads((out / "sweep-summary.json").read_text())
    assert [r["name"] for r in summary["runs"]] == [row.name for row in rows]
    for listed, first in zip(summary["runs"], rows, strict=True):
        assert listed["metrics"] == first.metrics and listed["rounds"] == 1
    table = (out / "sweep-summary.md").read_text()
    assert all(f"| {name} | skipped" in table for name in names)


def test_run_state_resumes_a_started_run_and_reruns_a_shorter_finished_one(tmp_path):
    run_dir = tmp_path / "run"
    assert run_state(run_dir, 2) == "new"
    run_dir.mkdir()
    (run_dir / "state.json").write_text(json.dumps({"round": 1}))
    (run_dir / "metrics.json").write_text(json.dumps({"finished": False, "rounds": [{}]}))
    assert run_state(run_dir, 2) == "partial"
    (run_dir / "metrics.json").write_text(json.dumps({"finished": True, "rounds": [{}]}))
    assert run_state(run_dir, 1) == "finished"
    assert run_state(run_dir, 2) == "partial"  # more rounds asked for: continue it


def test_the_shipped_example_parses_and_checks(tmp_path):
    sweep = load_sweep(EXAMPLE)
    check_sweep(sweep)
    assert len(sweep.points()) == 9
    # its commented real-data lines are valid too
    (tmp_path / "data").mkdir()
    text = EXAMPLE.read_text().replace("# partition", "partition")
    text = text.replace('# data_root = "/shared/fediqad-data"', 'data_root = "data"')
    real = load_sweep(write(tmp_path, text))
    check_sweep(real)
    assert real.settings.data_root == (tmp_path / "data").resolve()
    assert "fedprox-dirichlet-label-0.5-seed1" in {p.name for p in real.points()}


@pytest.mark.parametrize(
    "edit, message",
    [
        (("rounds = 1", "roundz = 1"), "simulate.roundz; did you mean 'rounds'?"),
        (("rounds = 1", "rounds = 0"), "simulate.rounds: input should be greater than"),
        (('"fedprox"]', '"fedprx"]'), "grid.strategy.1: input should be 'fedavg'"),
        (("seed = [0, 1]", "seed = [0, 0]"), "grid.seed: values repeat"),
        (("seed = [0, 1]", "seed = []"), "grid.seed: list should have at least 1 item"),
        (("[grid]", "[grid]\npartition = ['iid']"), "grid.partition splits real data"),
        (("[grid]", "[gird]"), "unknown key gird; did you mean 'grid'?"),
        (("sites = 2", "sites = 2\nmethod = 'mkcnt'"), "simulate.method: 'mkcnt' is not one of"),
        (("sites = 2", "sites = 2\nfed_set = {trim-beta = 0.9}"), "simulate.fed_set.trim_beta"),
        (("sites = 2", "sites = 2\nfed_set = {strategy = 'krum'}"), "strategy is a grid axis"),
        (("sites = 2", "sites = [2"), "not valid TOML"),
        (("set = [", 'set = ["seed=1", '), "seed is a grid axis; set it in [grid]"),
    ],
)
def test_a_bad_sweep_file_is_one_line_naming_file_and_key(tmp_path, edit, message):
    path = write(tmp_path, TINY.replace(*edit))
    with pytest.raises(UserError) as err:
        check_sweep(load_sweep(path))
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_the_command_refuses_a_bad_file_fast_with_exit_2(tmp_path):
    """Before torch is imported: the check is what runs, not a simulation."""
    bad = write(tmp_path, TINY.replace("sites = 2", "sitez = 2"))
    code = (
        "import sys; from fediqad.cli import main\n"
        f"sys.argv = ['fediqad', 'simulate', '--sweep', {str(bad)!r}, '--out', 'x']\n"
        "try:\n    main()\nfinally:\n    print('torch' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "300"}, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"error: {bad}: unknown key simulate.sitez; did you mean 'sites'?"
    ]
    assert proc.stdout.strip() == "False"
    assert not (tmp_path / "x").exists()


def test_other_simulate_flags_with_sweep_are_refused(tmp_path, monkeypatch, capsys):
    from fediqad.cli import main

    monkeypatch.setattr(sys, "argv", ["fediqad", "simulate", "--sweep", "s.toml", "--rounds", "3"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    assert "--rounds: with --sweep, put simulate settings in" in capsys.readouterr().err


def test_ctrl_c_stops_the_sweep_and_its_resume_command_finishes_it(tmp_path):
    """Waits for run 1's first checkpoint (an event), sends a terminal's Ctrl-C, then runs
    the command the message prints: the started run resumes, the other one starts."""
    import signal
    import time

    path = write(tmp_path, TINY.replace("rounds = 1", "rounds = 3").replace(", 1]", "]"))
    out = tmp_path / "runs"
    proc = subprocess.Popen(
        [sys.executable, "-m", "fediqad", "simulate", "--sweep", str(path), "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "COLUMNS": "300"}, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 900  # a hang guard, not a speed check
    while not (out / "fedavg-seed0" / "state.json").is_file():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "no checkpoint of the first run"
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "Run the same command again to continue" in stdout
    resume = next(line for line in stderr.splitlines() if line.startswith("interrupted"))
    assert f"fediqad simulate --sweep {path} --out {out} --resume" in resume
    runs = json.loads((out / "sweep-summary.json").read_text())["runs"]
    assert [r["status"] for r in runs] == ["interrupted", "not run"]
    assert not (out / "fedprox-seed0").exists()

    again = resume.split("Resume with: ", 1)[1].split()  # the printed command, as given
    assert again[:2] == ["fediqad", "simulate"]
    done = subprocess.run(
        [sys.executable, "-m", "fediqad", *again[1:]], capture_output=True, text=True,
        env={**os.environ, "COLUMNS": "300"}, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "fedavg-seed0: resuming" in done.stdout and "fedprox-seed0: running" in done.stdout
    runs = json.loads((out / "sweep-summary.json").read_text())["runs"]
    assert [(r["status"], r["rounds"]) for r in runs] == [("finished", 3), ("finished", 3)]


def test_the_ray_address_reaches_each_run(tmp_path):
    from simulations import sweep as sweep_module

    path = write(tmp_path, TINY.replace("sites = 2", 'sites = 2\nray_address = "10.0.0.1:6379"'))
    sweep = load_sweep(path)
    point = sweep.points()[0]
    request = sweep_module.request_for(sweep, point, tmp_path, resume=False)
    assert request.ray_address == "10.0.0.1:6379"
    plain = sweep_module.request_for(
        load_sweep(write(tmp_path, TINY)), point, tmp_path, resume=False
    )
    assert plain.ray_address is None  # no address: each run on a local Ray
