"""Key types and their raw encodings: key ids, raw 32-byte forms (no files, no algorithms).

The aliases let callers type their code without importing ``cryptography``.
"""

from __future__ import annotations

import hashlib

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from kycedge.core.errors import KeyStoreError

__all__ = [
    "KemPrivateKey",
    "KemPublicKey",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "TlsPrivateKey",
    "VerifyKey",
    "expect_len",
    "kem_private_key_from_bytes",
    "kem_public_key_from_bytes",
    "key_id",
    "private_key_bytes",
    "public_key_bytes",
    "signing_key_from_bytes",
    "verify_key_from_bytes",
]

SigningKey = Ed25519PrivateKey
VerifyKey = Ed25519PublicKey
KemPrivateKey = X25519PrivateKey
KemPublicKey = X25519PublicKey
TlsPrivateKey = ec.EllipticCurvePrivateKey
PrivateKey = Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | X25519PublicKey | ec.EllipticCurvePublicKey


def key_id(public_key: VerifyKey | KemPublicKey) -> str:
    """First 16 bytes of SHA-256 over the raw 32-byte public key, as 32 lowercase hex chars."""
    return hashlib.sha256(public_key_bytes(public_key)).digest()[:16].hex()


def public_key_bytes(public_key: VerifyKey | KemPublicKey) -> bytes:
    """The raw 32-byte encoding of an Ed25519 or X25519 public key (RFC 8032 / RFC 7748)."""
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def private_key_bytes(private_key: SigningKey | KemPrivateKey) -> bytes:
    """The raw 32-byte private key (for test vectors only; files use PEM)."""
    return private_key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def verify_key_from_bytes(raw: bytes) -> VerifyKey:
    """An Ed25519 public key from its raw 32 bytes; KeyStoreError if not 32 valid bytes."""
    expect_len(raw, 32, "Ed25519 public key")
    try:
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise KeyStoreError(f"expected a valid Ed25519 public key, got invalid bytes: {e}") from e


def kem_public_key_from_bytes(raw: bytes) -> KemPublicKey:
    """An X25519 public key from its raw 32 bytes."""
    expect_len(raw, 32, "X25519 public key")
    try:
        return X25519PublicKey.from_public_bytes(raw)
    except ValueError as e:
        raise KeyStoreError(f"expected a valid X25519 public key, got invalid bytes: {e}") from e


def signing_key_from_bytes(raw: bytes) -> SigningKey:
    """An Ed25519 private key from its raw 32-byte seed (test vectors)."""
    expect_len(raw, 32, "Ed25519 private key")
    return Ed25519PrivateKey.from_private_bytes(raw)


def kem_private_key_from_bytes(raw: bytes) -> KemPrivateKey:
    """An X25519 private key from its raw 32 bytes (test vectors)."""
    expect_len(raw, 32, "X25519 private key")
    return X25519PrivateKey.from_private_bytes(raw)


def expect_len(raw: bytes, n: int, what: str) -> None:
    """KeyStoreError unless ``raw`` is exactly ``n`` bytes."""
    if not isinstance(raw, bytes | bytearray) or len(raw) != n:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise KeyStoreError(f"expected a {n}-byte {what}, got {got}")
