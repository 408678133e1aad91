"""Every identifier the unit, the carrier and the fleet exchange: one grammar each.

Pure (no I/O). Each ``check_*`` returns its argument when it is valid and raises
:class:`~kycedge.core.errors.IdError` (reason ``bad-id``, or ``bad-reference`` for a
registration reference) naming what was expected and what was found; callers that
answer in another vocabulary (the envelope's ``malformed``, a topic's ``bad-topic``, a
session's ``bad-reference``, a config's ``bad-config``) convert at their boundary.

=================  ==========================================  ==========================
id                 grammar                                      where it appears
=================  ==========================================  ==========================
tenant             ``[a-z0-9][a-z0-9-]{0,31}``                  header, topics, certificate
device id          ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``          header, topics, certificate
service name       ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``          receiver / broker certificates
client id          a unit: its CN; a service: ``<name>[-sfx]``  MQTT CONNECT (ADR 0010)
share group        ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``          ``$share/<group>/...``
key id             32 lowercase hex digits                      header, receipts, config
model id           ``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``          templates, manifests
model version      ``[A-Za-z0-9][A-Za-z0-9.+_-]{0,31}``         templates, manifests
message id         a UUIDv7 (RFC 9562); text form: canonical    envelope, receipt, outbox,
                   lowercase ``8-4-4-4-12`` hex                 local API
reference          16-64 of base64url, first a letter, no run   payload, local API
                   of 9+ digits even with separators inside
unit certificate   CN ``<tenant>/<device>``                     broker username, ACLs
consent version    ``[A-Za-z0-9][A-Za-z0-9._-]{0,31}``          payload, local API, web app
liveness nonce     8-128 of base64url ``[A-Za-z0-9_-]``          local API, payload
=================  ==========================================  ==========================

The reference rule exists so that a national ID number can never be used as a
registration reference: a run of 9 or more digits is refused, also when the digits are
broken up by ``-`` or ``_`` (``id-19850101-1234-x`` carries a 12-digit number).
"""

from __future__ import annotations

import base64
import os
import re
import time
import uuid
from typing import Final

from kycedge.core.errors import IdError

__all__ = [
    "CONSENT_VERSION_RE",
    "DEVICE_ID_RE",
    "ID_NUMBER_RE",
    "KEY_ID_RE",
    "MESSAGE_ID_TEXT_RE",
    "MODEL_ID_RE",
    "MODEL_VERSION_RE",
    "NONCE_RE",
    "REFERENCE_RE",
    "SERVICE_RE",
    "TENANT_RE",
    "check_consent_version",
    "check_device_id",
    "check_key_id",
    "check_message_id",
    "check_message_id_text",
    "check_nonce",
    "check_reference",
    "check_service_name",
    "check_tenant",
    "device_common_name",
    "message_id_time_ms",
    "new_message_id",
    "new_registration_reference",
    "parse_device_common_name",
]

TENANT_RE: Final = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
DEVICE_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SERVICE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
KEY_ID_RE: Final = re.compile(r"[0-9a-f]{32}")
MODEL_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MODEL_VERSION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9.+_-]{0,31}")
MESSAGE_ID_TEXT_RE: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
)
REFERENCE_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_-]{15,63}")
# the version of the consent text a customer accepted (the web app's catalogue names it)
CONSENT_VERSION_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}")
NONCE_RE: Final = re.compile(r"[A-Za-z0-9_-]{8,128}")
# 9+ digits, possibly broken up by single separators: what a national ID number looks like.
ID_NUMBER_RE: Final = re.compile(r"[0-9](?:[-_]?[0-9]){8,}")


def _check(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        shown = f"{value!r:.80}" if isinstance(value, str) else type(value).__name__
        raise IdError(f"{what}: expected text matching {pattern.pattern}, got {shown}")
    return value


def check_consent_version(value: object, what: str = "consent version") -> str:
    return _check(value, CONSENT_VERSION_RE, what)


def check_tenant(value: object, what: str = "tenant") -> str:
    return _check(value, TENANT_RE, what)


def check_device_id(value: object, what: str = "device id") -> str:
    return _check(value, DEVICE_ID_RE, what)


def check_service_name(value: object, what: str = "service name") -> str:
    return _check(value, SERVICE_RE, what)


def check_key_id(value: object, what: str = "key id") -> str:
    return _check(value, KEY_ID_RE, what)


def check_nonce(value: object, what: str = "nonce") -> str:
    """The per-registration liveness nonce the agent's app passes at session start (from the
    carrier's backend) and the unit seals with the challenge record."""
    return _check(value, NONCE_RE, what)


def check_reference(value: object) -> str:
    """A registration reference (see the module docstring); reason ``bad-reference``."""
    try:
        ref = _check(value, REFERENCE_RE, "registration reference")
    except IdError as e:
        detail = f"{e.message} (an opaque id, never a national ID number)"
        raise IdError(detail, reason="bad-reference") from e
    run = ID_NUMBER_RE.search(ref)
    if run is not None:
        digits = sum(c.isdigit() for c in run.group())
        raise IdError(
            "registration reference: expected an opaque id with no run of 9+ digits, also not "
            f"broken up by '-' or '_' (never a national ID number), got a value with a {digits}-digit run",
            reason="bad-reference",
        )
    return ref


def new_registration_reference() -> str:
    """A fresh valid opaque reference: ``r`` + 22 base64url characters (128 random bits)."""
    while True:
        ref = "r" + base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("=")
        if ID_NUMBER_RE.search(ref) is None:
            return ref


def new_message_id(*, now_ms: int | None = None, random_bytes: bytes | None = None) -> uuid.UUID:
    """A UUIDv7 (RFC 9562): 48-bit Unix ms timestamp, version 7, 74 random bits."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    rnd = os.urandom(10) if random_bytes is None else random_bytes
    if len(rnd) != 10 or not 0 <= ms < 2**48:
        raise ValueError("new_message_id: expected 10 random bytes and a 48-bit millisecond time")
    b = bytearray(ms.to_bytes(6, "big") + rnd)
    b[6] = 0x70 | (b[6] & 0x0F)
    b[8] = 0x80 | (b[8] & 0x3F)
    return uuid.UUID(bytes=bytes(b))


def check_message_id(value: object, what: str = "message_id") -> uuid.UUID:
    if not isinstance(value, uuid.UUID) or value.version != 7 or value.variant != uuid.RFC_4122:
        raise IdError(f"{what}: expected a UUIDv7 (RFC 9562), got {value!r:.60}")
    return value


def check_message_id_text(value: object, what: str = "message id") -> str:
    """The text form of a message id (outbox key, local API path): canonical UUIDv7."""
    return _check(value, MESSAGE_ID_TEXT_RE, what)


def message_id_time_ms(message_id: uuid.UUID) -> int:
    """The Unix millisecond timestamp inside a UUIDv7."""
    return int.from_bytes(message_id.bytes[:6], "big")


def device_common_name(tenant: str, device: str) -> str:
    """The certificate CN (= broker username) of a unit: ``<tenant>/<device>``."""
    return f"{check_tenant(tenant)}/{check_device_id(device)}"


def parse_device_common_name(cn: object) -> tuple[str, str]:
    """``(tenant, device)`` from a unit certificate's CN; IdError for anything else."""
    if not isinstance(cn, str) or cn.count("/") != 1:
        raise IdError(f"unit certificate name: expected '<tenant>/<device>', got {cn!r:.80}")
    tenant, device = cn.split("/")
    return check_tenant(tenant), check_device_id(device)
