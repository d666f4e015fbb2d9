"""Part (c): CoMCL vs training from scratch at 33 / 70 / 100 % LQ, one synthetic data set
per (seed, ratio); the encoder is pretrained on the training split's patches (boxes
from `lesions.csv`), then a plain classifier is fine-tuned from it and from scratch with
the same seed, data order and epochs (`shared.contrastive.evidence`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from shared.contrastive.boxes import CsvBoxes
from shared.contrastive.evidence import (
    VARIANTS,
    evidence_config,
    finetune_from,
    pretrain_variant,
)
from shared.contrastive.evidence import (
    EvidenceSettings as ComclSettings,
)
from shared.contrastive.patches import describe, split_bank
from simulations.evidence.common import KEYS, Say, Timer
from simulations.evidence.settings import EvidenceSettings

COMPARED = ("from scratch", "CoMCL")


def run_comcl(out: Path, s: EvidenceSettings, say: Say) -> list[dict[str, Any]]:
    from shared.data.synth import synthesize

    rows = []
    for seed in s.seeds:
        c = ComclSettings(
            ratios=s.comcl_ratios,
            n=s.comcl_n,
            image_size=s.comcl_image_size,
            backbone=s.backbone,
            pretrain_epochs=s.comcl_pretrain_epochs,
            finetune_epochs=s.comcl_finetune_epochs,
            finetune_batch=s.batch_size,
            seed=seed,
            threads=s.threads,
            patch_size=s.comcl_patch,
        )
        cfg = evidence_config(c)
        cfg.optim.lr = s.lr  # as in (a) and (b): SGD, halved after half the epochs
        cfg.optim.lr_step_epochs = max(1, c.finetune_epochs // 2)
        for ratio in s.comcl_ratios:
            root = Path(out) / f"comcl-seed{seed}-lq{round(ratio * 100)}"
            synthesize("EYEQ", c.n, c.image_size, root, seed=seed, lq_ratio=ratio, force=True)
            folder = root / "EYEQ"
            bank = split_bank(root, cfg, CsvBoxes(folder / "lesions.csv", folder), "train", seed)
            say(f"(c) seed {seed}, {round(ratio * 100)} % LQ: patches {describe(bank)}")
            for name in COMPARED:
                clock = Timer()
                flags = VARIANTS[name]
                encoder = None if flags is None else pretrain_variant(cfg, bank, flags)[0]
                metrics = finetune_from(cfg, root, encoder)
                rows.append(
                    {
                        "part": "comcl",
                        "seed": seed,
                        "lq_ratio": ratio,
                        "init": name,
                        **{k: float(metrics[k]) for k in KEYS if k in metrics},
                        "seconds": clock(),
                    }
                )
                say(f"(c)   {name}: kappa {rows[-1]['kappa']:.3f} ({clock():.0f} s)")
    return rows
