"""Flower Simulation Engine on Ray: 2 sites x 2 rounds of the real apps on a tiny model."""

from __future__ import annotations

import json

import numpy as np
import pytest

from client.site import Site
from server.config import FederationConfig
from server.federation import Federation
from shared.checkpoint import load_checkpoint
from simulations.federated import Resources, backend_config, run_federated_simulation
from tests.support.configs import fast_config

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]


def test_two_sites_two_rounds_on_ray(tmp_path, site_dirs):
    fed = FederationConfig(
        run=fast_config(),
        run_dir=tmp_path / "run",
        num_rounds=2,
        min_nodes=2,
        transport_dtype="float16",
    )
    initial = {k: v.copy() for k, v in Federation(fed).globals.arrays["task_net"].items()}
    sites = [Site("north", site_dirs[0]), Site("south", site_dirs[2])]
    run_federated_simulation(fed, sites, Resources(cpus_per_site=1.0, total_cpus=2))

    doc = json.loads((fed.run_dir / "metrics.json").read_text())
    assert doc["finished"] and [r["round"] for r in doc["rounds"]] == [1, 2]
    for record in doc["rounds"]:
        assert record["status"] == "ok"
        assert set(record["sites"]) == {"north", "south"}
        for site in record["sites"].values():
            assert site["train"]["num-examples"] > 0
            assert {"auc", "auc_hq", "auc_lq", "n"} <= set(site["eval"])
    final = load_checkpoint(fed.run_dir / "global.pt").bundle.task_net.state_dict()
    changed = [
        k
        for k, v in initial.items()
        if v.dtype.kind == "f" and not np.allclose(final[k].numpy(), v)
    ]
    assert len(changed) > len(initial) // 2  # the global weights moved


def test_resources_share_the_cores_without_oversubscribing():
    res = Resources.auto(3, total_cpus=2)
    assert res.cpus_per_site * 3 <= 2  # all three sites fit at once
    assert Resources.auto(20, total_cpus=2, max_parallel=4).cpus_per_site == 0.5
    config = backend_config(Resources(cpus_per_site=0.5, gpus_per_site=0.25, total_cpus=2))
    assert config["client_resources"] == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert config["init_args"]["num_cpus"] == 2
