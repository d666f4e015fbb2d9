"""The DP options shared by `fediqad train` and `fediqad simulate` (docs/privacy.md)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from shared.errors import UserError

DpOpt = Annotated[
    str | None,
    typer.Option(
        "--dp",
        help="Differential privacy: off, sample (DP-SGD at each site) or "
        "client (site-level DP on the aggregate; simulate only).",
    ),
]
TargetEpsilonOpt = Annotated[
    float | None, typer.Option("--target-epsilon", help="Calibrate the noise to this epsilon.")
]
DeltaOpt = Annotated[float | None, typer.Option("--delta", help="DP delta (below 1/n).")]
NoiseMultiplierOpt = Annotated[
    float | None, typer.Option("--noise-multiplier", help="Gaussian noise multiplier sigma.")
]
MaxGradNormOpt = Annotated[
    float | None,
    typer.Option(
        "--max-grad-norm", help="Clipping norm C (per sample; per site update under --dp client)."
    ),
]


def privacy_flags(
    dp: str | None,
    target_epsilon: float | None,
    delta: float | None,
    noise_multiplier: float | None,
    max_grad_norm: float | None,
) -> dict[str, Any]:
    """Dotted RunConfig overrides for the sample-level options (None: not given)."""
    if dp is not None and dp not in ("off", "sample", "client"):
        raise UserError(f"--dp {dp!r}: choose off, sample or client")
    return {
        "privacy.mode": dp,
        "privacy.target_epsilon": target_epsilon,
        "privacy.delta": delta,
        "privacy.noise_multiplier": noise_multiplier,
        "privacy.max_grad_norm": max_grad_norm,
    }


def simulate_privacy_flags(
    dp: str | None,
    target_epsilon: float | None,
    delta: float | None,
    noise_multiplier: float | None,
    max_grad_norm: float | None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """RunConfig and FederationConfig overrides of simulate's DP flags: under --dp client
    the noise and clipping norm are the server's (per site update), else per sample."""
    run = privacy_flags(dp, target_epsilon, delta, noise_multiplier, max_grad_norm)
    fed: dict[str, Any] = {}
    if dp == "client":
        fed = {"dp_noise_multiplier": noise_multiplier, "dp_clipping_norm": max_grad_norm}
        run["privacy.noise_multiplier"] = run["privacy.max_grad_norm"] = None
    return run, fed
