"""Grad-CAM: maps finite, non-negative, image-sized; the hook sees the full-resolution
activation (not the pooled 1x1 map) and gives the same gradient as doing it by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from shared.explain import HEADS, grad_cam, target_layer
from shared.models import build_models
from tests.support.configs import tiny_config


def _images(cfg, n: int = 3, size: int | None = None) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    size = size or cfg.image_size
    return torch.randn(n, cfg.dataset.channels, size, size, generator=g)


def _model(method: str = "mkcnet", dataset: str = "EYEQ", size: int = 64, **model):
    torch.manual_seed(0)
    cfg = tiny_config(dataset, method, **model)
    cfg.image_size = size
    return cfg, build_models(cfg).task_net.eval()


@pytest.mark.parametrize("gab", ["pooled", "spatial"])
@pytest.mark.parametrize("dataset", ["EYEQ", "IQAD_CT"])
def test_maps_are_finite_non_negative_and_image_sized(gab, dataset):
    cfg, net = _model(dataset=dataset, gab=gab)
    x = _images(cfg)
    exp = grad_cam(net, x)
    assert set(exp.maps) == set(HEADS) and not exp.missing
    for head, maps in exp.maps.items():
        assert maps.shape == (3, cfg.image_size, cfg.image_size), head
        assert np.isfinite(maps).all() and maps.min() >= 0.0 and maps.max() <= 1.0
        assert np.isfinite(exp.peak[head]).all() and (exp.peak[head] >= 0).all()
        # normalised to the map's own maximum wherever there is positive evidence
        for i in np.flatnonzero(exp.peak[head] > 0):
            assert maps[i].max() == pytest.approx(1.0)
    assert exp.diagnosis_prob.shape == (3, cfg.dataset.num_diagnosis)
    assert np.allclose(exp.quality_prob.sum(1), 1.0, atol=1e-5)
    assert (exp.target["auxiliary"] < cfg.dataset.joint_classes).all()


def test_pooled_gab_hooks_the_spatial_map_before_pooling():
    cfg, net = _model(gab="pooled", size=64)
    name, layer = target_layer(net)
    assert name.startswith("model.block5.")
    seen = []
    handle = layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    net(_images(cfg, 1))
    handle.remove()
    assert seen[0][-2:] == (4, 4)  # 64 px / 16: before block 5's max-pool, not the 1x1 map


def test_gradient_matches_a_hand_computation():
    """The in-place ReLU's output is the activation Grad-CAM weighs: recompute with the
    activation as an explicit leaf and compare the diagnosis map."""
    cfg, net = _model(gab="pooled", size=64)
    x = _images(cfg, 2)
    exp = grad_cam(net, x, heads=("diagnosis",))
    backbone = net.model
    with torch.no_grad():
        h = x
        for i in range(1, 5):
            h = getattr(backbone, f"block{i}")(h)
        act = backbone.block5[:-1](h)
    act = act.clone().requires_grad_(True)
    original = backbone.forward
    backbone.forward = lambda _x: backbone.block5[-1](act)  # the remaining max-pool
    try:
        out = net(x)
    finally:
        backbone.forward = original
    target = torch.as_tensor(exp.target["diagnosis"])
    score = out.diagnosis[torch.arange(2), target].sum()
    (grad,) = torch.autograd.grad(score, act)
    cam = torch.relu((grad.mean((2, 3), keepdim=True) * act).sum(1, keepdim=True))
    cam = torch.nn.functional.interpolate(cam, size=(64, 64), mode="bilinear", align_corners=False)[
        :, 0
    ].detach()
    peak = cam.flatten(1).amax(1)
    assert np.allclose(exp.peak["diagnosis"], peak.numpy(), rtol=1e-4, atol=1e-7)
    expected = (cam / peak.clamp_min(1e-12)[:, None, None]).numpy()
    assert np.allclose(exp.maps["diagnosis"], expected, atol=1e-5)


def test_heads_a_model_lacks_are_reported_not_drawn():
    cfg, vanilla = _model("vanilla")
    exp = grad_cam(vanilla, _images(cfg, 2))
    assert set(exp.maps) == {"diagnosis"} and exp.quality_prob is None
    assert "no quality branch" in exp.missing["quality"]
    assert "auxiliary" in exp.missing["auxiliary"]
    cfg, multitask = _model("multitask")
    exp = grad_cam(multitask, _images(cfg, 2))
    assert set(exp.maps) == {"diagnosis", "quality"}
    assert set(exp.missing) == {"auxiliary"}


def test_model_state_is_left_alone():
    cfg, net = _model()
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    grad_cam(net, _images(cfg, 2))
    assert net.training
    assert all(p.grad is None for p in net.parameters())
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN running statistics untouched
