"""DP in the federation: the real ServerApp loop and ClientApp through an in-process Grid.

A site whose budget is spent stops and says so, the run finishes with the others;
epsilon is reported per site per round and kept in the global checkpoint; Flower's
client-level fixed-clipping wrapper bounds each site's influence on the aggregate.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from opacus.accountants import RDPAccountant

from client.site import Site
from server.config import FederationConfig
from server.federation import Federation
from server.server_app import run_server
from shared.checkpoint import load_checkpoint
from tests.support.configs import dp_config
from tests.support.flower import InProcessGrid, site_grid

pytestmark = pytest.mark.timeout(240)


def grid_for(
    sites: list[Site],
    budgets: dict[str, float] | None = None,
    node_budget: dict[int, float] | None = None,
    node_extra: dict[int, dict] | None = None,
) -> InProcessGrid:
    config = {i: dict((node_extra or {}).get(i, {})) for i in range(len(sites))}
    for i, budget in (node_budget or {}).items():
        config[i] = {"epsilon-budget": budget, **config[i]}
    return site_grid(sites, node_config=config, epsilon_budgets=budgets)[0]


def test_a_spent_budget_stops_one_site_and_the_run_finishes(tmp_path, dp_sites):
    cfg = dp_config(method="mkcnet", noise_multiplier=2.0)
    fed = FederationConfig(
        run=cfg, run_dir=tmp_path / "run", num_rounds=3, min_nodes=2, fraction_evaluate=0.0
    )
    sites = [Site(f"site{i}", p) for i, p in enumerate(dp_sites)]
    # site1's privacy officer allows one round's worth of epsilon (~2.4), not two (~3.3)
    run_server(grid_for(sites, node_budget={1: 3.0}), fed)
    doc = json.loads((fed.run_dir / "metrics.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [1, 2, 3] and doc["finished"]
    eps0 = [r["sites"]["site0"]["train"]["dp_epsilon"] for r in doc["rounds"]]
    assert eps0[0] < eps0[1] < eps0[2]  # accumulates across rounds (ledger kept in Context)
    site1 = [r["sites"]["site1"] for r in doc["rounds"]]
    assert site1[0]["status"] == "ok" and "dp_budget_exhausted" not in site1[0]["train"]
    assert [s["status"].startswith("stopped") for s in site1] == [False, True, True]
    assert all(s["train"]["dp_budget_exhausted"] == 1.0 for s in site1[1:])
    assert all(s["train"]["dp_epsilon"] == site1[0]["train"]["dp_epsilon"] for s in site1)
    assert site1[0]["train"]["dp_epsilon"] <= 3.0 < eps0[1]  # never went past it
    last = doc["rounds"][-1]
    assert last["status"] == "ok" and last["replies"]["train_ok"] == 1
    assert last["replies"]["stopped"] == 1 and last["stopped"][0]["site"] == "site1"
    # every site's epsilon is what an independent Opacus accountant gives
    t = doc["rounds"][-1]["sites"]["site0"]["train"]
    acc = RDPAccountant()
    for _ in range(int(t["dp_steps"])):
        acc.step(noise_multiplier=t["dp_noise_multiplier"], sample_rate=t["dp_sample_rate"])
    assert t["dp_epsilon"] == pytest.approx(acc.get_epsilon(delta=t["dp_delta"]), rel=1e-9)
    final = load_checkpoint(fed.run_dir / "global.pt")
    privacy = final.extra["privacy"]
    assert privacy["mode"] == "sample"
    assert privacy["sites"]["site0"]["dp_epsilon"] == pytest.approx(eps0[-1])
    assert privacy["sites"]["site1"]["status"].startswith("stopped")
    report = (fed.run_dir / "report.md").read_text()
    assert "*Sample-level DP: epsilon spent per site (delta " in report
    assert report.count(" (stopped) |") == 2  # site1 in rounds 2 and 3


def test_site_budget_from_the_simulation_mapping(tmp_path, dp_sites):
    cfg = dp_config(method="vanilla", noise_multiplier=1.0)
    fed = FederationConfig(
        run=cfg, run_dir=tmp_path / "run", num_rounds=2, min_nodes=2, fraction_evaluate=0.0
    )
    sites = [Site(f"site{i}", p) for i, p in enumerate(dp_sites)]
    ledger = tmp_path / "site1-ledger.json"
    extra = {1: {"privacy-ledger": str(ledger)}}
    run_server(grid_for(sites, budgets={"site0": 0.01}, node_extra=extra), fed)
    doc = json.loads((fed.run_dir / "metrics.json").read_text())
    assert all(r["sites"]["site0"]["status"].startswith("stopped") for r in doc["rounds"])
    assert all(r["sites"]["site1"]["status"] == "ok" for r in doc["rounds"])
    assert doc["rounds"][0]["sites"]["site0"]["train"]["dp_epsilon"] == 0.0
    spent = doc["rounds"][-1]["sites"]["site1"]["train"]["dp_epsilon"]
    assert json.loads(ledger.read_text())["history"]
    # a restarted SuperNode (fresh Context) keeps counting from the ledger file
    again = fed.model_copy(update={"run_dir": tmp_path / "again", "num_rounds": 1})
    run_server(grid_for(sites, node_extra=extra), again)
    doc = json.loads((again.run_dir / "metrics.json").read_text())
    assert doc["rounds"][0]["sites"]["site1"]["train"]["dp_epsilon"] > spent
    assert (
        doc["rounds"][0]["sites"]["site1"]["train"]["dp_steps"]
        == 3 * (doc["rounds"][0]["sites"]["site0"]["train"]["dp_steps"])
    )


def _global_delta(before: dict, after: dict) -> float:
    return math.sqrt(
        sum(float(((after[m][k] - before[m][k]) ** 2).sum()) for m in before for k in before[m])
    )


def test_client_level_dp_clips_each_sites_update_and_adds_noise(tmp_path, dp_sites):
    sites = [Site(f"site{i}", p) for i, p in enumerate(dp_sites)]

    def one_round(
        noise: float, clip: float, name: str, evaluate: float = 0.0
    ) -> tuple[float, dict]:
        cfg = dp_config(method="mkcnet")
        cfg.privacy.mode = "client"
        fed = FederationConfig(
            run=cfg,
            run_dir=tmp_path / name,
            num_rounds=1,
            min_nodes=2,
            fraction_evaluate=evaluate,
            dp_noise_multiplier=noise,
            dp_clipping_norm=clip,
        )
        federation = Federation(fed)
        before = {
            m: {k: v.copy() for k, v in a.items()} for m, a in federation.globals.arrays.items()
        }
        rec = federation.run_round(grid_for(sites), 1)
        assert rec["status"] == "ok", rec["status"]
        return _global_delta(before, federation.globals.arrays), rec

    # no noise, tiny clipping norm: the global model moves by at most C (mean of clipped)
    moved, rec = one_round(0.0, 1e-3, "clip")
    assert 0 < moved <= 1e-3 * (1 + 1e-4)
    assert math.isinf(rec["client_dp"]["client_epsilon"])
    # noise sigma*C/m on every coordinate: far more movement than the clipped mean alone
    moved_noisy, rec = one_round(5.0, 1e-3, "noise", evaluate=1.0)
    assert moved_noisy > 10 * 1e-3
    # evaluation still aggregates, weighted by each site's evaluated examples
    assert rec["global"]["n"] > 0 and "auc" in rec["global"], rec.get("global")
    acc = RDPAccountant()
    acc.step(noise_multiplier=5.0, sample_rate=1.0)
    assert rec["client_dp"]["client_epsilon"] == pytest.approx(acc.get_epsilon(delta=1e-5))
    # the models use GroupNorm: nothing but parameters travels
    assert not any(
        "running" in k
        for a in Federation(
            FederationConfig(run=dp_config(), run_dir=tmp_path / "x")
        ).globals.arrays.values()
        for k in a
    )
    np.testing.assert_equal(rec["replies"]["train_ok"], 2)
