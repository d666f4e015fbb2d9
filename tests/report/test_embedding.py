"""Embeddings for Fig. 8: the diagnosis head's input and the Meta Learner's soft labels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.explain import collect_embeddings, tsne_2d
from shared.explain.embedding import default_perplexity
from shared.models import build_models
from tests.support.configs import tiny_batch, tiny_config


def _loader(cfg, n: int = 12):
    batch = tiny_batch(cfg, n)
    return [
        (
            batch.image[i : i + 4],
            batch.diagnosis[i : i + 4],
            batch.quality[i : i + 4],
            batch.joint[i : i + 4],
        )
        for i in range(0, n, 4)
    ]


def test_collects_diagnosis_features_and_meta_outputs():
    torch.manual_seed(0)
    cfg = tiny_config()
    bundle = build_models(cfg)
    data = collect_embeddings(bundle, _loader(cfg))
    width = bundle.task_net.classifier1[0].in_features
    assert data.diagnosis_features.shape == (12, width)
    assert data.meta_outputs.shape == (12, cfg.dataset.joint_classes * cfg.model.meta_length)
    # each soft label sits in its own joint block and sums to one
    assert np.allclose(data.meta_outputs.sum(1), 1.0, atol=1e-5)
    batch = tiny_batch(cfg, 12)
    blocks = data.meta_outputs.reshape(12, cfg.dataset.joint_classes, -1).sum(2).argmax(1)
    assert (blocks == batch.joint.numpy()).all()
    assert (data.diagnosis == batch.diagnosis.numpy()).all()


def test_without_meta_learner_only_features():
    cfg = tiny_config(method="vanilla")
    data = collect_embeddings(build_models(cfg), _loader(cfg))
    assert data.meta_outputs is None and data.diagnosis_features.shape[0] == 12


def test_tsne_shapes_and_small_sets():
    x = np.random.default_rng(0).normal(size=(10, 5))
    xy = tsne_2d(x, seed=0)
    assert xy.shape == (10, 2) and np.isfinite(xy).all()
    assert np.allclose(xy, tsne_2d(x, seed=0))  # seeded
    assert default_perplexity(10) == 3.0 and default_perplexity(1000) == 30.0
    with pytest.raises(ValueError, match="at least 3"):
        tsne_2d(x[:2])
    with pytest.raises(ValueError, match="perplexity"):
        tsne_2d(x, perplexity=10)
