"""The kycedge wire format: sealed template envelopes and signed receipts.

Device::

    from kycedge.protocol.envelope import Payload, Template, Liveness, GENESIS_DIGEST

    from kycedge.protocol.envelope import seal
    payload = Payload(template=Template.from_array(vec, model_id=..., model_version=...),
                      captured_at_ms=..., liveness=Liveness(passed=True, method="blink", score=0.9),
                      reference=ref, prev_digest=last_digest_or_GENESIS_DIGEST, quality={...})
    sealed = seal(payload, tenant=..., device_id=..., sequence=n, signing_key=sk,
                  carrier_key=carrier_keys[0])      # -> Sealed(data, header, digest)
    receipt = verify_receipt(data, receipt_keys, expected_device_id=...)

Carrier::

    header = peek_header(data)                      # cheap, unauthenticated: route + pick keys
    opened = open_envelope(data, device_public_key=pk, carrier_private_keys={kid: sk})
    receipt_bytes = sign_receipt(receipt_key, message_id=..., tenant=..., device_id=..., reason=...)

All failures are :class:`kycedge.core.errors.EnvelopeError` with a ``reason``; see
docs/wire-format.md for the bytes.
"""

from kycedge.core.errors import EnvelopeError
from kycedge.protocol.envelope.header import peek_header
from kycedge.protocol.envelope.model import (
    FORMAT_VERSION,
    GENESIS_DIGEST,
    MAX_ENVELOPE_BYTES,
    MAX_RECEIPT_BYTES,
    MAX_SEQUENCE,
    ConsentRecord,
    Header,
    Liveness,
    Opened,
    Payload,
    Sealed,
    Template,
    check_reference,
)
from kycedge.protocol.envelope.receipt import (
    ACCEPTED_REASONS,
    FINAL_REASONS,
    NOT_DELIVERED_REASONS,
    REJECTED_REASONS,
    Receipt,
    sign_receipt,
    verify_receipt,
)
from kycedge.protocol.envelope.seal import CarrierKey, open_envelope, seal
from kycedge.protocol.ids import message_id_time_ms, new_message_id, new_registration_reference

__all__ = [
    "ACCEPTED_REASONS",
    "FINAL_REASONS",
    "FORMAT_VERSION",
    "GENESIS_DIGEST",
    "MAX_ENVELOPE_BYTES",
    "MAX_RECEIPT_BYTES",
    "MAX_SEQUENCE",
    "NOT_DELIVERED_REASONS",
    "REJECTED_REASONS",
    "CarrierKey",
    "ConsentRecord",
    "EnvelopeError",
    "Header",
    "Liveness",
    "Opened",
    "Payload",
    "Receipt",
    "Sealed",
    "Template",
    "check_reference",
    "message_id_time_ms",
    "new_message_id",
    "new_registration_reference",
    "open_envelope",
    "peek_header",
    "seal",
    "sign_receipt",
    "verify_receipt",
]
