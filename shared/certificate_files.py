"""Where a deployment's certificates and keys live, and reading them back checked.

`shared.certificates` makes these files and checks a whole set at start-up; this module
holds the layout (see there) and the per-file checks: present, readable, PEM, current,
issued by the CA.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec

from shared.errors import UserError

CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.crt", "server.key"
ALLOWLIST = "allowlist"
NODES = "nodes"
NODE_KEY, NODE_PUB = "node.key", "node.pub"
CURVE = ec.SECP384R1  # P-384: accepted by Flower's node auth and by TLS stacks
ALWAYS_SANS = ("localhost", "127.0.0.1")  # Flower's SuperExec reaches the SuperLink here
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
EXPIRY_WARN_DAYS = 30


class CertificateError(UserError):
    """A certificate or key file is missing, unreadable, expired or not trusted."""


@dataclass(frozen=True)
class ServerFiles:
    """The three files the SuperLink's TLS needs and the allow-list folder."""

    ca: Path
    cert: Path
    key: Path
    allowlist: Path

    @classmethod
    def in_dir(cls, certs: Path) -> ServerFiles:
        return cls(certs / CA_CERT, certs / SERVER_CERT, certs / SERVER_KEY, certs / ALLOWLIST)


@dataclass(frozen=True)
class NodeFiles:
    """What one hospital's SuperNode needs: the CA certificate and its private key."""

    ca: Path
    key: Path

    @classmethod
    def in_dir(cls, node_dir: Path) -> NodeFiles:
        return cls(node_dir / CA_CERT, node_dir / NODE_KEY)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _read(path: Path, what: str) -> bytes:
    if not path.exists():
        raise CertificateError(f"{what} not found: {path}")
    if not path.is_file():
        raise CertificateError(f"{what} is not a file: {path}")
    try:
        return path.read_bytes()
    except OSError as err:
        raise CertificateError(
            f"{what} cannot be read ({err.strerror}): {path}; the "
            "container runs as uid 10001, check ownership/mode"
        ) from err


def load_certificate(path: Path, what: str = "certificate") -> x509.Certificate:
    data = _read(path, what)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as err:
        raise CertificateError(f"{what} is not a PEM certificate: {path}") from err


def check_validity(
    cert: x509.Certificate, path: Path, what: str, now: dt.datetime | None = None
) -> int:
    """Days left; raises when the certificate is expired or not valid yet."""
    moment = now or _now()
    if moment < cert.not_valid_before_utc:
        start = cert.not_valid_before_utc.strftime("%Y-%m-%d %H:%M")
        raise CertificateError(f"{what} is not valid before {start} UTC (check the clock): {path}")
    if moment > cert.not_valid_after_utc:
        raise CertificateError(
            f"{what} expired on {cert.not_valid_after_utc:%Y-%m-%d} UTC: "
            f"{path}; issue a new one (`fediqad certs init --force`)"
        )
    return (cert.not_valid_after_utc - moment).days


def check_signed_by(
    cert: x509.Certificate, ca: x509.Certificate, path: Path, ca_path: Path
) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as err:
        raise CertificateError(f"{path} was not issued by the CA in {ca_path} (wrong CA?)") from err


def check_ca(path: Path, now: dt.datetime | None = None) -> x509.Certificate:
    ca = load_certificate(path, "CA certificate")
    check_validity(ca, path, "CA certificate", now)
    try:
        is_ca = ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        is_ca = False
    if not is_ca:
        raise CertificateError(f"{path} is not a CA certificate (no CA basic constraint)")
    return ca


def sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [
        *ext.get_values_for_type(x509.DNSName),
        *(str(ip) for ip in ext.get_values_for_type(x509.IPAddress)),
    ]
