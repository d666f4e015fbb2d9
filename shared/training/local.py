"""Local training: one object that runs any method's epochs on one site's data.

Used unchanged by centralized `fediqad train` and by each federated site, so the
optimiser and scheduler state it holds can persist across federated rounds.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import torch

from shared.config import RunConfig
from shared.losses import focal_loss
from shared.meta_auxiliary import Batch, MetaHyper, MetaStep, meta_gradient, task_loss
from shared.methods import MethodSpec, get_method
from shared.models import ModelBundle
from shared.models.outputs import TaskOutputs
from shared.training.precision import StepPrecision, fused_optimizer_options
from shared.training.precision_rules import refuse_unsupported_precision

BatchHook = Callable[[str], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def meta_hyper(cfg: RunConfig, lr: float) -> MetaHyper:
    """The meta step's numbers from a run config, at the Task Net's learning rate `lr`."""
    opt = cfg.optim
    return MetaHyper(
        lr=lr,
        weight_decay=opt.weight_decay,
        entropy_weight=opt.entropy_weight,
        per_example_entropy=opt.entropy_per_example,
        meta_length=cfg.model.meta_length,
        gamma=opt.focal_gamma,
        momentum=opt.momentum,
    )


def passes_per_epoch(cfg: RunConfig) -> int:
    """How many times an epoch walks the loader: the paper schedule of a meta method walks
    it twice (stage I, stage II), everything else once."""
    meta = get_method(cfg.method).step == "meta-auxiliary"
    return 2 if meta and cfg.schedule == "paper" else 1


class LocalTrainer:
    """SGD + StepLR for the Task Net (and the Meta Learner), as in the MKCNet paper.

    Every forward pass runs under the run's precision (`cfg.precision`: autocast, fp32
    losses, fp16 loss scaling) and memory layout (`cfg.channels_last`); see
    `shared.training.precision`."""

    def __init__(self, cfg: RunConfig, bundle: ModelBundle, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.bundle = bundle.to(device)
        self.device = torch.device(device)
        refuse_unsupported_precision(cfg)
        self.precision = StepPrecision.for_run(cfg.precision, cfg.channels_last, self.device)
        for module in bundle.modules().values():
            self.precision.module(module)
        opt = cfg.optim
        fused = fused_optimizer_options(self.device)
        self.task_optimizer = torch.optim.SGD(
            bundle.task_net.parameters(),
            lr=opt.lr,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
            **fused,
        )
        self.task_scheduler = torch.optim.lr_scheduler.StepLR(
            self.task_optimizer, step_size=opt.lr_step_epochs, gamma=opt.lr_gamma
        )
        self.meta_optimizer: torch.optim.Optimizer | None = None
        self.meta_scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
        if bundle.meta_learner is not None:
            self.meta_optimizer = torch.optim.SGD(
                bundle.meta_learner.parameters(),
                lr=opt.meta_lr,
                weight_decay=opt.meta_weight_decay,
                **fused,
            )
            self.meta_scheduler = torch.optim.lr_scheduler.StepLR(
                self.meta_optimizer, step_size=opt.lr_step_epochs, gamma=opt.lr_gamma
            )

    # ----------------------------------------------------------------- public API
    @property
    def method(self) -> MethodSpec:
        return get_method(self.cfg.method)

    @property
    def uses_meta(self) -> bool:
        return self.method.step == "meta-auxiliary"

    def passes_per_epoch(self) -> int:
        return passes_per_epoch(self.cfg)

    def fit(
        self, loader: Iterable[Any], epochs: int = 1, on_batch: BatchHook | None = None
    ) -> dict[str, float]:
        """Run `epochs` epochs; returns mean losses, examples seen and seconds."""
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        examples = 0
        start = time.perf_counter()
        for _ in range(epochs):
            for logs, n in self._epoch(loader, on_batch):
                for key, value in logs.items():
                    totals[key] += value
                    counts[key] += 1
                examples += n
            self.task_scheduler.step()
            if self.meta_scheduler is not None:
                self.meta_scheduler.step()
        out = {key: totals[key] / counts[key] for key in totals}
        out["examples"] = float(examples // max(epochs, 1) // self.passes_per_epoch())
        out["train_seconds"] = time.perf_counter() - start
        out["lr"] = self.current_lr
        return out

    @property
    def current_lr(self) -> float:
        return float(self.task_optimizer.param_groups[0]["lr"])

    def optimizer_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "task_optimizer": self.task_optimizer.state_dict(),
            "task_scheduler": self.task_scheduler.state_dict(),
        }
        if self.meta_optimizer is not None and self.meta_scheduler is not None:
            state["meta_optimizer"] = self.meta_optimizer.state_dict()
            state["meta_scheduler"] = self.meta_scheduler.state_dict()
        if self.precision.scaler is not None:
            state["grad_scaler"] = self.precision.state_dict()
        return state

    def load_optimizer_state(self, state: dict[str, Any]) -> None:
        self.task_optimizer.load_state_dict(state["task_optimizer"])
        self.task_scheduler.load_state_dict(state["task_scheduler"])
        if self.meta_optimizer is not None and "meta_optimizer" in state:
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])
            assert self.meta_scheduler is not None
            self.meta_scheduler.load_state_dict(state["meta_scheduler"])
        self.precision.load_state_dict(state.get("grad_scaler", {}))

    # ------------------------------------------------------------------ epochs
    def _epoch(self, loader: Iterable[Any], on_batch: BatchHook | None):
        self.bundle.train()
        if not self.uses_meta:
            yield from self._run(loader, self._supervised_step, "train", on_batch)
        elif self.cfg.schedule == "fused":
            yield from self._run(loader, self._fused_step, "fused", on_batch)
        else:
            yield from self._run(loader, self.stage_one_step, "stage I", on_batch)
            yield from self._run(loader, self.stage_two_step, "stage II", on_batch)

    def _run(self, loader, step, stage: str, on_batch: BatchHook | None):
        for items in loader:
            batch = Batch.from_items(tuple(items), self.device)
            batch.image = self.precision.images(batch.image)
            logs = step(batch)
            if on_batch is not None:
                on_batch(stage)
            yield logs, len(batch.image)

    def hyper(self) -> MetaHyper:
        return meta_hyper(self.cfg, self.current_lr)

    # ------------------------------------------------------------------- steps
    def supervised_losses(self, out: TaskOutputs, batch: Batch) -> dict[str, torch.Tensor]:
        """Baselines, CANet, DETACH and MKCNet w/o Meta: focal losses on hard labels."""
        gamma = self.cfg.optim.focal_gamma
        parts = {"loss_diagnosis": focal_loss(out.diagnosis, batch.diagnosis, gamma)}
        if out.quality is not None:
            parts["loss_quality"] = focal_loss(out.quality, batch.quality, gamma)
        if out.side is not None:  # deep supervision of task-specific features
            side_d, side_q = out.side
            parts["loss_side"] = self.method.side_weight * (
                focal_loss(side_d, batch.diagnosis, gamma)
                + focal_loss(side_q, batch.quality, gamma)
            )
        return parts

    def _supervised_step(self, batch: Batch) -> dict[str, float]:
        with self.precision.autocast():
            out = self.bundle.task_net(batch.image)
        parts = self.supervised_losses(out, batch)
        self.precision.backward_step(self.task_optimizer, sum(parts.values()))  # type: ignore[arg-type]
        return {k: float(v.detach()) for k, v in parts.items()}

    def stage_one_step(self, batch: Batch) -> dict[str, float]:
        """Stage I: theta <- theta - lr * grad(L_D + L_Q + L_W); y_w is a fixed target."""
        assert self.bundle.meta_learner is not None
        with torch.no_grad(), self.precision.autocast():
            soft_target = self.bundle.meta_learner(batch.image, batch.joint)
        with self.precision.autocast():
            out = self.bundle.task_net(batch.image)
        loss, parts = task_loss(out, batch, soft_target, self.hyper())
        self.precision.backward_step(self.task_optimizer, loss)
        return {k: float(v.detach()) for k, v in parts.items()}

    def stage_two_step(self, batch: Batch) -> dict[str, float]:
        """Stage II: one meta-gradient step of the Meta Learner; theta is left as it is."""
        step = self._meta_step(batch, return_task_grads=False)
        assert self.meta_optimizer is not None and self.bundle.meta_learner is not None
        self.precision.step_with_grads(
            [(self.meta_optimizer, self.bundle.meta_learner, step.meta_grads)]
        )
        return {f"meta_{k}" if k.startswith("loss") else k: v for k, v in step.losses.items()}

    def _fused_step(self, batch: Batch) -> dict[str, float]:
        """Stage I and II from one pass: stage I's gradient drives the pseudo update too."""
        step = self._meta_step(batch, return_task_grads=True)
        assert step.task_grads is not None
        assert self.meta_optimizer is not None and self.bundle.meta_learner is not None
        self.precision.step_with_grads(
            [
                (self.task_optimizer, self.bundle.task_net, step.task_grads),
                (self.meta_optimizer, self.bundle.meta_learner, step.meta_grads),
            ]
        )
        return step.losses

    def _meta_step(self, batch: Batch, return_task_grads: bool) -> MetaStep:
        assert self.bundle.meta_learner is not None
        with self.precision.autocast():
            return meta_gradient(
                self.bundle.task_net,
                self.bundle.meta_learner,
                batch,
                self.hyper(),
                first_order=self.method.first_order,
                momentum=self._momentum(),
                return_task_grads=return_task_grads,
            )

    # ----------------------------------------------------------------- helpers
    def _momentum(self) -> dict[str, torch.Tensor] | None:
        if not self.cfg.optim.momentum:
            return None
        state = self.task_optimizer.state
        return {
            name: state[p]["momentum_buffer"]
            for name, p in self.bundle.task_net.named_parameters()
            if p in state and state[p].get("momentum_buffer") is not None
        }
