"""Does mixed precision keep MKCNet's gradients? fp32 vs bf16 / fp16 on one batch.

For the same weights and batch, the exact (second-order) meta-gradient of the Meta
Learner and the stage-I gradient of the Task Net are computed in fp32 and under each
lower precision, exactly as `LocalTrainer` computes them (autocast forward, fp32
losses, fp16 loss scaling), and compared: cosine similarity and relative error
|g - g_fp32| / |g_fp32|. `fediqad bench precision` prints the table; docs/gpu.md has
the measured numbers.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch

from shared.config import RunConfig
from shared.errors import UserError
from shared.meta_auxiliary import Batch, MetaHyper, meta_gradient, task_loss
from shared.methods import get_method
from shared.models import ModelBundle, build_models
from shared.training.local import meta_hyper
from shared.training.precision import Precision, StepPrecision

Grads = dict[str, torch.Tensor]
ROUNDED_INPUT = "fp32, bf16-rounded input"


@dataclass(frozen=True)
class GradientAgreement:
    precision: str
    quantity: str
    cosine: float
    relative_error: float
    seconds: float


def synthetic_batch(cfg: RunConfig, n: int, seed: int = 0) -> Batch:
    """`n` random images cycling through every (diagnosis, quality) pair."""
    g = torch.Generator().manual_seed(seed)
    ds = cfg.dataset
    diagnosis = torch.arange(n) % ds.num_diagnosis
    quality = (torch.arange(n) // ds.num_diagnosis) % ds.num_quality
    image = torch.randn(n, ds.channels, cfg.image_size, cfg.image_size, generator=g)
    return Batch(image, diagnosis, quality, quality * ds.num_diagnosis + diagnosis)


def step_gradients(
    bundle: ModelBundle, batch: Batch, hp: MetaHyper, amp: StepPrecision
) -> tuple[Grads, Grads]:
    """(meta-gradient of phi, stage-I gradient of theta) as the trainer's stage-II and
    stage-I steps compute them under `amp` (the meta step has no loss scaling: fp16 is
    refused for it, and this shows why)."""
    assert bundle.meta_learner is not None
    batch = Batch(amp.images(batch.image), batch.diagnosis, batch.quality, batch.joint)
    with amp.autocast():
        step = meta_gradient(bundle.task_net, bundle.meta_learner, batch, hp)
    return step.meta_grads, stage_one_gradient(bundle, batch, hp, amp)


def stage_one_gradient(
    bundle: ModelBundle, batch: Batch, hp: MetaHyper, amp: StepPrecision
) -> Grads:
    """theta's gradient of L_D + L_Q + L_W; fp16 halves its loss scale until nothing
    overflows, as GradScaler would."""
    assert bundle.meta_learner is not None
    params = dict(bundle.task_net.named_parameters())
    scale = amp.loss_scale
    while True:
        with amp.autocast():
            with torch.no_grad():
                soft = bundle.meta_learner(batch.image, batch.joint)
            out = bundle.task_net(batch.image)
        loss, _ = task_loss(out, batch, soft, hp)
        grads = torch.autograd.grad(loss * scale, list(params.values()), allow_unused=True)
        found = {
            name: (g if g is not None else torch.zeros_like(p)) / scale
            for (name, p), g in zip(params.items(), grads, strict=True)
        }
        if scale <= 1.0 or all(bool(torch.isfinite(g).all()) for g in found.values()):
            return found
        scale /= 2.0


def _flat(grads: Grads) -> torch.Tensor:
    return torch.cat([g.detach().double().flatten().cpu() for g in grads.values()])


def compare(reference: Grads, other: Grads) -> tuple[float, float]:
    """(cosine, relative error) of two gradients over all parameters."""
    a, b = _flat(reference), _flat(other)
    cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
    return cosine, float((b - a).norm() / a.norm().clamp_min(1e-300))


def gradient_agreement(
    cfg: RunConfig,
    *,
    batch_size: int = 4,
    device: torch.device | str = "cpu",
    precisions: tuple[Precision, ...] = ("bf16", "fp16"),
    channels_last: bool = False,
    seed: int = 0,
) -> list[GradientAgreement]:
    """Rows for every precision in `precisions` against fp32 (same weights, batch, BN
    state: each precision starts from a copy of the same freshly built models), and a
    reference row: fp32 on the batch rounded to bf16, i.e. how far the gradient moves
    when only the input changes by bf16's resolution (at random initialisation a BN
    network is ill-conditioned, and no precision can agree better than that)."""
    if get_method(cfg.method).step != "meta-auxiliary":
        raise UserError(
            f"--method {cfg.method} has no Meta Learner; use mkcnet or another meta method"
        )
    torch.manual_seed(seed)
    device = torch.device(device)
    base = build_models(cfg).to(device)
    base.train()
    batch = synthetic_batch(cfg, batch_size, seed)
    batch = Batch(
        *(t.to(device) for t in (batch.image, batch.diagnosis, batch.quality, batch.joint))
    )
    hp = meta_hyper(cfg, cfg.optim.lr)  # no momentum buffers: the first step's gradient
    results: dict[str, tuple[Grads, Grads, float]] = {}
    for name in ("fp32", *precisions):
        bundle = copy.deepcopy(base)
        amp = StepPrecision(name, device, channels_last)  # type: ignore[arg-type]
        for module in bundle.modules().values():
            amp.module(module)
        start = time.perf_counter()
        meta, stage_one = step_gradients(bundle, batch, hp, amp)
        results[name] = (meta, stage_one, time.perf_counter() - start)
    # the conditioning floor: fp32 on the batch rounded to bf16 (a 0.4 % input change)
    rounded = Batch(batch.image.bfloat16().float(), batch.diagnosis, batch.quality, batch.joint)
    start = time.perf_counter()
    floor = step_gradients(
        copy.deepcopy(base), rounded, hp, StepPrecision("fp32", device, channels_last)
    )
    results[ROUNDED_INPUT] = (*floor, time.perf_counter() - start)
    ref_meta, ref_one, _ = results["fp32"]
    rows = []
    for name in (*precisions, ROUNDED_INPUT):
        meta, stage_one, seconds = results[name]
        rows.append(GradientAgreement(name, "meta (phi)", *compare(ref_meta, meta), seconds))
        rows.append(
            GradientAgreement(name, "stage I (theta)", *compare(ref_one, stage_one), seconds)
        )
    return rows
