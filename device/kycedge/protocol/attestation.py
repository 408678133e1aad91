"""Key attestation and key hand-over messages between a unit and the carrier (CBOR, pure).

Enrolment of a TPM-held key (docs/tpm.md)::

    unit     kycedge keys attest     -> request   {"v":1, "tenant", "device", "ek_cert", "ek_pub",
                                                    "ak_pub", "key_pub", "certify_info", "certify_sig"}
    carrier  device challenge        -> challenge {"v":1, "blob", "secret"}   (TPM2_MakeCredential)
    unit     kycedge keys activate   -> proof: the 32 credential bytes only that TPM recovers
    carrier  device enroll --attestation request --proof proof

The AK's TPM2_Certify covers :func:`qualifying_data` (tenant and device id), so a request
made for one unit cannot enrol another.

Rotation (``kycedge keys rotate``): a hand-over, COSE_Sign1 by the OLD key over
{"v":1, "tenant", "device", "old_kid", "new_pub", "new_alg", "certify_info", "certify_sig",
"issued_at_ms"}: the old key vouches for the new one; for a TPM unit the same AK (recorded at
enrolment) certifies the new key as TPM-held.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Final

from kycedge.core.errors import EnvelopeError
from kycedge.protocol.envelope import _cbor
from kycedge.protocol.envelope.model import MAX_TIME_MS, MIN_TIME_MS, check_int, check_text
from kycedge.protocol.ids import DEVICE_ID_RE, KEY_ID_RE, TENANT_RE

__all__ = [
    "CT_HANDOVER",
    "MAX_ATTESTATION_BYTES",
    "AttestationMessage",
    "AttestationRecord",
    "ChallengeMessage",
    "HandoverMessage",
    "decode_challenge",
    "decode_handover",
    "decode_record",
    "decode_request",
    "encode_challenge",
    "encode_handover",
    "encode_record",
    "encode_request",
    "qualifying_data",
]

VERSION: Final = 1
MAX_ATTESTATION_BYTES: Final = 16384
CT_HANDOVER: Final = "application/vnd.kycedge.key-handover.v1+cbor"
_REQUEST_KEYS: Final = frozenset({"v", "tenant", "device", "ek_cert", "ek_pub", "ak_pub", "key_pub",
                                  "certify_info", "certify_sig"})
_CHALLENGE_KEYS: Final = frozenset({"v", "blob", "secret"})
_HANDOVER_KEYS: Final = frozenset({"v", "tenant", "device", "old_kid", "new_pub", "new_alg", "kp",
                                   "certify_info", "certify_sig", "issued_at_ms"})


def qualifying_data(tenant: str, device_id: str, purpose: str = "enrol") -> bytes:
    """What the AK's certification covers: SHA-256 of the purpose, tenant and device id."""
    return hashlib.sha256(f"kycedge key attestation v1\0{purpose}\0{tenant}\0{device_id}".encode()).digest()


@dataclass(frozen=True)
class AttestationMessage:
    tenant: str
    device_id: str
    ek_certificate: bytes
    ek_public: bytes
    ak_public: bytes
    key_public: bytes
    certify_info: bytes
    certify_signature: bytes

    def __post_init__(self) -> None:
        check_text(self.tenant, TENANT_RE, "attestation.tenant")
        check_text(self.device_id, DEVICE_ID_RE, "attestation.device")


@dataclass(frozen=True)
class ChallengeMessage:
    credential_blob: bytes
    encrypted_secret: bytes


_BYTES: Final = frozenset({"ek_cert", "ek_pub", "ak_pub", "key_pub", "certify_info", "certify_sig", "blob",
                           "secret", "old_kid", "new_pub"})


def _decode(data: bytes, keys: frozenset[str], what: str, *, may_be_empty: frozenset[str] = frozenset()
            ) -> dict[str, Any]:
    if not isinstance(data, bytes) or len(data) > MAX_ATTESTATION_BYTES:
        raise EnvelopeError(f"{what}: expected at most {MAX_ATTESTATION_BYTES} bytes", reason="malformed")
    m = _cbor.decode(data, what=what, max_depth=1)
    if not isinstance(m, dict) or set(m) != keys:
        got = sorted(str(k)[:20] for k in m) if isinstance(m, dict) else type(m).__name__
        raise EnvelopeError(f"{what}: expected keys {sorted(keys)}, got {got}", reason="malformed")
    if m["v"] != VERSION or isinstance(m["v"], bool):
        raise EnvelopeError(f"{what}: expected version {VERSION}, got {m['v']!r:.20}",
                            reason="unsupported-version")
    for k in keys & _BYTES:
        if not isinstance(m[k], bytes) or (not m[k] and k not in may_be_empty):
            raise EnvelopeError(f"{what}.{k}: expected a non-empty byte string", reason="malformed")
    return m


def encode_request(msg: AttestationMessage) -> bytes:
    return _cbor.encode({
        "v": VERSION, "tenant": msg.tenant, "device": msg.device_id, "ek_cert": msg.ek_certificate,
        "ek_pub": msg.ek_public, "ak_pub": msg.ak_public, "key_pub": msg.key_public,
        "certify_info": msg.certify_info, "certify_sig": msg.certify_signature,
    })


def decode_request(data: bytes) -> AttestationMessage:
    m = _decode(data, _REQUEST_KEYS, "attestation request")
    return AttestationMessage(m["tenant"], m["device"], m["ek_cert"], m["ek_pub"], m["ak_pub"], m["key_pub"],
                              m["certify_info"], m["certify_sig"])


def encode_challenge(msg: ChallengeMessage) -> bytes:
    return _cbor.encode({"v": VERSION, "blob": msg.credential_blob, "secret": msg.encrypted_secret})


def decode_challenge(data: bytes) -> ChallengeMessage:
    m = _decode(data, _CHALLENGE_KEYS, "attestation challenge")
    return ChallengeMessage(m["blob"], m["secret"])


@dataclass(frozen=True)
class HandoverMessage:
    """The old key's statement that ``new_public_key`` (raw bytes) is the unit's next key.
    ``certify_*`` are empty for a software key; for a TPM key, the AK's certification."""

    tenant: str
    device_id: str
    old_key_id: str
    new_public_key: bytes
    new_algorithm: str
    key_protection: str
    certify_info: bytes
    certify_signature: bytes
    issued_at_ms: int

    def __post_init__(self) -> None:
        check_text(self.tenant, TENANT_RE, "handover.tenant")
        check_text(self.device_id, DEVICE_ID_RE, "handover.device")
        check_text(self.old_key_id, KEY_ID_RE, "handover.old_kid")
        check_int(self.issued_at_ms, MIN_TIME_MS, MAX_TIME_MS, "handover.issued_at_ms")
        if (self.new_algorithm, self.key_protection) not in {("ed25519", "software"), ("es256", "software"),
                                                             ("es256", "tpm")}:
            raise EnvelopeError(f"handover: expected ed25519/software, es256/software or es256/tpm, got "
                                f"{self.new_algorithm!r:.20}/{self.key_protection!r:.20}", reason="malformed")
        if (self.key_protection == "tpm") != bool(self.certify_info and self.certify_signature):
            raise EnvelopeError("handover: a tpm key comes with the AK's certification, a software key "
                                "without", reason="malformed")


def encode_handover(m: HandoverMessage) -> bytes:
    """The COSE payload (the caller signs it with the OLD key, content type CT_HANDOVER)."""
    return _cbor.encode({
        "v": VERSION, "tenant": m.tenant, "device": m.device_id, "old_kid": bytes.fromhex(m.old_key_id),
        "new_pub": m.new_public_key, "new_alg": m.new_algorithm, "kp": m.key_protection,
        "certify_info": m.certify_info, "certify_sig": m.certify_signature, "issued_at_ms": m.issued_at_ms,
    })


def decode_handover(data: bytes) -> HandoverMessage:
    m = _decode(data, _HANDOVER_KEYS, "key handover", may_be_empty=frozenset({"certify_info", "certify_sig"}))
    if len(m["old_kid"]) != 16 or not isinstance(m["new_alg"], str) or not isinstance(m["kp"], str):
        raise EnvelopeError("key handover: expected a 16-byte old_kid and text new_alg/kp",
                            reason="malformed")
    return HandoverMessage(m["tenant"], m["device"], m["old_kid"].hex(), m["new_pub"], m["new_alg"], m["kp"],
                           m["certify_info"], m["certify_sig"], m["issued_at_ms"])


@dataclass(frozen=True)
class AttestationRecord:
    """What the carrier keeps of a verified attestation (registry ``devices.attestation``)."""

    ek_certificate_sha256: str
    ek_issuer: str
    ak_public: bytes


def encode_record(r: AttestationRecord) -> bytes:
    return _cbor.encode({"ek_sha256": r.ek_certificate_sha256, "ek_issuer": r.ek_issuer,
                         "ak_pub": r.ak_public})


def decode_record(data: bytes) -> AttestationRecord:
    m = _cbor.decode(data, what="attestation record", max_depth=1)
    if not isinstance(m, dict) or set(m) != {"ek_sha256", "ek_issuer", "ak_pub"} or not all(
            isinstance(m[k], t) for k, t in (("ek_sha256", str), ("ek_issuer", str), ("ak_pub", bytes))):
        raise EnvelopeError("attestation record: expected {ek_sha256, ek_issuer, ak_pub}", reason="malformed")
    return AttestationRecord(m["ek_sha256"], m["ek_issuer"], m["ak_pub"])
