"""One signer interface for every key backend: software (a key in memory, from a 0600 file),
a TPM 2.0 (:mod:`kycedge.crypto.tpm`) or a PKCS#11 token (:mod:`kycedge.crypto.pkcs11`).

    signer = software_signer(crypto.generate_signing_key())   # or a TpmSigner, a Pkcs11Signer
    signer.algorithm     # "ed25519" | "es256"
    signer.protection    # "software" | "tpm" | "pkcs11"
    signer.public_key()  # Ed25519PublicKey | EllipticCurvePublicKey
    signer.sign(data)    # 64 bytes (Ed25519, or ES256 r || s)

The envelope and the receipt code take a :class:`Signer` and never learn where the key lives.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kycedge.core.errors import KeyStoreError
from kycedge.crypto.keys import AnyVerifyKey, EcSigningKey, SigningKey
from kycedge.crypto.sign import KeyProtection, SignatureAlgorithm, algorithm_of, sign, sign_es256

__all__ = ["Signer", "SoftwareSigner", "as_signer", "software_signer"]


@runtime_checkable
class Signer(Protocol):
    """Something that signs with one key; the private key may never be visible."""

    @property
    def algorithm(self) -> SignatureAlgorithm: ...

    @property
    def protection(self) -> KeyProtection: ...

    def public_key(self) -> AnyVerifyKey: ...

    def sign(self, data: bytes) -> bytes: ...


@dataclass(frozen=True)
class SoftwareSigner:
    """A key held in process memory (loaded from a 0600 file): protection ``software``."""

    key: SigningKey | EcSigningKey = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
            raise KeyStoreError(f"expected an Ed25519 or P-256 private key, got {type(self.key).__name__}")
        algorithm_of(self.key.public_key())  # P-256 only

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return algorithm_of(self.key.public_key())

    @property
    def protection(self) -> KeyProtection:
        return "software"

    def public_key(self) -> AnyVerifyKey:
        return self.key.public_key()

    def sign(self, data: bytes) -> bytes:
        if isinstance(self.key, Ed25519PrivateKey):
            return sign(self.key, data)
        return sign_es256(self.key, data)


def software_signer(key: SigningKey | EcSigningKey) -> SoftwareSigner:
    return SoftwareSigner(key)


def as_signer(key: Signer | SigningKey | EcSigningKey) -> Signer:
    """A :class:`Signer` for a signer or a bare software key (existing call sites pass keys)."""
    if isinstance(key, Ed25519PrivateKey | ec.EllipticCurvePrivateKey):
        return SoftwareSigner(key)
    if isinstance(key, Signer):
        return key
    raise KeyStoreError(f"expected a Signer or a private key, got {type(key).__name__}")
