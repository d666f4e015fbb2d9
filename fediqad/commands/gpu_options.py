"""GPU options: `--precision` (names from `shared.config.PrecisionName`), simulate's
`--device` / `--gpus-per-site` and the site's `fediqad client --device`, checked before
the heavy imports where that is possible."""

from __future__ import annotations

from typing import Annotated, Any, get_args

import typer

from shared.config import PrecisionName
from shared.errors import UserError, unknown_choice

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


ChannelsLastOpt = Annotated[
    bool | None,
    typer.Option(
        "--channels-last/--no-channels-last",
        help="channels-last memory format for models and images (default: on for CUDA).",
    ),
]


def precision_flags(precision: str | None, channels_last: bool | None) -> dict[str, Any]:
    """Config keys of --precision / --channels-last (None: not given, the config's),
    after checking the precision's name."""
    check_precision(precision)
    return {"precision": precision, "channels_last": channels_last}


GpusPerSiteOpt = Annotated[
    float | None,
    typer.Option(
        "--gpus-per-site",
        help="Ray GPU share per site, e.g. 0.25 (default: the sites that run at once "
        "share the GPUs; 0: train on the CPU).",
    ),
]
SitesDeviceOpt = Annotated[
    str | None,
    typer.Option("--device", help="Where the sites train: cpu, cuda or auto (default)."),
]
SiteDeviceOpt = Annotated[
    str | None,
    typer.Option(
        "--device", help="What this site trains on: cpu, cuda or auto (default: the run's)."
    ),
]


def check_site_device(device: str | None) -> None:
    """--device of `fediqad client`: known, and CUDA present before the site joins."""
    if device is None or device in ("cpu", "auto"):
        return
    if device != "cuda":
        raise UserError(f"--device must be cpu, cuda or auto, got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise UserError("--device cuda: CUDA is not available here; use cpu or auto")
