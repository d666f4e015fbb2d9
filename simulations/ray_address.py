"""The one place a simulation is pointed at an existing Ray cluster (`--ray-address`).

`SimulationRequest.ray_address` comes with issue 15 part A (attach to a cluster started
with `ray start --head`); the sweep and the scale benchmark pass the address through
here, so a build without that field refuses the flag with one line instead of running
on a private local Ray by mistake.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from shared.errors import UserError

FIELD = "ray_address"


def ray_address_fields(address: str | None, flag: str = "--ray-address") -> dict[str, Any]:
    """`SimulationRequest` keyword arguments that attach the run to `address` ({} if None)."""
    if not address:
        return {}
    from simulations.launch import SimulationRequest

    if FIELD not in {f.name for f in dataclasses.fields(SimulationRequest)}:
        raise UserError(
            f"{flag} {address}: this build of fediqad cannot attach to a Ray cluster yet "
            "(simulate --ray-address); drop the option to use a local Ray"
        )
    return {FIELD: address}
