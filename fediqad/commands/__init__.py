"""CLI command groups; each module owns one area and exposes `register(app)`."""

from __future__ import annotations

import importlib

import typer

# Modules are listed here once; each defines `register(app: typer.Typer) -> None`.
COMMAND_MODULES = [
    "core",
    "bench_steps",
    "bench_precision",
    "data",
    "federation",
    "contrastive",
    "detector",
    "evidence",
    "report",
    "certs",
    "deploy",
    "bench_deploy",
    "bench_scale",
    "methods",
]


def register_all(app: typer.Typer) -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"fediqad.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"fediqad.commands.{name}":
                continue  # area not built yet
            raise
        module.register(app)
