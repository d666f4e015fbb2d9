"""The `fediqad` command: one typer app, sub-commands registered from `fediqad.commands`.

Every `UserError` ends as one line on stderr and exit code 2, never a traceback.
Ctrl-C ends any command with exit code 130, naming what was saved and how to resume.
"""

from __future__ import annotations

import shlex
import sys

import typer
from rich.console import Console

from fediqad.preflight import check_input_paths
from shared.errors import UserError
from shared.interrupt import (
    INTERRUPTED_EXIT,
    StopRequested,
    exit_now,
    install_sigint_handler,
    last_saved,
    stop_requested,
)

app = typer.Typer(
    name="fediqad",
    help="Federated image-quality-aware medical diagnosis (MKCNet, CoMCL) on Flower.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
err_console = Console(stderr=True)


def _register() -> None:
    # Each module adds its commands to `app`; imported here so `fediqad --help` lists them.
    from fediqad.commands import register_all

    register_all(app)


RESUMABLE = ("train", "simulate", "server")  # commands with a --resume flag


def interrupted_message(argv: list[str]) -> str:
    """What Ctrl-C kept, and the command that continues from it."""
    saved = last_saved()
    command = next((a for a in argv if not a.startswith("-")), "")
    again = shlex.join(["fediqad", *argv])
    if command in RESUMABLE:
        if saved is None and "--resume" not in argv:
            return f"interrupted before the first checkpoint; start again with: {again}"
        extra = [] if "--resume" in argv else ["--resume"]
        if (
            command == "train"
            and saved is not None
            and not any(a == "--out" or a.startswith("--out=") for a in argv)
        ):
            extra = ["--out", str(saved.parent), *extra]  # train --resume needs the folder
        resume = shlex.join(["fediqad", *argv, *extra])
        where = f" (last saved {saved})" if saved is not None else ""
        return f"interrupted; everything saved is kept{where}. Resume with: {resume}"
    if saved is not None:
        return f"interrupted; files already written are kept (last saved {saved})"
    return "interrupted"


def main() -> None:
    install_sigint_handler()
    _register()
    try:
        check_input_paths(sys.argv[1:])  # before any command imports torch
        app()
    except UserError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        exit_now(err.exit_code)
    except SystemExit as done:  # typer turns Ctrl-C into a silent exit 130
        if done.code != INTERRUPTED_EXIT or not stop_requested():
            exit_now(done.code if isinstance(done.code, int) else 1)
        _interrupted()
    except (KeyboardInterrupt, StopRequested):
        _interrupted()


def _interrupted() -> None:
    err_console.print(interrupted_message(sys.argv[1:]), highlight=False, soft_wrap=True)
    exit_now(INTERRUPTED_EXIT, hard=True)


if __name__ == "__main__":
    main()
