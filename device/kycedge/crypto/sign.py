"""Signatures: Ed25519 (RFC 8032) for software-held device keys and receipts.

    sk = generate_signing_key()                 # Ed25519
    sig = sign(sk, b"msg")                      # 64 bytes, deterministic
    verify(sk.public_key(), sig, b"msg")        # raises EnvelopeError(reason="bad-signature")
"""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kycedge.core.errors import EnvelopeError
from kycedge.crypto.keys import SigningKey, VerifyKey, key_id

__all__ = ["generate_signing_key", "sign", "verify"]


def generate_signing_key() -> SigningKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def sign(private_key: SigningKey, data: bytes) -> bytes:
    """A 64-byte Ed25519 signature over ``data`` (deterministic, RFC 8032)."""
    return private_key.sign(data)


def verify(public_key: VerifyKey, signature: bytes, data: bytes) -> None:
    """Check an Ed25519 signature; raise EnvelopeError(reason="bad-signature") if it fails."""
    if len(signature) != 64:
        raise EnvelopeError(
            f"expected a 64-byte Ed25519 signature, got {len(signature)} bytes", reason="bad-signature"
        )
    try:
        public_key.verify(signature, data)
    except InvalidSignature as e:
        raise EnvelopeError(
            f"Ed25519 signature does not verify under key {key_id(public_key)}", reason="bad-signature"
        ) from e
