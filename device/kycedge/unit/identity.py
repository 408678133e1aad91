"""Device identity: the unit's signing key and its TLS key, in the state directory.

The signing key lives in one of two places, and every output says which (``key_protection``):

- ``tpm``: an ES256 (P-256) key generated inside the unit's TPM 2.0 (``kycedge keys init
  --tpm TCTI``, then ``[daemon] tpm_tcti`` in the config). The state directory holds only
  the key blob, which loads into that TPM alone: a copied state directory cannot sign.
- ``software``: an Ed25519 key in a 0600 file, for units without a TPM.

Files (the state directory is created mode 0700; private keys are 0600 and never leave
the unit)::

    <state_dir>/device-ed25519.pem   software: Ed25519 private key (signs envelopes)
    <state_dir>/device-ed25519.pub   software: its public key (PEM), handed to the carrier at enrolment
    <state_dir>/device-tpm.key       tpm: the TPM key blob (public + private wrapped by the TPM)
    <state_dir>/device-tpm.pub       tpm: its public key (PEM, P-256)
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
    "TPM_KEY_FILE",
    "TPM_PUBLIC_FILE",
    "DeviceIdentity",
    "init_identity",
    "load_identity",
    "load_or_create_tls_key",
    "make_device_csr",
]

SIGNING_KEY_FILE: Final = "device-ed25519.pem"
SIGNING_PUBLIC_FILE: Final = "device-ed25519.pub"
TPM_KEY_FILE: Final = "device-tpm.key"
TPM_PUBLIC_FILE: Final = "device-tpm.pub"
TLS_KEY_FILE: Final = "device-tls.pem"
TLS_CSR_FILE: Final = "device-tls.csr"


@dataclass(frozen=True)
class DeviceIdentity:
    """The unit's signer (software or TPM), its raw public key, key id and key file."""

    signer: crypto.Signer = field(repr=False)
    public_key: bytes
    key_id: str
    path: Path

    def __post_init__(self) -> None:
        if crypto.public_key_bytes(self.signer.public_key()) != self.public_key:
            raise KeyStoreError("device identity: public key does not belong to the signing key")
        actual = crypto.key_id(self.signer.public_key())
        if actual != self.key_id:
            raise KeyStoreError(f"device identity: expected key id {actual}, got {self.key_id}")

    @classmethod
    def from_signer(cls, signer: crypto.Signer | crypto.SigningKey, path: Path) -> DeviceIdentity:
        s = crypto.as_signer(signer)
        pub = s.public_key()
        return cls(s, crypto.public_key_bytes(pub), crypto.key_id(pub), path)

    @property
    def algorithm(self) -> crypto.SignatureAlgorithm:
        return self.signer.algorithm

    @property
    def key_protection(self) -> crypto.KeyProtection:
        return self.signer.protection

    @property
    def public_key_file(self) -> Path:
        return self.path.parent / (TPM_PUBLIC_FILE if self.key_protection == "tpm" else SIGNING_PUBLIC_FILE)

    def close(self) -> None:
        """Release the TPM connection (a no-op for software keys)."""
        close = getattr(self.signer, "close", None)
        if callable(close):
            close()


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


def init_identity(state_dir: Path, *, tpm_tcti: str = "") -> tuple[DeviceIdentity, bool]:
    """Load the identity, creating it first if there is none. Returns ``(identity, created)``.

    With ``tpm_tcti`` the key is generated inside that TPM (ES256); without it, an Ed25519
    key in software. Never overwrites an existing key (re-keying a unit means re-enrolling
    it, or a signed hand-over: ``kycedge keys rotate``).
    """
    directory = _state_dir(state_dir)
    if (directory / SIGNING_KEY_FILE).exists() or (directory / TPM_KEY_FILE).exists():
        return load_identity(state_dir, tpm_tcti=tpm_tcti), False
    if tpm_tcti:
        return _create_tpm_key(directory, tpm_tcti, TPM_KEY_FILE, TPM_PUBLIC_FILE), True
    path = directory / SIGNING_KEY_FILE
    key = crypto.generate_signing_key()
    crypto.save_private_key(path, key)
    crypto.save_public_key(path.parent / SIGNING_PUBLIC_FILE, key.public_key())
    return DeviceIdentity.from_signer(key, path), True


def _create_tpm_key(directory: Path, tcti: str, key_file: str, public_file: str) -> DeviceIdentity:
    from kycedge.crypto.tpm import TpmSigner, create_key

    blob = create_key(tcti)
    crypto.write_key_file(directory / key_file, blob, 0o600)
    signer = TpmSigner.open(tcti, blob)
    crypto.save_public_key(directory / public_file, signer.public_key())
    return DeviceIdentity.from_signer(signer, directory / key_file)


def load_identity(state_dir: Path, *, tpm_tcti: str = "") -> DeviceIdentity:
    """The existing identity; KeyStoreError(reason="missing-key") if ``keys init`` never ran.

    A state directory with a TPM key blob needs ``tpm_tcti`` (the key is useless without
    its TPM); a configured TPM with a software key in the state directory is refused
    rather than silently used as software.
    """
    directory = Path(state_dir)
    blob_path = directory / TPM_KEY_FILE
    if blob_path.exists():
        if not tpm_tcti:
            raise KeyStoreError(
                f"{blob_path}: the device key is held by a TPM; set [daemon] tpm_tcti (e.g. "
                "device:/dev/tpmrm0) to use it", reason="missing-key")
        from kycedge.crypto.tpm import TpmSigner

        blob = crypto.read_key_file(blob_path, secret=True)
        return DeviceIdentity.from_signer(TpmSigner.open(tpm_tcti, blob), blob_path)
    path = directory / SIGNING_KEY_FILE
    if tpm_tcti and path.exists():
        raise KeyStoreError(
            f"{path}: [daemon] tpm_tcti is set but the device key is a software key; make a TPM key in a "
            "fresh state directory and enrol it with attestation (kycedge keys init --tpm, kycedge keys "
            "attest), or clear tpm_tcti to keep signing in software",
            reason="key-protection-mismatch")
    return DeviceIdentity.from_signer(crypto.load_signing_key(path), path)


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
