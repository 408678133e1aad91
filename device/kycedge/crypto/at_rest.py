"""At-rest encryption (carrier store, unit outbox): ChaCha20-Poly1305 under a 32-byte key.

    key = generate_at_rest_key(); save_secret_key(path, key); key = load_secret_key(path)
    blob = encrypt_at_rest(key, b"pt", aad=b"row-id")
    pt = decrypt_at_rest(key, blob, aad=b"row-id")
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from kycedge.core.errors import EnvelopeError
from kycedge.crypto.keys import expect_len

__all__ = ["AtRestKeyLength", "decrypt_at_rest", "encrypt_at_rest", "generate_at_rest_key"]

AtRestKeyLength = 32
_AT_REST_VERSION = b"\x01"
_NONCE = 12


def generate_at_rest_key() -> bytes:
    """32 random bytes for :func:`encrypt_at_rest` (ChaCha20-Poly1305)."""
    return os.urandom(AtRestKeyLength)


def encrypt_at_rest(key: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """``0x01 || nonce (12, random) || ChaCha20-Poly1305(plaintext, aad=0x01||aad)``.

    Bind ``aad`` to where the blob lives (table, row id) so blobs cannot be swapped.
    """
    expect_len(key, AtRestKeyLength, "at-rest key")
    nonce = os.urandom(_NONCE)
    return _AT_REST_VERSION + nonce + ChaCha20Poly1305(key).encrypt(nonce, plaintext, _AT_REST_VERSION + aad)


def decrypt_at_rest(key: bytes, blob: bytes, aad: bytes) -> bytes:
    """Reverse :func:`encrypt_at_rest`; EnvelopeError(reason="undecryptable") on any failure."""
    expect_len(key, AtRestKeyLength, "at-rest key")
    if len(blob) < 1 + _NONCE + 16 or blob[:1] != _AT_REST_VERSION:
        raise EnvelopeError(
            f"expected an at-rest blob (version 0x01, >= {1 + _NONCE + 16} bytes), "
            f"got {len(blob)} bytes starting {blob[:1].hex() or 'empty'}",
            reason="undecryptable",
        )
    try:
        return ChaCha20Poly1305(key).decrypt(blob[1 : 1 + _NONCE], blob[1 + _NONCE :], _AT_REST_VERSION + aad)
    except InvalidTag as e:
        raise EnvelopeError(
            "at-rest blob does not decrypt (wrong key, wrong aad or altered data)", reason="undecryptable"
        ) from e
