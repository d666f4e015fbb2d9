"""Federated CoMCL rounds through the real ServerApp hook and ClientApp handler, wired
by the federation tests' in-process Grid (no Ray, no network)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from client.site import Site
from server.comcl import pretrain_federation
from server.config import FederationConfig
from server.federation import Federation
from server.server_app import run_server
from shared.contrastive.protocol import ENCODER, MESSAGE_TYPE
from shared.contrastive.transfer import read_encoder
from shared.records import METRICS, NUM_EXAMPLES, to_numpy
from tests.support.configs import comcl_config
from tests.support.flower import InProcessGrid, flwr_identity, site_grid  # noqa: F401 - autouse
from tests.support.sites import synth_sites


@pytest.fixture(scope="module")
def sites(tmp_path_factory: pytest.TempPathFactory) -> list[Site]:
    """Two sites at 64 px; site b has only HQ images (no L~, no H~)."""
    root = tmp_path_factory.mktemp("comcl-sites")
    dirs = synth_sites(root, [0.5, 0.0], n=24, size=64, first_seed=1, names=["a", "b"])
    return [Site(d.name, d) for d in dirs]


def grid_of(sites: list[Site]) -> InProcessGrid:
    return site_grid(sites)[0]


def fed_of(tmp_path: Path, **kw: object) -> FederationConfig:
    cfg = comcl_config(batch_size=32)
    cfg.method = "vanilla"
    cfg.model.width = 0.5
    cfg.device, cfg.threads = "cpu", 1
    kw.setdefault("pretrain_rounds", 2)
    return FederationConfig(
        run=cfg, run_dir=tmp_path / "run", num_rounds=1, min_nodes=2, fraction_evaluate=0.0, **kw
    )


def test_pretrain_rounds_feed_the_global_backbone(sites, tmp_path, caplog) -> None:
    fed = fed_of(tmp_path)
    grid = grid_of(sites)
    federation = Federation(fed)
    before = federation.globals.arrays["task_net"]["model.block1.0.weight"].copy()
    with caplog.at_level(logging.WARNING, logger="fediqad.client"):
        state = pretrain_federation(grid, federation)
    assert state is not None
    comcl = [m for m in grid.pushed if m.metadata.message_type == MESSAGE_TYPE]
    assert len(comcl) == 4 and all("encoder" in m.content.array_records for m in comcl)
    # site b has no LQ images: its two LQ terms are skipped, with one warning each
    skipped = [r.getMessage() for r in caplog.records if "is skipped" in r.getMessage()]
    assert len(skipped) == 2 and all("site 'b'" in s for s in skipped)
    history = json.loads((fed.run_dir / "comcl" / "rounds.json").read_text())["rounds"]
    assert [r["round"] for r in history] == [1, 2]
    for entry in history:
        assert entry["status"] == "ok" and set(entry["sites"]) == {"a", "b"}
        assert np.isfinite(entry["loss"])
        assert "loss_L_vs_Lq" not in entry["sites"]["b"] and "loss_L_vs_H" in entry["sites"]["b"]
        assert entry["sites"]["a"]["box_source"] == "annotations (lesions.csv)"
    enc = read_encoder(fed.run_dir / "comcl" / "encoder.pt")
    assert enc.metrics["round"] == 2 and enc.epochs == 2
    after = federation.globals.arrays["task_net"]["model.block1.0.weight"]
    assert np.allclose(after, enc.state_dict["block1.0.weight"].numpy())
    assert not np.allclose(after, before)
    assert np.allclose(federation.bundle.task_net.model.block1[0].weight.detach().numpy(), after)
    # FedAvg weighted by patch counts: the saved encoder is the patch-weighted mean of the
    # last round's replies, and the two sites' counts differ enough for that to matter
    replies = [r for r in grid.received if r.metadata.message_type == MESSAGE_TYPE][-2:]
    counts = [float(r.content.metric_records[METRICS][NUM_EXAMPLES]) for r in replies]
    sent = [to_numpy(r.content.array_records[ENCODER]) for r in replies]
    assert counts[0] != counts[1] and min(counts) > 0
    assert sorted(counts) == sorted(s["num-examples"] for s in history[-1]["sites"].values())
    key = "backbone.block1.0.weight"
    weighted = sum(a[key].astype(np.float64) * n for a, n in zip(sent, counts, strict=True)) / sum(
        counts
    )
    plain = (sent[0][key].astype(np.float64) + sent[1][key]) / 2
    assert not np.allclose(weighted, plain, rtol=1e-4, atol=1e-6)
    for name, value in enc.state_dict.items():
        if value.is_floating_point():
            expect = sum(
                a[f"backbone.{name}"] * n for a, n in zip(sent, counts, strict=True)
            ) / sum(counts)
            np.testing.assert_allclose(value.numpy(), expect, rtol=1e-5, atol=1e-6)


def test_run_server_pretrains_then_trains_and_resume_skips_done_rounds(sites, tmp_path):
    fed = fed_of(tmp_path, pretrain_rounds=1)
    grid = grid_of(sites)
    run_server(grid, fed)
    types = [m.metadata.message_type for m in grid.pushed]
    assert types[:2] == [MESSAGE_TYPE] * 2 and types.count("train") == 2
    assert (fed.run_dir / "global.pt").is_file()
    encoder = read_encoder(fed.run_dir / "comcl" / "encoder.pt")
    # resume after the diagnosis rounds began: no CoMCL round is repeated
    more = fed.model_copy(update={"resume": True, "num_rounds": 2})
    grid2 = grid_of(sites)
    run_server(grid2, more)
    assert MESSAGE_TYPE not in [m.metadata.message_type for m in grid2.pushed]
    assert torch.equal(
        read_encoder(fed.run_dir / "comcl" / "encoder.pt").state_dict["block1.0.weight"],
        encoder.state_dict["block1.0.weight"],
    )


def test_resume_continues_unfinished_pretraining_rounds(sites, tmp_path) -> None:
    fed = fed_of(tmp_path, pretrain_rounds=1)
    pretrain_federation(grid_of(sites), Federation(fed))
    more = fed.model_copy(update={"resume": True, "pretrain_rounds": 2})
    grid = grid_of(sites)
    pretrain_federation(grid, Federation(more))
    sent = [m for m in grid.pushed if m.metadata.message_type == MESSAGE_TYPE]
    assert len(sent) == 2  # round 2 only, to both sites
    assert {int(m.content.config_records["config"]["comcl-epoch-offset"]) for m in sent} == {1}
    history = json.loads((fed.run_dir / "comcl" / "rounds.json").read_text())["rounds"]
    assert [r["round"] for r in history] == [1, 2]
