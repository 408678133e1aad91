"""Fleet provisioning: the fleet CA and the X.509 certificates for the broker's mutual TLS.

Layout of a CA directory (``ca init``)::

    ca.key   EC P-256 private key, 0600 (keep offline in production)
    ca.crt   self-signed CA certificate, given to the broker and every unit

Identities (the certificate's subject CN is the MQTT username: the broker's guard plugin
sets it, and binds the client id to it, ADR 0010; the ACL file keys on it):

- a unit: CN = ``<tenant>/<device>`` (``device_common_name``), clientAuth; the ACL
  pattern ``kyc/v1/%u/...`` then confines it to its own tenant *and* device topics, and
  the broker accepts no client id but the CN;
- a carrier receiver or fleet admin service: CN = the service name (for example
  ``carrier-receiver``), clientAuth;
- the broker: CN = its host name, serverAuth with DNS/IP subjectAltNames.

All key and certificate handling goes through :mod:`kycedge.crypto` (the only
``cryptography`` importer); files are written atomically, private keys 0600.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kycedge import crypto
from kycedge.core.errors import IdError, KycEdgeError
from kycedge.protocol import ids

__all__ = [
    "CaFiles",
    "Issued",
    "ProvisionError",
    "device_common_name",
    "init_ca",
    "issue_device",
    "issue_service",
    "load_ca",
]



class ProvisionError(KycEdgeError):
    """A provisioning step was refused (existing CA, bad name, unreadable CSR)."""

    reason = "provision-failed"


@dataclass(frozen=True)
class CaFiles:
    directory: Path

    @property
    def key(self) -> Path:
        return self.directory / "ca.key"

    @property
    def cert(self) -> Path:
        return self.directory / "ca.crt"


@dataclass(frozen=True)
class Issued:
    """What was written: the certificate, the key (None when issued from a CSR), the CA."""

    common_name: str
    cert: Path
    key: Path | None
    ca_cert: Path


def device_common_name(tenant: str, device: str) -> str:
    """The certificate CN of a unit (= broker username = client id): ``<tenant>/<device>`` (protocol.ids)."""
    try:
        return ids.device_common_name(tenant, device)
    except IdError as e:
        raise ProvisionError(e.message, reason="bad-name") from e


def init_ca(directory: Path, common_name: str = "kycedge fleet CA", *, days: int = 3650,
            force: bool = False) -> CaFiles:
    """Create ``ca.key`` + ``ca.crt`` in ``directory``; refuses to overwrite unless ``force``."""
    files = CaFiles(Path(directory))
    if not force and (files.key.exists() or files.cert.exists()):
        raise ProvisionError(
            f"{files.directory}: expected no existing CA, got {files.key.name}/{files.cert.name} "
            "(re-issuing the CA invalidates every unit's certificate; pass --force to do it anyway)",
            reason="ca-exists",
        )
    key, cert = crypto.make_ca(common_name, days=days)
    crypto.save_private_key(files.key, key)
    crypto.save_certificate(files.cert, cert)
    return files


def load_ca(directory: Path) -> tuple[crypto.TlsPrivateKey, crypto.Certificate, CaFiles]:
    files = CaFiles(Path(directory))
    if not files.cert.exists():
        raise ProvisionError(
            f"{files.directory}: expected a CA made by 'kycedge-fleet ca init', got no {files.cert.name}",
            reason="no-ca",
        )
    return crypto.load_tls_key(files.key), crypto.load_certificate(files.cert), files


def _issue(
    ca_dir: Path,
    common_name: str,
    out_dir: Path,
    stem: str,
    *,
    csr_pem: bytes | None,
    days: int,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
) -> Issued:
    ca_key, ca_cert, files = load_ca(ca_dir)
    out = Path(out_dir)
    key_path: Path | None = None
    if csr_pem is None:
        key = crypto.generate_tls_key()
        csr = crypto.make_csr(key, common_name)
        key_path = out / f"{stem}.key"
        crypto.save_private_key(key_path, key)
    else:
        csr = crypto.csr_from_pem(csr_pem)
        got = crypto.csr_common_name(csr)
        if got != common_name:
            raise ProvisionError(
                f"certificate request: expected subject CN {common_name!r}, got {got!r}",
                reason="csr-mismatch",
            )
    cert = crypto.issue_certificate(
        ca_key, ca_cert, csr, days=days, server=server, dns_names=dns_names, ip_addresses=ip_addresses
    )
    cert_path = out / f"{stem}.crt"
    crypto.save_certificate(cert_path, cert)
    ca_copy = out / "ca.crt"
    if ca_copy.resolve() != files.cert.resolve():
        crypto.save_certificate(ca_copy, ca_cert)
    return Issued(common_name, cert_path, key_path, ca_copy)


def issue_device(
    ca_dir: Path, tenant: str, device: str, out_dir: Path, *, csr_pem: bytes | None = None, days: int = 365
) -> Issued:
    """A unit's client certificate (``<out>/device.crt``; ``device.key`` if no CSR is given).

    With ``csr_pem`` (the unit made its key and request itself, the key never leaves it)
    the request's CN must be ``<tenant>/<device>``.
    """
    return _issue(ca_dir, device_common_name(tenant, device), out_dir, "device", csr_pem=csr_pem, days=days)


def issue_service(
    ca_dir: Path,
    name: str,
    out_dir: Path,
    *,
    server: bool = False,
    dns_names: tuple[str, ...] = (),
    ip_addresses: tuple[str, ...] = (),
    csr_pem: bytes | None = None,
    days: int = 365,
) -> Issued:
    """A service certificate: the broker (``server=True`` + SANs) or a carrier-side client.

    Writes ``<out>/<name>.crt`` (and ``<name>.key`` when no CSR is given).
    """
    try:
        ids.check_service_name(name)
    except IdError as e:
        raise ProvisionError(e.message, reason="bad-name") from e
    if server and not (dns_names or ip_addresses):
        raise ProvisionError(
            "a server certificate needs at least one --dns or --ip subjectAltName, got none",
            reason="bad-name",
        )
    return _issue(
        ca_dir, name, out_dir, name, csr_pem=csr_pem, days=days, server=server,
        dns_names=dns_names, ip_addresses=ip_addresses,
    )
