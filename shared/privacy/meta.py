"""Per-example meta-gradients of the Meta Learner, for a DP step on its update.

MKCNet's meta step couples the examples of a batch twice: the pseudo update of the
Task Net uses the whole batch's auxiliary loss, and the entropy regulariser takes the
entropy of the batch-mean soft label. Neither has a per-example sensitivity. Here
each example i gets its own objective, a function of example i alone:

    theta~_i = theta - alpha * (grad_theta L_task(theta; x_i, y_w(x_i; phi)) + wd theta [+ m])
    f_i(phi) = L_D(theta~_i; x_i) + L_Q(theta~_i; x_i) + w_R * sum_k y_ik log y_ik

and `torch.func.vmap(grad(f_i))` gives every per-example gradient d f_i / d phi in
one batched pass (exact second order: the inner `grad` is differentiated through).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from shared.losses import LOG_FLOOR
from shared.meta_auxiliary import Batch, MetaHyper, primary_losses, task_loss

Params = dict[str, torch.Tensor]


def per_example_entropy(soft_labels: torch.Tensor) -> torch.Tensor:
    """R_i = sum_k y_ik log y_ik, one value per row (the per-example regulariser)."""
    return (soft_labels * torch.log(soft_labels + LOG_FLOOR)).sum(dim=1)


def per_example_meta_gradients(
    task_net: nn.Module,
    meta_learner: nn.Module,
    batch: Batch,
    hp: MetaHyper,
    *,
    num_diagnosis: int,
    num_quality: int,
    momentum: Params | None = None,
) -> tuple[Params, dict[str, float]]:
    """{name: [B, *shape]} gradients of each f_i w.r.t. phi, and mean logs.

    Both modules must be free of BatchNorm (GroupNorm works per example); neither
    module's state or `.grad` is touched.
    """
    theta = {k: v.detach() for k, v in task_net.named_parameters()}
    phi = {k: v.detach() for k, v in meta_learner.named_parameters()}
    task_buffers = {k: b.detach() for k, b in task_net.named_buffers()}
    meta_buffers = {k: b.detach() for k, b in meta_learner.named_buffers()}
    mom = {k: v.detach() for k, v in (momentum or {}).items()} if hp.momentum else {}
    # one-hot outside vmap: the losses take probability targets as well as indices
    diag = F.one_hot(batch.diagnosis.long(), num_diagnosis).float()
    qual = F.one_hot(batch.quality.long(), num_quality).float()

    def objective(
        params: Params, x: torch.Tensor, d: torch.Tensor, q: torch.Tensor, j: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        example = Batch(x[None], d[None], q[None], j[None])
        soft = functional_call(meta_learner, (params, meta_buffers), (example.image, example.joint))

        def stage_one(task_params: Params) -> torch.Tensor:
            logits = functional_call(task_net, (task_params, task_buffers), (example.image,))
            return task_loss(logits, example, soft, hp)[0]

        g = grad(stage_one)(theta)
        pseudo = {
            k: t
            - hp.lr * (g[k] + hp.weight_decay * t + (hp.momentum * mom[k] if k in mom else 0.0))
            for k, t in theta.items()
        }
        primary = primary_losses(
            functional_call(task_net, (pseudo, task_buffers), (example.image,)),
            example,
            hp.gamma,
        )
        entropy = per_example_entropy(soft)[0]
        return primary + hp.entropy_weight * entropy, (primary, entropy)

    if not len(batch.image):  # an empty Poisson batch: no example, no gradient
        return {
            k: torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device) for k, p in phi.items()
        }, {}
    per_example, (primary, entropy) = vmap(
        grad(objective, has_aux=True), in_dims=(None, 0, 0, 0, 0)
    )(phi, batch.image, diag, qual, batch.joint)
    logs = {
        "meta_primary": float(primary.mean()),
        "entropy": float(entropy.mean()),
        "meta_objective": float((primary + hp.entropy_weight * entropy).mean()),
    }
    return per_example, logs
