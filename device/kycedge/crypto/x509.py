"""X.509 for the broker's mutual TLS: the CA, CSRs and certificate issuance (fleet, lab).

EC P-256 keys: every OpenSSL/Mosquitto/paho build handles them; the Ed25519 identity key
is never reused for TLS::

    ca_key, ca_cert = make_ca("kycedge test CA")                     # self-signed, 10 years
    broker_key = generate_tls_key()
    broker_csr = make_csr(broker_key, "localhost")
    broker_cert = issue_certificate(ca_key, ca_cert, broker_csr, days=30, server=True,
                                    dns_names=("localhost",), ip_addresses=("127.0.0.1",))
    save_certificate(dir / "broker.crt", broker_cert)     # also certificate_to_pem(cert)
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kycedge.core.errors import KeyStoreError
from kycedge.crypto.keyfiles import read_key_file, write_key_file
from kycedge.crypto.keys import TlsPrivateKey

__all__ = [
    "Certificate",
    "CertificateSigningRequest",
    "certificate_common_name",
    "certificate_from_pem",
    "certificate_to_pem",
    "csr_common_name",
    "csr_from_pem",
    "csr_to_pem",
    "generate_tls_key",
    "issue_certificate",
    "load_certificate",
    "load_certificates",
    "make_ca",
    "make_csr",
    "save_certificate",
]

Certificate = x509.Certificate
CertificateSigningRequest = x509.CertificateSigningRequest

def generate_tls_key() -> TlsPrivateKey:
    """A fresh EC P-256 key for mutual TLS (CA, broker or device)."""
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    if not isinstance(common_name, str) or not 1 <= len(common_name) <= 64:
        raise KeyStoreError(f"expected a common name of 1..64 characters, got {common_name!r}")
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _now(now: datetime | None) -> datetime:
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc)


def make_ca(
    common_name: str,
    *,
    key: TlsPrivateKey | None = None,
    days: int = 3650,
    now: datetime | None = None,
) -> tuple[TlsPrivateKey, Certificate]:
    """A self-signed CA (basicConstraints CA:true, pathlen 0, keyCertSign+cRLSign).

    Returns ``(ca_key, ca_cert)``; a fresh P-256 key is generated unless ``key`` is given.
    """
    if not 1 <= days <= 36500:
        raise KeyStoreError(f"expected CA validity days in [1, 36500], got {days}")
    key = key or generate_tls_key()
    start = _now(now) - timedelta(minutes=5)
    name = _name(common_name)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_csr(
    private_key: TlsPrivateKey,
    common_name: str,
    *,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
) -> CertificateSigningRequest:
    """A PKCS#10 request with subject CN=``common_name`` (and optional SANs), signed SHA-256."""
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(common_name))
    sans = _sans(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(private_key, hashes.SHA256())


def _sans(dns_names: Sequence[str], ip_addresses: Sequence[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = [x509.DNSName(d) for d in dns_names]
    for ip in ip_addresses:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(ip)))
        except ValueError as e:
            raise KeyStoreError(f"expected an IP address for subjectAltName, got {ip!r}") from e
    return out


def issue_certificate(
    ca_key: TlsPrivateKey,
    ca_cert: Certificate,
    csr: CertificateSigningRequest,
    *,
    days: int = 365,
    server: bool = False,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    now: datetime | None = None,
) -> Certificate:
    """Sign ``csr`` with the CA: an end-entity certificate (CA:false).

    The CSR's own signature is checked first. Subject = the CSR's subject. EKU is
    clientAuth (devices, carrier consumers) or, with ``server=True``, serverAuth (the
    broker: pass its host names / IPs, which become subjectAltName; SANs in the CSR are
    ignored: the CA decides them).
    """
    if not csr.is_signature_valid:
        raise KeyStoreError("certificate signing request: its signature does not verify")
    if not 1 <= days <= 3650:
        raise KeyStoreError(f"expected certificate validity days in [1, 3650], got {days}")
    pub = csr.public_key()
    if not isinstance(pub, ec.EllipticCurvePublicKey | Ed25519PublicKey):
        raise KeyStoreError(f"expected an EC or Ed25519 key in the CSR, got {type(pub).__name__}")
    start = _now(now) - timedelta(minutes=5)
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(ca_cert.subject)
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(min(start + timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    sans = _sans(dns_names, ip_addresses)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256())


def certificate_to_pem(cert: Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def certificate_from_pem(data: bytes) -> Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as e:
        raise KeyStoreError(f"expected a PEM X.509 certificate, got: {e}") from e


def csr_to_pem(csr: CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def csr_from_pem(data: bytes) -> CertificateSigningRequest:
    try:
        return x509.load_pem_x509_csr(data)
    except ValueError as e:
        raise KeyStoreError(f"expected a PEM certificate signing request, got: {e}") from e


def save_certificate(path: Path, cert: Certificate) -> None:
    """Write a certificate PEM, mode 0644, atomically."""
    write_key_file(path, certificate_to_pem(cert), 0o644)


def load_certificate(path: Path) -> Certificate:
    return certificate_from_pem(read_key_file(path, secret=False))


def load_certificates(path: Path) -> list[Certificate]:
    """Every certificate of a PEM bundle (at least one)."""
    data = read_key_file(path, secret=False)
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError as e:
        raise KeyStoreError(f"{path}: expected PEM X.509 certificates, got: {e}") from e
    return certs


def certificate_common_name(cert: Certificate) -> str:
    """The subject CN (e.g. the device id on a device's client certificate)."""
    return _cn(cert.subject)


def csr_common_name(csr: CertificateSigningRequest) -> str:
    return _cn(csr.subject)


def _cn(name: x509.Name) -> str:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(attrs) != 1:
        raise KeyStoreError(f"expected exactly one subject common name, got {len(attrs)}")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")
