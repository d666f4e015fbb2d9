"""Which settings combine with which DP mode; every refusal is one line for the user."""

from __future__ import annotations

from shared.config import RunConfig
from shared.errors import UserError

COMCL_SAMPLE_DP = (
    "sample-level DP is refused for CoMCL: its contrastive loss uses the other images of "
    "a batch as negatives, so no per-image sensitivity bound exists; use --dp client "
    "(site-level DP on the aggregate) instead"
)


def check_sample_dp(cfg: RunConfig) -> None:
    """Refuse sample-level DP settings that would have no honest guarantee."""
    pc = cfg.privacy
    if pc.mode != "sample":
        return
    if pc.noise_multiplier is None and pc.target_epsilon is None:
        raise UserError("--dp sample needs --noise-multiplier or --target-epsilon (and --delta)")
    from shared.models import META_METHODS

    if cfg.schedule == "fused" and cfg.method in META_METHODS:
        raise UserError(
            "--dp sample runs the paper schedule (stage I and II on independent Poisson "
            "batches); set schedule=paper"
        )


def refuse_contrastive(cfg: RunConfig) -> None:
    """CoMCL pretraining under sample-level DP has no per-sample bound: refuse it."""
    if cfg.privacy.mode == "sample":
        raise UserError(COMCL_SAMPLE_DP)
