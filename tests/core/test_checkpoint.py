"""Checkpoint round trip, atomic writes, and clear errors for files that are not ours."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from shared import checkpoint as ckpt_mod
from shared.checkpoint import load_checkpoint, save_checkpoint
from shared.errors import UserError
from shared.models import build_models
from tests.support.compare import assert_same_state
from tests.support.configs import tiny_config


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.fixture
def saved(tmp_path: Path):
    torch.manual_seed(0)
    cfg = tiny_config()
    bundle = build_models(cfg)
    optimizer = torch.optim.SGD(bundle.task_net.parameters(), lr=0.1, momentum=0.9)
    bundle.task_net(torch.randn(2, 3, 32, 32)).diagnosis.sum().backward()
    optimizer.step()  # momentum buffers: the state a resumed run needs
    path = save_checkpoint(
        tmp_path / "run" / "model.ckpt",
        bundle,
        cfg,
        epoch=3,
        round=None,
        metrics={"auc": 0.75, "auc_lq": float("nan")},
        extra={"optimizer": optimizer.state_dict()},
    )
    return cfg, bundle, path, optimizer


def test_round_trip(saved):
    cfg, bundle, path, optimizer = saved
    ck = load_checkpoint(path, expect=cfg)
    assert ck.cfg == cfg
    assert ck.epoch == 3 and ck.round is None
    assert ck.metrics["auc"] == 0.75 and math.isnan(ck.metrics["auc_lq"])
    assert_same_state(ck.extra["optimizer"], optimizer.state_dict())
    assert _same_state(ck.bundle.task_net, bundle.task_net)
    assert _same_state(ck.bundle.meta_learner, bundle.meta_learner)
    assert not ck.bundle.task_net.training
    x = torch.randn(2, 3, 32, 32)
    bundle.eval()
    assert torch.equal(ck.bundle.task_net(x).diagnosis, bundle.task_net(x).diagnosis)


def test_no_meta_learner_and_baselines(tmp_path):
    cfg = tiny_config(method="mkcnet")
    bundle = build_models(cfg)
    bundle.meta_learner = None  # e.g. an imported Task Net alone
    ck = load_checkpoint(save_checkpoint(tmp_path / "a.ckpt", bundle, cfg))
    assert ck.bundle.meta_learner is None
    cfg = tiny_config(method="vanilla")
    ck = load_checkpoint(save_checkpoint(tmp_path / "b.ckpt", build_models(cfg), cfg, round=4))
    assert ck.round == 4 and ck.bundle.meta_learner is None


def test_crash_during_save_keeps_the_good_file(saved, monkeypatch):
    cfg, bundle, path, _ = saved
    before = path.read_bytes()

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_mod.torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint(path, bundle, cfg, epoch=4)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left


def test_extra_must_be_loadable_with_weights_only(tmp_path):
    cfg = tiny_config()
    with pytest.raises(TypeError, match="extra.where"):
        save_checkpoint(tmp_path / "x.ckpt", build_models(cfg), cfg, extra={"where": Path(".")})
    assert not (tmp_path / "x.ckpt").exists()


def test_missing_garbage_and_foreign_files(tmp_path):
    with pytest.raises(UserError, match="checkpoint not found") as err:
        load_checkpoint(tmp_path / "nope.ckpt")
    assert "nope.ckpt" in str(err.value)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_text("hello")
    with pytest.raises(UserError, match="garbage.ckpt: not a readable fediqad checkpoint"):
        load_checkpoint(garbage)
    raw = tmp_path / "raw.pth"
    torch.save(build_models(tiny_config()).task_net.state_dict(), raw)
    with pytest.raises(UserError, match="import-reference"):
        load_checkpoint(raw)
    other = tmp_path / "other.pt"
    torch.save({"format": "something-else"}, other)
    with pytest.raises(UserError, match="other.pt: not a fediqad checkpoint"):
        load_checkpoint(other)


def test_pickled_code_is_refused(tmp_path):
    evil = tmp_path / "evil.ckpt"
    torch.save({"format": "fediqad-checkpoint", "payload": Path("/")}, evil)
    with pytest.raises(UserError, match="evil.ckpt: not a readable"):
        load_checkpoint(evil)


def test_newer_version_is_refused(saved):
    cfg, bundle, path, _ = saved
    data = torch.load(path, weights_only=True)
    data["version"] = 99
    torch.save(data, path)
    with pytest.raises(UserError, match="newer"):
        load_checkpoint(path)


def test_dataset_and_architecture_mismatch(saved):
    cfg, _, path, _ = saved
    with pytest.raises(UserError, match=r"model.ckpt: checkpoint is for dataset EYEQ, not DRAC"):
        load_checkpoint(path, expect=tiny_config("DRAC"))
    with pytest.raises(UserError, match=r"model.gab='pooled' \(expected 'spatial'\)"):
        load_checkpoint(path, expect=tiny_config(gab="spatial"))
    with pytest.raises(UserError, match="method='mkcnet'"):
        load_checkpoint(path, expect=tiny_config(method="vanilla"))


def test_damaged_weights(saved):
    cfg, _, path, _ = saved
    data = torch.load(path, weights_only=True)
    data["task_net"]["classifier1.2.weight"] = torch.zeros(7, 3)
    torch.save(data, path)
    with pytest.raises(UserError, match="classifier1.2.weight"):
        load_checkpoint(path)
