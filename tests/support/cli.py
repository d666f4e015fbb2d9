"""The `fediqad` command line inside the test process.

`cli_for(register, ...)` builds an app with just the given command modules (the
exception a command raises is kept for the test); `run_fediqad(...)` goes through the
real entry point `fediqad.cli.main`, so the exit code and the one-line error on stderr
are the user's, without starting a Python process.
"""

from __future__ import annotations

import contextlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass

import typer
from typer.testing import CliRunner, Result

# A slim model at 32 px on two CPU threads: the options most command tests pass.
TINY = ["--backbone", "vgg16_bn_slim", "--image-size", "32", "--batch-size", "8"]
CPU = ["--device", "cpu", "--threads", "2"]


class InProcessCli:
    """An in-process `fediqad` with some command modules (see `cli_for`)."""

    def __init__(self, registers: tuple[Callable[[typer.Typer], None], ...]):
        self.app = typer.Typer()
        for register in registers:
            register(self.app)
        self.runner = CliRunner()

    def __call__(self, *args: object, ok: bool = True) -> Result:
        """Run a command; unless `ok=False`, a non-zero exit fails the test."""
        result = self.runner.invoke(self.app, [str(a) for a in args])
        if ok and result.exit_code != 0:
            raise AssertionError(f"exit {result.exit_code}: {result.output}") from result.exception
        return result

    def user_error(self, *args: object) -> str:
        """The message of the UserError the command ends with: what `fediqad` prints after
        `error:` (exit 2), checked to be one line."""
        from shared.errors import UserError

        result = self(*args, ok=False)
        assert isinstance(result.exception, UserError), (result.exception, result.output)
        message = str(result.exception)
        assert "\n" not in message and "Traceback" not in message, message
        return message


def cli_for(*registers: Callable[[typer.Typer], None]) -> InProcessCli:
    """An in-process `fediqad` with the given command modules; `cli(..., ok=False)` lets
    a failing command through for the test to inspect."""
    return InProcessCli(registers)


@dataclass
class Exit:
    code: int
    stdout: str
    stderr: str

    def one_line_error(self, fragment: str) -> str:
        """The single `error: ...` line of a user error (exit 2, no traceback)."""
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        assert self.code == 2, (self.code, self.stderr)
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        assert fragment in lines[0], (fragment, lines[0])
        return lines[0]


def run_fediqad(*args: object) -> Exit:
    """`fediqad ARGS` through `fediqad.cli.main` in this process: its exit code, stdout
    and stderr. The commands it registers on the shared app are removed afterwards."""
    from fediqad import cli

    commands, groups = list(cli.app.registered_commands), list(cli.app.registered_groups)
    out, err = io.StringIO(), io.StringIO()
    argv = sys.argv
    sys.argv = ["fediqad", *map(str, args)]
    code: int | str | None = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exit_:
        code = exit_.code
    finally:
        sys.argv = argv
        cli.app.registered_commands[:] = commands
        cli.app.registered_groups[:] = groups
    if code is None:
        code = 0
    assert isinstance(code, int), code
    return Exit(code, out.getvalue(), err.getvalue())
