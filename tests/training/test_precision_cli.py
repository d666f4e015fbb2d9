"""`fediqad train --precision / --channels-last` end to end: what ran is recorded in
metrics.json, and a resumed run may change both."""

from __future__ import annotations

import json

import pytest

from fediqad.commands import core
from tests.support.cli import TINY, cli_for

cli = cli_for(core.register)
SLIM = [*TINY, "--width", "0.125", "--threads", "2"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("precision")
    synthesize("EYEQ", 16, 32, root / "data", seed=0)
    return root / "data"


def _compute(run) -> dict:
    return json.loads((run / "metrics.json").read_text())["compute"]


def test_train_in_bf16_records_it_and_resumes_in_fp32(data, tmp_path):
    run = tmp_path / "run"
    cli("train", "--data-root", data, *SLIM, "--device", "cpu", "--epochs", "1",
        "--precision", "bf16", "--channels-last", "--out", run)  # fmt: skip
    assert _compute(run) == {"device": "cpu", "precision": "bf16", "channels_last": True}
    history = json.loads((run / "metrics.json").read_text())
    assert history["config"]["precision"] == "bf16"
    losses = history["epochs"][0]["train"]
    assert all(losses[k] == losses[k] for k in ("loss_diagnosis", "meta_objective"))  # no NaN
    cli("train", "--data-root", data, "--epochs", "2", "--precision", "fp32",
        "--no-channels-last", "--out", run, "--resume")  # fmt: skip
    assert _compute(run) == {"device": "cpu", "precision": "fp32", "channels_last": False}
    history = json.loads((run / "metrics.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]


def test_fp16_baseline_trains_with_its_scaler_and_resumes(data, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data-root", data, *SLIM, "--device", "cpu", "--method", "vanilla"]
    cli(*args, "--epochs", "1", "--precision", "fp16", "--out", run)
    assert _compute(run)["precision"] == "fp16"
    cli(*args, "--epochs", "2", "--precision", "fp16", "--out", run, "--resume")
    assert [e["epoch"] for e in json.loads((run / "metrics.json").read_text())["epochs"]] == [1, 2]


@pytest.mark.cuda
def test_train_on_cuda_defaults_to_bf16_and_channels_last(data, tmp_path):
    run = tmp_path / "run"
    cli("train", "--data-root", data, *SLIM, "--device", "cuda", "--epochs", "1",
        "--out", run)  # fmt: skip
    compute = _compute(run)
    assert compute["device"].startswith("cuda") and compute["channels_last"] is True
    assert compute["precision"] == "bf16"  # H100/H200 class: bf16 is supported
