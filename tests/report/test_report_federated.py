"""`fediqad report` on federated runs: a hand-written log with every optional part
(epsilon, failures, a round that was not aggregated) and a real in-process federation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from shared.report.rundir import load_run
from tests.report.conftest import CPU, TinyRun, cli, png_size
from tests.report.test_report_cli import check_output, table_rows

SUBSET = {"all": "", "HQ": "_hq", "LQ": "_lq"}


def _metrics(auc: float | None, n: float = 7.0) -> dict:
    out = {}
    for suffix, share in (("", 1.0), ("_hq", 0.5), ("_lq", 0.5)):
        out.update(
            {
                f"auc{suffix}": auc,
                f"acc{suffix}": 0.5,
                f"f1{suffix}": 0.25,
                f"kappa{suffix}": 0.1,
                f"n{suffix}": n * share,
                f"quality_acc{suffix}": 0.75,
            }
        )
    out.update(auc_hard_compat=auc, f1_compat=0.25)
    return out


def _round(rnd: int, auc: float, status: str = "ok", eps: float | None = None) -> dict:
    sites = {}
    for i, name in enumerate(("hospital-a", "hospital-b")):
        train = {
            "loss_diagnosis": 0.5 - 0.01 * rnd - 0.005 * i,
            "loss_quality": 0.4,
            "num-examples": 16.0,
        }
        if eps is not None:
            train["epsilon"] = eps * (1 + i)
        sites[name] = {
            "node_id": i,
            "bytes_down": 1_000_000,
            "bytes_up": 600_000,
            "status": "ok",
            "train": train,
            "eval": _metrics(auc - 0.1 * i),
        }
    return {
        "round": rnd,
        "status": status,
        "sites": sites,
        "started_at": "",
        "failures": [
            {
                "kind": "train timed out",
                "site": "hospital-c",
                "node_id": 3,
                "reason": "no reply within 60 s",
            }
        ]
        if rnd == 2
        else [],
        "rejected": [],
        "replies": {"sampled": 3, "train_ok": 2},
        "train": {"loss_diagnosis": 0.5 - 0.01 * rnd, "loss_auxiliary": 0.7},
        "global": _metrics(auc, 14.0),
        "server_eval": _metrics(auc + 0.05),
        "timing": {"round_s": 1.0},
        "bytes_down": 2_000_000,
        "bytes_up": 1_200_000,
    }


@pytest.fixture
def fed_run(tiny: TinyRun, tmp_path: Path) -> Path:
    run = tmp_path / "fed"
    run.mkdir()
    cfg = json.loads((tiny.run / "metrics.json").read_text())["config"]
    doc = {
        "federation": {
            "run": cfg,
            "run_dir": str(run),
            "num_rounds": 3,
            "local_epochs": 1,
            "strategy": "fedprox",
            "proximal_mu": 0.01,
            "transport_dtype": "float32",
            "server_eval_data": str(tiny.data),
            "server_eval_split": "test",
        },
        "initial": _metrics(0.5),
        "rounds": [
            _round(1, 0.6, eps=1.0),
            _round(2, 0.7, "not aggregated: 1 valid update(s)", eps=2.0),
            _round(3, 0.8, eps=3.0),
        ],
    }
    doc["rounds"][2]["global"]["auc_lq"] = None  # undefined: the federation writes null
    (run / "metrics.json").write_text(json.dumps(doc, allow_nan=False))
    shutil.copy(tiny.checkpoint, run / "global.pt")
    return run


def test_federated_report_has_sites_bytes_and_epsilon(fed_run: Path):
    cli("report", fed_run, *CPU)
    out = fed_run / "report"
    page, md = check_output(out)
    sizes = {
        "curves_sites.png": (1200, 380),
        "bytes_per_round.png": (700, 380),
        "epsilon_per_round.png": (700, 380),
        "curves_losses.png": (1200, 380),
        "checkpoint_roc.png": (360, 360),
        "checkpoint_cm.png": (660, 320),
    }
    for name, size in sizes.items():
        assert png_size(out / "figures" / name) == size, name
    rows = table_rows(md, "evaluated on")
    by_site = table_rows(md.split("### By site", 1)[1], "evaluated on")
    assert rows == [
        ["global (site-weighted), round 3", "all", "14", "0.800", "0.500", "0.250", "0.100",
         "0.750"],
        ["global (site-weighted), round 3", "HQ", "7", "0.800", "0.500", "0.250", "0.100",
         "0.750"],
        ["global (site-weighted), round 3", "LQ", "7", "-", "0.500", "0.250", "0.100", "0.750"],
        ["server held-out, round 3", "all", "7", "0.850", "0.500", "0.250", "0.100", "0.750"],
        ["server held-out, round 3", "HQ", "4", "0.850", "0.500", "0.250", "0.100", "0.750"],
        ["server held-out, round 3", "LQ", "4", "0.850", "0.500", "0.250", "0.100", "0.750"],
    ]  # fmt: skip
    assert [r[:4] for r in by_site[::3]] == [
        ["hospital-a, round 3", "all", "7", "0.800"],
        ["hospital-b, round 3", "all", "7", "0.700"],
    ]
    rounds = table_rows(md, "round | status")
    assert [r[0] for r in rounds] == ["1", "2", "3"]
    assert rounds[1][1].startswith("not aggregated") and rounds[1][2] == "2/3"
    assert rounds[2][3:] == ["0.800", "0.850", "2.00", "1.20", "6.000"]  # AUCs, MB, epsilon
    assert "train timed out at hospital-c" in md
    assert "fedprox (mu 0.01)" in md
    # the paper's table is beside the server's held-out numbers, labelled as the paper's
    paper = table_rows(md, "method | source")
    assert any(r[1] == "this run (server held-out, round 3)" and r[2] == "85.00" for r in paper)
    assert "NOT produced by this run" in page


def test_epsilon_and_sites_are_read_per_round(fed_run: Path):
    run = load_run(fed_run)
    assert run.kind == "federated" and run.step_label == "Round"
    assert [e for _, e in run.epsilon["hospital-b"]] == [
        {"epsilon": 2.0},
        {"epsilon": 4.0},
        {"epsilon": 6.0},
    ]
    assert run.evals["server held-out"][0][0] == 0  # the initial evaluation is round 0
    assert run.eval_split == "test" and run.checkpoint == fed_run / "global.pt"


def test_real_in_process_federation(tiny: TinyRun, tmp_path: Path):
    """The federation's own metrics.json (one round, two sites) reports without loss."""
    from client.site import Site
    from server.config import FederationConfig
    from server.server_app import run_server
    from tests.support.configs import fast_config
    from tests.support.flower import set_flwr_identity, site_grid

    set_flwr_identity()
    sites = [Site("site0", tiny.data), Site("site1", tiny.data)]
    fed = FederationConfig(
        run=fast_config(),
        run_dir=tmp_path / "run",
        num_rounds=1,
        min_nodes=2,
        server_eval_data=tiny.data,
    )
    run_server(site_grid(sites)[0], fed)
    cli("report", fed.run_dir, *CPU)
    _, md = check_output(fed.run_dir / "report")
    doc = json.loads((fed.run_dir / "metrics.json").read_text())
    server = doc["rounds"][0]["server_eval"]
    row = next(
        r for r in table_rows(md, "evaluated on") if r[:2] == ["server held-out, round 1", "all"]
    )
    assert row[3].split(" ")[0] == ("-" if server["auc"] is None else f"{server['auc']:.3f}")
    assert "They match metrics.json (server held-out, round 1)" in md
    assert (fed.run_dir / "report" / "figures" / "bytes_per_round.png").is_file()
