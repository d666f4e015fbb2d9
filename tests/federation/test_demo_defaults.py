"""The synthetic demo's own training settings reach the federation (they make it learn)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

import simulations.federated as federated
from fediqad.cli import main
from simulations.scenarios import DEFAULT_LOCAL_EPOCHS, DEFAULT_LR


def _capture(monkeypatch: pytest.MonkeyPatch, *args: str) -> object:
    seen: dict[str, object] = {}

    def fake_run(fed, sites, res, verbose=False, **backend):  # noqa: ANN001, ANN003, ANN202
        seen["fed"] = fed
        (Path(fed.run_dir) / "metrics.json").write_text(json.dumps({"rounds": [{"round": 1}]}))

    monkeypatch.setattr(federated, "run_federated_simulation", fake_run)
    monkeypatch.setattr(
        sys, "argv", ["fediqad", "simulate", "--images-per-site", "20", "--image-size", "32", *args]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert not exit_info.value.code
    return seen["fed"]


def test_the_demo_trains_3_local_epochs_at_lr_0_1(monkeypatch, tmp_path):
    fed = _capture(monkeypatch, "--out", str(tmp_path))
    assert fed.local_epochs == DEFAULT_LOCAL_EPOCHS == 3
    assert fed.run.optim.lr == DEFAULT_LR == 0.1
    assert fed.run.model.backbone == "vgg16_bn_slim"


def test_flags_override_the_demo_settings(monkeypatch, tmp_path):
    fed = _capture(
        monkeypatch, "--out", str(tmp_path), "--local-epochs", "1", "--set", "optim.lr=0.02"
    )
    assert fed.local_epochs == 1
    assert fed.run.optim.lr == 0.02
