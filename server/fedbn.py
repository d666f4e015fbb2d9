"""FedBN's global model: whose BatchNorm statistics it carries (docs/federation.md).

Sites keep their BatchNorm; the server's copy has only the initial statistics. When
the server evaluates on its own held-out data it re-estimates the Task Net's
statistics there first (`server.central_eval`); `ServerBatchNorm` keeps them for the
round's checkpoint, or marks the checkpoint site-specific when there were none.
"""

from __future__ import annotations

from typing import Any, TypeVar

import torch

from server.config import FederationConfig
from server.layout import ModelLayout
from shared.checkpoint import BN_SERVER, BN_SITE_SPECIFIC
from shared.models import ModelBundle

T = TypeVar("T")


class ServerBatchNorm:
    """Does nothing unless the strategy is FedBN."""

    def __init__(self, enabled: bool, local_keys: frozenset[str] | set[str], data: object):
        self.enabled = enabled
        self.local_keys = frozenset(local_keys)
        self.data = data
        self.state: dict[str, torch.Tensor] | None = None

    @classmethod
    def for_run(cls, fed: FederationConfig, layout: ModelLayout) -> ServerBatchNorm:
        return cls(fed.fedbn, layout.local.get("task_net", set()), fed.server_eval_data)

    def new_round(self) -> None:
        self.state = None

    def keep(self, metrics: T, bundle: ModelBundle) -> T:
        """After server evaluation: keep the statistics it re-estimated; its metrics."""
        if self.enabled:
            state = bundle.task_net.state_dict()
            self.state = {k: state[k].clone() for k in self.local_keys}
        return metrics

    def apply(self, bundle: ModelBundle) -> dict[str, Any]:
        """Put the kept statistics into `bundle`; the checkpoint metadata saying which."""
        if not self.enabled:
            return {}
        if self.state is None:
            return {"batchnorm": BN_SITE_SPECIFIC}
        bundle.task_net.load_state_dict(self.state, strict=False)
        return {"batchnorm": BN_SERVER, "batchnorm_data": str(self.data)}
