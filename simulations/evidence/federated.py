"""Part (b): federated (FedAvg, FedProx, FedBN) vs each site alone vs centralised,
under IID sites and Dirichlet-quality skew.

The federation runs in-process (no Ray start-up) but through the project's own pieces:
the strategy is `server.strategies.build_strategy` (Flower's FedAvg / FedProx), the
aggregation `server.aggregation.aggregate` over a `server.layout.ModelLayout` (FedBN:
BatchNorm state stays local), each site trains with `shared.training.LocalTrainer`
whose optimiser state persists across rounds as a deployed site's does, and FedProx's
proximal term is `client.proximal.add_proximal_term`. Every site scores its own test
images with the model it would use (global weights; FedBN: global weights and its own
BatchNorm; alone: its own model) and the predictions are pooled.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import torch
from flwr.app import Message, MetricRecord, RecordDict

from client.proximal import add_proximal_term
from server.aggregation import Update, aggregate
from server.config import validated
from server.layout import ModelLayout
from server.strategies import aggregates_buffers, build_strategy
from shared.config import RunConfig
from shared.models import ModelBundle, build_models
from shared.records import METRICS, NUM_EXAMPLES
from shared.training import LocalTrainer
from simulations.evidence.common import (
    Say,
    Timer,
    loader,
    make_data,
    run_config,
    score,
    test_predictions,
    train_central,
)
from simulations.evidence.settings import EvidenceSettings
from simulations.site_partition import partition


def _in_process_identity() -> None:
    """Messages built outside a Flower runtime need a task identity (the runtime sets
    it); this process is its own one-run 'runtime'."""
    from flwr.supercore.task_identity import TaskIdentity

    try:
        TaskIdentity.run_id  # noqa: B018 - the property raises when unset
    except RuntimeError:
        TaskIdentity.task_id, TaskIdentity.run_id, TaskIdentity.node_id = 1, 1, 0


def _reply(site: int, n: int) -> Message:
    content = RecordDict({METRICS: MetricRecord({NUM_EXAMPLES: float(n)})})
    return Message(content, dst_node_id=site + 1, message_type="train")


def _state(bundle: ModelBundle, layout: ModelLayout) -> dict[str, dict[str, Any]]:
    return {
        name: {
            k: v.detach().cpu().numpy().copy()
            for k, v in module.state_dict().items()
            if k in set(layout.shared_keys(name))
        }
        for name, module in bundle.modules().items()
    }


def _load(bundle: ModelBundle, arrays: dict[str, dict[str, Any]]) -> None:
    for name, module in bundle.modules().items():
        own = module.state_dict()
        for key, value in arrays.get(name, {}).items():
            own[key] = torch.as_tensor(value, dtype=own[key].dtype).reshape(own[key].shape)
        module.load_state_dict(own)


def federate(
    cfg: RunConfig, sites: list[Path], strategy: str, s: EvidenceSettings, run_dir: Path
) -> list[ModelBundle]:
    """Rounds of local training + aggregation; each site's final model."""
    fed = validated(
        run=cfg, strategy=strategy, num_rounds=s.rounds, local_epochs=s.local_epochs,
        min_nodes=len(sites), proximal_mu=s.proximal_mu, run_dir=run_dir,
    )  # fmt: skip
    flower = build_strategy(fed)
    _in_process_identity()
    torch.manual_seed(cfg.seed)
    start = build_models(cfg)
    layout = ModelLayout.from_bundle(start, fedbn=fed.fedbn)
    with_buffers = aggregates_buffers(fed)
    global_arrays = _state(start, layout)
    bundles = [copy.deepcopy(start) for _ in sites]
    trainers = [LocalTrainer(cfg, b, "cpu") for b in bundles]
    mu = fed.proximal_mu if strategy == "fedprox" else 0.0
    for rnd in range(1, s.rounds + 1):
        updates = []
        for k, (root, bundle, trainer) in enumerate(zip(sites, bundles, trainers, strict=True)):
            _load(bundle, global_arrays)
            data = loader(root, cfg, "train", True, cfg.seed * 1000 + rnd * 10 + k)
            hooks = add_proximal_term([trainer.task_optimizer, trainer.meta_optimizer], mu)
            trainer.fit(data, epochs=s.local_epochs)
            for hook in hooks:
                hook.remove()
            n = len(data.dataset)
            updates.append(Update(f"site_{k}", _state(bundle, layout), float(n), _reply(k, n)))
        merged, _ = aggregate(flower, rnd, layout, updates, with_buffers=with_buffers)
        for name, arrays in merged.items():
            global_arrays[name].update(arrays)
    for bundle in bundles:
        _load(bundle, global_arrays)  # FedBN: shared weights global, BatchNorm the site's own
    return bundles


def run_federated(out: Path, s: EvidenceSettings, say: Say) -> list[dict[str, Any]]:
    logging.getLogger("flwr").setLevel(logging.WARNING)  # no INFO line per aggregation
    rows = []
    epochs = s.rounds * s.local_epochs
    for seed in s.seeds:
        root = make_data(out, s, seed, s.fed_image_size)
        cfg = run_config(s, s.federated_method, seed, image_size=s.fed_image_size, epochs=epochs)
        clock = Timer()
        central = train_central(cfg, root, epochs)
        row = {"part": "federated", "seed": seed, "split": "-", "setting": "centralised"}
        rows.append({**row, **score([test_predictions(central, root, cfg)]), "seconds": clock()})
        for scheme in ("iid", f"dirichlet-quality:{s.dirichlet_alpha}"):
            sites_dir = out / f"sites-seed{seed}-{scheme.split(':')[0]}"
            sites = partition(root, "EYEQ", s.sites, scheme, sites_dir, seed=seed, force=True)
            site_roots = [p.parent for p in sites]
            base = {"part": "federated", "seed": seed, "split": scheme}
            clock = Timer()
            alone = [
                train_central(cfg, r, epochs) for r in site_roots
            ]  # each site with its own data only, same epochs
            preds = [test_predictions(b, r, cfg) for b, r in zip(alone, site_roots, strict=True)]
            rows.append({**base, "setting": "site alone", **score(preds), "seconds": clock()})
            for strategy in s.strategies:
                clock = Timer()
                final = federate(cfg, site_roots, strategy, s, out / "fed-runs" / strategy)
                preds = [
                    test_predictions(b, r, cfg) for b, r in zip(final, site_roots, strict=True)
                ]
                rows.append({**base, "setting": strategy, **score(preds), "seconds": clock()})
                say(
                    f"(b) seed {seed} {scheme} {strategy}: kappa {rows[-1]['kappa']:.3f}, "
                    f"LQ kappa {rows[-1]['kappa_lq']:.3f} ({clock():.0f} s)"
                )
    return rows
