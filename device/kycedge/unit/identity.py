"""Device identity: the unit's Ed25519 signing key and its TLS key, in the state directory.

Files (the state directory is created mode 0700; private keys are 0600 and never leave
the unit)::

    <state_dir>/device-ed25519.pem   Ed25519 private key (signs envelopes)
    <state_dir>/device-ed25519.pub   its public key (PEM), handed to the carrier at enrolment
    <state_dir>/device-tls.pem       EC P-256 private key for the broker's mutual TLS
    <state_dir>/device-tls.csr       the last certificate signing request made

The TLS key is separate from the signing key (one key, one protocol; P-256 works with
every OpenSSL/Mosquitto build). The key id is SHA-256(raw public key)[:16] in hex.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from kycedge import crypto
from kycedge.core.errors import KeyStoreError

__all__ = [
    "SIGNING_KEY_FILE",
    "SIGNING_PUBLIC_FILE",
    "TLS_CSR_FILE",
    "TLS_KEY_FILE",
    "DeviceIdentity",
    "init_identity",
    "load_identity",
    "load_or_create_tls_key",
    "make_device_csr",
]

SIGNING_KEY_FILE: Final = "device-ed25519.pem"
SIGNING_PUBLIC_FILE: Final = "device-ed25519.pub"
TLS_KEY_FILE: Final = "device-tls.pem"
TLS_CSR_FILE: Final = "device-tls.csr"


@dataclass(frozen=True)
class DeviceIdentity:
    """The unit's signing key, its raw public key and key id."""

    signing_key: crypto.SigningKey = field(repr=False)
    public_key: bytes
    key_id: str
    path: Path

    def __post_init__(self) -> None:
        if crypto.public_key_bytes(self.signing_key.public_key()) != self.public_key:
            raise KeyStoreError("device identity: public key does not belong to the signing key")
        actual = crypto.key_id(self.signing_key.public_key())
        if actual != self.key_id:
            raise KeyStoreError(f"device identity: expected key id {actual}, got {self.key_id}")

    @classmethod
    def from_key(cls, signing_key: crypto.SigningKey, path: Path) -> DeviceIdentity:
        pub = signing_key.public_key()
        return cls(signing_key, crypto.public_key_bytes(pub), crypto.key_id(pub), path)


def _state_dir(state_dir: Path) -> Path:
    state_dir = Path(state_dir)
    try:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(state_dir)
    except OSError as e:
        raise KeyStoreError(f"{state_dir}: cannot create state directory: {e.strerror or e}") from e
    if st.st_mode & 0o022:
        raise KeyStoreError(
            f"{state_dir}: state directory is writable by group/others (mode {stat.S_IMODE(st.st_mode):04o}, "
            "expected 0700 or 0755 at most)",
            reason="unsafe-key-permissions",
        )
    return state_dir


def init_identity(state_dir: Path) -> tuple[DeviceIdentity, bool]:
    """Load the identity, creating it first if there is none. Returns ``(identity, created)``.

    Never overwrites an existing key (re-keying a unit means re-enrolling it).
    """
    path = _state_dir(state_dir) / SIGNING_KEY_FILE
    if path.exists():
        return load_identity(state_dir), False
    key = crypto.generate_signing_key()
    crypto.save_private_key(path, key)
    crypto.save_public_key(path.parent / SIGNING_PUBLIC_FILE, key.public_key())
    return DeviceIdentity.from_key(key, path), True


def load_identity(state_dir: Path) -> DeviceIdentity:
    """The existing identity; KeyStoreError(reason="missing-key") if ``keys init`` never ran."""
    path = Path(state_dir) / SIGNING_KEY_FILE
    return DeviceIdentity.from_key(crypto.load_signing_key(path), path)


def load_or_create_tls_key(state_dir: Path) -> crypto.TlsPrivateKey:
    """The unit's P-256 TLS key, created (0600) on first use."""
    path = _state_dir(state_dir) / TLS_KEY_FILE
    if path.exists():
        return crypto.load_tls_key(path)
    key = crypto.generate_tls_key()
    crypto.save_private_key(path, key)
    return key


def make_device_csr(state_dir: Path, common_name: str) -> bytes:
    """A PEM CSR (subject CN=``common_name``, normally the device id) for the TLS key.

    Also written to ``<state_dir>/device-tls.csr``; the carrier's device CA signs it
    (``kycedge.crypto.issue_certificate``).
    """
    key = load_or_create_tls_key(state_dir)
    pem = crypto.csr_to_pem(crypto.make_csr(key, common_name))
    crypto.write_public_file(Path(state_dir) / TLS_CSR_FILE, pem)
    return pem
