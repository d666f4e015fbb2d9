"""FedBN's global model: whose BatchNorm statistics it carries (docs/federation.md).

Sites keep their BatchNorm; the server's copy never receives it (the federation loop
does not overwrite local keys). With held-out data the server re-estimates the Task
Net's statistics there before scoring (`server.central_eval`), and the round's
checkpoint keeps them; without, the checkpoint is marked site-specific.
"""

from __future__ import annotations

from typing import Any

from server.config import FederationConfig
from shared.checkpoint import BN_SERVER, BN_SITE_SPECIFIC


def batchnorm_note(fed: FederationConfig) -> dict[str, Any]:
    """Checkpoint metadata: whose BatchNorm statistics a FedBN global model carries."""
    if not fed.fedbn:
        return {}
    if fed.server_eval_data is None:
        return {"batchnorm": BN_SITE_SPECIFIC}
    return {"batchnorm": BN_SERVER, "batchnorm_data": str(fed.server_eval_data)}
