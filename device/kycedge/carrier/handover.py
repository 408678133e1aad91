"""A unit's key rotation at the carrier: verify the hand-over, enrol the next key.

The hand-over (:mod:`kycedge.protocol.attestation`) is a COSE_Sign1 by the unit's CURRENT
enrolled key. For a ``tpm`` unit the next key must be ``tpm`` too (no downgrade), and the
AK recorded at its attested enrolment must certify it (TPM2_Certify over the tenant,
device id and purpose "rotate"), so the new key is known to sit in the same TPM. The old
key stays active: envelopes it sealed may still be in the unit's outbox (nothing accepted
is ever lost); revoke it with ``device revoke --key-id`` once the unit runs on the new key
and its outbox has drained.
"""

from __future__ import annotations

from typing import Final

from kycedge import crypto
from kycedge.carrier.registry import DeviceRecord, Registry, RegistryError
from kycedge.carrier.store import now_ms as store_now_ms
from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.protocol import attestation as msg
from kycedge.protocol.envelope.cose import parse_sign1, verify_sign1

__all__ = ["MAX_HANDOVER_AGE_MS", "accept_handover"]

MAX_HANDOVER_AGE_MS: Final = 7 * 86_400_000  # a hand-over older than a week is refused


def _bad(message: str) -> RegistryError:
    return RegistryError(f"key handover: {message}", reason="bad-handover")


def _alg(value: str) -> crypto.SignatureAlgorithm:
    if value not in ("ed25519", "es256"):
        raise _bad(f"expected ed25519 or es256, got {value!r:.20}")
    return "ed25519" if value == "ed25519" else "es256"


def accept_handover(registry: Registry, data: bytes, *, now_ms: int | None = None) -> DeviceRecord:
    """Verify ``data`` against the registry and enrol the unit's next key; returns its record."""
    now = store_now_ms() if now_ms is None else now_ms
    try:
        part = parse_sign1(data, what="key handover", content_type=msg.CT_HANDOVER)
        m = msg.decode_handover(part.payload)
    except EnvelopeError as e:
        raise _bad(e.message) from e
    if part.kid != m.old_key_id:
        raise _bad(f"signed by key {part.kid}, the hand-over names {m.old_key_id}")
    old = registry.lookup(m.tenant, m.device_id, m.old_key_id)
    if old is None or old.status != "active":
        raise _bad(f"{m.tenant}/{m.device_id} key {m.old_key_id}: expected an active enrolment, got "
                   f"{'none' if old is None else old.status}")
    try:
        verify_sign1(part, crypto.verify_key_from_raw(old.public_key, _alg(old.signature_alg)))
    except EnvelopeError as e:
        raise _bad(f"the current key's signature does not verify: {e.message}") from e
    if not now - MAX_HANDOVER_AGE_MS <= m.issued_at_ms <= now + 300_000:
        days = MAX_HANDOVER_AGE_MS // 86_400_000
        raise _bad(f"issued at {m.issued_at_ms}, expected within the last {days} days")
    if old.key_protection == "tpm":
        new_key, attestation = _tpm_next_key(old, m)
    else:
        if m.key_protection != "software":
            raise _bad("a software-key unit gets a TPM key by attested enrolment (kycedge keys attest), "
                       "not by hand-over")
        new_key, attestation = crypto.verify_key_from_raw(m.new_public_key, _alg(m.new_algorithm)), None
    return registry.enroll(m.tenant, m.device_id, crypto.public_key_bytes(new_key),
                           signature_alg=crypto.algorithm_of(new_key), key_protection=m.key_protection,
                           attestation=attestation)


def _tpm_next_key(old: DeviceRecord, m: msg.HandoverMessage) -> tuple[crypto.AnyVerifyKey, bytes]:
    from kycedge.crypto import attest

    if m.key_protection != "tpm":
        raise _bad(f"{old.device_id} holds its key in a TPM; its next key must be tpm too, got "
                   f"{m.key_protection}")
    try:
        record = msg.decode_record(old.attestation or b"")
    except EnvelopeError as e:
        raise _bad(f"{old.device_id}: no attestation key recorded for key {old.key_id}: {e.message}") from e
    try:
        key = attest.verify_certify(record.ak_public, m.new_public_key, m.certify_info, m.certify_signature,
                                    msg.qualifying_data(m.tenant, m.device_id, "rotate"))
    except KeyStoreError as e:
        raise _bad(f"the enrolled AK does not certify the next key: {e.message}") from e
    return key, old.attestation or b""
