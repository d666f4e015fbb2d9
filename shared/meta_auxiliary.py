"""Meta-auxiliary learning for MKCNet: the Meta Learner's (meta-)gradient.

The Meta Learner phi produces the soft auxiliary target y_w. It is trained so that a
pseudo SGD step of the Task Net on L_D + L_Q + L_W(y_w) lowers the primary losses:

    theta~ = theta - alpha * (grad_theta(L_D + L_Q + L_W) + wd * theta)
    phi   <- phi - beta * grad_phi[ L_D(theta~) + L_Q(theta~) + w_R * R(y_w) ]

Both Task Net passes go through `torch.func.functional_call` of the deployed module
(no hand-written twin forward) on cloned buffers, so the pseudo forward never moves
BatchNorm running statistics. `first_order=True` replaces the second-order term with
a central finite-difference Hessian-vector product (DARTS / MAXL).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from shared.losses import auxiliary_loss, entropy_regulariser, focal_loss
from shared.models.outputs import TaskOutputs


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
    """L_D + L_Q: the losses the meta step wants the pseudo-updated Task Net to lower."""
    assert out.quality is not None
    return focal_loss(out.diagnosis, batch.diagnosis, gamma) + focal_loss(
        out.quality, batch.quality, gamma
    )


def task_loss(
    out: TaskOutputs, batch: Batch, soft_target: torch.Tensor, hp: MetaHyper
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Stage I's L_D + L_Q + L_W, with its terms for logging."""
    assert out.quality is not None and out.auxiliary is not None
    parts = {
        "loss_diagnosis": focal_loss(out.diagnosis, batch.diagnosis, hp.gamma),
        "loss_quality": focal_loss(out.quality, batch.quality, hp.gamma),
        "loss_auxiliary": auxiliary_loss(out.auxiliary, soft_target, hp.meta_length, hp.gamma),
    }
    return sum(parts.values()), parts  # type: ignore[return-value]


def _cloned_buffers(module: nn.Module) -> Params:
    return {name: b.clone() for name, b in module.named_buffers()}


def _call(module: nn.Module, params: Mapping[str, torch.Tensor], *args: torch.Tensor):
    """The module's own forward on `params`; BN statistics go to throw-away copies."""
    return functional_call(module, ({**params}, _cloned_buffers(module)), args, strict=False)


def _pseudo_update(
    params: Params, grads: Params, hp: MetaHyper, momentum: Params | None
) -> Params:
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
        soft_target
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

    Exact second order by default: d/dphi of `meta_objective`, through the Task Net's
    own forward. With `first_order=True`, the Hessian-vector product is replaced by a
    central difference of grad_phi L_W at theta +- eps * v (eps = fd_epsilon / |v|).
    With `return_task_grads`, theta's gradient of L_D + L_Q + L_W from the same pass is
    returned too, so the fused schedule can step the Task Net without another
    forward/backward; the Task Net's BN statistics are then updated by that pass,
    exactly as a stage-I step would.

    Leaves `.grad` of both modules untouched.
    """
    theta = dict(task_net.named_parameters())
    phi = dict(meta_learner.named_parameters())
    soft_target = meta_learner(batch.image, batch.joint)  # graph to phi; BN stats move
    out = task_net(batch.image) if return_task_grads else _call(task_net, theta, batch.image)
    loss, parts = task_loss(out, batch, soft_target, hp)
    entropy = entropy_regulariser(soft_target)
    logs = {k: float(v.detach()) for k, v in parts.items()} | {"entropy": float(entropy.detach())}

    if not first_order:
        grads = _grads_or_zero(loss, theta, create_graph=True)
        pseudo_out = _call(task_net, _pseudo_update(theta, grads, hp, momentum), batch.image)
        objective = primary_losses(pseudo_out, batch, hp.gamma) + hp.entropy_weight * entropy
        meta_grads = torch.autograd.grad(objective, list(phi.values()), allow_unused=True)
        logs["meta_objective"] = float(objective.detach())
    else:
        grads = {k: g.detach() for k, g in _grads_or_zero(loss, theta).items()}
        meta_grads = _finite_difference_meta_grads(
            task_net, theta, list(phi.values()), grads, soft_target, entropy, batch, hp,
            momentum, logs,
        )
    task_grads = {k: g.detach() for k, g in grads.items()} if return_task_grads else None
    return MetaStep(
        {
            name: g if g is not None else torch.zeros_like(p)
            for (name, p), g in zip(phi.items(), meta_grads, strict=True)
        },
        task_grads,
        logs,
    )


def _finite_difference_meta_grads(
    task_net: nn.Module,
    theta: Params,
    phi: list[torch.Tensor],
    grads: Params,
    soft_target: torch.Tensor,
    entropy: torch.Tensor,
    batch: Batch,
    hp: MetaHyper,
    momentum: Params | None,
    logs: dict[str, float],
) -> tuple[torch.Tensor | None, ...]:
    """-alpha * H v by central differences, plus w_R dR/dphi, in one Meta Learner backward.

    Only L_W depends on phi, and only through y_w, so dL_W(theta +- eps v)/dy_w is all
    the two probe passes need; one backward through the Meta Learner finishes the job.
    """
    pseudo = _pseudo_update(theta, grads, hp, momentum)
    theta_tilde = {k: v.requires_grad_(True) for k, v in pseudo.items()}
    objective = primary_losses(_call(task_net, theta_tilde, batch.image), batch, hp.gamma)
    logs["meta_objective"] = float(objective.detach()) + hp.entropy_weight * logs["entropy"]
    direction = _grads_or_zero(objective, theta_tilde)
    norm = torch.sqrt(sum((d.double() ** 2).sum() for d in direction.values()))
    eps = hp.fd_epsilon / max(float(norm), 1e-12)

    target = soft_target.detach().requires_grad_(True)

    def d_aux_d_target(sign: float) -> torch.Tensor:
        with torch.no_grad():
            probe = {k: t.detach() + sign * eps * direction[k] for k, t in theta.items()}
            logits = _call(task_net, probe, batch.image).auxiliary
        loss = auxiliary_loss(logits, target, hp.meta_length, hp.gamma)
        return torch.autograd.grad(loss, target)[0]

    hvp_wrt_target = (d_aux_d_target(+1.0) - d_aux_d_target(-1.0)) / (2 * eps)
    entropy_wrt_target = torch.autograd.grad(entropy, soft_target, retain_graph=True)[0]
    upstream = hp.entropy_weight * entropy_wrt_target - hp.lr * hvp_wrt_target
    return torch.autograd.grad(soft_target, phi, grad_outputs=upstream, allow_unused=True)

