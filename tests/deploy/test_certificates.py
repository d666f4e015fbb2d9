"""`fediqad certs` and the start-up checks: SANs, chain, node keys in Flower's format,
expiry, wrong CA, and the TLS probe against a live server socket."""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from fediqad.commands import certs as certs_cmd
from fediqad.commands import federation
from shared.certificates import (
    CertificateError,
    NodeFiles,
    ServerFiles,
    allowlisted_keys,
    check_node_files,
    check_server_files,
    init_ca_and_server,
    load_certificate,
    probe_tls,
    sans,
)
from shared.errors import UserError
from tests.conftest import cli_for

LATER = dt.datetime.now(dt.UTC) + dt.timedelta(days=900)


def test_server_certificate_has_the_hosts_as_sans_and_is_issued_by_the_ca(pki):
    cert = load_certificate(pki.server.cert)
    assert {"fl.test", "10.213.7.1", "localhost", "127.0.0.1"} <= set(sans(cert))
    ca = load_certificate(pki.server.ca)
    cert.verify_directly_issued_by(ca)  # raises if not
    assert check_server_files(pki.server) > 800


def test_private_keys_are_0600_and_public_files_are_not_secret(pki):
    for key in (pki.certs / "ca.key", pki.server.key, pki.nodes["site0"].key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(pki.server.cert.stat().st_mode) == 0o644


def test_node_key_is_registered_in_flowers_format(pki):
    from flwr.cli.supernode.register import try_load_public_key

    entry = pki.server.allowlist / "site0.pub"
    assert entry.read_bytes() == (pki.nodes["site0"].key.parent / "node.pub").read_bytes()
    assert allowlisted_keys(pki.server.allowlist) == [
        pki.server.allowlist / "site0.pub",
        pki.server.allowlist / "site1.pub",
    ]
    # what `flwr supernode register` and `flower-supernode` load
    registered = try_load_public_key(entry)
    private = serialization.load_ssh_private_key(pki.nodes["site0"].key.read_bytes(), None)
    assert (
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        == registered
    )  # Flower keeps the PEM encoding of the same public key
    assert check_node_files(pki.nodes["site0"]) > 3000


def test_expired_and_not_yet_valid_certificates_are_reported(pki):
    with pytest.raises(CertificateError, match="expired on"):
        check_server_files(pki.server, now=LATER)
    with pytest.raises(CertificateError, match="not valid before"):
        check_server_files(pki.server, now=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))


def test_wrong_ca_mismatched_key_and_missing_files(pki, tmp_path):
    mixed = ServerFiles(pki.wrong_ca.ca, pki.server.cert, pki.server.key, pki.server.allowlist)
    with pytest.raises(CertificateError, match="was not issued by the CA"):
        check_server_files(mixed)
    other = tmp_path / "o"
    init_ca_and_server(other, ["x"])
    swapped = ServerFiles(
        pki.server.ca, pki.server.cert, other / "server.key", pki.server.allowlist
    )
    with pytest.raises(CertificateError, match="does not belong to"):
        check_server_files(swapped)
    with pytest.raises(CertificateError, match="CA certificate not found"):
        check_node_files(NodeFiles.in_dir(tmp_path / "nowhere"))
    with pytest.raises(CertificateError, match="no node public keys"):
        allowlisted_keys(tmp_path / "empty")
    not_ca = NodeFiles(pki.server.cert, pki.nodes["site0"].key)
    with pytest.raises(CertificateError, match="not a CA certificate"):
        check_node_files(not_ca)


def test_certs_commands_and_refusal_to_overwrite(tmp_path):
    cli = cli_for(certs_cmd.register)
    root = tmp_path / "certs"
    cli("certs", "init", "--host", "fl.example.org,10.0.0.5", "--certs", root)
    cli("certs", "node", "hospital-a", "--certs", root)
    cert = load_certificate(root / "server.crt")
    assert {"fl.example.org", "10.0.0.5"} <= set(sans(cert))
    # an IP goes in as an IPAddress entry (what TLS clients match an IP against)
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "10.0.0.5" in [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)]
    assert (root / "allowlist" / "hospital-a.pub").is_file()
    assert (root / "nodes" / "hospital-a" / "ca.crt").read_bytes() == (root / "ca.crt").read_bytes()
    again = cli("certs", "init", "--host", "x", "--certs", root, ok=False)
    assert again.exit_code != 0 and isinstance(again.exception, UserError)
    assert "--force" in str(again.exception)
    bad = cli("certs", "node", "../evil", "--certs", root, ok=False)
    assert isinstance(bad.exception, UserError)
    old = (root / "allowlist" / "hospital-a.pub").read_bytes()
    cli("certs", "node", "hospital-a", "--certs", root, "--force")
    assert (root / "allowlist" / "hospital-a.pub").read_bytes() != old  # rotated


def test_server_and_client_refuse_bad_certificates_before_starting_flower(
    pki, tmp_path, monkeypatch
):
    cli = cli_for(federation.register)
    expired = tmp_path / "expired"
    init_ca_and_server(expired, ["x"], days=1, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=3))
    shutil.copytree(pki.server.allowlist, expired / "allowlist", dirs_exist_ok=True)
    monkeypatch.chdir(tmp_path)
    res = cli("server", "--certs", expired, "--rounds", "1", "--run-dir", tmp_path / "r", ok=False)
    assert isinstance(res.exception, CertificateError) and "expired on" in str(res.exception)
    assert not (tmp_path / "r" / "superlink.log").exists()  # Flower never started
    res = cli(
        "server",
        "--certs",
        pki.certs,
        "--host",
        "10.9.9.9",
        "--rounds",
        "1",
        "--run-dir",
        tmp_path / "r2",
        ok=False,
    )
    assert isinstance(res.exception, UserError) and "not among" in str(res.exception)
    res = cli(
        "client",
        "--server",
        "127.0.0.1:1",
        "--certs",
        tmp_path / "none",
        "--data-path",
        tmp_path,
        "--site-name",
        "a",
        ok=False,
    )
    assert isinstance(res.exception, CertificateError)
    assert "CA certificate not found" in str(res.exception)


@pytest.fixture
def tls_server(pki) -> Iterator[str]:
    """A TLS socket with the test server certificate (what the probe talks to)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server.cert, pki.server.key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"127.0.0.1:{port}"
    stop.set()
    thread.join(2)
    listener.close()


def _handshake(address: str, ca: Path, name: str) -> dict:
    """A real TLS handshake as an ordinary client does it: chain and host name checked."""
    host, port = address.rsplit(":", 1)
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection((host, int(port)), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        return tls.getpeercert()


def test_tls_clients_trust_the_server_for_its_sans_only(pki, tls_server):
    for name in ("fl.test", pki.server_ip, "localhost", "127.0.0.1"):  # DNS and IP SANs
        assert _handshake(tls_server, pki.server.ca, name)["subject"]
    for name in ("fl.other", "10.213.7.2"):
        with pytest.raises(ssl.SSLCertVerificationError, match="mismatch"):
            _handshake(tls_server, pki.server.ca, name)
    with pytest.raises(ssl.SSLCertVerificationError, match="issuer"):
        _handshake(tls_server, pki.wrong_ca.ca, "fl.test")  # another federation's CA


def test_tls_probe_accepts_our_ca_and_names_a_wrong_one(pki, tls_server):
    probe_tls(tls_server, pki.server.ca)
    with pytest.raises(CertificateError, match="does not verify against"):
        probe_tls(tls_server, pki.wrong_ca.ca)


def test_tls_probe_reports_an_unreachable_server(pki):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]  # closed again when the block ends
    with pytest.raises(UserError, match="unreachable"):
        probe_tls(f"127.0.0.1:{port}", pki.server.ca, wait=1)


def test_tls_probe_rejects_a_plaintext_server(pki):
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]

        def answer() -> None:
            conn, _ = sock.accept()
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\n\r\n")
            conn.close()

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(CertificateError, match="TLS handshake"):
            probe_tls(f"127.0.0.1:{port}", pki.server.ca)
