"""Where simulated and deployed sites train: `simulations.gpu.site_placement` (the Ray
GPU share and the device) and `client.site.site_device` (node config over run config)."""

from __future__ import annotations

import pytest
import torch
from flwr.app import Context, RecordDict

from client.site import SiteError, site_device
from shared.config import preset
from shared.errors import UserError
from simulations.federated import Resources, backend_config
from simulations.gpu import SitePlacement, site_placement


@pytest.mark.parametrize(
    ("device", "gpus", "cuda", "expected"),
    [
        (None, None, 0, SitePlacement("cpu", 0.0, None)),  # a CPU machine
        ("auto", None, 1, SitePlacement("cuda", 0.333, 1)),  # 3 sites at once share a GPU
        (None, 0.0, 1, SitePlacement("cpu", 0.0, None)),  # an explicit 0: the CPU
        ("cpu", None, 2, SitePlacement("cpu", 0.0, None)),
        ("cuda", None, 2, SitePlacement("cuda", 0.666, 2)),
        (None, 0.25, 1, SitePlacement("cuda", 0.25, 1)),  # a share alone means CUDA
        ("cuda", 2.0, 4, SitePlacement("cuda", 2.0, 4)),
        ("cuda", None, 8, SitePlacement("cuda", 1.0, 8)),  # never more than a GPU each
    ],
)
def test_site_placement(
    device: str | None, gpus: float | None, cuda: int, expected: SitePlacement
) -> None:
    assert site_placement(device, gpus, 3, cuda_devices=cuda) == expected


def test_a_share_larger_than_the_machine_is_refused() -> None:
    with pytest.raises(UserError, match="this machine has 1 GPU"):
        site_placement("cuda", 2.0, 3, cuda_devices=1)


def test_the_gpu_share_is_the_ray_client_resource() -> None:
    gpu = site_placement("cuda", None, 4, cuda_devices=1)
    res = Resources(cpus_per_site=1.0, gpus_per_site=gpu.gpus_per_site, total_gpus=gpu.total_gpus)
    config = backend_config(res)
    assert config["client_resources"]["num_gpus"] == 0.25
    assert config["init_args"]["num_gpus"] == 1


def _context(node: dict[str, str]) -> Context:
    return Context(run_id=1, node_id=1, node_config=node, state=RecordDict(), run_config={})


def test_a_sites_own_device_wins_over_the_runs() -> None:
    cfg = preset("EYEQ")
    cfg.device = "cuda"  # the server's machine has a GPU; this hospital says cpu
    assert site_device(_context({"device": "cpu"}), cfg) == "cpu"
    assert cfg.device == "cpu"  # so the loader is set up for the CPU too
    cfg.device = "auto"
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert site_device(_context({}), cfg) == expected


def test_a_site_asked_for_cuda_without_it_is_a_site_error(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SiteError, match="node config device is 'cuda'"):
        site_device(_context({"device": "cuda"}), preset("EYEQ"))


def test_fediqad_client_device_goes_into_the_node_config(tmp_path) -> None:
    from client.runtime import supernode_command

    cmd = supernode_command("127.0.0.1:9092", tmp_path, "s1", 9100, None, device="cuda")
    node_config = cmd[cmd.index("--node-config") + 1]
    assert 'device="cuda"' in node_config and 'site-name="s1"' in node_config
    plain = supernode_command("127.0.0.1:9092", tmp_path, "s1", 9100, None)
    assert "device=" not in plain[plain.index("--node-config") + 1]
