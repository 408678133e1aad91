"""PRIVATE: reproducible HPKE for the wire-format test vectors. Never imported by the product.

Only tools/make_vectors.py and tests import this module (a test checks that nothing under
``device/kycedge`` does). :func:`hpke_seal` runs the RFC 9180 key schedule with a GIVEN
ephemeral key, so vectors are byte-identical on every run; tests check that the result
opens with ``cryptography``'s own HPKE (:func:`kycedge.crypto.hpke_open`) and that the key
schedule matches RFC 9180 Appendix A.1.1.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from kycedge.crypto.hpke import HPKE_SUITES, HpkeAead, unusable_kem_key
from kycedge.crypto.keys import KemPrivateKey, KemPublicKey, public_key_bytes

__all__ = ["hpke_seal", "setup_base_sender"]


def hpke_seal(
    public_key: KemPublicKey,
    plaintext: bytes,
    *,
    info: bytes,
    ephemeral_key: KemPrivateKey,
    aead: HpkeAead = "chacha20-poly1305",
) -> bytes:
    """HPKE base-mode seal with a fixed ephemeral key: ``enc (32) || ciphertext || tag (16)``."""
    try:
        enc, key, base_nonce = setup_base_sender(public_key, info, aead, ephemeral_key)
    except ValueError as e:
        raise unusable_kem_key(public_key, e) from e
    cipher = ChaCha20Poly1305(key) if aead == "chacha20-poly1305" else AESGCM(key)
    return enc + cipher.encrypt(base_nonce, plaintext, b"")  # sequence 0: nonce = base_nonce


def _i2osp(n: int, length: int) -> bytes:
    return n.to_bytes(length, "big")


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or b"\x00" * 32, b"HPKE-v1" + suite_id + label + ikm, hashlib.sha256).digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = _i2osp(length, 2) + b"HPKE-v1" + suite_id + label + info
    return HKDFExpand(hashes.SHA256(), length, labeled).derive(prk)


def setup_base_sender(
    public_key: KemPublicKey, info: bytes, aead: HpkeAead, eph: KemPrivateKey
) -> tuple[bytes, bytes, bytes]:
    """RFC 9180 SetupBaseS with a given ephemeral key: ``(enc, key, base_nonce)``."""
    kem_id, kdf_id, aead_id = HPKE_SUITES[aead]
    # DHKEM(X25519, HKDF-SHA256) Encap, RFC 9180 section 4.1
    kem_suite = b"KEM" + _i2osp(kem_id, 2)
    dh = eph.exchange(public_key)
    enc = public_key_bytes(eph.public_key())
    kem_context = enc + public_key_bytes(public_key)
    eae_prk = _labeled_extract(kem_suite, b"", b"eae_prk", dh)
    shared_secret = _labeled_expand(kem_suite, eae_prk, b"shared_secret", kem_context, 32)
    # KeySchedule, mode_base, section 5.1
    suite_id = b"HPKE" + _i2osp(kem_id, 2) + _i2osp(kdf_id, 2) + _i2osp(aead_id, 2)
    psk_id_hash = _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
    info_hash = _labeled_extract(suite_id, b"", b"info_hash", info)
    context = b"\x00" + psk_id_hash + info_hash
    secret = _labeled_extract(suite_id, shared_secret, b"secret", b"")
    nk = 32 if aead == "chacha20-poly1305" else 16
    key = _labeled_expand(suite_id, secret, b"key", context, nk)
    base_nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return enc, key, base_nonce
