"""A typer app with only the data commands, for CliRunner tests."""

from __future__ import annotations

import typer

from fediqad.commands.data import register


def data_app() -> typer.Typer:
    app = typer.Typer()
    app.command("noop")(lambda: None)
    register(app)
    return app
