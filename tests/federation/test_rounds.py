"""The real ServerApp loop and the real ClientApp handlers, wired through an in-process Grid.

Covers the round protocol, FedBN's local BatchNorm, failure handling, rejection of
non-finite updates and resuming after a crash - fast, without Ray or network.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from flwr.app import Context, Message

from client.site import STATUS_ENV, Site
from server.central_eval import make_evaluate_fn
from server.config import FederationConfig
from server.federation import Federation
from server.server_app import run_server
from shared.checkpoint import (
    BN_SERVER,
    BN_SITE_SPECIFIC,
    load_checkpoint,
    require_usable_batchnorm,
)
from shared.errors import UserError
from shared.records import CFG_ROUND, CONFIG, to_record
from shared.wire_pack import is_packed, pack_record, unpack_record
from tests.support.configs import fast_config
from tests.support.flower import InProcessGrid, site_grid


def make_fed(tmp_path: Path, **kw) -> FederationConfig:
    kw.setdefault("num_rounds", 2)
    kw.setdefault("min_nodes", 2)
    return FederationConfig(run=fast_config(), run_dir=tmp_path / "run", **kw)


def sites_of(site_dirs: list[Path], n: int = 2) -> list[Site]:
    return [Site(f"site{i}", site_dirs[i]) for i in range(n)]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_rounds_train_evaluate_checkpoint_and_report(tmp_path, site_dirs):
    fed = make_fed(tmp_path, server_eval_data=site_dirs[2])
    grid, contexts = site_grid(sites_of(site_dirs))
    probe = Federation(fed).globals.arrays["task_net"]
    first_key = next(iter(probe))
    initial = probe[first_key].copy()
    run_server(grid, fed)
    run = fed.run_dir
    doc = json.loads((run / "metrics.json").read_text())
    assert [r["round"] for r in doc["rounds"]] == [1, 2]
    for record in doc["rounds"]:
        assert record["status"] == "ok"
        assert set(record["sites"]) == {"site0", "site1"}
        for site in record["sites"].values():
            assert site["train"]["num-examples"] > 0 and site["bytes_up"] > 0
            assert {"auc", "acc", "f1", "kappa", "auc_hq", "auc_lq"} <= set(site["eval"])
        assert {"auc", "auc_hq", "auc_lq"} <= set(record["global"])
        assert "auc" in record["server_eval"]
        assert record["timing"]["round_s"] >= record["timing"]["slowest_compute_s"] > 0
    assert doc["initial"] and "auc" in doc["initial"]
    final = load_checkpoint(run / "global.pt")
    assert final.round == 2
    assert not np.allclose(final.bundle.task_net.state_dict()[first_key].numpy(), initial)
    assert (run / "report.md").is_file() and (run / "figures" / "curves_metrics.png").is_file()
    assert all("fediqad.optimizer" in c.state.config_records for c in contexts.values())
    # both models travelled in separate ArrayRecords
    train_msgs = [m for m in grid.pushed if m.metadata.message_type == "train"]
    assert {"task_net", "meta_learner"} <= set(train_msgs[0].content.array_records)


def test_fedbn_keeps_each_sites_batchnorm(tmp_path, site_dirs):
    fed = make_fed(tmp_path, strategy="fedbn")
    grid, contexts = site_grid(sites_of(site_dirs))
    Federation(fed).run(grid)
    pushed = unpack_record(grid.pushed[0].content.array_records["task_net"])  # as sites read it
    assert "model.block1.0.weight" in pushed
    assert not any(k.endswith(("running_var", "running_mean")) for k in pushed)
    locals_ = [c.state.array_records["fediqad.local-bn.task_net"] for c in contexts.values()]
    key = next(k for k in locals_[0] if k.endswith("running_mean"))
    a, b = (np.asarray(rec[key].numpy()) for rec in locals_)
    assert not np.allclose(a, b)  # each site kept its own statistics
    final = load_checkpoint(fed.run_dir / "global.pt")
    state = final.bundle.task_net.state_dict()
    assert torch.equal(state[key], torch.zeros_like(state[key]))  # the server never saw them
    assert final.extra["batchnorm"] == BN_SITE_SPECIFIC  # and says so
    with pytest.raises(UserError, match="FedBN global model"):
        require_usable_batchnorm(final.extra, fed.run_dir / "global.pt")


def test_fedbn_server_evaluation_reestimates_batchnorm_on_its_own_data(tmp_path, site_dirs):
    fed = make_fed(tmp_path, strategy="fedbn", num_rounds=1, server_eval_data=site_dirs[2])
    grid, _ = site_grid(sites_of(site_dirs))
    doc = Federation(fed, evaluate_fn=make_evaluate_fn(fed)).run(grid)
    final = load_checkpoint(fed.run_dir / "global.pt")
    assert final.extra["batchnorm"] == BN_SERVER
    state = final.bundle.task_net.state_dict()
    means = [k for k in state if k.endswith("running_mean")]
    assert means and all(state[k].abs().sum() > 0 for k in means)  # no longer the initial 0
    require_usable_batchnorm(final.extra, fed.run_dir / "global.pt")
    # the score is the re-estimated model's: evaluating global.pt again gives it exactly
    from shared.data.dataset import make_loader, open_split
    from shared.evaluation import evaluate

    data = open_split(site_dirs[2], fed.run, fed.server_eval_split)
    again = evaluate(final.bundle, make_loader(data, fed.run, train=False), fed.run)
    assert again["auc"] == pytest.approx(doc["rounds"][0]["server_eval"]["auc"])


def test_a_failing_site_does_not_stop_the_round(tmp_path, site_dirs):
    def fail(node: int, msg: Message) -> None:
        if node == 101 and msg.metadata.message_type == "train":
            raise RuntimeError("disk on fire")

    fed = make_fed(tmp_path, num_rounds=1)
    grid, _ = site_grid(sites_of(site_dirs), fail=fail)
    doc = Federation(fed).run(grid)
    record = doc["rounds"][0]
    assert record["status"] == "ok" and record["replies"]["train_ok"] == 1
    assert any("disk on fire" in f["reason"] for f in record["failures"])


def test_too_few_replies_keep_the_global_model(tmp_path, site_dirs):
    def fail(node: int, msg: Message) -> None:
        if node == 101 and msg.metadata.message_type == "train":
            raise RuntimeError("offline")

    fed = make_fed(tmp_path, num_rounds=1, min_replies=2)
    grid, _ = site_grid(sites_of(site_dirs), fail=fail)
    federation = Federation(fed)
    before = {k: v.copy() for k, v in federation.globals.arrays["task_net"].items()}
    record = federation.run(grid)["rounds"][0]
    assert record["status"].startswith("not aggregated")
    for key, value in federation.globals.arrays["task_net"].items():
        np.testing.assert_array_equal(value, before[key])


def test_non_finite_update_is_rejected_never_averaged(tmp_path, site_dirs):
    fed = make_fed(tmp_path, num_rounds=1)
    grid, _ = site_grid(sites_of(site_dirs))
    honest_app, _ = grid.apps[100]

    def poisoned(msg: Message, context: Context) -> Message:
        out = honest_app(msg, context)
        if msg.metadata.message_type == "train":
            reply = out.content.array_records["task_net"]  # packed for the wire (wire_pack)
            state = {
                k: torch.from_numpy(np.array(v.numpy())) for k, v in unpack_record(reply).items()
            }
            first = next(k for k, v in state.items() if v.is_floating_point())
            state[first].view(-1)[0] = float("inf")
            bad = to_record(state)
            out.content["task_net"] = pack_record(bad) if is_packed(reply) else bad
        return out

    grid.apps[101] = (poisoned, grid.apps[101][1])  # type: ignore[assignment]
    federation = Federation(fed)
    record = federation.run(grid)["rounds"][0]
    assert record["replies"]["rejected"] == 1 and record["status"] == "ok"
    assert record["rejected"][0]["site"] == "site1"
    assert "non-finite" in record["rejected"][0]["reason"]
    assert all(
        np.isfinite(v).all()
        for v in federation.globals.arrays["task_net"].values()
        if v.dtype.kind == "f"
    )


def test_resume_after_a_server_crash_loses_no_completed_round(tmp_path, site_dirs):
    class Killed(Exception):
        pass

    def crash_in_round_3(messages: list[Message]) -> None:
        config = messages[0].content.config_records[CONFIG]
        if int(config[CFG_ROUND]) == 3 and messages[0].metadata.message_type == "train":
            raise Killed()

    fed = make_fed(tmp_path, num_rounds=4)
    grid, _ = site_grid(sites_of(site_dirs), before_push=crash_in_round_3)
    with pytest.raises(Killed):
        Federation(fed).run(grid)
    state = json.loads((fed.run_dir / "state.json").read_text())
    assert state["round"] == 2
    round2 = digest(fed.run_dir / "checkpoints" / "round_0002.pt")

    with pytest.raises(UserError, match="--resume"):
        Federation(fed)
    resumed = fed.model_copy(update={"resume": True})
    grid2, _ = site_grid(sites_of(site_dirs))
    federation = Federation(resumed)
    assert federation.start_round == 3
    np.testing.assert_array_equal(
        federation.globals.arrays["task_net"][next(iter(federation.globals.arrays["task_net"]))],
        load_checkpoint(fed.run_dir / "checkpoints" / "round_0002.pt")
        .bundle.task_net.state_dict()[next(iter(federation.globals.arrays["task_net"]))]
        .numpy(),
    )
    doc = federation.run(grid2)
    assert [r["round"] for r in doc["rounds"]] == [1, 2, 3, 4]
    assert digest(fed.run_dir / "checkpoints" / "round_0002.pt") == round2
    assert load_checkpoint(fed.run_dir / "global.pt").round == 4
    rounds_sent = {int(m.content.config_records[CONFIG][CFG_ROUND]) for m in grid2.pushed}
    assert rounds_sent == {3, 4}


def test_a_site_without_its_data_reports_a_clear_error(tmp_path, site_dirs, monkeypatch):
    status = tmp_path / "status.json"
    monkeypatch.setenv(STATUS_ENV, str(status))
    sites = [Site("site0", site_dirs[0]), Site("lost", tmp_path / "nowhere")]
    fed = make_fed(tmp_path, num_rounds=1)
    grid, _ = site_grid(sites)
    record = Federation(fed).run(grid)["rounds"][0]
    reasons = " ".join(f["reason"] for f in record["failures"])
    assert "site 'lost': data path" in reasons and "does not exist" in reasons
    assert "does not exist" in json.loads(status.read_text())["error"]


@pytest.mark.timeout(120)
def test_a_site_lost_for_good_does_not_stall_later_phases(tmp_path, site_dirs):
    """`min_nodes` gates the start only: evaluation and round 2 go on without the lost site."""
    grid_box: list[InProcessGrid] = []

    def vanish(node: int, msg: Message) -> None:
        if node == 101:
            grid_box[0].apps.pop(101)  # the hospital's machine is gone from the federation
            raise ConnectionError("node unavailable")

    fed = make_fed(tmp_path, num_rounds=2)
    grid, _ = site_grid(sites_of(site_dirs), fail=vanish)
    grid_box.append(grid)
    doc = Federation(fed).run(grid)
    assert [r["status"] for r in doc["rounds"]] == ["ok", "ok"]
    assert doc["rounds"][0]["failures"] and doc["rounds"][1]["replies"]["sampled"] == 1


def test_a_run_is_reproducible(tmp_path, site_dirs):
    finals = []
    for name in ("a", "b"):
        fed = make_fed(tmp_path / name, num_rounds=1)
        grid, _ = site_grid(sites_of(site_dirs))
        federation = Federation(fed)
        federation.run(grid)
        finals.append(federation.globals.arrays)
    for model, arrays in finals[0].items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(value, finals[1][model][key], err_msg=key)
