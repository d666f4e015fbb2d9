"""Central training (`fediqad train` or a notebook): epochs, model selection, checkpoints.

Each epoch runs `LocalTrainer.fit(loader, 1)` then `evaluate` on the selection split
(val, else test, else train for DRAC's train-only protocol). `best.ckpt` holds the
epoch with the best selection AUC, or the last epoch where the dataset's protocol
reports the last epoch (`report_last_epoch`); `last.ckpt` also carries the optimiser
state so `--resume` continues the run. All files are replaced atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from shared.atomic_write import write_text_atomic
from shared.checkpoint import load_checkpoint, read_payload, save_checkpoint
from shared.config import RunConfig
from shared.data.dataset import make_loader, open_split, resolve_dataset_dir
from shared.data.layout import split_path
from shared.errors import UserError
from shared.evaluation import evaluate
from shared.models import ModelBundle, build_models
from shared.privacy.budget import PrivacyLedger
from shared.privacy.rules import check_sample_dp
from shared.strict_json import dumps, json_ready
from shared.training.local import LocalTrainer
from shared.training.setup import pick_device, plain_worker_errors, seed_everything

BEST, LAST, HISTORY = "best.ckpt", "last.ckpt", "metrics.json"


@dataclass
class EpochHooks:
    """Progress callbacks; the CLI wires them to rich progress bars."""

    start_epoch: Callable[[int, int], None] = lambda epoch, batches: None
    batch: Callable[[str], None] = lambda stage: None
    end_epoch: Callable[[int, dict[str, float]], None] = lambda epoch, metrics: None


@dataclass
class TrainResult:
    out: Path
    eval_split: str
    selection: str
    best_epoch: int
    best: dict[str, float]
    test: dict[str, float] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)


def selection_split(data_root: Path, cfg: RunConfig) -> str:
    """val if its file exists, else test, else train (the train-only protocol)."""
    folder = resolve_dataset_dir(Path(data_root), cfg.dataset.name)
    for split in ("val", "test"):
        if split_path(folder, split).is_file():
            return split
    return "train"


def _score(metrics: dict[str, float], key: str = "auc") -> float:
    auc = metrics.get(key, float("nan"))
    return auc if math.isfinite(auc) else -math.inf


def selection_rule(cfg: RunConfig, eval_split: str) -> str:
    """How `best.ckpt` is chosen, in words (metrics.json `selection`, the CLI title)."""
    if cfg.dataset.report_last_epoch:
        return "last epoch"
    sel = cfg.selection
    metric = "AUC" if sel.metric == "auc" else "hard-prediction AUC (authors' compatibility metric)"
    cadence = "" if sel.every_epochs == 1 else f", validated every {sel.every_epochs} epochs"
    return f"best {eval_split} {metric}{cadence}"


def check_out_dir(out: Path, force: bool, resume: bool) -> None:
    """Refuse to overwrite an earlier run's checkpoints unless asked to."""
    existing = [name for name in (BEST, LAST) if (out / name).exists()]
    if resume:
        if not (out / LAST).is_file():
            raise UserError(f"nothing to resume: no {LAST} here", path=out)
        return
    if existing and not force:
        raise UserError(
            f"holds checkpoints of an earlier run ({', '.join(existing)}); "
            "pass --resume to continue it, --force to replace it, or another --out",
            path=out,
        )


class TrainRun:
    """One training run writing into `out`."""

    def __init__(self, cfg: RunConfig, data_root: Path, out: Path, resume: bool = False):
        self.cfg = cfg
        self.data_root = Path(data_root)
        self.out = Path(out)
        self.resume = resume
        self.device = pick_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.train_set = open_split(self.data_root, cfg, "train", augment=cfg.augment)
        self.eval_split = selection_split(self.data_root, cfg)
        self.eval_set = open_split(self.data_root, cfg, self.eval_split)
        self.generator = torch.Generator()
        self.ledger: PrivacyLedger | None = None
        if cfg.privacy.mode == "client":
            raise UserError(
                "--dp client is site-level DP for federated runs (fediqad "
                "simulate); use --dp sample for centralized training"
            )
        if cfg.privacy.mode == "sample":  # Opacus is imported by DP runs only (~1 s)
            from shared.privacy.trainer import (
                new_ledger,
                planned_steps,
                poisson_loader,
                sampling_generator,
            )

            check_sample_dp(cfg)
            n = len(self.train_set)
            self.ledger = new_ledger(cfg, n, planned_steps(cfg, n, cfg.optim.epochs))
            self.train_loader = poisson_loader(self.train_set, cfg, sampling_generator(cfg))
        else:
            self.train_loader = make_loader(
                self.train_set, cfg, train=True, generator=self.generator
            )
        self.eval_loader = make_loader(self.eval_set, cfg, train=False)
        self.selection = selection_rule(cfg, self.eval_split)
        self.history: list[dict[str, Any]] = []
        self.best_epoch = 0
        self.best: dict[str, float] = {}
        self.start_epoch = 1
        bundle = build_models(cfg)
        if self.ledger is None:
            self.trainer = LocalTrainer(cfg, bundle, self.device)
        else:
            from shared.privacy.trainer import DPLocalTrainer

            self.trainer = DPLocalTrainer(cfg, bundle, self.device, self.ledger)
        if resume:
            self._restore()

    @property
    def bundle(self) -> ModelBundle:
        return self.trainer.bundle

    def batches_per_epoch(self) -> int:
        return len(self.train_loader) * self.trainer.passes_per_epoch()

    def _restore(self) -> None:
        ck = load_checkpoint(self.out / LAST, expect=self.cfg)
        if ck.bundle.meta_learner is None and self.bundle.meta_learner is not None:
            raise UserError("has no Meta Learner weights to resume from", path=ck.path)
        self.bundle.task_net.load_state_dict(ck.bundle.task_net.state_dict())
        if ck.bundle.meta_learner is not None and self.bundle.meta_learner is not None:
            self.bundle.meta_learner.load_state_dict(ck.bundle.meta_learner.state_dict())
        if "optimizer" in ck.extra:
            self.trainer.load_optimizer_state(ck.extra["optimizer"])
        if self.ledger is not None:
            saved = ck.extra.get("privacy_ledger")
            if saved is None:
                raise UserError(
                    "has no privacy ledger: a DP run cannot resume a non-DP one", path=ck.path
                )
            self._resume_ledger(saved, done_epochs=ck.epoch or 0)
        self.start_epoch = (ck.epoch or 0) + 1
        self.best_epoch = int(ck.extra.get("best_epoch", 0))
        history_file = self.out / HISTORY
        if history_file.is_file():
            try:
                saved = json.loads(history_file.read_text())
                self.history = [e for e in saved.get("epochs", []) if e["epoch"] < self.start_epoch]
            except (ValueError, KeyError, TypeError):
                self.history = []
        if self.best_epoch and (self.out / BEST).is_file():
            # the selected model's own record is the truth, whatever metrics.json says
            best = read_payload(self.out / BEST)
            if best.get("epoch") == self.best_epoch:
                self.best = {k: float(v) for k, v in best.get("metrics", {}).items()}
        if not self.best:
            self.best_epoch = 0  # nothing to compare with: the next epoch is selected

    def _resume_ledger(self, saved: str, done_epochs: int) -> None:
        """Epsilon keeps counting from the saved history; sigma for the epochs left is
        recalibrated (the epoch count may have changed) and given to the optimisers and
        the ledger alike, so every later step is recorded at the sigma it used."""
        from shared.privacy.trainer import planned_steps, resumed_ledger

        assert self.ledger is not None
        left = max(self.cfg.optim.epochs - done_epochs, 0)
        n = len(self.train_set)
        spent = resumed_ledger(self.cfg, n, saved, planned_steps(self.cfg, n, left))
        self.ledger.history = spent.history
        self.ledger.prior_epsilon, self.ledger.prior_delta = spent.prior_epsilon, spent.prior_delta
        self.trainer.set_noise_multiplier(spent.noise_multiplier)  # type: ignore[attr-defined]

    def validates(self, epoch: int) -> bool:
        """Whether `epoch` is scored on the selection split (`selection.every_epochs`;
        the last epoch always is)."""
        every = self.cfg.selection.every_epochs
        return epoch % every == 0 or epoch == self.cfg.optim.epochs

    def run(self, hooks: EpochHooks | None = None) -> TrainResult:
        with plain_worker_errors():
            return self._run(hooks or EpochHooks())

    def _run(self, hooks: EpochHooks) -> TrainResult:
        cfg = self.cfg
        for epoch in range(self.start_epoch, cfg.optim.epochs + 1):
            # per-epoch data order from (seed, epoch): a resumed run sees the same batches
            self.generator.manual_seed(cfg.seed * 100_003 + epoch)
            if self.ledger is not None and self.ledger.exhausted(self._steps_per_epoch()):
                break  # another epoch would spend more than the privacy budget
            hooks.start_epoch(epoch, self.batches_per_epoch())
            train_logs = self.trainer.fit(self.train_loader, 1, on_batch=hooks.batch)
            if self.ledger is not None:
                train_logs.update(self.ledger.metrics())
            if not self.validates(epoch):  # the authors' cadence: no score this epoch
                self.history.append({"epoch": epoch, "train": train_logs})
                self._save(LAST, epoch, {}, with_optimizer=True)
                self._write_history()
                hooks.end_epoch(epoch, {})
                continue
            metrics = evaluate(self.bundle, self.eval_loader, cfg, self.device)
            self.history.append({"epoch": epoch, "train": train_logs, "eval": metrics})
            key = cfg.selection.metric
            improved = self.best_epoch == 0 or _score(metrics, key) > _score(self.best, key)
            if cfg.dataset.report_last_epoch or improved:
                self.best_epoch, self.best = epoch, metrics
                self._save(BEST, epoch, metrics, with_optimizer=False)
            self._save(LAST, epoch, metrics, with_optimizer=True)
            self._write_history()
            self._write_report()
            hooks.end_epoch(epoch, metrics)
        test = self._final_test()
        self._write_history(test)
        self._write_report()
        return TrainResult(
            self.out,
            self.eval_split,
            self.selection,
            self.best_epoch,
            self.best,
            test,
            self.history,
        )

    def _steps_per_epoch(self) -> int:
        from shared.privacy.trainer import planned_steps

        return planned_steps(self.cfg, len(self.train_set), 1)

    def _save(self, name: str, epoch: int, metrics: dict[str, float], with_optimizer: bool) -> None:
        extra: dict[str, Any] = {
            "eval_split": self.eval_split,
            "selection": self.selection,
            "best_epoch": self.best_epoch,
        }
        if self.ledger is not None:  # what this model cost, recomputable by anyone
            extra["privacy"] = self.ledger.summary()
            extra["privacy_ledger"] = self.ledger.to_json()
        if with_optimizer:
            extra["optimizer"] = self.trainer.optimizer_state()
        bundle = self.bundle
        save_checkpoint(
            self.out / name, bundle, self.cfg, epoch=epoch, metrics=metrics, extra=extra
        )

    def _final_test(self) -> dict[str, float] | None:
        """Selected on val: score the selected model once on test, as the paper reports."""
        if self.eval_split != "val" or self.best_epoch == 0:
            return None
        folder = resolve_dataset_dir(self.data_root, self.cfg.dataset.name)
        if not split_path(folder, "test").is_file():
            return None
        test_set = open_split(self.data_root, self.cfg, "test")
        best = load_checkpoint(self.out / BEST, expect=self.cfg)
        return evaluate(
            best.bundle, make_loader(test_set, self.cfg, train=False), self.cfg, self.device
        )

    def _write_report(self) -> None:
        """report.md, index.html and figures/ after every scored epoch: an interrupted
        run has them too."""
        from shared.report.build import write_run_report

        write_run_report(self.out)

    def _write_history(self, test: dict[str, float] | None = None) -> None:
        doc = {
            "dataset": self.cfg.dataset.name,
            "method": self.cfg.method,
            "data_root": str(self.data_root.resolve()),
            "eval_split": self.eval_split,
            "selection": self.selection,
            "augment": self.cfg.augment,
            "best_epoch": self.best_epoch,
            "best": self.best,
            "test": test,
            "config": self.cfg.model_dump(mode="json"),
            "compute": {"device": str(self.device), **self.trainer.precision.describe()},
            "epochs": self.history,
        }
        if self.ledger is not None:
            doc["privacy"] = self.ledger.summary()
        write_text_atomic(self.out / HISTORY, dumps(json_ready(doc)) + "\n")
