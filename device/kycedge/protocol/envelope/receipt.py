"""Carrier receipts: a COSE_Sign1 (Ed25519) over a CBOR map, sent in clear to the device.

Every reason is in exactly one of two sets, and this is the one place that says which:

* :data:`FINAL_REASONS`: the carrier reached this outcome *after* authenticating the
  envelope (decrypted it, verified the device's signature) and recorded it under the
  message id; every later delivery of that id gets the same receipt. ``accepted``,
  ``match``, ``no-match``, ``no-reference``, ``model-mismatch`` (stored), ``replayed``,
  ``stale``, ``bad-template`` (rejected after decryption).
* :data:`NOT_DELIVERED_REASONS`: the carrier refused the bytes it got *before*
  authenticating them (``unknown-device``, ``revoked-device``, ``bad-signature``,
  ``undecryptable``, ``malformed``, ``unsupported-version``). It recorded nothing: the
  clear header is unauthenticated, so anyone who can publish can provoke such a receipt
  for a genuine message id (a forged envelope), and a unit that is not enrolled yet gets
  ``unknown-device``. It says nothing about the genuine envelope.

A unit removes an envelope from its outbox only on a verified receipt whose
:attr:`Receipt.final` is true; for the others it keeps the envelope, re-sends it with
backoff and shows the condition (``not-enrolled`` for ``unknown-device``).
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from kycedge import crypto
from kycedge.core.errors import EnvelopeError
from kycedge.protocol.envelope import _cbor
from kycedge.protocol.envelope.cose import CT_RECEIPT, parse_sign1, sign1, verify_sign1
from kycedge.protocol.envelope.model import (
    MAX_RECEIPT_BYTES,
    MAX_TIME_MS,
    MIN_TIME_MS,
    RECEIPT_VERSION,
    as_mapping,
    check_bytes,
    check_float,
    check_int,
    check_text,
)
from kycedge.protocol.ids import DEVICE_ID_RE, KEY_ID_RE, MODEL_ID_RE, MODEL_VERSION_RE, TENANT_RE

__all__ = [
    "ACCEPTED_REASONS",
    "FINAL_REASONS",
    "NOT_DELIVERED_REASONS",
    "REJECTED_REASONS",
    "Receipt",
    "sign_receipt",
    "verify_receipt",
]

# status "accepted": the carrier stored the template (and, where it could, matched it)
ACCEPTED_REASONS: Final = frozenset({"accepted", "match", "no-match", "no-reference", "model-mismatch"})
# status "rejected", after authentication: recorded, nothing stored; final
_REJECTED_FINAL: Final = frozenset({"replayed", "stale", "bad-template", "liveness-not-passed"})
# status "rejected", before authentication: nothing recorded; the envelope was not delivered as is
NOT_DELIVERED_REASONS: Final = frozenset({
    "unknown-device", "revoked-device", "bad-signature", "undecryptable", "malformed",
    "unsupported-version",
})
# status "rejected": nothing was stored
REJECTED_REASONS: Final = _REJECTED_FINAL | NOT_DELIVERED_REASONS
# the carrier authenticated the envelope and recorded this outcome: the envelope's life ends
FINAL_REASONS: Final = ACCEPTED_REASONS | _REJECTED_FINAL
SCORED_REASONS: Final = frozenset({"match", "no-match"})
_KEYS: Final = frozenset({
    "v", "mid", "tenant", "device", "status", "reason", "score", "threshold", "model_id",
    "model_version", "issued_at_ms", "ckid",
})


def _bad(msg: str) -> EnvelopeError:
    return EnvelopeError(msg, reason="malformed")


@dataclass(frozen=True)
class Receipt:
    """A carrier's answer for one message id. ``status`` follows from ``reason``.

    ``score``/``threshold`` (cosine) are present exactly for ``match``/``no-match``;
    ``model_id``/``model_version`` name the model the carrier matched with (or None).
    ``message_id`` may be the nil UUID when the envelope was too broken to read one.
    """

    message_id: uuid.UUID
    tenant: str
    device_id: str
    reason: str
    issued_at_ms: int
    carrier_key_id: str
    score: float | None = None
    threshold: float | None = None
    model_id: str | None = None
    model_version: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.message_id, uuid.UUID):
            raise _bad(f"receipt.message_id: expected a UUID, got {self.message_id!r:.40}")
        check_text(self.tenant, TENANT_RE, "receipt.tenant")
        check_text(self.device_id, DEVICE_ID_RE, "receipt.device_id")
        if self.reason not in ACCEPTED_REASONS | REJECTED_REASONS:
            raise _bad(f"receipt.reason: expected one of {sorted(ACCEPTED_REASONS | REJECTED_REASONS)}, "
                       f"got {self.reason!r:.40}")
        check_int(self.issued_at_ms, MIN_TIME_MS, MAX_TIME_MS, "receipt.issued_at_ms")
        check_text(self.carrier_key_id, KEY_ID_RE, "receipt.carrier_key_id")
        scored = self.reason in SCORED_REASONS
        for name in ("score", "threshold"):
            value = getattr(self, name)
            if scored:
                object.__setattr__(self, name, check_float(value, f"receipt.{name}"))
            elif value is not None:
                raise _bad(f"receipt.{name}: expected none for reason {self.reason!r}, got {value!r:.20}")
        if self.model_id is not None:
            check_text(self.model_id, MODEL_ID_RE, "receipt.model_id")
        if self.model_version is not None:
            check_text(self.model_version, MODEL_VERSION_RE, "receipt.model_version")

    @property
    def status(self) -> Literal["accepted", "rejected"]:
        return "accepted" if self.reason in ACCEPTED_REASONS else "rejected"

    @property
    def final(self) -> bool:
        """True when the carrier decided after authenticating the envelope (see the module doc);
        False for a pre-authentication rejection, which says nothing about the genuine envelope."""
        return self.reason in FINAL_REASONS


def sign_receipt(
    signing_key: crypto.Signer | crypto.SigningKey | crypto.EcSigningKey,
    *,
    message_id: uuid.UUID,
    tenant: str,
    device_id: str,
    reason: str,
    score: float | None = None,
    threshold: float | None = None,
    model_id: str | None = None,
    model_version: str | None = None,
    issued_at_ms: int | None = None,
) -> bytes:
    """A signed receipt (COSE_Sign1 bytes, <= MAX_RECEIPT_BYTES) from the carrier's receipt key:
    Ed25519 in a file, or ES256 in an HSM (a :class:`~kycedge.crypto.Signer`)."""
    signing_key = crypto.as_signer(signing_key)
    r = Receipt(
        message_id=message_id, tenant=tenant, device_id=device_id, reason=reason,
        issued_at_ms=int(time.time() * 1000) if issued_at_ms is None else issued_at_ms,
        carrier_key_id=crypto.key_id(signing_key.public_key()),
        score=score, threshold=threshold, model_id=model_id, model_version=model_version,
    )
    payload = _cbor.encode({
        "v": RECEIPT_VERSION, "mid": r.message_id.bytes, "tenant": r.tenant, "device": r.device_id,
        "status": r.status, "reason": r.reason, "score": r.score, "threshold": r.threshold,
        "model_id": r.model_id, "model_version": r.model_version, "issued_at_ms": r.issued_at_ms,
        "ckid": bytes.fromhex(r.carrier_key_id),
    })
    return sign1(signing_key, payload, CT_RECEIPT)


def verify_receipt(
    data: bytes,
    carrier_public_keys: Mapping[str, crypto.AnyVerifyKey],
    *,
    expected_device_id: str,
    expected_tenant: str | None = None,
) -> Receipt:
    """Verify a receipt's signature (key chosen by kid) and addressee; parse it.

    Raises EnvelopeError: ``malformed`` (structure, limits, status/reason mismatch),
    ``unsupported-version``, ``bad-signature`` (unknown kid or signature fails),
    ``wrong-device`` (a valid receipt addressed to another device or tenant).
    Never raises anything else.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _bad(f"receipt: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_RECEIPT_BYTES:
        raise _bad(f"receipt: expected at most {MAX_RECEIPT_BYTES} bytes, got {len(data)}")
    part = parse_sign1(data, what="receipt", content_type=CT_RECEIPT)
    key = carrier_public_keys.get(part.kid)
    if key is None:
        raise EnvelopeError(f"receipt signed by unknown carrier key {part.kid}", reason="bad-signature")
    verify_sign1(part, key)
    m = as_mapping(_cbor.decode(part.payload, what="receipt payload", max_depth=1), _KEYS, "receipt")
    if m["v"] != RECEIPT_VERSION or isinstance(m["v"], bool):
        raise EnvelopeError(f"receipt: expected version {RECEIPT_VERSION}, got {m['v']!r:.20}",
                            reason="unsupported-version")
    for name in ("score", "threshold"):
        if m[name] is not None and (isinstance(m[name], bool) or not isinstance(m[name], float | int)
                                    or not math.isfinite(m[name])):
            raise _bad(f"receipt.{name}: expected a finite number or null")
    r = Receipt(
        message_id=uuid.UUID(bytes=check_bytes(m["mid"], 16, "receipt.mid")),
        tenant=m["tenant"], device_id=m["device"], reason=m["reason"],
        issued_at_ms=m["issued_at_ms"], carrier_key_id=check_bytes(m["ckid"], 16, "receipt.ckid").hex(),
        score=m["score"], threshold=m["threshold"], model_id=m["model_id"], model_version=m["model_version"],
    )
    if m["status"] != r.status:
        raise _bad(f"receipt.status: expected {r.status!r} for reason {r.reason!r}, got {m['status']!r:.20}")
    if r.carrier_key_id != part.kid:
        raise EnvelopeError(f"receipt: ckid {r.carrier_key_id} differs from COSE kid {part.kid}",
                            reason="bad-signature")
    if r.device_id != expected_device_id or (expected_tenant is not None and r.tenant != expected_tenant):
        raise EnvelopeError(
            f"receipt addressed to {r.tenant}/{r.device_id}, expected "
            f"{expected_tenant or r.tenant}/{expected_device_id}", reason="wrong-device",
        )
    return r
