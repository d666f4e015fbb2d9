"""The one resume rule (shared.resume) for central and federated runs: the original
command's flags are accepted again, a conflicting value is refused naming its flag."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import simulations.federated as federated
import simulations.scenarios as scenarios
from fediqad.commands import federation
from shared.config import build_config
from shared.errors import UserError
from shared.resume import resumed_config
from tests.support.cli import cli_for


@pytest.fixture
def stored() -> dict:
    flags = {"model.backbone": "vgg16_bn_slim", "image_size": 32, "optim.lr": 0.05}
    return build_config("EYEQ", None, flags).model_dump(mode="json")


def test_the_same_values_again_are_accepted(stored, tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('[model]\nbackbone = "vgg16_bn_slim"\n')
    cfg = resumed_config(
        stored,
        flags={"model.backbone": "vgg16_bn_slim", "image_size": 32, "optim.lr": 0.05, "seed": None},
        dataset="eyeq",
        config_file=config,
        set_items=["optim.lr=0.05"],
    )
    assert cfg.model_dump(mode="json") == stored


def test_changeable_values_change_and_others_stay(stored):
    cfg = resumed_config(
        stored, flags={"optim.epochs": 7, "image_size": 32}, changeable=("optim.epochs",)
    )
    assert cfg.optim.epochs == 7 and cfg.optim.lr == 0.05 and cfg.image_size == 32


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"flags": {"optim.lr": 0.1}}, ["--lr", "optim.lr = 0.05"]),
        ({"flags": {"model.pretrained_weights": "enc.pt"}}, ["--init-encoder"]),
        ({"flags": {"privacy.mode": "sample"}}, ["--dp"]),
        ({"set_items": ["model.width=0.5"]}, ["--set model.width=0.5"]),
        ({"dataset": "DRAC"}, ["--dataset DRAC", "EYEQ"]),
    ],
)
def test_a_conflicting_value_is_refused_naming_its_flag(stored, kwargs, names):
    with pytest.raises(UserError) as info:
        resumed_config(stored, changeable=("optim.epochs",), **kwargs)
    message = str(info.value)
    assert "\n" not in message and all(name in message for name in names), message


def test_a_conflicting_config_file_is_named(stored, tmp_path):
    config = tmp_path / "other.yaml"
    config.write_text("image_size: 64\n")
    with pytest.raises(UserError, match=r"--config .*other.yaml \(image_size\)"):
        resumed_config(stored, config_file=config)


def _fake_simulation(monkeypatch, tmp_path: Path) -> list:
    """simulate up to the Flower call; records each run's settings, commits round 1."""
    from client.site import Site

    seen: list = []

    def fake_run(fed, sites, res, verbose=False, **backend):  # noqa: ANN001, ANN003, ANN202
        seen.append(fed)
        doc = {"rounds": [{"round": 1}]}
        (Path(fed.run_dir) / "metrics.json").write_text(json.dumps(doc))
        (Path(fed.run_dir) / "state.json").write_text(json.dumps({"round": 1}))

    sites = [Site("hospital-a", tmp_path), Site("hospital-b", tmp_path)]
    monkeypatch.setattr(federated, "run_federated_simulation", fake_run)
    monkeypatch.setattr(scenarios, "default_sites", lambda *a, **k: (sites, tmp_path))
    return seen


def test_simulate_resume_accepts_the_original_flags(monkeypatch, tmp_path):
    seen = _fake_simulation(monkeypatch, tmp_path)
    sim = cli_for(federation.register)
    first = ["simulate", "--out", tmp_path, "--image-size", "32", "--method", "vanilla"]
    sim(*first, "--rounds", "1")
    result = sim(*first, "--rounds", "2", "--resume")
    assert "resuming after round 1" in result.stdout
    assert seen[1].resume and seen[1].num_rounds == 2 and seen[1].run == seen[0].run
    result = sim(*first[:-1], "mkcnet", "--rounds", "3", "--resume", ok=False)
    message = str(result.exception)
    assert isinstance(result.exception, UserError) and "--method" in message, message
    assert len(seen) == 2  # refused before anything ran
