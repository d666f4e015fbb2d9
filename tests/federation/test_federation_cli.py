"""The federation commands' user errors: one line, exit code 2, nothing started."""

from __future__ import annotations

import sys

import pytest

from fediqad.cli import main

pytestmark = pytest.mark.timeout(60)  # a mistake slipping through would start a real run


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["fediqad", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize(
    "args, message",
    [
        # TLS is the default: without certificates both refuse to start (not a plaintext fallback)
        (["server", "--rounds", "1"], "CA certificate not found"),
        (
            ["client", "--server", "h:1", "--data-path", ".", "--site-name", "a"],
            "CA certificate not found",
        ),
        (
            ["client", "--server", "nohost", "--data-path", ".", "--site-name", "a", "--insecure"],
            "HOST:PORT",
        ),
        (["simulate", "--dataset", "EYEQ"], "--data-root"),
        (
            ["simulate", "--fed-set", "trim_betta=0.1"],
            "unknown federation setting 'trim_betta'; did you mean 'trim-beta'?",
        ),
        (["simulate", "--fed-set", "trim-beta=0.7"], "--fed-set trim-beta: input should be"),
        (["simulate", "--strategy", "fedsgd"], "strategy"),
    ],
)
def test_mistakes_end_in_one_line_and_exit_2(monkeypatch, capsys, tmp_path, args, message):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(monkeypatch, capsys, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_resume_without_a_run_is_refused(monkeypatch, capsys, tmp_path):
    code, err = run_cli(monkeypatch, capsys, "simulate", "--resume", "--out", str(tmp_path))
    assert code == 2 and "nothing to resume" in err
