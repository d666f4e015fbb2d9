"""Model-side computations behind the pictures people judge a model by.

`grad_cam` computes Grad-CAM maps for each head of a Task Net (diagnosis, quality,
auxiliary), `embedding` collects the Meta Learner's soft labels and the diagnosis
features and projects them with t-SNE. Nothing here draws: plotting lives in the
CLI's report package, so sites and servers can use these without matplotlib.
"""

from shared.explain.embedding import EmbeddingData, collect_embeddings, tsne_2d
from shared.explain.grad_cam import HEADS, Explanation, grad_cam, target_layer

__all__ = [
    "HEADS",
    "EmbeddingData",
    "Explanation",
    "collect_embeddings",
    "grad_cam",
    "target_layer",
    "tsne_2d",
]
