"""Model shapes for every dataset preset, the joint-encoding mask, and the backbone registry."""

from __future__ import annotations

import math

import pytest
import torch

from shared.errors import UserError
from shared.methods import list_methods
from shared.models import build_models
from shared.models.backbones import build_backbone
from shared.models.meta_learner import MASK_FLOOR, masked_softmax
from tests.support.configs import tiny_config

DATASETS = ["EYEQ", "DEEPDR", "DRAC", "IQAD_CT", "IQAD_CXR"]


@pytest.mark.parametrize("dataset", DATASETS)
def test_heads_have_the_presets_sizes(dataset: str) -> None:
    cfg = tiny_config(dataset)
    ds = cfg.dataset
    bundle = build_models(cfg)
    x = torch.randn(2, ds.channels, 32, 32)
    out = bundle.task_net(x)
    assert out.diagnosis.shape == (2, ds.num_diagnosis)
    assert out.quality.shape == (2, ds.num_quality)
    assert out.auxiliary.shape == (2, ds.joint_classes * cfg.model.meta_length)
    joint = torch.tensor([0, ds.joint_classes - 1])
    y_w = bundle.meta_learner(x, joint)
    assert y_w.shape == out.auxiliary.shape
    torch.testing.assert_close(y_w.sum(1), torch.ones(2))


def test_wrong_channel_count_fails_inside_the_backbone() -> None:
    bundle = build_models(tiny_config("DRAC"))  # 1-channel OCTA
    with pytest.raises(RuntimeError):
        bundle.task_net(torch.randn(1, 3, 32, 32))


def test_mask_keeps_only_the_joint_block() -> None:
    joint_classes, length = 4, 3
    logits = torch.randn(2, joint_classes * length)
    joint = torch.tensor([1, 3])
    y = masked_softmax(logits, joint, joint_classes, length)
    for row, j in enumerate(joint.tolist()):
        inside = y[row, j * length : (j + 1) * length]
        outside = torch.cat([y[row, : j * length], y[row, (j + 1) * length :]])
        assert float(inside.sum()) == pytest.approx(1.0, abs=1e-6)
        assert float(outside.max()) < 1e-6
        # Within the block it is the softmax of that block's logits.
        expected = torch.softmax(logits[row, j * length : (j + 1) * length], 0)
        torch.testing.assert_close(inside, expected, atol=1e-6, rtol=1e-5)
    # Identical to the authors' exp(x) * m / sum(exp(x) * m) with m = 1e-8 off-block.
    mask = torch.full_like(logits, MASK_FLOOR)
    for row, j in enumerate(joint.tolist()):
        mask[row, j * length : (j + 1) * length] = 1
    authors = torch.exp(logits) * mask / (torch.exp(logits) * mask).sum(1, keepdim=True)
    torch.testing.assert_close(y, authors)


@pytest.mark.parametrize(
    ("method", "has_meta", "aux_size"),
    [
        ("mkcnet", True, 45),
        ("mkcnet-first-order", True, 45),
        ("mkcnet-no-mab", True, 45),
        ("mkcnet-mab-fc", True, 45),
        ("mkcnet-mab-concat", True, 45),
        ("mkcnet-mask-diagnosis", True, 15),
        ("mkcnet-no-mask", True, 45),
        ("mkcnet-no-meta", False, None),
        ("vanilla", False, None),
        ("multitask", False, None),
        ("canet", False, None),
        ("detach", False, None),
        ("maxl", True, 15),
    ],
)
def test_method_table(method: str, has_meta: bool, aux_size: int | None) -> None:
    bundle = build_models(tiny_config(method=method))
    assert (bundle.meta_learner is not None) == has_meta
    out = bundle.task_net(torch.randn(2, 3, 32, 32))
    assert (out.auxiliary.shape[1] if out.auxiliary is not None else None) == aux_size
    assert (out.quality is not None) == (method not in ("vanilla", "maxl"))
    assert (out.side is not None) == (method in ("canet", "detach"))
    if has_meta:  # the Meta Learner's output matches the auxiliary head
        y_w = bundle.meta_learner(torch.randn(2, 3, 32, 32), torch.tensor([0, 8]))
        assert y_w.shape == out.auxiliary.shape


def test_every_registered_method_is_in_the_table_above() -> None:
    table = test_method_table.pytestmark[0].args[1]
    assert sorted(m for m, *_ in table) == sorted(list_methods())


def _diagnosis_after_zeroing(task_net: torch.nn.Module, branch: str, x: torch.Tensor):
    with torch.no_grad():
        before = task_net(x).diagnosis.clone()
        for p in getattr(task_net, branch).parameters():
            p.zero_()
        return before, task_net(x).diagnosis


@pytest.mark.parametrize(
    ("method", "helper", "bystander"),
    [
        ("mkcnet", "branch_bam2", "branch_bam3"),  # f^w assists diagnosis, f^q does not
        ("mkcnet-no-meta", "branch_bam3", None),  # the paper's w/o Meta: f^q assists
        ("mkcnet-no-mab", None, "branch_bam2"),  # nothing assists
    ],
)
def test_which_feature_assists_diagnosis(method: str, helper, bystander) -> None:
    torch.manual_seed(0)
    x = torch.randn(3, 3, 32, 32)
    for branch, moves in ((helper, True), (bystander, False)):
        if branch is None:
            continue
        task_net = build_models(tiny_config(method=method)).task_net.eval()
        before, after = _diagnosis_after_zeroing(task_net, branch, x)
        assert (not torch.allclose(before, after)) == moves, (method, branch)


@pytest.mark.parametrize(
    ("method", "kind"), [("mkcnet-mab-fc", "Sequential"), ("mkcnet-mab-concat", "Identity")]
)
def test_mab_ablations_replace_the_filter(method: str, kind: str) -> None:
    task_net = build_models(tiny_config(method=method)).task_net
    assert type(task_net.branch_cor).__name__ == kind
    assert not any("ChannelGate" in k for k in task_net.state_dict() if k.startswith("branch_cor"))


def test_masking_ablations() -> None:
    cfg = tiny_config()  # EYEQ: D = 3, Q = 3, L = 5
    x = torch.randn(4, 3, 32, 32)
    joint = torch.tensor([0, 4, 5, 8])  # y_d = joint % 3 = 0, 1, 2, 2
    by_diagnosis = build_models(tiny_config(method="mkcnet-mask-diagnosis")).meta_learner(x, joint)
    by_diagnosis = by_diagnosis.detach()
    for row, d in enumerate((joint % 3).tolist()):
        assert float(by_diagnosis[row, d * 5 : (d + 1) * 5].sum()) == pytest.approx(1, abs=1e-6)
    unmasked = build_models(tiny_config(method="mkcnet-no-mask")).meta_learner(x, joint)
    assert float(unmasked.min()) > 1e-4  # a plain softmax over all D*Q*L positions
    del cfg


def test_detach_stops_the_other_tasks_gradient() -> None:
    """DETACH: the diagnosis head reads the quality feature, but L_D never trains it."""
    task_net = build_models(tiny_config(method="detach")).task_net
    out = task_net(torch.randn(2, 3, 32, 32))
    out.diagnosis.sum().backward()
    assert all(p.grad is None or not p.grad.any() for p in task_net.branch_quality.parameters())
    assert any(p.grad is not None and p.grad.any() for p in task_net.branch_diagnosis.parameters())


def test_canet_quality_feature_reaches_diagnosis() -> None:
    """CANet: the task-dependent module feeds the quality feature into diagnosis."""
    task_net = build_models(tiny_config(method="canet")).task_net
    out = task_net(torch.randn(2, 3, 32, 32))
    out.diagnosis.sum().backward()
    assert any(p.grad is not None and p.grad.any() for p in task_net.specific_quality.parameters())


def test_reference_vgg_matches_the_authors_layout() -> None:
    vgg = build_backbone("vgg16_bn", 3)
    convs = [m for m in vgg.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert all(float(c.bias.abs().max()) == 0 for c in convs)  # xavier weights, zero biases
    bound = math.sqrt(6 / (3 * 9 + 64 * 9))
    assert float(convs[0].weight.abs().max()) <= bound
    assert vgg(torch.randn(1, 3, 64, 64)).shape == (1, 512, 2, 2)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_backbones_take_one_channel(name: str) -> None:
    net = build_backbone(name, 1)
    assert net(torch.randn(1, 1, 64, 64)).shape[1] == net.feature_size


def test_weights_only_from_a_local_file(tmp_path) -> None:
    with pytest.raises(UserError, match="not found"):
        build_backbone("vgg16_bn_slim", 3, weights=tmp_path / "imagenet.pth")
    source = build_backbone("vgg16_bn_slim", 3)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    loaded = build_backbone("vgg16_bn_slim", 3, weights=tmp_path / "w.pth")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        build_backbone("vgg16_bn_slim", 3, weights=tmp_path / "junk.pth")


def test_unknown_backbone_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown backbone"):
        build_backbone("alexnet", 3)


def test_weights_that_do_not_fit_are_refused_naming_the_keys(tmp_path) -> None:
    """A file with one tensor fitting used to load silently (the rest kept random)."""
    state = build_backbone("vgg16_bn_slim", 3).state_dict()
    first = next(iter(state))
    partial = {k: v for k, v in state.items() if k != first}
    partial["head.weight"] = torch.zeros(2)
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(UserError) as info:
        build_backbone("vgg16_bn_slim", 3, weights=tmp_path / "partial.pth")
    message = str(info.value)
    assert "\n" not in message
    assert f"missing 1 ({first})" in message and "unexpected 1 (head.weight)" in message
    torch.save(build_backbone("vgg16_bn_slim", 1).state_dict(), tmp_path / "gray.pth")
    with pytest.raises(UserError, match="other shape"):
        build_backbone("vgg16_bn_slim", 3, weights=tmp_path / "gray.pth")


def test_torchvision_resnet_weights_load_without_their_classifier(tmp_path) -> None:
    from torchvision import models

    source = models.resnet18(weights=None)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")  # conv1.*, layer1.*, fc.*
    loaded = build_backbone("resnet18", 3, weights=tmp_path / "resnet18.pth")
    torch.testing.assert_close(loaded.state_dict()["body.0.weight"], source.conv1.weight)
