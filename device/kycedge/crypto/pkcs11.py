"""Keys in an HSM through PKCS#11 (the only module that imports ``pkcs11``, python-pkcs11).

The carrier's receipt-signing key can live in a token (a network HSM in production,
SoftHSM2 in tests): Ed25519 (``CKM_EDDSA``) so receipts and the units that verify them are
unchanged, or ES256 (``CKM_ECDSA`` over SHA-256). The key is generated in the token as
``CKA_SENSITIVE`` and not ``CKA_EXTRACTABLE``: the private key never leaves it.

    pub = generate_key(token, "kycedge-receipt", algorithm="ed25519")
    signer = Pkcs11Signer.open(token, "kycedge-receipt")   # protection "pkcs11"
    sig = signer.sign(data)

``token`` is a :class:`Token` (module path, token label, user PIN). The carrier's HPKE
(X25519) key stays a file: SoftHSM2 2.6 offers no ``CKM_EC_MONTGOMERY_KEY_PAIR_GEN`` (its
``CKM_ECDH1_DERIVE`` serves Weierstrass curves only), measured in tests/crypto/test_pkcs11.py.
Errors become :class:`~kycedge.core.errors.KeyStoreError` with reason ``hsm-error``.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from kycedge.core.errors import KeyStoreError
from kycedge.crypto.keys import AnyVerifyKey, ec_verify_key_from_bytes, verify_key_from_bytes
from kycedge.crypto.sign import KeyProtection, SignatureAlgorithm

__all__ = ["Pkcs11Signer", "Token", "generate_key", "mechanisms"]

_ED25519_OID: Final = bytes.fromhex("06032b6570")  # DER OID 1.3.101.112 (CKA_EC_PARAMS)
_P256_OID: Final = bytes.fromhex("06082a8648ce3d030107")  # prime256v1


def _lib() -> Any:
    try:
        import pkcs11
    except ImportError as e:  # pragma: no cover - depends on the install
        raise KeyStoreError(f"HSM support needs python-pkcs11 (pip install python-pkcs11): {e}",
                            reason="hsm-error") from e
    return pkcs11


@dataclass(frozen=True)
class Token:
    module: Path
    label: str
    pin: str = field(repr=False)

    def open(self, *, rw: bool = False) -> Any:
        p = _lib()
        try:
            token = p.lib(str(self.module)).get_token(token_label=self.label)
            try:
                return token.open(rw=rw, user_pin=self.pin)
            except p.exceptions.UserAlreadyLoggedIn:  # login is per application: share it
                return token.open(rw=rw)
        except Exception as e:
            raise KeyStoreError(f"pkcs11 {self.module} token {self.label!r}: cannot open a session: "
                                f"{type(e).__name__} {e}", reason="hsm-error") from e


def mechanisms(token: Token) -> set[str]:
    """The mechanism names the token's slot offers (what an operator checks first)."""
    p = _lib()
    try:
        t = p.lib(str(token.module)).get_token(token_label=token.label)
        return {m.name for m in t.slot.get_mechanisms()}
    except Exception as e:
        raise KeyStoreError(f"pkcs11 {token.module}: cannot list mechanisms: {e}", reason="hsm-error") from e


def _public_from_point(point: bytes, algorithm: SignatureAlgorithm) -> AnyVerifyKey:
    raw = bytes(point)
    if raw[:1] == b"\x04" and len(raw) in (34, 67):  # a DER OCTET STRING wrapping the point
        raw = raw[2:]
    return verify_key_from_bytes(raw) if algorithm == "ed25519" else ec_verify_key_from_bytes(raw)


def generate_key(token: Token, label: str, *, algorithm: SignatureAlgorithm = "ed25519") -> AnyVerifyKey:
    """A new non-extractable signing key pair in the token; returns its public key."""
    p = _lib()
    a = p.Attribute
    kt = p.KeyType.EC_EDWARDS if algorithm == "ed25519" else p.KeyType.EC
    with token.open(rw=True) as session:
        try:
            if any(True for _ in session.get_objects({a.LABEL: label, a.CLASS: p.ObjectClass.PRIVATE_KEY})):
                raise KeyStoreError(f"pkcs11 token {token.label!r}: a key labelled {label!r} exists; "
                                    "never overwritten", reason="hsm-error")
            params = session.create_domain_parameters(
                kt, {a.EC_PARAMS: _ED25519_OID if algorithm == "ed25519" else _P256_OID}, local=True)
            pub, _ = params.generate_keypair(
                store=True, label=label,
                private_template={a.SENSITIVE: True, a.EXTRACTABLE: False, a.SIGN: True})
            return _public_from_point(pub[a.EC_POINT], algorithm)
        except KeyStoreError:
            raise
        except Exception as e:
            raise KeyStoreError(f"pkcs11 token {token.label!r}: key generation failed: {type(e).__name__} "
                                f"{e}", reason="hsm-error") from e


class Pkcs11Signer:
    """A signing key inside a PKCS#11 token; implements :class:`kycedge.crypto.Signer`."""

    def __init__(self, session: Any, key: Any, public_key: AnyVerifyKey, algorithm: SignatureAlgorithm,
                 token: Token) -> None:
        self._session, self._key, self._public, self._algorithm = session, key, public_key, algorithm
        self.token = token
        self._lock = threading.Lock()  # a PKCS#11 session runs one operation at a time

    @classmethod
    def open(cls, token: Token, label: str) -> Pkcs11Signer:
        p = _lib()
        a = p.Attribute
        session = token.open()
        try:
            priv = session.get_key(object_class=p.ObjectClass.PRIVATE_KEY, label=label)
            pub = session.get_key(object_class=p.ObjectClass.PUBLIC_KEY, label=label)
            algorithm: SignatureAlgorithm = "ed25519" if priv.key_type == p.KeyType.EC_EDWARDS else "es256"
            if priv[a.EXTRACTABLE] or not priv[a.SENSITIVE]:
                raise KeyStoreError(f"pkcs11 key {label!r}: expected sensitive and non-extractable, "
                                    "it is not", reason="hsm-error")
            public = _public_from_point(pub[a.EC_POINT], algorithm)
        except KeyStoreError:
            session.close()
            raise
        except Exception as e:
            session.close()
            raise KeyStoreError(f"pkcs11 token {token.label!r}: no usable key {label!r}: {type(e).__name__} "
                                f"{e}", reason="hsm-error") from e
        return cls(session, priv, public, algorithm, token)

    @property
    def algorithm(self) -> SignatureAlgorithm:
        return self._algorithm

    @property
    def protection(self) -> KeyProtection:
        return "pkcs11"

    def public_key(self) -> AnyVerifyKey:
        return self._public

    def sign(self, data: bytes) -> bytes:
        p = _lib()
        try:
            with self._lock:
                if self._algorithm == "ed25519":
                    return bytes(self._key.sign(data, mechanism=p.Mechanism.EDDSA))
                # CKM_ECDSA signs a digest; the token returns r || s, the COSE form already
                return bytes(self._key.sign(hashlib.sha256(data).digest(), mechanism=p.Mechanism.ECDSA))
        except Exception as e:
            raise KeyStoreError(f"pkcs11 token {self.token.label!r}: signing failed: {type(e).__name__} {e}",
                                reason="hsm-error") from e

    def close(self) -> None:
        with self._lock:
            self._session.close()
