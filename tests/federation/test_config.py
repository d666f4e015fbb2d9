"""Federation settings: validation, and pyproject's run config kept in step with them."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from server.config import FederationConfig, from_user_config, to_user_config, validated
from shared.errors import UserError

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def flwr_app_config() -> dict:
    return tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]["app"]["config"]


def test_pyproject_declares_every_federation_setting():
    """`flwr run --run-config` only accepts keys declared in [tool.flwr.app.config]."""
    declared = set(flwr_app_config())
    expected = {k.replace("_", "-") for k in FederationConfig.model_fields if k != "run"}
    assert declared == expected | {"dataset", "config-file", "set"}


def test_pyproject_defaults_build_the_default_federation():
    fed = from_user_config(flwr_app_config())
    assert fed.strategy == "fedavg" and fed.num_rounds == 5 and fed.run.dataset.name == "EYEQ"


def test_run_config_round_trip(tmp_path):
    fed = validated(
        strategy="fedprox", num_rounds=3, transport_dtype="float16", run_dir=tmp_path / "r"
    )
    fed.run.image_size = 64
    config_file = tmp_path / "run.yaml"
    import yaml

    config_file.write_text(yaml.safe_dump(fed.run.model_dump(mode="json")))
    back = from_user_config(to_user_config(fed, config_file=config_file))
    assert back.model_dump() == fed.model_dump()


def test_pyproject_has_no_legacy_federations_section():
    assert "federations" not in tomllib.loads(PYPROJECT.read_text())["tool"]["flwr"]


@pytest.mark.parametrize(
    "fields, match",
    [
        ({"strategy": "fedavgg"}, "^--strategy: 'fedavgg' is not one of .*did you mean 'fedavg'"),
        ({"min_nodes": 1, "min_replies": 2}, r"^--min-replies \(2\) cannot exceed --min-nodes"),
        ({"transport_dtype": "int8"}, "^--transport-dtype: 'int8'"),
        ({"num_rounds": -1}, "^--rounds: input should be greater than or equal to 1, got -1$"),
        ({"trim_beta": 0.7}, "^--fed-set trim-beta: "),
    ],
)
def test_invalid_settings_name_the_users_flag(fields, match):
    with pytest.raises(UserError, match=match):
        validated(**fields)


def test_unknown_run_config_keys_are_refused():
    with pytest.raises(UserError, match="unknown run-config"):
        from_user_config({**flwr_app_config(), "num-round": 3})
