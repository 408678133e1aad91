"""Signatures: Ed25519 (RFC 8032) for software-held keys, ES256 (ECDSA P-256 / SHA-256) for
keys a TPM or an HSM holds (TPM 2.0 has no Ed25519).

    sk = generate_signing_key()                 # Ed25519
    sig = sign(sk, b"msg")                      # 64 bytes, deterministic
    verify(sk.public_key(), sig, b"msg")        # raises EnvelopeError(reason="bad-signature")

    ek = generate_es256_key()                   # P-256, software (tests, units without a TPM)
    sig = sign_es256(ek, b"msg")                # 64 bytes r || s (COSE form), RFC 6979 deterministic
    verify(ek.public_key(), sig, b"msg")        # verify dispatches on the key type

ES256 signatures are carried as COSE wants them (RFC 9053 section 2.1): the 32-byte big-endian
``r`` then ``s``, never DER. :func:`es256_from_der` and :func:`es256_from_ints` convert what
backends return.
"""

from __future__ import annotations

from typing import Final, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.crypto.keys import (
    AnyVerifyKey,
    EcSigningKey,
    SigningKey,
    ec_verify_key_from_bytes,
    key_id,
    verify_key_from_bytes,
)

__all__ = [
    "COSE_ALGORITHMS",
    "KEY_PROTECTIONS",
    "SIGNATURE_ALGORITHMS",
    "KeyProtection",
    "SignatureAlgorithm",
    "algorithm_of",
    "es256_from_der",
    "es256_from_ints",
    "generate_es256_key",
    "generate_signing_key",
    "sign",
    "sign_es256",
    "verify",
    "verify_key_from_raw",
]

SignatureAlgorithm = Literal["ed25519", "es256"]
SIGNATURE_ALGORITHMS: Final[tuple[SignatureAlgorithm, ...]] = ("ed25519", "es256")
COSE_ALGORITHMS: Final[dict[SignatureAlgorithm, int]] = {"ed25519": -8, "es256": -7}  # RFC 9053
# Where the private key lives: a file on the unit, a TPM 2.0, or a PKCS#11 token (the carrier's HSM).
KeyProtection = Literal["software", "tpm", "pkcs11"]
KEY_PROTECTIONS: Final[tuple[KeyProtection, ...]] = ("software", "tpm", "pkcs11")
_P256_BYTES: Final = 32


def generate_signing_key() -> SigningKey:
    """A fresh Ed25519 private key."""
    return Ed25519PrivateKey.generate()


def generate_es256_key() -> EcSigningKey:
    """A fresh P-256 private key for ES256, held in software."""
    return ec.generate_private_key(ec.SECP256R1())


def sign(private_key: SigningKey, data: bytes) -> bytes:
    """A 64-byte Ed25519 signature over ``data`` (deterministic, RFC 8032)."""
    return private_key.sign(data)


def sign_es256(private_key: EcSigningKey, data: bytes) -> bytes:
    """A 64-byte ES256 signature ``r || s`` over ``data`` (deterministic nonces, RFC 6979)."""
    der = private_key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    return es256_from_der(der)


def es256_from_der(der: bytes) -> bytes:
    """DER ``ECDSA-Sig-Value`` -> the 64-byte COSE form."""
    r, s = decode_dss_signature(der)
    return es256_from_ints(r, s)


def es256_from_ints(r: int, s: int) -> bytes:
    """``(r, s)`` -> the 64-byte COSE form (32-byte big-endian each)."""
    return r.to_bytes(_P256_BYTES, "big") + s.to_bytes(_P256_BYTES, "big")


def algorithm_of(public_key: AnyVerifyKey) -> SignatureAlgorithm:
    """``ed25519`` or ``es256`` for a verification key (P-256 only)."""
    if isinstance(public_key, Ed25519PublicKey):
        return "ed25519"
    if isinstance(public_key, ec.EllipticCurvePublicKey) and isinstance(public_key.curve, ec.SECP256R1):
        return "es256"
    raise KeyStoreError(f"expected an Ed25519 or P-256 public key, got {type(public_key).__name__}")


def verify_key_from_raw(raw: bytes, algorithm: SignatureAlgorithm) -> AnyVerifyKey:
    """A verification key from its raw bytes: 32 (Ed25519) or 65 (uncompressed P-256 point)."""
    if algorithm == "ed25519":
        return verify_key_from_bytes(raw)
    if algorithm == "es256":
        return ec_verify_key_from_bytes(raw)
    raise KeyStoreError(f"signature algorithm: expected one of {SIGNATURE_ALGORITHMS}, got {algorithm!r:.20}")


def verify(public_key: AnyVerifyKey, signature: bytes, data: bytes) -> None:
    """Check an Ed25519 or ES256 signature; raise EnvelopeError(reason="bad-signature") if it fails."""
    alg = algorithm_of(public_key)
    if len(signature) != 64:
        raise EnvelopeError(
            f"expected a 64-byte {alg} signature, got {len(signature)} bytes", reason="bad-signature"
        )
    try:
        if isinstance(public_key, Ed25519PublicKey):
            public_key.verify(signature, data)
        else:
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            der = encode_dss_signature(r, s)
            public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature as e:
        raise EnvelopeError(
            f"{alg} signature does not verify under key {key_id(public_key)}", reason="bad-signature"
        ) from e
