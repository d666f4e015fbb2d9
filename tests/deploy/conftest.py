"""Fixtures for the deployment tests: one PKI per session (CA, server certificate, node
keys, plus a second CA and an unregistered key for the bad-input cases) and tiny sites."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.certificates import NodeFiles, ServerFiles, create_node_key, init_ca_and_server

SERVER_IP = "10.213.7.1"  # the server namespace's address in the multi-host test


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "deployment: real SuperLink / SuperNode processes (minutes)")
    config.addinivalue_line("markers", "engine: a real Docker engine (deploy/ci-engine.sh)")


@dataclass(frozen=True)
class Pki:
    certs: Path  # the server's folder
    server_ip: str  # a SAN of the server certificate
    server: ServerFiles
    nodes: dict[str, NodeFiles]  # registered hospitals
    wrong_ca: NodeFiles  # a node of another federation (its CA does not sign our server)
    unregistered: NodeFiles  # our CA, but a key that is not in the allow-list


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = tmp_path_factory.mktemp("pki")
    server = init_ca_and_server(root / "certs", [f"fl.test,{SERVER_IP}"])
    nodes = {name: create_node_key(root / "certs", name)[0] for name in ("site0", "site1")}
    init_ca_and_server(root / "other", ["fl.other"])
    wrong_ca, _ = create_node_key(root / "other", "site1")
    rogue = root / "rogue"
    rogue.mkdir()
    shutil.copy(server.ca, rogue / "ca.crt")
    rogue_key, _ = create_node_key(root / "other", "rogue")
    shutil.copy(rogue_key.key, rogue / "node.key")
    return Pki(root / "certs", SERVER_IP, server, nodes, wrong_ca, NodeFiles.in_dir(rogue))


@pytest.fixture(scope="session")
def tiny_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two synthetic EYEQ-like sites, 40 images at 32 px each."""
    from shared.data.synth import synthesize

    root = tmp_path_factory.mktemp("deploy-sites")
    out = []
    for i, lq in enumerate((0.2, 0.6)):
        synthesize("EYEQ", 40, 32, root / f"site{i}", seed=i, lq_ratio=lq)
        out.append(root / f"site{i}")
    return out
