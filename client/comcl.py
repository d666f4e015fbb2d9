"""The site's side of a federated CoMCL round (`train.comcl` messages).

The site builds its four patch subsets once per process from its own training split
(boxes: the site's DATASET/lesions.csv if present, else the proposal fallback), runs
`shared.contrastive.pretrain.pretrain_round` from the global encoder and replies with
the updated encoder. Empty subsets skip their loss terms with one logged warning; a
site where no term can be formed fails the round with a clear message.
"""

from __future__ import annotations

import logging
import time

import torch
from flwr.app import ConfigRecord, Context, Message, MetricRecord, RecordDict

from client.site import Site, SiteError, site_device
from shared.config import RunConfig
from shared.contrastive.boxes import choose_source
from shared.contrastive.patches import PatchBank, describe, skipped_terms, split_bank
from shared.contrastive.pretrain import pretrain_round
from shared.contrastive.protocol import CFG_EPOCH_OFFSET, CFG_EPOCHS, CFG_TOTAL_EPOCHS, ENCODER
from shared.data.dataset import resolve_dataset_dir
from shared.errors import UserError
from shared.records import (
    CFG_DTYPE,
    CFG_RUN,
    CONFIG,
    METRICS,
    NUM_EXAMPLES,
    SITE,
    from_record,
    to_record,
)

log = logging.getLogger("fediqad.client")
_BANKS: dict[tuple[str, str], PatchBank] = {}
MAX_BANKS = 4


def site_bank(site: Site, cfg: RunConfig) -> PatchBank:
    """This site's patch bank, built once per process (simulation actors reuse it)."""
    key = (
        str(site.data_path),
        cfg.dataset.model_dump_json()
        + cfg.model_dump_json(include={"image_size", "seed", "contrastive"}),
    )
    if key not in _BANKS:
        try:
            folder = resolve_dataset_dir(site.data_path, cfg.dataset.name)
            source = choose_source(
                folder,
                say=lambda text: log.log(
                    logging.WARNING if "fallback" in text else logging.INFO,
                    "site '%s': %s",
                    site.name,
                    text,
                ),
            )
            bank = split_bank(site.data_path, cfg, source, "train", cfg.seed)
        except UserError as err:
            raise SiteError(f"site '{site.name}': {err}") from None
        problems = skipped_terms(bank, cfg.contrastive.multi_level)
        for text in problems:
            log.warning("site '%s': %s", site.name, text)
        if len(problems) == (3 if cfg.contrastive.multi_level else 1):
            raise SiteError(
                f"site '{site.name}': no CoMCL loss term can be formed ({describe(bank)})"
            )
        log.info(
            "site '%s': CoMCL patches %s; lesion boxes: %s",
            site.name,
            describe(bank),
            bank.box_source,
        )
        if len(_BANKS) >= MAX_BANKS:  # an actor may serve several sites: keep a few
            _BANKS.pop(next(iter(_BANKS)))
        _BANKS[key] = bank
    return _BANKS[key]


def comcl_train(msg: Message, context: Context, site: Site, threads: int | None = None) -> Message:
    """Local CoMCL epochs from the global encoder; reply with the encoder and metrics."""
    start = time.perf_counter()
    record = msg.content.config_records[CONFIG]
    cfg = RunConfig.model_validate_json(str(record[CFG_RUN]))
    if threads or cfg.threads:
        torch.set_num_threads(int(threads or cfg.threads))  # type: ignore[arg-type]
    bank = site_bank(site, cfg)
    offset = int(record.get(CFG_EPOCH_OFFSET, 0))
    state, logs = pretrain_round(
        from_record(msg.content.array_records[ENCODER]),
        bank,
        cfg,
        epochs=int(record.get(CFG_EPOCHS, 1)),
        epoch_offset=offset,
        total_epochs=int(record.get(CFG_TOTAL_EPOCHS, 1)),
        device=site_device(context, cfg),
        seed=cfg.seed * 7919 + offset,
    )
    metrics = {k: float(v) for k, v in logs.items()}
    metrics[NUM_EXAMPLES] = float(len(bank))
    metrics["handler_seconds"] = time.perf_counter() - start
    content = RecordDict({ENCODER: to_record(state, dtype=str(record.get(CFG_DTYPE, "float32")))})
    content[METRICS] = MetricRecord(metrics)
    content[SITE] = ConfigRecord({"name": site.name, "box-source": bank.box_source})
    return Message(content, reply_to=msg)
