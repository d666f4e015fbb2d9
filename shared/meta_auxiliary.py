"""Meta-auxiliary learning for MKCNet: the Meta Learner's (meta-)gradient.

The Meta Learner phi produces the soft auxiliary target y_w. It is trained so that a
pseudo SGD step of the Task Net on L_D + L_Q + L_W(y_w) lowers the primary losses:

    theta~ = theta - alpha * (grad_theta(L_D + L_Q + L_W) + wd * theta)
    phi   <- phi - beta * grad_phi[ L_D(theta~) + L_Q(theta~) + w_R * R(y_w) ]

Both Task Net passes go through `torch.func.functional_call` of the deployed module
(no hand-written twin forward) on cloned buffers, so the pseudo forward never moves
BatchNorm running statistics. `meta_objective` is the definition; `meta_gradient`
computes its exact gradient cheaply, or (`first_order=True`) a central
finite-difference approximation of the second-order term (DARTS / MAXL).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, jvp

from shared.losses import auxiliary_loss, entropy_regulariser, focal_loss
from shared.models.outputs import TaskOutputs

# The first `jvp` makes torch script its own JVP decompositions, and torch 2.14 warns that
# `torch.jit.script` is deprecated: torch's internals, nothing a user can act on.
warnings.filterwarnings(
    "ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning
)


@dataclass(frozen=True)
class MetaHyper:
    """The numbers the meta step needs; `lr` is the Task Net's current learning rate."""

    lr: float
    weight_decay: float
    entropy_weight: float
    meta_length: int
    gamma: float = 2.0
    momentum: float = 0.0
    fd_epsilon: float = 0.01
    per_example_entropy: bool = False  # the DP objective's regulariser (an ablation)


@dataclass
class Batch:
    image: torch.Tensor
    diagnosis: torch.Tensor
    quality: torch.Tensor
    joint: torch.Tensor

    @classmethod
    def from_items(cls, items: tuple[torch.Tensor, ...], device: torch.device | str) -> Batch:
        image, diagnosis, quality, joint = (t.to(device, non_blocking=True) for t in items)
        return cls(image, diagnosis, quality, joint)


@dataclass
class MetaStep:
    """One batch's result: phi's gradient, and theta's stage-I gradient when computed."""

    meta_grads: dict[str, torch.Tensor]
    task_grads: dict[str, torch.Tensor] | None
    losses: dict[str, float]


Params = dict[str, torch.Tensor]


def primary_losses(out: TaskOutputs, batch: Batch, gamma: float) -> torch.Tensor:
    """L_D + L_Q: the losses the meta step wants the pseudo-updated Task Net to lower
    (L_D alone for a model without a quality head: MAXL)."""
    loss = focal_loss(out.diagnosis, batch.diagnosis, gamma)
    if out.quality is not None:
        loss = loss + focal_loss(out.quality, batch.quality, gamma)
    return loss


def task_loss(
    out: TaskOutputs, batch: Batch, soft_target: torch.Tensor, hp: MetaHyper
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage I's L_D + L_Q + L_W (no L_Q without a quality head), with its terms."""
    assert out.auxiliary is not None
    parts = {"loss_diagnosis": focal_loss(out.diagnosis, batch.diagnosis, hp.gamma)}
    if out.quality is not None:
        parts["loss_quality"] = focal_loss(out.quality, batch.quality, hp.gamma)
    parts["loss_auxiliary"] = auxiliary_loss(out.auxiliary, soft_target, hp.meta_length, hp.gamma)
    return sum(parts.values()), parts  # type: ignore[return-value]


def _cloned_buffers(module: nn.Module, dtype: torch.dtype | None = None) -> Params:
    """Copies of the buffers; floating ones in `dtype` when given (a half-precision jvp)."""
    return {
        name: b.to(dtype) if dtype is not None and b.is_floating_point() else b.clone()
        for name, b in module.named_buffers()
    }


def _call(module: nn.Module, params: Mapping[str, torch.Tensor], *args: torch.Tensor):
    """The module's own forward on `params`; BN statistics go to throw-away copies (in
    the parameters' dtype when that is half precision)."""
    dtype = next(iter(params.values())).dtype if params else None
    half = dtype if dtype in (torch.float16, torch.bfloat16) else None
    return functional_call(module, ({**params}, _cloned_buffers(module, half)), args, strict=False)


def _pseudo_update(params: Params, grads: Params, hp: MetaHyper, momentum: Params | None) -> Params:
    """theta - alpha * (m + g + wd * theta); theta itself is a constant here."""
    out: Params = {}
    for name, theta in params.items():
        step = grads[name] + hp.weight_decay * theta.detach()
        if momentum is not None and hp.momentum and name in momentum:
            step = step + hp.momentum * momentum[name]
        out[name] = theta.detach() - hp.lr * step
    return out


def meta_objective(
    task_net: nn.Module,
    meta_learner: nn.Module,
    batch: Batch,
    hp: MetaHyper,
    meta_params: Params | None = None,
    momentum: Params | None = None,
) -> torch.Tensor:
    """L_D(theta~) + L_Q(theta~) + w_R R(y_w) as a differentiable function of phi.

    Pure with respect to both modules' state (parameters and BN buffers), so it can be
    evaluated repeatedly, e.g. for finite differences.
    """
    phi = meta_params if meta_params is not None else dict(meta_learner.named_parameters())
    theta = dict(task_net.named_parameters())
    soft_target = _call(meta_learner, phi, batch.image, batch.joint)
    loss, _ = task_loss(_call(task_net, theta, batch.image), batch, soft_target, hp)
    grads = _grads_or_zero(loss, theta, create_graph=True)
    theta_tilde = _pseudo_update(theta, grads, hp, momentum)
    pseudo_out = _call(task_net, theta_tilde, batch.image)
    return primary_losses(pseudo_out, batch, hp.gamma) + hp.entropy_weight * entropy_regulariser(
        soft_target, hp.per_example_entropy
    )


def _grads_or_zero(loss: torch.Tensor, params: Params, create_graph: bool = False) -> Params:
    grads = torch.autograd.grad(
        loss, list(params.values()), create_graph=create_graph, allow_unused=True
    )
    return {
        name: g if g is not None else torch.zeros_like(p)
        for (name, p), g in zip(params.items(), grads, strict=True)
    }


def meta_gradient(
    task_net: nn.Module,
    meta_learner: nn.Module,
    batch: Batch,
    hp: MetaHyper,
    *,
    first_order: bool = False,
    momentum: Params | None = None,
    return_task_grads: bool = False,
) -> MetaStep:
    """The Meta Learner's meta-gradient for one batch (the public entry point).

    Equals d/dphi of `meta_objective` exactly (second order), computed without a
    double backward: L_W is linear in y_w, so with v = grad_theta~ (L_D + L_Q)(theta~)

        d objective / d y_w = w_R dR/dy_w - alpha * J_theta[dL_W/dy_w](theta) . v,

    one forward-mode product (`torch.func.jvp`) through the Task Net's own forward,
    then one backward through the Meta Learner. `first_order=True` replaces the
    forward-mode product by central differences at theta +- eps v, eps = fd_epsilon/|v|
    (DARTS / MAXL).

    With `return_task_grads`, theta's gradient of L_D + L_Q + L_W from the same pass is
    returned too, so the fused schedule steps the Task Net without another pass; that
    pass then moves the Task Net's BN statistics exactly as a stage-I step would.
    Leaves `.grad` of both modules untouched.

    Mixed precision (bf16): call it under autocast. The losses, y_w, the gradients and
    the pseudo update stay fp32; the forward-mode product runs in bf16 throughout
    (`_in_autocast_dtype`). fp16 is refused for this step (shared.training.precision_rules).
    """
    theta = dict(task_net.named_parameters())
    phi = dict(meta_learner.named_parameters())
    soft_target = meta_learner(batch.image, batch.joint)  # graph to phi; its BN stats move
    target = soft_target.detach()
    out = task_net(batch.image) if return_task_grads else _call(task_net, theta, batch.image)
    loss, parts = task_loss(out, batch, target, hp)
    grads = _grads_or_zero(loss, theta)
    pseudo = _pseudo_update(theta, grads, hp, momentum)
    theta_tilde = {k: v.requires_grad_(True) for k, v in pseudo.items()}
    primary = primary_losses(_call(task_net, theta_tilde, batch.image), batch, hp.gamma)
    direction = _grads_or_zero(primary, theta_tilde)

    constants = {k: t.detach() for k, t in theta.items()}
    if first_order:
        norm = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
        eps = hp.fd_epsilon / max(float(norm), 1e-12)
        plus, minus = (
            _aux_target_gradient(
                task_net,
                {k: t + sign * eps * direction[k] for k, t in constants.items()},
                batch,
                target,
                hp,
            )
            for sign in (1.0, -1.0)
        )
        mixed = (plus - minus) / (2 * eps)
    else:
        _, mixed = jvp(
            lambda params: _aux_target_gradient(task_net, params, batch, target, hp),
            *_in_autocast_dtype(constants, direction, batch.image.device),
        )

    entropy = entropy_regulariser(soft_target, hp.per_example_entropy)
    d_entropy = torch.autograd.grad(entropy, soft_target, retain_graph=True)[0]
    upstream = hp.entropy_weight * d_entropy - hp.lr * mixed.detach()
    meta_grads = torch.autograd.grad(
        soft_target, list(phi.values()), grad_outputs=upstream, allow_unused=True
    )
    logs = {k: float(v.detach()) for k, v in parts.items()}
    logs["entropy"] = float(entropy.detach())
    logs["meta_objective"] = float(primary.detach()) + hp.entropy_weight * logs["entropy"]
    return MetaStep(
        {
            name: g if g is not None else torch.zeros_like(p)
            for (name, p), g in zip(phi.items(), meta_grads, strict=True)
        },
        grads if return_task_grads else None,
        logs,
    )


def _in_autocast_dtype(
    primals: Params, tangents: Params, device: torch.device
) -> tuple[tuple[Params], tuple[Params]]:
    """The jvp's parameters and tangents in autocast's dtype when autocast is on.

    Under autocast a normalisation layer gets a half-precision input and fp32 weights;
    its forward-mode rule then gives an fp32 tangent for a half primal, which the next
    convolution refuses. With every parameter (and tangent) in the autocast dtype the
    product runs consistently in that precision; fp32 runs are unchanged."""
    if not torch.is_autocast_enabled(device.type):
        return (primals,), (tangents,)
    dtype = torch.get_autocast_dtype(device.type)
    return ({k: t.to(dtype) for k, t in primals.items()},), (
        {k: t.to(dtype) for k, t in tangents.items()},
    )


def _aux_target_gradient(
    task_net: nn.Module, params: Params, batch: Batch, target: torch.Tensor, hp: MetaHyper
) -> torch.Tensor:
    """dL_W/dy_w at the Task Net `params`: the coefficient of y_w in the linear L_W."""

    def aux(soft: torch.Tensor) -> torch.Tensor:
        logits = _call(task_net, params, batch.image).auxiliary
        return auxiliary_loss(logits, soft, hp.meta_length, hp.gamma)

    return grad(aux)(target)
