"""Which precisions a run may use: checked before torch is imported, so a refused
combination is one line and exit 2 (`fediqad train`), not a failure mid-epoch."""

from __future__ import annotations

from shared.config import RunConfig
from shared.errors import UserError
from shared.methods import get_method


def refuse_unsupported_precision(cfg: RunConfig) -> None:
    """Refuse fp16 where loss scaling cannot make it right (bf16 and fp32 always run).

    - The meta-auxiliary step (stage II, fused): its forward-mode product through
      BatchNorm overflows fp16's range (NaN at any loss scale, measured), and the
      first-order variant's finite differences drown in fp16 rounding.
    - Sample-level DP: Opacus clips each per-sample gradient of the *scaled* loss, so
      the clipping norm and the noise would be off by the loss scale."""
    if cfg.precision != "fp16":
        return
    if get_method(cfg.method).step == "meta-auxiliary":
        raise UserError(
            f"--precision fp16 cannot run {cfg.method}'s meta step (its forward-mode "
            "product overflows fp16 in BatchNorm); use bf16 or fp32"
        )
    if cfg.privacy.mode == "sample":
        raise UserError(
            "--precision fp16 with --dp sample: loss scaling would scale the per-sample "
            "gradients Opacus clips; use bf16 or fp32"
        )
