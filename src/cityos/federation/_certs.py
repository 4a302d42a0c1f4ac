"""Certificates of a federation: a small certificate authority per federation and one
certificate per party (``cityos gateway certs``).

A party's certificate names the party (subject CN and a DNS subject-alternative name) and
the federation (subject O); it is signed by that federation's CA. Gateways accept a peer
only if its certificate chains to their federation's CA, is within its validity period and
names the same federation (:func:`peer_identity`), so a certificate of another federation,
an unknown issuer or an expired certificate is refused during the TLS handshake.

Examples
--------
>>> import tempfile
>>> d = tempfile.mkdtemp()
>>> fed = create_federation(d, "beijing", ["env", "weather"])
>>> sorted(p.name for p in fed.parties)
['env', 'weather']
>>> ident = load_identity(d, "env")
>>> ident.party, ident.federation
('env', 'beijing')
>>> peer_identity(ident.cert_pem, "beijing", ident.ca_pem)
'env'
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from cityos.errors import ValidationError

__all__ = [
    "CertificateRefused",
    "Federation",
    "Identity",
    "PartyCert",
    "create_federation",
    "issue_party",
    "load_identity",
    "peer_identity",
]

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
CA_FILE = "ca.pem"
CA_KEY_FILE = "ca.key"


class CertificateRefused(ValidationError):
    """A peer's certificate is unknown, expired, malformed or of another federation."""


def _check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValidationError(
            f"invalid {kind} name {name!r}: use 1-63 lower-case letters, digits, '_' or '-', "
            "starting with a letter",
            field=kind,
        )
    return name


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class PartyCert:
    """Where one party's certificate and key were written."""

    name: str
    cert: Path
    key: Path


@dataclass(frozen=True)
class Federation:
    """A federation's CA and the parties it issued certificates to."""

    name: str
    directory: Path
    ca: Path
    parties: tuple[PartyCert, ...]


@dataclass(frozen=True)
class Identity:
    """One party's credentials: its certificate and key and its federation's CA (PEM)."""

    party: str
    federation: str
    cert_pem: bytes
    key_pem: bytes
    ca_pem: bytes
    cert_path: Path
    key_path: Path
    ca_path: Path

    def private_key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CertificateRefused(f"the key of party {self.party!r} is not an EC key")
        return key


def create_federation(
    directory: str | Path,
    federation: str,
    parties: list[str] | tuple[str, ...],
    *,
    days: int = 365,
) -> Federation:
    """Make a federation's CA in ``directory`` and a certificate for each party.

    Writes ``ca.pem`` and ``ca.key`` (mode 0600), and ``<party>.pem`` / ``<party>.key``
    for each party. An existing CA in ``directory`` is reused (so parties can be added
    later); it must belong to the same federation.
    """
    _check_name("federation", federation)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    ca_path, ca_key_path = d / CA_FILE, d / CA_KEY_FILE
    if ca_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_path.read_bytes())
        fed_of = _federation_of(ca_cert)
        if fed_of != federation:
            raise ValidationError(
                f"{ca_path} is the CA of federation {fed_of!r}, not {federation!r}; "
                "use another directory for another federation",
                field="federation",
            )
        ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValidationError(f"{ca_key_path} is not an EC private key", field="ca")
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, f"CityOS federation {federation} CA"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
            ]
        )
        now = _now()
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=max(days, 1) * 2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
            )
            .sign(ca_key, hashes.SHA256())
        )
        _write_private(ca_key_path, _key_pem(ca_key))
        ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    issued = tuple(issue_party(d, p, ca_cert=ca_cert, ca_key=ca_key, days=days) for p in parties)
    return Federation(federation, d, ca_path, issued)


def issue_party(
    directory: str | Path,
    party: str,
    *,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    days: int = 365,
    not_before: dt.datetime | None = None,
) -> PartyCert:
    """Issue ``party``'s certificate (client and server use) signed by the federation CA.

    ``not_before`` backdates the certificate (tests issue expired ones with it).
    """
    _check_name("party", party)
    federation = _federation_of(ca_cert)
    d = Path(directory)
    key = ec.generate_private_key(ec.SECP256R1())
    start = not_before or (_now() - dt.timedelta(minutes=5))
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, party),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, federation),
                ]
            )
        )
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName(party),
                    x509.DNSName("localhost"),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = d / f"{party}.pem", d / f"{party}.key"
    _write_private(key_path, _key_pem(key))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return PartyCert(party, cert_path, key_path)


def _federation_of(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
    if not attrs:
        raise CertificateRefused("the certificate names no federation (subject O)")
    return str(attrs[0].value)


def _party_of(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        raise CertificateRefused("the certificate names no party (subject CN)")
    return str(attrs[0].value)


def load_identity(directory: str | Path, party: str) -> Identity:
    """Read ``party``'s certificate, key and the federation CA from ``directory``."""
    d = Path(directory)
    cert_path, key_path, ca_path = d / f"{party}.pem", d / f"{party}.key", d / CA_FILE
    for p in (cert_path, key_path, ca_path):
        if not p.is_file():
            raise ValidationError(
                f"no {p.name} in {d}: make the federation's certificates with "
                f"`cityos gateway certs --out {d} --party {party} ...`",
                field="certs",
            )
    cert_pem, ca_pem = cert_path.read_bytes(), ca_path.read_bytes()
    cert = x509.load_pem_x509_certificate(cert_pem)
    if _party_of(cert) != party:
        raise CertificateRefused(f"{cert_path} is the certificate of {_party_of(cert)!r}")
    return Identity(
        party=party,
        federation=_federation_of(cert),
        cert_pem=cert_pem,
        key_pem=key_path.read_bytes(),
        ca_pem=ca_pem,
        cert_path=cert_path,
        key_path=key_path,
        ca_path=ca_path,
    )


def peer_identity(
    cert: bytes, federation: str, ca_pem: bytes, *, at: dt.datetime | None = None
) -> str:
    """The party a peer certificate (PEM or DER) names, after checking it.

    Refuses (:class:`CertificateRefused`, naming the reason) a certificate not signed by
    this federation's CA, outside its validity period, or naming another federation. The
    TLS handshake already enforces the first two; this is the gateway's own second check,
    also used on the identity a message claims.
    """
    try:
        c = (
            x509.load_pem_x509_certificate(cert)
            if cert.lstrip().startswith(b"-----")
            else x509.load_der_x509_certificate(cert)
        )
    except ValueError as exc:
        raise CertificateRefused(f"the peer's certificate cannot be read: {exc}") from exc
    ca = x509.load_pem_x509_certificate(ca_pem)
    party = _party_of(c)
    if c.issuer != ca.subject:
        raise CertificateRefused(
            f"the certificate of {party!r} was issued by {c.issuer.rfc4514_string()!r}, "
            f"not by the CA of federation {federation!r}"
        )
    try:
        c.verify_directly_issued_by(ca)
    except (InvalidSignature, ValueError, TypeError) as exc:
        raise CertificateRefused(
            f"the certificate of {party!r} is not signed by the CA of federation {federation!r}"
        ) from exc
    now = at or _now()
    if not (c.not_valid_before_utc <= now <= c.not_valid_after_utc):
        raise CertificateRefused(
            f"the certificate of {party!r} is valid from {c.not_valid_before_utc:%Y-%m-%d} "
            f"to {c.not_valid_after_utc:%Y-%m-%d}: expired or not yet valid"
        )
    fed = _federation_of(c)
    if fed != federation:
        raise CertificateRefused(
            f"the certificate of {party!r} belongs to federation {fed!r}, not {federation!r}"
        )
    return party
