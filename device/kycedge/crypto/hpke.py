"""Encryption to the carrier: HPKE base mode (RFC 9180), DHKEM(X25519, HKDF-SHA256),
HKDF-SHA256, ChaCha20-Poly1305 (see docs/decisions/0003-wire-format.md).

    kem = generate_kem_key()                    # X25519, the carrier keeps it
    ct = hpke_seal(kem.public_key(), b"pt", info=b"context")   # enc(32) || ciphertext || tag(16)
    pt = hpke_open(kem, ct, info=b"context")    # raises EnvelopeError(reason="undecryptable")

The ephemeral key always comes from ``cryptography``'s HPKE; reproducible test vectors
use the private :mod:`kycedge.crypto._vectors` (tools/make_vectors.py and tests only).
"""

from __future__ import annotations

from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.crypto.keys import KemPrivateKey, KemPublicKey, key_id

__all__ = ["HPKE_OVERHEAD", "HPKE_SUITES", "HpkeAead", "generate_kem_key", "hpke_open", "hpke_seal"]

HpkeAead = Literal["chacha20-poly1305", "aes-128-gcm"]
# RFC 9180 identifiers: (kem_id, kdf_id, aead_id)
HPKE_SUITES: dict[str, tuple[int, int, int]] = {
    "chacha20-poly1305": (0x0020, 0x0001, 0x0003),
    "aes-128-gcm": (0x0020, 0x0001, 0x0001),
}
_SUITES = {
    "chacha20-poly1305": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305),
    "aes-128-gcm": hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_128_GCM),
}
HPKE_OVERHEAD = 32 + 16  # enc + AEAD tag


def generate_kem_key() -> KemPrivateKey:
    """A fresh X25519 private key (the carrier's HPKE key)."""
    return X25519PrivateKey.generate()


def unusable_kem_key(public_key: KemPublicKey, e: Exception) -> KeyStoreError:
    """The error for a carrier public key that yields no shared secret (low-order point)."""
    return KeyStoreError(
        f"carrier public key {key_id(public_key)} is unusable for HPKE (expected a valid X25519 "
        f"public key, got one that yields no shared secret): {e}"
    )


def hpke_seal(
    public_key: KemPublicKey, plaintext: bytes, *, info: bytes, aead: HpkeAead = "chacha20-poly1305"
) -> bytes:
    """HPKE base-mode single-shot seal: ``enc (32) || ciphertext || tag (16)``.

    ``info`` binds context (kycedge passes a digest of the clear header). A public key
    that yields no shared secret (low-order point) raises KeyStoreError.
    """
    try:
        return _SUITES[aead].encrypt(plaintext, public_key, info=info)
    except ValueError as e:  # e.g. a low-order X25519 point: no shared secret
        raise unusable_kem_key(public_key, e) from e


def hpke_open(
    private_key: KemPrivateKey, data: bytes, *, info: bytes, aead: HpkeAead = "chacha20-poly1305"
) -> bytes:
    """Open what :func:`hpke_seal` made; EnvelopeError(reason="undecryptable") on any failure."""
    if len(data) < HPKE_OVERHEAD:
        raise EnvelopeError(
            f"expected an HPKE ciphertext of at least {HPKE_OVERHEAD} bytes, got {len(data)}",
            reason="undecryptable",
        )
    try:
        return _SUITES[aead].decrypt(data, private_key, info=info)
    except (InvalidTag, ValueError) as e:
        raise EnvelopeError(
            f"HPKE decryption failed with carrier key {key_id(private_key.public_key())} "
            "(wrong key, altered ciphertext or altered header)",
            reason="undecryptable",
        ) from e
