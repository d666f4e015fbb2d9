"""The CoMCL evidence table: does contrastive initialisation help diagnosis at 33 / 70 /
100 % LQ? Measured end to end on synthetic EyeQ-like data (`fediqad bench
comcl-evidence`, docs/comcl.md).

Per LQ ratio r: synthesise one data set with r of the images low quality (the data
library's degradations), build the patch bank of its training split from the
annotation boxes (`lesions.csv`), pretrain one encoder per variant, then fine-tune a
plain classifier (backbone + linear head, `vanilla`) from each initialisation and from
scratch with identical seeds, data order and epochs, and score the last epoch on the
test split (kappa is quadratic-weighted). Variants: scratch; basic contrastive (one
InfoNCE over all patches, no mining); CoMCL without mining (the three terms); CoMCL.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from shared.config import RunConfig, preset
from shared.contrastive.boxes import CsvBoxes
from shared.contrastive.patches import describe, split_bank
from shared.contrastive.pretrain import ContrastivePretrainer, build_contrastive_model
from shared.contrastive.transfer import init_from_encoder

# name -> (multi_level, hard_mining), None = no pretraining
VARIANTS: dict[str, tuple[bool, bool] | None] = {
    "from scratch": None,
    "basic contrastive": (False, False),
    "CoMCL w/o mining": (True, False),
    "CoMCL": (True, True),
}


@dataclass
class EvidenceSettings:
    ratios: Sequence[float] = (0.33, 0.70, 1.00)
    n: int = 300
    image_size: int = 64
    backbone: str = "vgg16_bn_slim"
    pretrain_epochs: int = 20
    pretrain_batch: int = 128
    patch_size: int = 16  # pixels of the 64 px files (CoMCL's 128 px of a photograph)
    finetune_epochs: int = 15
    finetune_batch: int = 16
    seed: int = 0
    threads: int = 1
    variants: Sequence[str] = field(default_factory=lambda: list(VARIANTS))


def evidence_config(s: EvidenceSettings) -> RunConfig:
    cfg = preset("EYEQ")
    cfg.method = "vanilla"
    cfg.image_size = s.image_size
    cfg.model.backbone = s.backbone
    cfg.optim.batch_size = s.finetune_batch
    cfg.optim.epochs = s.finetune_epochs
    cfg.contrastive.epochs = s.pretrain_epochs
    cfg.contrastive.batch_size = s.pretrain_batch
    cfg.contrastive.backbone = None  # the classifier's backbone, so the encoder transfers
    cfg.contrastive.patch_size = s.patch_size
    cfg.seed = s.seed
    cfg.device = "cpu"
    return cfg


def pretrain_variant(cfg: RunConfig, bank: Any, flags: tuple[bool, bool]) -> tuple[dict, dict]:
    cfg = cfg.model_copy(deep=True)
    cfg.contrastive.multi_level, cfg.contrastive.hard_mining = flags
    torch.manual_seed(cfg.seed)
    trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg), "cpu")
    logs = trainer.fit(bank, cfg.contrastive.epochs, 0, torch.Generator().manual_seed(cfg.seed))
    backbone = {
        k.removeprefix("backbone."): v.detach().clone()
        for k, v in trainer.model.state_dict().items()
        if k.startswith("backbone.")
    }
    return backbone, logs


def finetune_from(cfg: RunConfig, root: Path, encoder: dict | None) -> dict[str, float]:
    from shared.data.dataset import make_loader, open_split
    from shared.evaluation import evaluate
    from shared.models import build_models
    from shared.training import LocalTrainer

    torch.manual_seed(cfg.seed)
    bundle = build_models(cfg)
    if encoder is not None:
        init_from_encoder(bundle.modules(), encoder)
    train = open_split(root, cfg, "train", augment=True)
    test = open_split(root, cfg, "test")
    generator = torch.Generator()
    trainer = LocalTrainer(cfg, bundle, "cpu")
    for epoch in range(cfg.optim.epochs):
        generator.manual_seed(cfg.seed * 100_003 + epoch)
        trainer.fit(make_loader(train, cfg, True, generator=generator), 1)
    return evaluate(bundle, make_loader(test, cfg, False), cfg, "cpu")


def run_evidence(
    out: Path, s: EvidenceSettings, say: Callable[[str], None] = print
) -> list[dict[str, Any]]:
    """Every (ratio, variant) row: test kappa / accuracy (overall, HQ, LQ) and timings."""
    from shared.data.synth import synthesize

    torch.set_num_threads(s.threads)
    cfg = evidence_config(s)
    rows: list[dict[str, Any]] = []
    for ratio in s.ratios:
        root = Path(out) / f"lq{round(ratio * 100)}"
        synthesize("EYEQ", s.n, s.image_size, root, seed=s.seed, lq_ratio=ratio, force=True)
        folder = root / "EYEQ"
        bank = split_bank(root, cfg, CsvBoxes(folder / "lesions.csv", folder), "train", s.seed)
        say(f"{round(ratio * 100)} % LQ: patches {describe(bank)}")
        for name in s.variants:
            flags = VARIANTS[name]
            t0 = time.perf_counter()
            encoder, logs = (None, {}) if flags is None else pretrain_variant(cfg, bank, flags)
            t1 = time.perf_counter()
            metrics = finetune_from(cfg, root, encoder)
            row = {
                "lq_ratio": ratio,
                "variant": name,
                "pretrain_seconds": t1 - t0,
                "finetune_seconds": time.perf_counter() - t1,
                "pretrain_loss": logs.get("loss"),
                "patches": len(bank),
                **{
                    k: metrics.get(k)
                    for k in (
                        "kappa",
                        "acc",
                        "auc",
                        "f1",
                        "kappa_hq",
                        "acc_hq",
                        "kappa_lq",
                        "acc_lq",
                        "n",
                    )
                },
            }
            rows.append(row)
            say(
                f"  {name}: kappa {row['kappa']:.3f}, acc {row['acc']:.3f} "
                f"({row['pretrain_seconds']:.0f}+{row['finetune_seconds']:.0f} s)"
            )
    return rows


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """Kappa / ACC per variant (rows) and LQ ratio (columns), as in CoMCL's Table 1."""
    ratios = sorted({r["lq_ratio"] for r in rows})
    head = (
        "| initialisation | "
        + " | ".join(f"{round(x * 100)} % LQ kappa / ACC" for x in ratios)
        + " |"
    )
    lines = [head, "|---" * (len(ratios) + 1) + "|"]
    for name in dict.fromkeys(r["variant"] for r in rows):
        cells = []
        for x in ratios:
            hit = [r for r in rows if r["variant"] == name and r["lq_ratio"] == x]
            cells.append(f"{hit[0]['kappa']:.3f} / {hit[0]['acc']:.3f}" if hit else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def settings_dict(s: EvidenceSettings) -> dict[str, Any]:
    out = asdict(s)
    out["ratios"], out["variants"] = list(s.ratios), list(s.variants)
    return out
