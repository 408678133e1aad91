"""Key files: PKCS#8 / SubjectPublicKeyInfo PEM and hex secret keys, written atomically.

``save_private_key`` writes PKCS#8 PEM, mode 0600, via temp file + fsync + ``os.replace``;
``load_signing_key`` / ``load_kem_private_key`` / ``load_tls_key`` refuse files readable by
group or others. Public keys: ``save_public_key`` / ``load_verify_key`` /
``load_kem_public_key`` (SubjectPublicKeyInfo PEM).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from kycedge.core.errors import KeyStoreError
from kycedge.core.fsutil import atomic_write
from kycedge.crypto.at_rest import AtRestKeyLength
from kycedge.crypto.keys import (
    AnyVerifyKey,
    KemPrivateKey,
    KemPublicKey,
    PrivateKey,
    PublicKey,
    SigningKey,
    TlsPrivateKey,
    VerifyKey,
)

__all__ = [
    "load_any_verify_key",
    "load_kem_private_key",
    "load_kem_public_key",
    "load_secret_key",
    "load_signing_key",
    "load_tls_key",
    "load_verify_key",
    "read_key_file",
    "save_private_key",
    "save_public_key",
    "save_secret_key",
    "write_key_file",
    "write_public_file",
]

_MAX_KEY_FILE = 64 * 1024


def write_key_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` with ``mode`` through THE durable write (:func:`kycedge.core.fsutil.atomic_write`)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, data, mode=mode)
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot write key file: {e.strerror or e}") from e


def read_key_file(path: Path, *, secret: bool) -> bytes:
    """The bytes of a regular key file (<= 64 KiB); ``secret`` files must be 0600 or stricter."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError as e:
        raise KeyStoreError(f"{path}: key file does not exist", reason="missing-key") from e
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot stat key file: {e.strerror or e}") from e
    if not stat.S_ISREG(st.st_mode):
        raise KeyStoreError(f"{path}: expected a regular file, got mode {stat.filemode(st.st_mode)}")
    if secret and st.st_mode & 0o077:
        raise KeyStoreError(
            f"{path}: private key file is readable or writable by group/others "
            f"(mode {stat.S_IMODE(st.st_mode):04o}, expected 0600 or stricter); fix with chmod 600",
            reason="unsafe-key-permissions",
        )
    if st.st_size > _MAX_KEY_FILE:
        raise KeyStoreError(f"{path}: expected a key file <= {_MAX_KEY_FILE} bytes, got {st.st_size}")
    try:
        return path.read_bytes()
    except OSError as e:
        raise KeyStoreError(f"{path}: cannot read key file: {e.strerror or e}") from e


def write_public_file(path: Path, data: bytes) -> None:
    """Write non-secret bytes (a CSR, a PEM bundle), mode 0644, atomically."""
    write_key_file(path, data, 0o644)


def save_private_key(path: Path, private_key: PrivateKey) -> None:
    """Write an unencrypted PKCS#8 PEM, mode 0600, atomically (temp file, fsync, os.replace)."""
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_key_file(path, pem, 0o600)


def save_public_key(path: Path, public_key: PublicKey) -> None:
    """Write a SubjectPublicKeyInfo PEM, mode 0644, atomically."""
    pem = public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    write_key_file(path, pem, 0o644)


def save_secret_key(path: Path, key: bytes) -> None:
    """Write a raw symmetric key as one line of hex, mode 0600, atomically."""
    write_key_file(path, key.hex().encode() + b"\n", 0o600)


def load_secret_key(path: Path, *, length: int = AtRestKeyLength) -> bytes:
    """Read a key written by :func:`save_secret_key` (refuses group/world-accessible files)."""
    raw = read_key_file(path, secret=True).strip()
    try:
        key = bytes.fromhex(raw.decode("ascii"))
    except (UnicodeDecodeError, ValueError) as e:
        raise KeyStoreError(f"{path}: expected {2 * length} hex characters, got unparsable text") from e
    if len(key) != length:
        raise KeyStoreError(f"{path}: expected a {length}-byte key, got {len(key)} bytes")
    return key


def _load_private(path: Path) -> object:
    data = read_key_file(path, secret=True)
    try:
        return serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(f"{path}: expected an unencrypted PKCS#8 PEM private key, got: {e}") from e


def _load_public(path: Path) -> object:
    data = read_key_file(path, secret=False)
    try:
        return serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm) as e:
        raise KeyStoreError(f"{path}: expected a PEM public key, got: {e}") from e


def _wrong_type(path: Path, expected: str, got: object) -> KeyStoreError:
    return KeyStoreError(f"{path}: expected an {expected} key, got {type(got).__name__}")


def load_signing_key(path: Path) -> SigningKey:
    """An Ed25519 private key from a 0600 PEM file."""
    key = _load_private(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise _wrong_type(path, "Ed25519 private", key)
    return key


def load_kem_private_key(path: Path) -> KemPrivateKey:
    """An X25519 private key from a 0600 PEM file."""
    key = _load_private(path)
    if not isinstance(key, X25519PrivateKey):
        raise _wrong_type(path, "X25519 private", key)
    return key


def load_tls_key(path: Path) -> TlsPrivateKey:
    """An EC (P-256) private key from a 0600 PEM file."""
    key = _load_private(path)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise _wrong_type(path, "EC private", key)
    return key


def load_verify_key(path: Path) -> VerifyKey:
    """An Ed25519 public key from a PEM file."""
    key = _load_public(path)
    if not isinstance(key, Ed25519PublicKey):
        raise _wrong_type(path, "Ed25519 public", key)
    return key


def load_any_verify_key(path: Path) -> AnyVerifyKey:
    """An Ed25519 or P-256 public key from a PEM file (a unit's signing key, either algorithm)."""
    key = _load_public(path)
    if isinstance(key, Ed25519PublicKey) or (
        isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)
    ):
        return key
    raise _wrong_type(path, "Ed25519 or P-256 public", key)


def load_kem_public_key(path: Path) -> KemPublicKey:
    """An X25519 public key from a PEM file."""
    key = _load_public(path)
    if not isinstance(key, X25519PublicKey):
        raise _wrong_type(path, "X25519 public", key)
    return key
