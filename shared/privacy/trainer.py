"""DP-SGD local training: the same `LocalTrainer` schedules, every update a DP step.

- Task Net / baseline steps: Opacus' `GradSampleModule` (per-sample gradients from
  hooks) and `DPOptimizer` (clip each to C, sum, add N(0, sigma^2 C^2), divide by the
  expected batch size) around the trainer's own SGD.
- Meta Learner steps: per-example meta-gradients from `privacy.meta` go into
  `p.grad_sample` and through a second `DPOptimizer` - the same Gaussian mechanism.
- Batches come from Poisson sampling (`DPDataLoader`, rate q = batch_size / n), and
  each noisy step is one step (sigma, q) in the site's `PrivacyLedger`.

The paper schedule's stage I and stage II passes draw independent Poisson batches, so
they are two independent subsampled Gaussian mechanisms per batch slot, accounted as
two steps. The fused schedule (one batch for both updates) is refused under DP.
"""

from __future__ import annotations

import secrets

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

# isort: off
import shared.privacy.opacus_import  # noqa: F401  (before opacus: no double logging)
from opacus import GradSampleModule
from opacus.data_loader import DPDataLoader
from opacus.optimizers import DPOptimizer
# isort: on

from shared.config import RunConfig
from shared.data.dataset import loader_settings
from shared.errors import UserError
from shared.meta_auxiliary import Batch, task_loss
from shared.models import ModelBundle
from shared.privacy.budget import PrivacyLedger, calibrate, calibrate_remaining, check_delta
from shared.privacy.meta import per_example_meta_gradients
from shared.privacy.rules import check_sample_dp, pretrained_privacy
from shared.training.local import LocalTrainer, passes_per_epoch


def sample_rate(cfg: RunConfig, n: int) -> float:
    """Poisson rate giving the configured batch size on average."""
    return min(1.0, cfg.optim.batch_size / max(n, 1))


def steps_per_epoch(cfg: RunConfig, n: int) -> int:
    """Noisy steps per pass over the data, as `DPDataLoader` takes them (int(1/q))."""
    return max(int(1 / sample_rate(cfg, n)), 1)


def poisson_loader(
    dataset: Dataset, cfg: RunConfig, generator: torch.Generator | None = None
) -> DataLoader:
    """Batches by Poisson sampling: each example joins each batch with probability q."""
    return DPDataLoader(
        dataset,
        sample_rate=sample_rate(cfg, len(dataset)),  # type: ignore[arg-type]
        generator=generator,
        **loader_settings(cfg),
    )


def noise_generator(seed: int | None) -> torch.Generator:
    """The noise's own generator: seeded for tests, from OS entropy otherwise."""
    return torch.Generator().manual_seed(seed if seed is not None else secrets.randbits(63))


def sampling_generator(cfg: RunConfig) -> torch.Generator:
    """Poisson sampling's generator. Amplification by subsampling needs the batches to be
    secret, so not derived from the run seed (which the server knows): OS entropy, or
    `noise_seed + 1` in tests."""
    seed = cfg.privacy.noise_seed
    return noise_generator(None if seed is None else seed + 1)


class DPLocalTrainer(LocalTrainer):
    """`LocalTrainer` whose every step is clipped, noised and accounted."""

    def __init__(
        self,
        cfg: RunConfig,
        bundle: ModelBundle,
        device: torch.device | str,
        ledger: PrivacyLedger,
    ):
        check_sample_dp(cfg)
        super().__init__(cfg, bundle, device)
        self.ledger = ledger
        self.expected_batch_size = cfg.optim.batch_size  # q * n, the average batch
        self.generator = noise_generator(cfg.privacy.noise_seed)
        self.task_gsm = GradSampleModule(bundle.task_net, loss_reduction="mean")
        self.task_dp = self._dp(self.task_optimizer)
        self.meta_dp = self._dp(self.meta_optimizer) if self.meta_optimizer else None

    def _dp(self, optimizer: torch.optim.Optimizer) -> DPOptimizer:
        return DPOptimizer(
            optimizer,
            noise_multiplier=self.ledger.noise_multiplier,
            max_grad_norm=self.cfg.privacy.max_grad_norm,
            expected_batch_size=self.expected_batch_size,
            generator=self.generator,
        )

    @property
    def optimizers(self) -> list[DPOptimizer]:
        return [o for o in (self.task_dp, self.meta_dp) if o is not None]

    def set_noise_multiplier(self, sigma: float) -> None:
        """Noise of every later step (a resumed run recalibrated for its remaining steps)."""
        for optimizer in self.optimizers:
            optimizer.noise_multiplier = sigma
        self.ledger.noise_multiplier = sigma

    def fit(self, loader, epochs: int = 1, on_batch=None):  # type: ignore[no-untyped-def]
        """`LocalTrainer.fit` on Poisson batches of the ledger's rate (checked: the
        accountant's q must be the sampler's)."""
        rate = getattr(loader, "sample_rate", None)
        if rate is None or abs(float(rate) - self.ledger.sample_rate) > 1e-12:
            raise ValueError(
                f"DP training needs a Poisson loader at q = {self.ledger.sample_rate}, got {rate}"
            )
        return super().fit(loader, epochs, on_batch)

    def close(self) -> None:
        """Remove Opacus' hooks and per-sample attributes: the bundle is plain again."""
        self.task_gsm._close()
        for module in self.bundle.modules().values():
            for p in module.parameters():
                for attr in ("grad_sample", "summed_grad"):
                    if hasattr(p, attr):
                        delattr(p, attr)

    # ------------------------------------------------------------------- steps
    def _private_step(
        self, optimizer: DPOptimizer, loss: torch.Tensor | None, module: nn.Module
    ) -> None:
        optimizer.zero_grad(set_to_none=True)
        if loss is None:  # empty Poisson batch: the release is noise alone
            for p in module.parameters():
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        else:
            loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        self.ledger.step(sigma=optimizer.noise_multiplier)

    def _supervised_step(self, batch: Batch) -> dict[str, float]:
        if not len(batch.image):
            self._private_step(self.task_dp, None, self.bundle.task_net)
            return {}
        with self.precision.autocast():
            out = self.task_gsm(batch.image)
        parts = self.supervised_losses(out, batch)
        self._private_step(self.task_dp, sum(parts.values()), self.bundle.task_net)
        return {k: float(v.detach()) for k, v in parts.items()}

    def stage_one_step(self, batch: Batch) -> dict[str, float]:
        assert self.bundle.meta_learner is not None
        if not len(batch.image):
            self._private_step(self.task_dp, None, self.bundle.task_net)
            return {}
        with torch.no_grad(), self.precision.autocast():
            soft_target = self.bundle.meta_learner(batch.image, batch.joint)
        with self.precision.autocast():
            out = self.task_gsm(batch.image)
        loss, parts = task_loss(out, batch, soft_target, self.hyper())
        self._private_step(self.task_dp, loss, self.bundle.task_net)
        return {k: float(v.detach()) for k, v in parts.items()}

    def stage_two_step(self, batch: Batch) -> dict[str, float]:
        """Per-example meta-gradients -> clip, sum, noise (one Gaussian mechanism)."""
        meta = self.bundle.meta_learner
        assert meta is not None and self.meta_dp is not None
        self.task_gsm.remove_hooks()  # only read here; its hooks would break torch.func
        # Kept in fp32 at every precision: under autocast, vmap(grad(...)) of the
        # per-example objective moved away from fp32 far more than the input's own
        # bf16 rounding does (update cosine 0.35 vs 0.95, docs/gpu.md), unexplained yet.
        try:
            grads, logs = per_example_meta_gradients(
                self.bundle.task_net,
                meta,
                batch,
                self.hyper(),
                num_diagnosis=self.cfg.dataset.num_diagnosis,
                num_quality=self.cfg.dataset.num_quality,
                momentum=self._momentum(),
            )
        finally:
            self.task_gsm.add_hooks(loss_reduction="mean")
        self.meta_dp.zero_grad(set_to_none=True)
        for name, p in meta.named_parameters():
            p.grad_sample = grads[name]
        self.meta_dp.step()
        self.meta_dp.zero_grad(set_to_none=True)
        self.ledger.step(sigma=self.meta_dp.noise_multiplier)
        return logs


def planned_steps(cfg: RunConfig, n: int, epochs: int) -> int:
    """Noisy steps that `epochs` local epochs on n examples take."""
    return epochs * passes_per_epoch(cfg) * steps_per_epoch(cfg, n)


def new_ledger(
    cfg: RunConfig, n: int, total_steps: int, budget: float | None = None
) -> PrivacyLedger:
    """A site's ledger: sigma fixed for the whole run (calibrated on `total_steps`)."""
    pc = cfg.privacy
    check_delta(pc.delta, n)
    q = sample_rate(cfg, n)
    prior = pretrained_privacy(cfg) or {"epsilon": 0.0, "delta": 0.0}
    if prior["epsilon"] and pc.target_epsilon is not None:
        left = pc.target_epsilon - prior["epsilon"]
        if left <= 0:
            raise UserError(
                f"--target-epsilon {pc.target_epsilon:g} is already spent by the initial "
                f"weights (epsilon {prior['epsilon']:g}); choose a larger target"
            )
        pc = pc.model_copy(update={"target_epsilon": left})
    sigma = calibrate(pc, q, total_steps)
    limit = (
        budget if budget is not None else (cfg.privacy.epsilon_budget or cfg.privacy.target_epsilon)
    )
    return PrivacyLedger(
        pc.accountant,
        pc.delta,
        sigma,
        q,
        limit,
        prior_epsilon=float(prior["epsilon"]),
        prior_delta=float(prior["delta"]),
    )


def resumed_ledger(cfg: RunConfig, n: int, saved_json: str, remaining_steps: int) -> PrivacyLedger:
    """A saved ledger continuing: its history kept, sigma recalibrated so that the
    remaining steps end at the target (exact either way: every step records its sigma)."""
    spent = PrivacyLedger.from_json(saved_json)
    q = sample_rate(cfg, n)
    if abs(spent.sample_rate - q) > 1e-12:
        raise UserError(
            f"the privacy ledger was kept at sampling rate {spent.sample_rate:g}, this "
            f"training set gives {q:g}: the data changed since the run started"
        )
    pc = cfg.privacy
    if spent.prior_epsilon and pc.target_epsilon is not None:
        pc = pc.model_copy(update={"target_epsilon": pc.target_epsilon - spent.prior_epsilon})
    spent.noise_multiplier = calibrate_remaining(pc, spent.history, q, remaining_steps)
    return spent
