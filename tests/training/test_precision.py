"""Mixed precision and channels-last in every training step, against fp32 on CPU.

Each step kind runs once in fp32 and once in bf16 (fp16 with its loss scaler where it is
allowed) from the same weights on the same batch. A lower precision must (a) really run
its convolutions in that dtype, in every pass of the step (the meta step's functional
and forward-mode passes too), (b) leave parameters, gradients and optimiser state in
fp32, and (c) move the weights in nearly the direction fp32 does. At random
initialisation a BatchNorm VGG is ill-conditioned (rounding the *input* to bf16 alone
moves its gradient to cosine ~0.96, see docs/gpu.md), so the bounds are set from
measured values with a margin, and each was checked to fail on a broken variant.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from shared.config import RunConfig
from shared.losses import entropy_regulariser, focal_loss
from shared.models import build_models
from shared.training import LocalTrainer
from shared.training.precision import StepPrecision
from tests.support.configs import dp_config, tiny_batch, tiny_config

STEP_KINDS = ["vanilla", "stage I", "stage II", "fused", "DP stage I"]
# the update's cosine with fp32's, measured (bf16, fp16) minus a margin; see module doc
MIN_COSINE = {"bf16": 0.6, "fp16": 0.9}


def _cfg(kind: str, precision: str) -> RunConfig:
    cfg = dp_config() if kind.startswith("DP") else tiny_config(width=0.25)
    cfg.method = "vanilla" if kind == "vanilla" else "mkcnet"  # type: ignore[assignment]
    cfg.schedule = "fused" if kind == "fused" else "paper"  # type: ignore[assignment]
    cfg.optim.weight_decay = cfg.optim.meta_weight_decay = 0.0  # the update is the gradient
    cfg.precision = precision  # type: ignore[assignment]
    cfg.device = "cpu"
    return cfg


def _trainer(cfg: RunConfig):
    torch.manual_seed(0)
    bundle = build_models(cfg)
    if cfg.privacy.mode == "sample":
        from shared.privacy.trainer import DPLocalTrainer, new_ledger

        cfg.privacy.noise_multiplier = 0.0  # no noise: the step is deterministic
        return DPLocalTrainer(cfg, bundle, "cpu", new_ledger(cfg, 64, 10))
    return LocalTrainer(cfg, bundle, "cpu")


def _step(trainer, kind: str) -> dict[str, float]:
    batch = tiny_batch(trainer.cfg, n=8)
    batch.image = trainer.precision.images(batch.image)
    if kind == "vanilla":
        return trainer._supervised_step(batch)
    if kind == "fused":
        return trainer._fused_step(batch)
    if kind.endswith("stage I"):
        return trainer.stage_one_step(batch)
    return trainer.stage_two_step(batch)


def _conv_dtypes(model) -> list[torch.dtype]:
    """Records the output dtype of every convolution call of a module or bundle."""
    seen: list[torch.dtype] = []
    modules = model.modules().values() if hasattr(model, "task_net") else [model]
    for module in modules:
        for layer in module.modules():
            if isinstance(layer, nn.Conv2d):
                layer.register_forward_hook(lambda m, i, out: seen.append(out.dtype))
    return seen


def _run(kind: str, precision: str):
    """One step; (flat update of every parameter, logs, conv dtypes seen, trainer)."""
    trainer = _trainer(_cfg(kind, precision))
    bundle = trainer.bundle
    before = {n: p.detach().clone() for n, p in _named_params(bundle)}
    seen = _conv_dtypes(bundle)
    logs = _step(trainer, kind)
    update = torch.cat([(p.detach() - before[n]).flatten() for n, p in _named_params(bundle)])
    return update.double(), logs, seen, trainer


def _named_params(bundle):
    for name, module in bundle.modules().items():
        for pname, p in module.named_parameters():
            yield f"{name}.{pname}", p


def _assert_fp32_state(trainer) -> None:
    for _, p in _named_params(trainer.bundle):
        assert p.dtype == torch.float32 and (p.grad is None or p.grad.dtype == torch.float32)
    for optimizer in (trainer.task_optimizer, trainer.meta_optimizer):
        for state in (optimizer.state if optimizer else {}).values():
            for value in state.values():
                if torch.is_tensor(value) and value.is_floating_point():
                    assert value.dtype == torch.float32


@pytest.mark.parametrize("kind", STEP_KINDS)
def test_bf16_steps_run_in_bf16_and_move_the_weights_like_fp32(kind):
    reference, ref_logs, _, _ = _run(kind, "fp32")
    update, logs, seen, trainer = _run(kind, "bf16")
    assert seen and set(seen) == {torch.bfloat16}, seen  # every conv, every pass
    assert all(torch.isfinite(torch.tensor(v)) for v in logs.values()), logs
    assert logs.keys() == ref_logs.keys()
    _assert_fp32_state(trainer)
    assert update.norm() > 0 and not torch.equal(update, reference)
    cosine = float(F.cosine_similarity(update, reference, dim=0))
    assert cosine > MIN_COSINE["bf16"], cosine


def test_fp16_baseline_step_uses_the_loss_scaler():
    """fp16 runs the methods without a meta step (MKCNet's is refused: see below)."""
    kind = "vanilla"
    reference, _, _, _ = _run(kind, "fp32")
    update, logs, seen, trainer = _run(kind, "fp16")
    assert set(seen) == {torch.float16}
    scaler = trainer.precision.scaler
    assert scaler is not None and scaler.get_scale() > 1  # a scaled backward happened
    assert "grad_scaler" in trainer.optimizer_state()
    _assert_fp32_state(trainer)
    if update.norm() == 0:  # the scaler skipped an overflowing first step: take another
        before = torch.cat([p.detach().flatten() for _, p in _named_params(trainer.bundle)])
        _step(trainer, kind)
        after = torch.cat([p.detach().flatten() for _, p in _named_params(trainer.bundle)])
        update = (after - before).double()
    cosine = float(F.cosine_similarity(update, reference, dim=0))
    assert cosine > MIN_COSINE["fp16"], cosine


def test_comcl_step_runs_under_autocast_with_fp32_loss():
    from shared.contrastive.pretrain import ContrastivePretrainer, build_contrastive_model
    from tests.support.configs import comcl_config

    updates = {}
    for precision in ("fp32", "bf16"):
        cfg = comcl_config()
        cfg.precision = precision  # type: ignore[assignment]
        torch.manual_seed(0)
        trainer = ContrastivePretrainer(cfg, build_contrastive_model(cfg, with_weights=False))
        before = [p.detach().clone() for p in trainer.model.parameters()]
        seen = _conv_dtypes(trainer.model)
        patches = torch.randint(0, 255, (16, 3, 16, 16), dtype=torch.uint8)
        torch.manual_seed(1)  # the same augmented views in both precisions
        logs = trainer.step(patches, torch.arange(16) % 4, torch.arange(16), step=0, total_steps=4)
        assert torch.isfinite(torch.tensor(logs["loss"]))
        assert set(seen) == {torch.float32 if precision == "fp32" else torch.bfloat16}
        assert all(p.dtype == torch.float32 for p in trainer.model.parameters())
        updates[precision] = torch.cat(
            [
                (p.detach() - b).flatten()
                for p, b in zip(trainer.model.parameters(), before, strict=True)
            ]
        )
    cosine = float(F.cosine_similarity(updates["bf16"], updates["fp32"], dim=0))
    assert cosine > 0.6, cosine  # measured 0.80 (Adam's first step, BN VGG at init)


def test_losses_stay_fp32_under_autocast():
    """bf16 logits in, fp32 loss and logit gradient out, as precise as fp32 maths on the
    same (bf16-valued) logits; a loss computed in bf16 is off by ~1e-3 relative."""
    torch.manual_seed(0)
    logits = torch.randn(16, 5).bfloat16().requires_grad_(True)
    target = torch.softmax(torch.randn(16, 5), dim=1)
    exact = logits.detach().double().requires_grad_(True)
    reference = focal_loss(exact, target.double())
    (reference_grad,) = torch.autograd.grad(reference, exact)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = focal_loss(logits, target) + 0 * entropy_regulariser(torch.softmax(logits, 1))
        (grad,) = torch.autograd.grad(loss, logits)
    assert loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(reference), rel=1e-6)
    # the logit gradient flows back in bf16 (the logits' dtype), rounded once
    assert torch.allclose(grad.double(), reference_grad, rtol=1e-2, atol=1e-4)


def test_meta_gradient_agrees_with_fp32_as_well_as_the_input_allows():
    """bf16's exact meta-gradient vs fp32's: close to the conditioning floor (fp32 on
    the bf16-rounded input); fp16 cannot carry the forward-mode product (NaN)."""
    from shared.training.precision_check import ROUNDED_INPUT, gradient_agreement

    cfg = tiny_config(width=0.25)
    rows = {(r.precision, r.quantity): r for r in gradient_agreement(cfg, batch_size=4)}
    bf16 = rows["bf16", "meta (phi)"]
    floor = rows[ROUNDED_INPUT, "meta (phi)"]
    assert bf16.cosine > 0.8 and bf16.cosine > floor.cosine - 0.15, (bf16, floor)
    assert rows["bf16", "stage I (theta)"].cosine > 0.6
    assert rows["fp16", "stage I (theta)"].cosine > 0.9
    assert not torch.isfinite(torch.tensor(rows["fp16", "meta (phi)"].cosine))


def test_dp_per_example_meta_step_stays_fp32():
    """bf16 is not applied to DP's vmap(grad) meta step (docs/gpu.md): same update."""
    reference, _, _, _ = _run("DP stage II", "fp32")
    update, _, seen, _ = _run("DP stage II", "bf16")
    assert set(seen) == {torch.float32} and torch.equal(update, reference)


def test_fp16_is_refused_where_loss_scaling_cannot_work():
    from shared.errors import UserError
    from shared.training.precision_rules import refuse_unsupported_precision

    meta = tiny_config()
    meta.precision = "fp16"  # type: ignore[assignment]
    with pytest.raises(UserError, match="meta step"):
        LocalTrainer(meta, build_models(meta))
    dp = _cfg("DP stage I", "fp16")
    dp.method = "vanilla"  # type: ignore[assignment]
    with pytest.raises(UserError, match="--dp sample"):
        refuse_unsupported_precision(dp)


def test_channels_last_gives_the_same_step_and_really_is_channels_last():
    results = {}
    for layout in (False, True):
        cfg = _cfg("fused", "fp32")
        cfg.channels_last = layout
        trainer = _trainer(cfg)
        convs = [m for m in trainer.bundle.task_net.modules() if isinstance(m, nn.Conv2d)]
        fmt = torch.channels_last if layout else torch.contiguous_format
        assert all(c.weight.is_contiguous(memory_format=fmt) for c in convs)
        inputs: list[torch.Tensor] = []
        convs[0].register_forward_hook(lambda m, i, out, inputs=inputs: inputs.append(i[0]))
        batch = tiny_batch(cfg, n=8)
        with torch.no_grad():
            out = trainer.bundle.task_net(trainer.precision.images(batch.image)).diagnosis
        assert inputs[0].is_contiguous(memory_format=fmt)
        logs = _step(trainer, "fused")
        params = torch.cat([p.detach().flatten() for _, p in _named_params(trainer.bundle)])
        results[layout] = (out, logs, params)
    (out_a, logs_a, params_a), (out_b, logs_b, params_b) = results[False], results[True]
    assert torch.allclose(out_a, out_b, rtol=1e-4, atol=1e-5)
    assert logs_a == pytest.approx(logs_b, rel=1e-4)
    assert torch.allclose(params_a, params_b, rtol=1e-4, atol=1e-6)


def test_precision_resolution_and_recorded_settings():
    amp = StepPrecision.for_run("auto", None, "cpu")
    assert amp.describe() == {"precision": "fp32", "channels_last": False}
    amp = StepPrecision.for_run("fp16", True, "cpu")
    assert amp.describe() == {"precision": "fp16", "channels_last": True}
    assert amp.scaler is not None and StepPrecision.for_run("bf16", None, "cpu").scaler is None
    x = torch.randn(2, 3, 8, 8)
    assert amp.images(x).is_contiguous(memory_format=torch.channels_last)


def test_a_resumed_optimizer_state_keeps_or_drops_the_scaler():
    cfg = _cfg("vanilla", "fp16")
    trainer = _trainer(cfg)
    _step(trainer, "vanilla")
    state = copy.deepcopy(trainer.optimizer_state())
    scale = trainer.precision.scaler.get_scale()
    again = _trainer(cfg)
    again.load_optimizer_state(state)
    assert again.precision.scaler.get_scale() == scale
    bf16 = _trainer(_cfg("vanilla", "bf16"))
    bf16.load_optimizer_state(state)  # a run that changed to bf16 on resume
    assert bf16.precision.scaler is None
    fp16 = _trainer(cfg)
    fp16.load_optimizer_state(bf16.optimizer_state())  # and back: a fresh scaler
    assert fp16.precision.scaler.get_scale() == 2.0**16
