"""The `fediqad` command: one typer app, sub-commands registered from `fediqad.commands`.

Every `UserError` ends as one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from shared.errors import UserError

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


def main() -> None:
    _register()
    try:
        app()
    except UserError as err:
        err_console.print(f"[bold red]error:[/] {err}", highlight=False, soft_wrap=True)
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        err_console.print("interrupted; checkpoints already written are kept")
        sys.exit(130)


if __name__ == "__main__":
    main()
