"""TLS certificates and SuperNode keys for a deployment, and their start-up checks.

Flower 1.42 does the TLS and SuperNode authentication itself; this module makes the
files it expects and checks them *before* a SuperLink or SuperNode starts, so that a
missing, expired or wrongly signed file ends in one line instead of a retry loop:

- SuperLink: `--ssl-ca-certfile ca.crt --ssl-certfile server.crt --ssl-keyfile
  server.key --enable-supernode-auth`; every public key in the allow-list folder is
  registered with `flwr supernode register KEY` (Control API) at start-up.
- SuperNode: `--root-certificates ca.crt --auth-supernode-private-key node.key`, the
  key an OpenSSH-format EC key on a NIST curve (what `flower-supernode` loads).

Layout made by `fediqad certs` (the server keeps the whole folder; a hospital gets
only `nodes/NAME/`):

    certs/ca.crt  ca.key  server.crt  server.key
    certs/allowlist/NAME.pub            public keys the SuperLink accepts
    certs/nodes/NAME/node.key node.pub ca.crt
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shared.atomic_write import write_bytes_atomic
from shared.certificate_files import (
    ALLOWLIST,
    ALWAYS_SANS,
    CA_CERT,
    CA_KEY,
    CURVE,
    EXPIRY_WARN_DAYS,
    NAME_RE,
    NODE_KEY,
    NODE_PUB,
    NODES,
    SERVER_CERT,
    SERVER_KEY,
    CertificateError,
    NodeFiles,
    ServerFiles,
    _now,
    _read,
    check_ca,
    check_signed_by,
    check_validity,
    load_certificate,
    sans,
)
from shared.errors import UserError

# The layout and per-file checks live in shared.certificate_files; callers may import
# them from here with the rest.
__all__ = [
    "ALLOWLIST", "CA_CERT", "CA_KEY", "EXPIRY_WARN_DAYS", "NODES", "NODE_KEY", "NODE_PUB",
    "SERVER_CERT", "SERVER_KEY", "CertificateError", "NodeFiles", "ServerFiles",
    "allowlisted_keys", "check_ca", "check_name", "check_node_files", "check_server_files",
    "check_signed_by", "check_validity", "create_node_key", "init_ca_and_server",
    "load_certificate", "load_public_key", "probe_tls", "sans", "split_hosts",
]  # fmt: skip


def _write(path: Path, data: bytes, private: bool) -> None:
    """Write atomically; private files stay 0600 (never world-readable, even briefly)."""
    write_bytes_atomic(path, data, mode=0o600 if private else 0o644)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def split_hosts(hosts: Iterable[str]) -> list[str]:
    """Host names / IPs from repeated or comma-separated options, plus the local ones."""
    out: list[str] = []
    for item in hosts:
        for host in item.split(","):
            host = host.strip()
            if host and host not in out:
                out.append(host)
    for host in ALWAYS_SANS:
        if host not in out:
            out.append(host)
    return out


def init_ca_and_server(
    certs: Path,
    hosts: Iterable[str],
    *,
    days: int = 825,
    ca_days: int = 3650,
    force: bool = False,
    now: dt.datetime | None = None,
) -> ServerFiles:
    """A private CA and a server certificate for the SuperLink's host names (SANs)."""
    files = ServerFiles.in_dir(certs)
    existing = [p for p in (files.ca, certs / CA_KEY, files.cert, files.key) if p.exists()]
    if existing and not force:
        raise CertificateError(
            f"{existing[0]} already exists; pass --force to replace the CA "
            "(every hospital then needs the new ca.crt)"
        )
    names = split_hosts(hosts)
    start = (now or _now()) - dt.timedelta(minutes=5)  # tolerate small clock skew
    ca_key = ec.generate_private_key(CURVE())
    ca_name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "fediqad"),
            x509.NameAttribute(NameOID.COMMON_NAME, "fediqad federation CA"),
        ]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=ca_days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(CURVE())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([_san(h) for h in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA384())
    )
    _write(certs / CA_KEY, _pem_key(ca_key), private=True)
    _write(files.ca, _pem_cert(ca_cert), private=False)
    _write(files.key, _pem_key(server_key), private=True)
    _write(files.cert, _pem_cert(server_cert), private=False)
    files.allowlist.mkdir(parents=True, exist_ok=True)
    return files


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise CertificateError(
            f"node name {name!r}: use letters, digits, '.', '_' or '-' "
            "(at most 63, starting with a letter or digit)"
        )
    return name


def create_node_key(certs: Path, name: str, *, force: bool = False) -> tuple[NodeFiles, Path]:
    """A SuperNode key pair (OpenSSH EC P-384) and its public key in the allow-list.

    Returns the hospital's files and the allow-list entry. The private key never needs
    to leave the hospital's folder `nodes/NAME/`; the server only keeps the public key.
    """
    check_name(name)
    server = ServerFiles.in_dir(certs)
    if not server.ca.is_file():
        raise CertificateError(f"{server.ca} not found; run `fediqad certs init` first")
    node_dir = certs / NODES / name
    files = NodeFiles.in_dir(node_dir)
    entry = server.allowlist / f"{name}.pub"
    if (files.key.exists() or entry.exists()) and not force:
        raise CertificateError(
            f"node {name!r} already has a key ({entry}); pass --force to "
            "replace it (the old key stops working)"
        )
    key = ec.generate_private_key(CURVE())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public += f" fediqad-{name}\n".encode()
    _write(files.key, private, private=True)
    _write(node_dir / NODE_PUB, public, private=False)
    _write(files.ca, server.ca.read_bytes(), private=False)
    _write(entry, public, private=False)
    return files, entry


def _private_key(path: Path, what: str, kind: str, loader: Callable[..., Any]) -> Any:
    try:
        return loader(_read(path, what), password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise CertificateError(f"{what} is not an unencrypted {kind} key: {path}") from err


def check_server_files(files: ServerFiles, now: dt.datetime | None = None) -> int:
    """Everything the TLS SuperLink needs is present, current and consistent; days left."""
    ca = check_ca(files.ca, now)
    cert = load_certificate(files.cert, "server certificate")
    days = check_validity(cert, files.cert, "server certificate", now)
    check_signed_by(cert, ca, files.cert, files.ca)
    key = _private_key(files.key, "server private key", "PEM", serialization.load_pem_private_key)
    if key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ) != cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    ):
        raise CertificateError(f"{files.key} does not belong to {files.cert}")
    return days


def load_public_key(path: Path) -> ec.EllipticCurvePublicKey:
    data = _read(path, "node public key")
    try:
        key = serialization.load_ssh_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as err:
        raise CertificateError(f"not an OpenSSH public key: {path}") from err
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise CertificateError(f"not an EC (NIST curve) public key: {path}")
    return key


def allowlisted_keys(allowlist: Path) -> list[Path]:
    """The allow-list's public keys, each checked; an empty list is an error (no node
    could ever join)."""
    keys = sorted(allowlist.glob("*.pub")) if allowlist.is_dir() else []
    if not keys:
        raise CertificateError(
            f"no node public keys in {allowlist}; add one per hospital "
            "with `fediqad certs node NAME`"
        )
    for path in keys:
        load_public_key(path)
    return keys


def check_node_files(files: NodeFiles, now: dt.datetime | None = None) -> int:
    """The hospital's CA certificate is current and its node key loads; CA days left."""
    ca = check_ca(files.ca, now)
    key = _private_key(files.key, "node private key", "OpenSSH", serialization.load_ssh_private_key)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"node private key is not an EC key: {files.key}")
    return (ca.not_valid_after_utc - (now or _now())).days


def probe_tls(address: str, ca: Path, timeout: float = 5.0, wait: float = 0.0) -> None:
    """Connect to the SuperLink and verify its certificate against `ca` (chain, expiry,
    host name). Retries connection failures for `wait` seconds; one line on failure."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + wait
    while True:
        try:
            with (
                socket.create_connection((host, int(port)), timeout=timeout) as sock,
                context.wrap_socket(sock, server_hostname=host),
            ):
                return
        except ssl.SSLCertVerificationError as err:
            reason = err.verify_message or str(err)
            raise CertificateError(
                f"the server {address} presented a certificate that does "
                f"not verify against {ca}: {reason} (wrong CA, expired, or "
                "host name not in its SANs)"
            ) from err
        except ssl.SSLError as err:
            raise CertificateError(
                f"TLS handshake with {address} failed ({err.reason}); is "
                "the server running with TLS?"
            ) from err
        except OSError as err:
            if time.monotonic() >= deadline:
                raise UserError(
                    f"server {address} unreachable ({err.strerror or err}) after {wait:.0f} s"
                ) from err
            time.sleep(1.0)
