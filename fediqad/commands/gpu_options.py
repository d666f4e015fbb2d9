"""`--precision` for the commands that time or run steps on a GPU, checked before torch
starts (the names come from `shared.config.PrecisionName`)."""

from __future__ import annotations

from typing import Annotated, get_args

import typer

from shared.config import PrecisionName
from shared.errors import unknown_choice

PRECISIONS: tuple[str, ...] = get_args(PrecisionName)

PrecisionOpt = Annotated[
    str | None,
    typer.Option(
        "--precision",
        help="auto (bf16 on GPUs that support it, else fp32), fp32, bf16 or fp16.",
    ),
]


def check_precision(precision: str | None) -> None:
    """A misspelt --precision is one line and exit 2, before torch is imported."""
    if precision is not None and precision not in PRECISIONS:
        raise unknown_choice("--precision", precision, PRECISIONS)
