"""`fediqad bench evidence`: the in-process federation really is FedAvg / FedBN through
the server's aggregation, the command writes every row and mean ± sd tables, and bad
flags end in one line."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fediqad.commands import contrastive, evidence
from shared.errors import UserError
from simulations.evidence.common import make_data, run_config
from simulations.evidence.federated import federate
from simulations.evidence.report import mean_sd
from simulations.evidence.settings import EvidenceSettings
from simulations.site_partition import partition
from tests.conftest import cli_for

cli = cli_for(contrastive.register, evidence.register)


def test_fedavg_shares_everything_fedbn_keeps_batchnorm_local(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    s = EvidenceSettings(n=60, rounds=1, local_epochs=1, sites=2)
    root = make_data(tmp_path, s, seed=0, image_size=32)
    sites = [p.parent for p in partition(root, "EYEQ", 2, "iid", tmp_path / "sites", seed=0)]
    cfg = run_config(s, "vanilla", 0, image_size=32, epochs=1)
    for strategy in ("fedavg", "fedbn"):
        a, b = (m.task_net.state_dict() for m in federate(cfg, sites, strategy, s, tmp_path))
        conv = next(k for k in a if k.endswith("block1.0.weight"))
        bn_mean = next(k for k in a if k.endswith("running_mean"))
        assert torch.equal(a[conv], b[conv]), strategy  # aggregated
        assert torch.equal(a[bn_mean], b[bn_mean]) == (strategy == "fedavg"), strategy


def test_command_writes_rows_and_tables(tmp_path: Path) -> None:
    result = cli(
        "bench", "evidence", "--out", tmp_path, "--parts", "signal,federated",
        "--seeds", "0,1", "--n", "120", "--rounds", "2", "--local-epochs", "1",
    )  # fmt: skip
    doc = json.loads((tmp_path / "evidence.json").read_text())
    fed = [r for r in doc["rows"] if r["part"] == "federated"]
    settings = {(r["split"], r["setting"]) for r in fed}
    for split in ("iid", "dirichlet-quality:0.3"):
        for setting in ("site alone", "fedavg", "fedprox", "fedbn"):
            assert (split, setting) in settings
    assert ("-", "centralised") in settings and {r["seed"] for r in fed} == {0, 1}
    assert all(0 <= r["acc"] <= 1 and r["n"] > 0 for r in fed)
    signal = [r for r in doc["rows"] if r["part"] == "signal"]
    assert {r["quality"] for r in signal} == {"HQ", "LQ-U", "LQ-P"}
    table = (tmp_path / "evidence.md").read_text()
    assert "(b) federation" in table and "±" in table and "Lesion signal" in table
    assert set(doc["seconds"]) == {"signal", "federated"} and "(b) federation" in result.output


def test_lq_images_lose_lesion_signal() -> None:
    from simulations.evidence.signal import run_signal

    rows = run_signal(EvidenceSettings(seeds=(0,), image_size=64), lambda _: None, images=20)
    visible = {r["quality"]: r["visible"] for r in rows}
    assert visible["LQ-P"] < visible["LQ-U"] < visible["HQ"]
    assert visible["LQ-P"] < 0.7 * visible["HQ"]


def test_mean_sd_and_bad_flags(tmp_path: Path) -> None:
    assert mean_sd([1.0, 2.0, 3.0]) == "2.000 ± 1.000" and mean_sd([float("nan")]) == "-"
    for args, words in (
        (["--parts", "bogus"], "--parts"),
        (["--seeds", "a"], "--seeds"),
        (["--local-epochs", "0"], "--local-epochs"),
        (["--image-size", "40"], "--image-size"),
    ):
        result = cli("bench", "evidence", "--out", tmp_path, *args, ok=False)
        assert isinstance(result.exception, UserError), result.output
        assert words in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "evidence.json").exists()
