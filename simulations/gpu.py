"""Where the simulated sites train: the device (`--device`) and each site's GPU share
(`--gpus-per-site`), which becomes the Ray client resource `num_gpus`.

Ray gives an actor with a GPU share its own CUDA_VISIBLE_DEVICES, so "cuda" in a site
is the GPU Ray assigned it; sites with no share train on the CPU ("cpu", never
"auto": an actor that Ray gave no GPU must not use one behind its back). On a machine
with GPUs, `auto` trains the sites on them, sharing each GPU between the sites that
run at once unless `--gpus-per-site` says otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shared.errors import UserError, unknown_choice

DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class SitePlacement:
    device: str  # "cpu" or "cuda": what every site trains on
    gpus_per_site: float  # Ray's num_gpus per site (0 on the CPU)
    total_gpus: int | None  # GPUs Ray may hand out (None: Ray's own count)


def check_gpu_flags(device: str | None, gpus_per_site: float | None) -> None:
    """Contradictory or malformed flags, before torch or Ray start."""
    if device is not None and device not in DEVICES:
        raise unknown_choice("--device", device, DEVICES)
    if gpus_per_site is None:
        return
    if gpus_per_site < 0:
        raise UserError(f"--gpus-per-site must be 0 or more, got {gpus_per_site:g}")
    if gpus_per_site > 1 and not float(gpus_per_site).is_integer():
        raise UserError(
            f"--gpus-per-site {gpus_per_site:g}: Ray shares a GPU in fractions up to 1 "
            "or gives whole GPUs; use e.g. 0.25, 1 or 2"
        )
    if device == "cpu" and gpus_per_site > 0:
        raise UserError(
            f"--gpus-per-site {gpus_per_site:g} trains the sites on a GPU, --device cpu "
            "on the CPU; drop one of them"
        )


def site_placement(
    device: str | None,
    gpus_per_site: float | None,
    sites_at_once: int,
    cuda_devices: int | None = None,
) -> SitePlacement:
    """The sites' device and GPU share; `cuda_devices` (default: torch's count) is for tests."""
    check_gpu_flags(device, gpus_per_site)
    if cuda_devices is None:
        import torch

        cuda_devices = torch.cuda.device_count() if torch.cuda.is_available() else 0
    wants_gpu = device == "cuda" or bool(gpus_per_site)
    if not wants_gpu and (device == "cpu" or gpus_per_site == 0 or cuda_devices == 0):
        return SitePlacement("cpu", 0.0, None)
    if cuda_devices == 0:
        flag = "--device cuda" if device == "cuda" else f"--gpus-per-site {gpus_per_site:g}"
        raise UserError(f"{flag}: CUDA is not available here; use --device cpu")
    if gpus_per_site and gpus_per_site > cuda_devices:
        raise UserError(
            f"--gpus-per-site {gpus_per_site:g}: this machine has {cuda_devices} GPU(s)"
        )
    share = gpus_per_site or min(
        1.0, math.floor(1000 * cuda_devices / max(1, sites_at_once)) / 1000
    )
    return SitePlacement("cuda", share, cuda_devices)
