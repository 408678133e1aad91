"""COSE_Sign1 (RFC 9052 section 4.2), the signed part of envelopes and receipts.

Algorithms (RFC 9053): EdDSA/Ed25519 (alg -8) for software keys, ES256 (alg -7, ECDSA
P-256 with SHA-256, signature = r || s, 64 bytes) for keys in a TPM or an HSM.

    COSE_Sign1 = #6.18([ protected: bstr .cbor {1: alg, 3: content_type, 4: kid},
                         unprotected: {},
                         payload: bstr,
                         signature: bstr .size 64 ])
    Sig_structure = ["Signature1", protected, external_aad = h'', payload]

Any COSE library verifies these; tests check against pycose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from kycedge import crypto
from kycedge.core.errors import EnvelopeError
from kycedge.protocol.envelope import _cbor

__all__ = ["CT_RECEIPT", "CT_TEMPLATE", "SignedPart", "parse_sign1", "sign1", "verify_sign1"]

COSE_TAG_SIGN1: Final = 0xD2  # tag 18 in one initial byte
ALG_EDDSA: Final = -8
ALG_ES256: Final = -7
_ALGS: Final[dict[int, crypto.SignatureAlgorithm]] = {ALG_EDDSA: "ed25519", ALG_ES256: "es256"}
CT_TEMPLATE: Final = "application/vnd.kycedge.template.v1+cbor"
CT_RECEIPT: Final = "application/vnd.kycedge.receipt.v1+cbor"


@dataclass(frozen=True)
class SignedPart:
    protected: bytes
    kid: str
    algorithm: crypto.SignatureAlgorithm
    content_type: str
    payload: bytes
    signature: bytes


def _bad(message: str) -> EnvelopeError:
    return EnvelopeError(message, reason="malformed")


def _sig_structure(protected: bytes, payload: bytes) -> bytes:
    return _cbor.encode(["Signature1", protected, b"", payload])


def sign1(
    signing_key: crypto.Signer | crypto.SigningKey | crypto.EcSigningKey,
    payload: bytes,
    content_type: str,
    *,
    key_id: str | None = None,
) -> bytes:
    """A tagged COSE_Sign1 over ``payload`` (kid = key id of ``signing_key``; pass
    ``key_id`` when already known, it must be that key's id). The algorithm is the signer's."""
    signer = crypto.as_signer(signing_key)
    kid = bytes.fromhex(key_id or crypto.key_id(signer.public_key()))
    alg = crypto.COSE_ALGORITHMS[signer.algorithm]
    protected = _cbor.encode({1: alg, 3: content_type, 4: kid})
    signature = signer.sign(_sig_structure(protected, payload))
    return bytes([COSE_TAG_SIGN1]) + _cbor.encode([protected, {}, payload, signature])


def parse_sign1(data: bytes, *, what: str, content_type: str) -> SignedPart:
    """Structure only (reason ``malformed``); verify with :func:`verify_sign1`."""
    if not data or data[0] != COSE_TAG_SIGN1:
        raise _bad(f"{what}: expected a tagged COSE_Sign1 (0xd2), got {data[:1].hex()}")
    item = _cbor.decode(data[1:], what=what, max_depth=2)
    if not isinstance(item, list) or len(item) != 4:
        raise EnvelopeError(f"{what}: expected a 4-element COSE_Sign1 array", reason="malformed")
    protected, unprotected, payload, signature = item
    if not isinstance(protected, bytes) or not isinstance(payload, bytes) or not isinstance(signature, bytes):
        raise _bad(f"{what}: expected byte strings for protected, payload, signature")
    if unprotected != {}:
        raise EnvelopeError(f"{what}: expected an empty unprotected header", reason="malformed")
    header = _cbor.decode(protected, what=f"{what} protected header", max_depth=1)
    if not isinstance(header, dict) or set(header) != {1, 3, 4}:
        raise EnvelopeError(f"{what}: expected protected header keys {{1, 3, 4}}", reason="malformed")
    alg = header[1]
    if isinstance(alg, bool) or not isinstance(alg, int) or alg not in _ALGS:
        raise EnvelopeError(f"{what}: expected alg EdDSA (-8) or ES256 (-7), got {alg!r:.20}",
                            reason="malformed")
    if header[3] != content_type:
        raise _bad(f"{what}: expected content type {content_type}, got {header[3]!r:.60}")
    kid = header[4]
    if not isinstance(kid, bytes) or len(kid) != 16:
        raise EnvelopeError(f"{what}: expected a 16-byte kid", reason="malformed")
    if len(signature) != 64:
        raise EnvelopeError(f"{what}: expected a 64-byte signature, got {len(signature)}", reason="malformed")
    return SignedPart(protected, kid.hex(), _ALGS[alg], content_type, payload, signature)


def verify_sign1(part: SignedPart, public_key: crypto.AnyVerifyKey) -> None:
    """Raise ``EnvelopeError(reason="bad-signature")`` unless ``public_key`` signed ``part``
    (with the algorithm of that key: an ES256 claim never verifies under an Ed25519 key)."""
    if crypto.key_id(public_key) != part.kid:
        raise EnvelopeError(
            f"signed by key {part.kid}, expected key {crypto.key_id(public_key)}", reason="bad-signature"
        )
    if crypto.algorithm_of(public_key) != part.algorithm:
        raise EnvelopeError(
            f"signed with {part.algorithm}, the enrolled key is {crypto.algorithm_of(public_key)}",
            reason="bad-signature",
        )
    crypto.verify(public_key, part.signature, _sig_structure(part.protected, part.payload))
