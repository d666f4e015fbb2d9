"""Building the deploy/ images through the Docker SDK, online or fully offline.

Online: the Dockerfiles' defaults (a `python:*-slim` base pulled from a registry, torch
from the PyTorch index, the rest from PyPI). Offline: the base image and the wheelhouse
of `fediqad.deployment.offline`, and the build itself with no network at all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fediqad.deployment.offline import (
    WHEELHOUSE,
    DebianSource,
    Log,
    apt_source,
    build_base_image,
    cpu_torch_wheels,
    pip_find_links,
    prepare_wheelhouse,
)
from fediqad.deployment.specs import ImageSpec, Role, Variant, image_specs
from shared.errors import UserError


@dataclass(frozen=True)
class BuiltImage:
    tag: str
    size_bytes: int
    seconds: float


def _build_one(client: Any, root: Path, spec: ImageSpec, *, offline: bool, log: Log) -> None:
    """One `docker build`, its errors as one line (the last build output names the step)."""
    last = ""
    stream = client.api.build(
        path=str(root),
        dockerfile=spec.dockerfile,
        tag=spec.tag,
        buildargs=spec.buildargs,
        rm=True,
        forcerm=True,
        pull=not offline,
        network_mode="none" if offline else None,
        decode=True,
    )
    for chunk in stream:
        if "error" in chunk:
            detail = chunk["error"].strip().splitlines()[-1:] or ["?"]
            raise UserError(f"building {spec.tag} failed at {last or 'start'}: {detail[0]}")
        text = chunk.get("stream", "").strip()
        if text.startswith("Step "):
            last = text
            log(f"  {text}")


def build_images(
    client: Any,
    root: Path,
    roles: list[Role],
    variant: Variant,
    log: Log,
    *,
    offline: bool = False,
    source: DebianSource | None = None,
    cpu_pair: tuple[Path, Path] | None = None,
) -> list[BuiltImage]:
    """Build the images; with `offline` prepare (or reuse) the base image and wheelhouse
    first and build with `--network none`. Docker's layer cache is used throughout."""
    base = None
    if offline:
        if variant == "cuda":
            raise UserError(
                "--offline builds CPU images; build the CUDA hospital image online "
                "(fediqad deploy build hospital --variant cuda)"
            )
        base = build_base_image(client, source or apt_source(), log)
        pair = cpu_pair or cpu_torch_wheels(pip_find_links())
        if pair is None:
            log(
                "no CPU-only torch + torchvision wheel pair in pip's find-links: the "
                "wheelhouse gets the package index's torch (with its CUDA libraries)"
            )
        prepare_wheelhouse(root / WHEELHOUSE, root / "pyproject.toml", log, cpu_pair=pair)
    built = []
    for spec in image_specs(roles, variant, base_image=base, wheelhouse=offline):
        log(f"building {spec.tag} from {spec.dockerfile}{' (no network)' if offline else ''}")
        started = time.monotonic()
        _build_one(client, root, spec, offline=offline, log=log)
        size = int(client.images.get(spec.tag).attrs.get("Size", 0))
        built.append(BuiltImage(spec.tag, size, time.monotonic() - started))
    return built
