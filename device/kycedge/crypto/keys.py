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
    "AnyVerifyKey",
    "EcSigningKey",
    "EcVerifyKey",
    "KemPrivateKey",
    "KemPublicKey",
    "PrivateKey",
    "PublicKey",
    "SigningKey",
    "TlsPrivateKey",
    "VerifyKey",
    "ec_signing_key_from_bytes",
    "ec_verify_key_from_bytes",
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
EcSigningKey = ec.EllipticCurvePrivateKey  # P-256, ES256 (software keys; TPM keys never leave the TPM)
EcVerifyKey = ec.EllipticCurvePublicKey
AnyVerifyKey = Ed25519PublicKey | ec.EllipticCurvePublicKey  # a device or receipt verification key
PrivateKey = Ed25519PrivateKey | X25519PrivateKey | ec.EllipticCurvePrivateKey
PublicKey = Ed25519PublicKey | X25519PublicKey | ec.EllipticCurvePublicKey


def key_id(public_key: AnyVerifyKey | KemPublicKey) -> str:
    """First 16 bytes of SHA-256 over the raw public key (:func:`public_key_bytes`), 32 hex chars."""
    return hashlib.sha256(public_key_bytes(public_key)).digest()[:16].hex()


def public_key_bytes(public_key: AnyVerifyKey | KemPublicKey) -> bytes:
    """The raw encoding of a public key: 32 bytes for Ed25519 / X25519 (RFC 8032 / RFC 7748),
    the 65-byte uncompressed SEC1 point ``04 || x || y`` for P-256."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        if not isinstance(public_key.curve, ec.SECP256R1):
            raise KeyStoreError(f"expected a P-256 public key, got curve {public_key.curve.name}")
        fmt = serialization.PublicFormat.UncompressedPoint
        return public_key.public_bytes(serialization.Encoding.X962, fmt)
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def ec_verify_key_from_bytes(raw: bytes) -> EcVerifyKey:
    """A P-256 public key from its 65-byte uncompressed SEC1 point; KeyStoreError otherwise."""
    expect_len(raw, 65, "uncompressed P-256 point")
    if raw[0] != 4:
        raise KeyStoreError(f"expected an uncompressed P-256 point (0x04 first), got 0x{raw[0]:02x}")
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), bytes(raw))
    except ValueError as e:
        raise KeyStoreError(f"expected a valid P-256 public key, got a point not on the curve: {e}") from e


def private_key_bytes(private_key: SigningKey | KemPrivateKey | EcSigningKey) -> bytes:
    """The raw 32-byte private key, the P-256 scalar big-endian (test vectors only; files use PEM)."""
    if isinstance(private_key, ec.EllipticCurvePrivateKey):
        return private_key.private_numbers().private_value.to_bytes(32, "big")
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


def ec_signing_key_from_bytes(raw: bytes) -> EcSigningKey:
    """A P-256 private key from its 32-byte big-endian scalar (test vectors)."""
    expect_len(raw, 32, "P-256 private scalar")
    try:
        return ec.derive_private_key(int.from_bytes(raw, "big"), ec.SECP256R1())
    except ValueError as e:
        raise KeyStoreError(f"expected a P-256 scalar in [1, n-1], got an invalid one: {e}") from e


def kem_private_key_from_bytes(raw: bytes) -> KemPrivateKey:
    """An X25519 private key from its raw 32 bytes (test vectors)."""
    expect_len(raw, 32, "X25519 private key")
    return X25519PrivateKey.from_private_bytes(raw)


def expect_len(raw: bytes, n: int, what: str) -> None:
    """KeyStoreError unless ``raw`` is exactly ``n`` bytes."""
    if not isinstance(raw, bytes | bytearray) or len(raw) != n:
        got = f"{len(raw)} bytes" if isinstance(raw, bytes | bytearray) else type(raw).__name__
        raise KeyStoreError(f"expected a {n}-byte {what}, got {got}")
