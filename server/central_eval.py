"""Optional server-side evaluation of the global model on a held-out set the server owns."""

from __future__ import annotations

import torch

from server.config import FederationConfig
from server.federation import EvaluateFn
from shared.data.dataset import make_loader, open_split
from shared.evaluation import evaluate, reestimate_batchnorm
from shared.models import ModelBundle
from shared.training import resolve_device


def make_evaluate_fn(fed: FederationConfig) -> EvaluateFn | None:
    """None without `server_eval_data`; the data is opened now so errors surface early.

    Under FedBN the global Task Net has no trained BatchNorm statistics (they stay at
    the sites), so they are first re-estimated on this held-out data (AdaBN-style:
    labels unused); the round's `global.pt` keeps them (docs/federation.md)."""
    if fed.server_eval_data is None:
        return None
    cfg = fed.run
    dataset = open_split(fed.server_eval_data, cfg, fed.server_eval_split)
    loader = make_loader(dataset, cfg, train=False)
    device = resolve_device(cfg.device)

    def evaluate_global(bundle: ModelBundle) -> dict[str, float]:
        if fed.fedbn:
            reestimate_batchnorm(bundle.task_net, loader, device)
        with torch.inference_mode():
            metrics = evaluate(bundle, loader, cfg, device)
        bundle.to("cpu")
        return metrics

    return evaluate_global
