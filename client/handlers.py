"""One hospital's work on a message: what the site worker (deployment) and the
in-process ClientApp (simulation, tests) run.

train: load the global Task Net and Meta Learner, run the configured local epochs of
the configured method on the site's own training split, reply with both models, the
example count and the training metrics. evaluate: load the global Task Net, reply
with overall and HQ / LQ metrics on the site's evaluation split.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from functools import partial

import torch
from flwr.app import ConfigRecord, Context, Message, MessageType, MetricRecord, RecordDict

from client.proximal import add_proximal_term
from client.site import (
    Site,
    SiteError,
    eval_split_name,
    resolve_site,
    site_device,
    site_split,
    where_this_runs,
)
from client.state import (
    ledger_file,
    load_ledger,
    load_optimizer,
    restore_local,
    save_ledger,
    save_local,
    save_optimizer,
    write_ledger_file,
)
from client.worker_process import report_fatal
from shared.config import RunConfig
from shared.contrastive.protocol import MESSAGE_TYPE as COMCL_MESSAGE
from shared.data.dataset import make_loader
from shared.models import ModelBundle, build_models
from shared.privacy.budget import BUDGET_EXHAUSTED, DP_UNIT_WEIGHT, EPSILON_BUDGET, PrivacyLedger
from shared.records import (
    CFG_DTYPE,
    CFG_EPOCHS,
    CFG_EVAL_SPLIT,
    CFG_FEDBN,
    CFG_NUM_ROUNDS,
    CFG_PROX_MU,
    CFG_ROUND,
    CFG_RUN,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    SITE,
    batchnorm_keys,
    load_record,
    module_record,
)
from shared.training import LocalTrainer
from shared.wire_pack import any_packed, pack, unpack


def _config(msg: Message) -> tuple[RunConfig, ConfigRecord]:
    record = msg.content.config_records[CONFIG]
    return RunConfig.model_validate_json(str(record[CFG_RUN])), record


def _seed(cfg: RunConfig, record: ConfigRecord, site: Site) -> int:
    """Per run seed, round and site: reproducible, and different streams at each site."""
    return (
        cfg.seed * 1_000_003 + int(record.get(CFG_ROUND, 0)) * 7919 + zlib.crc32(site.name.encode())
    ) % 2**63


_KEPT: dict[str, ModelBundle] = {}  # the site worker's model, kept between messages


def _bundle(cfg: RunConfig, site: Site, seed: int, keep: bool) -> ModelBundle:
    """A fresh bundle, or (`keep`) the one this worker built for this site and config.

    Kept only where a message overwrites every weight (no FedBN, no Opacus, which
    rewrites modules); the seed is set again after, so keeping changes no result."""
    torch.manual_seed(seed)
    key = f"{site.name}|{cfg.model_dump_json()}"
    if not keep:
        bundle = build_models(cfg)
    elif key in _KEPT:
        bundle = _KEPT[key]
    else:
        _KEPT.clear()  # one site, one config at a time: memory stays bounded
        bundle = _KEPT[key] = build_models(cfg)
    torch.manual_seed(seed)  # the same random stream whether built now or kept
    return bundle


def _prepare(
    msg: Message,
    context: Context,
    site: Site,
    models: Sequence[str],
    threads: int | None,
    keep_models: bool = False,
) -> tuple[RunConfig, ConfigRecord, ModelBundle, dict[str, set]]:
    """Config, a bundle holding the global weights (and this site's BatchNorm under FedBN)."""
    cfg, record = _config(msg)
    if threads or cfg.threads:
        torch.set_num_threads(int(threads or cfg.threads))  # type: ignore[arg-type]
    fedbn = bool(record.get(CFG_FEDBN, False))
    keep = keep_models and not fedbn and cfg.privacy.mode != "sample"
    bundle = _bundle(cfg, site, _seed(cfg, record, site), keep)
    local: dict[str, set] = {}
    for name in models:
        module = bundle.modules()[name]
        local[name] = batchnorm_keys(module) if fedbn else set()
        load_record(module, msg.content.array_records[name], allow_missing=local[name])
        if fedbn:
            restore_local(context, name, module)
    return cfg, record, bundle, local


def _reply(msg: Message, site: Site, records: dict, metrics: dict[str, float]) -> Message:
    content = RecordDict(records)
    content[METRICS] = MetricRecord({k: float(v) for k, v in metrics.items()})
    content[SITE] = ConfigRecord({"name": site.name, **where_this_runs()})
    return Message(content, reply_to=msg)


def train(
    msg: Message,
    context: Context,
    site: Site,
    threads: int | None = None,
    budgets: Mapping[str, float] | None = None,
    keep_models: bool = False,
) -> Message:
    """Local epochs (DP-SGD under sample-level DP); `budgets`: per-site epsilon limits
    by site name, the simulation's stand-in for node config `epsilon-budget`."""
    start = time.perf_counter()
    models = [m for m in ("task_net", "meta_learner") if m in msg.content.array_records]
    cfg, record, bundle, local = _prepare(msg, context, site, models, threads, keep_models)
    device = site_device(context, cfg)
    dataset = site_split(site, cfg, "train", augment=cfg.augment)
    epochs = int(record.get(CFG_EPOCHS, 1))
    generator = torch.Generator().manual_seed(_seed(cfg, record, site) + 1)
    ledger = dp_trainer = None
    if cfg.privacy.mode == "sample":  # Opacus is imported by DP runs only (~1 s per process)
        from shared.privacy.trainer import (
            DPLocalTrainer,
            planned_steps,
            poisson_loader,
            sampling_generator,
        )

        own = context.node_config.get(EPSILON_BUDGET, (budgets or {}).get(site.name))
        ledger = _ledger(context, cfg, record, len(dataset), epochs, own)
        if ledger.exhausted(planned_steps(cfg, len(dataset), epochs)):
            return _budget_spent(msg, site, ledger, len(dataset), start)
        dp_trainer = DPLocalTrainer(cfg, bundle, device, ledger)
        trainer: LocalTrainer = dp_trainer
        loader = poisson_loader(dataset, cfg, sampling_generator(cfg))
    else:
        trainer = LocalTrainer(cfg, bundle, device)
        loader = make_loader(dataset, cfg, train=True, generator=generator)
    saved = load_optimizer(context)
    if saved is not None:
        trainer.load_optimizer_state(saved)
    hooks = add_proximal_term(
        [trainer.task_optimizer, trainer.meta_optimizer], float(record.get(CFG_PROX_MU, 0.0))
    )
    fit = trainer.fit(loader, epochs=epochs)
    for hook in hooks:
        hook.remove()
    if dp_trainer is not None:
        dp_trainer.close()
    save_optimizer(context, trainer.optimizer_state())
    bundle.to("cpu")
    dtype = str(record.get(CFG_DTYPE, "float32"))
    out = {}
    for name in models:
        module = bundle.modules()[name]
        if local[name]:
            save_local(context, name, module, local[name])
        out[name] = module_record(module, dtype=dtype, exclude=local[name])
    metrics = {k: v for k, v in fit.items() if isinstance(v, int | float)}
    # epochs this site has trained in this run: continues across rounds (and worker restarts)
    metrics["site_epochs"] = float(trainer.task_scheduler.last_epoch)
    if ledger is not None:
        save_ledger(context, ledger)
        metrics.update(ledger.metrics())
        if ledger_file(context) is not None:
            write_ledger_file(ledger_file(context), ledger)
    if cfg.privacy.mode == "client":
        metrics[DP_UNIT_WEIGHT] = 1.0  # client-level DP averages sites uniformly
    metrics[NUM_EXAMPLES] = float(len(dataset))
    metrics["handler_seconds"] = time.perf_counter() - start
    return _reply(msg, site, out, metrics)


def _ledger(
    context: Context, cfg: RunConfig, record: ConfigRecord, n: int, epochs: int, own: object
) -> PrivacyLedger:
    """This site's ledger: from earlier rounds, else new with sigma for the whole run.

    The site's own limit (node config `epsilon-budget`, set by its privacy officer)
    overrides the run's budget when it is lower.
    """
    from shared.privacy.trainer import new_ledger, planned_steps

    ledger = load_ledger(context)
    if ledger is None and ledger_file(context) is not None and ledger_file(context).is_file():
        ledger = PrivacyLedger.from_json(ledger_file(context).read_text())
    rounds = int(record.get(CFG_NUM_ROUNDS, 1))
    if ledger is None:
        ledger = new_ledger(cfg, n, rounds * planned_steps(cfg, n, epochs))
    if own not in (None, ""):
        limit = float(own)  # type: ignore[arg-type]
        ledger.budget = limit if ledger.budget is None else min(limit, ledger.budget)
    return ledger


def _budget_spent(msg: Message, site: Site, ledger: PrivacyLedger, n: int, start: float) -> Message:
    """No training, no weights: the site's privacy budget would be exceeded."""
    metrics = {
        **ledger.metrics(),
        BUDGET_EXHAUSTED: 1.0,
        NUM_EXAMPLES: float(n),
        "handler_seconds": time.perf_counter() - start,
    }
    return _reply(msg, site, {}, metrics)


def evaluate_global(
    msg: Message,
    context: Context,
    site: Site,
    threads: int | None = None,
    keep_models: bool = False,
) -> Message:
    from shared.evaluation import evaluate  # scikit-learn: only evaluate messages pay for it

    start = time.perf_counter()
    cfg, record, bundle, _ = _prepare(msg, context, site, ["task_net"], threads, keep_models)
    device = site_device(context, cfg)
    split = eval_split_name(site, cfg, str(record.get(CFG_EVAL_SPLIT, "auto")))
    dataset = site_split(site, cfg, split)
    t0 = time.perf_counter()
    metrics = evaluate(bundle, make_loader(dataset, cfg, train=False), cfg, device)
    metrics["eval_seconds"] = time.perf_counter() - t0
    if cfg.privacy.mode == "client":
        metrics[DP_UNIT_WEIGHT] = 1.0  # the DP strategy checks every reply carries its key
    metrics[NUM_EXAMPLES] = float(len(dataset))
    metrics["handler_seconds"] = time.perf_counter() - start
    return _reply(msg, site, {}, metrics)


Handler = Callable[[Message, Context], Message]


def handler_table(
    sites: Sequence[Site] | None = None,
    threads: int | None = None,
    epsilon_budgets: Mapping[str, float] | None = None,
    keep_models: bool = False,
) -> dict[str, Handler]:
    """Handlers by Flower message type. `sites` maps simulation partition ids to site
    folders, `epsilon_budgets` gives sites (by name) their own DP limit in simulation;
    `keep_models` (the site worker) keeps the model between messages. A SiteError is
    reported to a supervising `fediqad client` before it propagates."""

    def guarded(handler):  # type: ignore[no-untyped-def]
        def run(msg: Message, context: Context) -> Message:
            try:
                site = resolve_site(context, sites)
                packed = any_packed(msg.content)  # the server packs model arrays
                if packed:
                    msg.content = unpack(msg.content)
                reply = handler(msg, context, site, threads)
                if packed:
                    reply.content = pack(reply.content)
                return reply
            except SiteError as err:
                report_fatal(str(err))
                raise

        return run

    from client.comcl import comcl_train  # CoMCL pretraining rounds: train.comcl messages

    return {
        MessageType.TRAIN: guarded(
            partial(train, budgets=epsilon_budgets, keep_models=keep_models)
        ),
        MessageType.EVALUATE: guarded(partial(evaluate_global, keep_models=keep_models)),
        COMCL_MESSAGE: guarded(comcl_train),
    }
