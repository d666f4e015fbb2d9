"""Which settings combine with which DP mode; every refusal is one line for the user."""

from __future__ import annotations

from typing import Any

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
    from shared.methods import get_method

    if cfg.schedule == "fused" and get_method(cfg.method).step == "meta-auxiliary":
        raise UserError(
            "--dp sample runs the paper schedule (stage I and II on independent Poisson "
            "batches); set schedule=paper"
        )
    pretrained_privacy(cfg)


def pretrained_privacy(cfg: RunConfig) -> dict[str, Any] | None:
    """Where a DP run's initial weights (`--init-encoder`, `model.pretrained_weights`)
    come from, and the epsilon they already spent; refused unless public or DP-trained.

    Weights trained without DP on a site's private data would leak it outside the
    reported epsilon. A DP-trained encoder's (epsilon, delta) is added to the run's
    (basic composition); public weights cost nothing but must be declared so
    (`privacy.public_pretrained=true`), since a file cannot prove what it saw.
    """
    path = cfg.model.pretrained_weights
    if path is None:
        return None
    if cfg.privacy.public_pretrained:
        return {
            "source": str(path),
            "provenance": "public (declared)",
            "epsilon": 0.0,
            "delta": 0.0,
        }
    provenance = _provenance(path)
    mode, epsilon = provenance.get("privacy"), provenance.get("epsilon")
    if mode in ("sample", "client") and epsilon is not None:
        return {
            "source": str(path),
            "provenance": f"DP-trained ({mode}-level) on {provenance.get('dataset', '?')}",
            "epsilon": float(epsilon),
            "delta": float(provenance.get("delta") or 0.0),
        }
    what = (
        f"pretrained without DP on {provenance.get('dataset')}"
        if provenance
        else "of unknown provenance (no fediqad encoder record)"
    )
    raise UserError(
        f"--dp sample: the initial weights are {what}; weights trained on private data "
        "without DP are not covered by epsilon. Use a DP-trained encoder, or public "
        "weights declared with --set privacy.public_pretrained=true, or drop --init-encoder",
        path=path,
    )


def _provenance(path: object) -> dict[str, Any]:
    """An encoder file's provenance record; {} for a plain weights file."""
    from pathlib import Path

    import torch

    if not Path(str(path)).is_file():
        return {}  # the model builder reports a missing file
    try:
        data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - unreadable: the model builder says why
        return {}
    if isinstance(data, dict) and isinstance(data.get("provenance"), dict):
        return dict(data["provenance"])
    if isinstance(data, dict) and data.get("format") == "fediqad-encoder":
        config = data.get("config") or {}  # written before provenance was recorded
        return {
            "dataset": (config.get("dataset") or {}).get("name"),
            "privacy": (config.get("privacy") or {}).get("mode", "off"),
        }
    return {}


def refuse_contrastive(cfg: RunConfig) -> None:
    """CoMCL pretraining under sample-level DP has no per-sample bound: refuse it."""
    if cfg.privacy.mode == "sample":
        raise UserError(COMCL_SAMPLE_DP)
