"""A user's mistake is one line, exit 2, named as the user wrote it, before torch loads.

Each case runs the real entry point in a fresh interpreter and reports whether torch
was imported by the time the process ended (no timing: the import is what is slow).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import build_config
from shared.errors import UserError, did_you_mean

REPO = Path(__file__).resolve().parents[2]
# Runs `fediqad ARGS`; at exit prints whether torch was imported.
PROBE = (
    "import atexit, os, sys\n"
    "atexit.register(lambda: os.write(2, f'[torch {\"torch\" in sys.modules}]'.encode()))\n"
    "from fediqad.cli import main\n"
    "sys.argv = ['fediqad', *sys.argv[1:]]\n"
    "main()\n"
)


def run_fediqad(tmp_path: Path, *args: str) -> tuple[int, str]:
    env = {**os.environ, "COLUMNS": "300"}
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=600,
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["evaluate", "--checkpoint", "missing.ckpt", "--dataset", "EYEQ", "--data-root", "."],
            "error: missing.ckpt: --checkpoint: no such file",
        ),
        (["train", "--data-root", "nowhere"], "error: nowhere: --data-root: no such folder"),
        (
            ["train", "--data-root", ".", "--epochs", "0"],
            "error: --epochs: input should be greater than or equal to 1, got 0",
        ),
        (["train", "--data-root", ".", "--method", "mkcnt"], "did you mean 'mkcnet'?"),
        (["train", "--data-root", ".", "--dataset", "EYQE"], "did you mean 'EYEQ'?"),
        (
            ["train", "--data-root", ".", "--precision", "fp8"],
            "error: unknown --precision 'fp8'; choose one of auto, fp32, bf16, fp16",
        ),
        (["train", "--data-root", ".", "--precision", "fp16"], "use bf16 or fp32"),
        (["pretrain", "--data-root", ".", "--precision", "bf15"], "unknown --precision 'bf15'"),
        (
            ["train", "--data-root", ".", "--set", "optim.lrr=0.1"],
            "error: unknown field 'optim.lrr' in --set (not in section optim); "
            "did you mean 'optim.lr'?",
        ),
        (
            ["simulate", "--rounds", "-1"],
            "error: --rounds: input should be greater than or equal to 1, got -1",
        ),
        (["simulate", "--strategy", "fedavgg"], "did you mean 'fedavg'?"),
        (["simulate", "--precision", "fp16"], "cannot run mkcnet's meta step"),
        (["simulate", "--backend", "rey"], "did you mean 'ray'?"),
        (["simulate", "--min-replies", "5"], "error: --min-replies (5) cannot exceed --sites (3)"),
    ],
)
def test_user_errors_are_one_line_before_torch_is_imported(tmp_path, args, message):
    code, err = run_fediqad(tmp_path, *args)
    assert code == 2, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], err
    assert "Traceback" not in err
    assert "[torch False]" in err, f"torch was imported before the error: {err}"
    assert not (tmp_path / "runs").exists()  # nothing written for a refused command


def test_simulate_refusal_names_only_simulate_flags(tmp_path):
    (tmp_path / "runs" / "default").mkdir(parents=True)
    (tmp_path / "runs" / "default" / "state.json").write_text('{"round": 1}')
    code, err = run_fediqad(tmp_path, "simulate", "--rounds", "2")
    assert code == 2
    assert "pass --resume to continue it or --name for a new one" in err
    assert "--run-dir" not in err


def test_a_typo_in_a_config_file_names_the_file_and_the_closest_field(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text("[optim]\nbatch_sise = 8\n")
    with pytest.raises(UserError) as err:
        build_config(config_file=config)
    assert str(err.value) == (
        f"unknown field 'optim.batch_sise' in {config} (not in section optim); "
        "did you mean 'optim.batch_size'?"
    )
    config.write_text("[optimm]\nlr = 0.1\n")
    with pytest.raises(UserError, match=r"unknown field 'optimm' .*did you mean 'optim'\?$"):
        build_config(config_file=config)
    config.write_text("method = 'vanila'\n")
    with pytest.raises(
        UserError, match=rf"^field 'method' in {config}: 'vanila' is not one of .*'vanilla'\?$"
    ):
        build_config(config_file=config)


def test_did_you_mean_offers_only_near_misses():
    assert did_you_mean("fedprx", ["fedavg", "fedprox"]) == "; did you mean 'fedprox'?"
    assert did_you_mean("xyz", ["fedavg", "fedprox"]) == ""
