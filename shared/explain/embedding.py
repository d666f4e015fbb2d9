"""What MKCNet's Fig. 8 projects: Meta Learner soft labels and final diagnosis features.

The diagnosis features are the input of the diagnosis head (`classifier1`): for a
Task Net the diagnosis GAB feature joined with the MAB's filtered auxiliary
feature, for a baseline the pooled backbone feature. They are captured with a
forward pre-hook, so no model code changes. The Meta Learner needs each image's
joint label (its output is masked to that block), hence labelled data.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.models import ModelBundle


@dataclass
class EmbeddingData:
    """Per image: diagnosis features [N, F], Meta Learner output [N, J*L] or None, labels."""

    diagnosis_features: np.ndarray
    meta_outputs: np.ndarray | None
    diagnosis: np.ndarray
    quality: np.ndarray


def _head(task_net: nn.Module) -> nn.Module:
    head = getattr(task_net, "classifier1", None)
    if not isinstance(head, nn.Module):
        raise ValueError(f"{type(task_net).__name__} has no diagnosis head `classifier1`")
    return head


@torch.no_grad()
def collect_embeddings(
    bundle: ModelBundle, loader: Iterable[Any], device: torch.device | str = "cpu"
) -> EmbeddingData:
    """Run the models once over `loader` (items: image, diagnosis, quality, joint)."""
    task_net = bundle.task_net.to(device).eval()
    meta = bundle.meta_learner.to(device).eval() if bundle.meta_learner is not None else None
    features: list[torch.Tensor] = []
    handle = _head(task_net).register_forward_pre_hook(
        lambda _m, args: features.append(args[0].detach().float().cpu())
    )
    metas: list[torch.Tensor] = []
    diagnosis: list[torch.Tensor] = []
    quality: list[torch.Tensor] = []
    try:
        for image, y_d, y_q, joint in loader:
            image = image.to(device)
            task_net(image)
            if meta is not None:
                metas.append(meta(image, joint.to(device)).float().cpu())
            diagnosis.append(y_d)
            quality.append(y_q)
    finally:
        handle.remove()
    if not features:
        raise ValueError("no images to embed (empty loader)")
    return EmbeddingData(
        torch.cat(features).flatten(1).numpy(),
        torch.cat(metas).numpy() if metas else None,
        torch.cat(diagnosis).numpy(),
        torch.cat(quality).numpy(),
    )


def default_perplexity(n: int) -> float:
    """scikit-learn's default 30, lowered for small sets (it must stay below n)."""
    return float(max(1.0, min(30.0, (n - 1) / 3.0)))


def tsne_2d(values: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """t-SNE to two dimensions (PCA init, automatic learning rate): [N, 2]."""
    from sklearn.manifold import TSNE

    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if n < 3:
        raise ValueError(f"t-SNE needs at least 3 images, got {n}")
    perplexity = default_perplexity(n) if perplexity is None else perplexity
    if not 0 < perplexity < n:
        raise ValueError(f"perplexity must be between 0 and the number of images ({n})")
    tsne = TSNE(
        n_components=2,
        perplexity=perplexity,
        init="pca",
        learning_rate="auto",
        random_state=seed,
    )
    return tsne.fit_transform(values).astype(np.float32)
