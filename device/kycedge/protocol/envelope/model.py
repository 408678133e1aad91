"""Frozen, self-validating values of the envelope wire format (no I/O, no crypto).

Every constructor checks its fields against the limits below and raises
``EnvelopeError(reason="malformed")`` naming the field, what was expected and what was
found. The same checks run when decoding untrusted bytes, so a value that exists is a
value the wire format allows. Limits are documented in docs/wire-format.md.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from kycedge.core.errors import EnvelopeError, IdError
from kycedge.protocol import ids
from kycedge.protocol.ids import (
    DEVICE_ID_RE,
    KEY_ID_RE,
    MODEL_ID_RE,
    MODEL_VERSION_RE,
    NONCE_RE,
    TENANT_RE,
)
from kycedge.protocol.match import MAX_DIM, MIN_DIM

FORMAT_VERSION: Final = 2  # what seal() writes: the header names the signature algorithm and key protection
FORMAT_VERSION_1: Final = 1  # still opened: Ed25519, software key, no algorithm/protection bytes
SUPPORTED_FORMAT_VERSIONS: Final = (FORMAT_VERSION_1, FORMAT_VERSION)
RECEIPT_VERSION: Final = 1
SUITE_X25519_SHA256_CHACHA20POLY1305: Final = 1
# A unit's signing key: Ed25519 in a file ("software") or ES256 inside a TPM ("tpm"); a
# unit without a TPM may also hold an ES256 key in software. COSE algorithm ids (RFC 9053).
SIGNATURE_ALG_IDS: Final[dict[str, int]] = {"ed25519": -8, "es256": -7}
UNIT_KEY_PROTECTIONS: Final[dict[str, int]] = {"software": 1, "tpm": 2}
MAGIC: Final = b"KYCE"

MAX_ENVELOPE_BYTES: Final = 16384
MIN_ENVELOPE_BYTES: Final = 66 + 48  # smallest header + HPKE enc and tag
MAX_RECEIPT_BYTES: Final = 2048
MAX_SEQUENCE: Final = 2**63 - 1  # fits a signed 64-bit column
MAX_QUALITY_ENTRIES: Final = 16
# 2020-01-01T00:00:00Z .. 2100-01-01T00:00:00Z in Unix milliseconds
MIN_TIME_MS: Final = 1_577_836_800_000
MAX_TIME_MS: Final = 4_102_444_800_000
GENESIS_DIGEST: Final = bytes(32)  # prev_digest of a device's first envelope
DTYPE_F32LE: Final = "float32-le"

QUALITY_KEY_RE: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")
METHOD_RE: Final = re.compile(r"[a-z][a-z0-9-]{0,31}")
MAX_PROMPTS: Final = 8


def _bad(message: str) -> EnvelopeError:
    return EnvelopeError(message, reason="malformed")


def check_text(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not isinstance(value, str) or pattern.fullmatch(value) is None:
        raise _bad(f"{what}: expected text matching {pattern.pattern}, got {value!r:.80}")
    return value


def check_int(value: object, lo: int, hi: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(f"{what}: expected an integer in [{lo}, {hi}], got {value!r:.40}")
    return value


def check_float(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, float | int) or not math.isfinite(value):
        raise _bad(f"{what}: expected a finite number, got {value!r:.40}")
    return float(value)


def check_bytes(value: object, length: int, what: str) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        got = f"{len(value)} bytes" if isinstance(value, bytes) else type(value).__name__
        raise _bad(f"{what}: expected {length} bytes, got {got}")
    return value


def check_reference(value: object) -> str:
    """The registration reference rule of :mod:`kycedge.protocol.ids`, as ``malformed``."""
    try:
        return ids.check_reference(value)
    except IdError as e:
        raise _bad(e.message) from e


def check_message_id(value: object, what: str = "message_id") -> uuid.UUID:
    try:
        return ids.check_message_id(value, what)
    except IdError as e:
        raise _bad(e.message) from e


@dataclass(frozen=True)
class Header:
    """The clear header: readable without keys, bound into HPKE ``info`` and signed inside."""

    tenant: str
    device_id: str
    device_key_id: str
    carrier_key_id: str
    message_id: uuid.UUID
    sequence: int
    version: int = FORMAT_VERSION
    suite: int = SUITE_X25519_SHA256_CHACHA20POLY1305
    signature_alg: str = "ed25519"
    key_protection: str = "software"

    def __post_init__(self) -> None:
        check_text(self.tenant, TENANT_RE, "tenant")
        check_text(self.device_id, DEVICE_ID_RE, "device_id")
        check_text(self.device_key_id, KEY_ID_RE, "device_key_id")
        check_text(self.carrier_key_id, KEY_ID_RE, "carrier_key_id")
        check_message_id(self.message_id)
        check_int(self.sequence, 0, MAX_SEQUENCE, "sequence")
        suite = SUITE_X25519_SHA256_CHACHA20POLY1305
        if self.version not in SUPPORTED_FORMAT_VERSIONS or self.suite != suite:
            raise EnvelopeError(
                f"expected format version in {SUPPORTED_FORMAT_VERSIONS} suite {suite}, "
                f"got version {self.version} suite {self.suite}",
                reason="unsupported-version",
            )
        if self.signature_alg not in SIGNATURE_ALG_IDS:
            raise _bad(f"signature_alg: expected one of {sorted(SIGNATURE_ALG_IDS)}, "
                       f"got {self.signature_alg!r:.20}")
        if self.key_protection not in UNIT_KEY_PROTECTIONS:
            raise _bad(f"key_protection: expected one of {sorted(UNIT_KEY_PROTECTIONS)}, "
                       f"got {self.key_protection!r:.20}")
        key = (self.signature_alg, self.key_protection)
        if self.version == FORMAT_VERSION_1 and key != ("ed25519", "software"):
            raise _bad(f"format version 1 carries only Ed25519 software keys, got "
                       f"{self.signature_alg}/{self.key_protection} (seal with version {FORMAT_VERSION})")


@dataclass(frozen=True)
class Template:
    """A face template: ``dim`` little-endian float32 values and the model that made it."""

    model_id: str
    model_version: str
    vector: bytes
    dtype: str = DTYPE_F32LE

    def __post_init__(self) -> None:
        check_text(self.model_id, MODEL_ID_RE, "template.model_id")
        check_text(self.model_version, MODEL_VERSION_RE, "template.model_version")
        if self.dtype != DTYPE_F32LE:
            raise _bad(f"template.dtype: expected {DTYPE_F32LE!r}, got {self.dtype!r:.40}")
        if not isinstance(self.vector, bytes) or len(self.vector) % 4:
            raise _bad("template.vector: expected bytes, a whole number of float32 values")
        check_int(len(self.vector) // 4, MIN_DIM, MAX_DIM, "template.dim")
        if not bool(np.isfinite(np.frombuffer(self.vector, dtype="<f4")).all()):
            raise _bad("template.vector: expected finite float32 values, got NaN or infinity")

    @property
    def dim(self) -> int:
        return len(self.vector) // 4

    @classmethod
    def from_array(cls, array: npt.ArrayLike, *, model_id: str, model_version: str) -> Template:
        vec = np.asarray(array, dtype="<f4")
        if vec.ndim != 1:
            raise _bad(f"template: expected a 1-D vector, got shape {vec.shape}")
        return cls(model_id=model_id, model_version=model_version, vector=vec.tobytes())

    def to_array(self) -> npt.NDArray[np.float32]:
        return np.frombuffer(self.vector, dtype="<f4").astype(np.float32)


@dataclass(frozen=True)
class Liveness:
    """The device's liveness result; the carrier's tenant policy decides what it requires.

    Two shapes on the wire (docs/wire-format.md): the original record (``passed``,
    ``method``, ``score``; units before the challenge send ``method="none"``) and the
    challenge record, which adds ``version`` (of the method), ``prompts`` (the codes asked,
    in order), ``outcome`` (``passed`` or the failure code) and ``nonce`` (the app's
    per-registration nonce, ``""`` when none was given). ``version == ""`` means the
    original shape. Never landmarks or pixels.
    """

    passed: bool
    method: str
    score: float
    version: str = ""
    prompts: tuple[str, ...] = ()
    outcome: str = ""
    nonce: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.passed, bool):
            raise _bad(f"liveness.passed: expected true or false, got {self.passed!r:.40}")
        check_text(self.method, METHOD_RE, "liveness.method")
        object.__setattr__(self, "score", check_float(self.score, "liveness.score"))
        if self.version == "":
            if self.prompts or self.outcome or self.nonce:
                raise _bad("liveness: prompts, outcome and nonce need a version (the challenge record)")
            return
        check_text(self.version, MODEL_VERSION_RE, "liveness.version")
        prompts = self.prompts
        if not isinstance(prompts, tuple | list) or len(prompts) > MAX_PROMPTS:
            raise _bad(f"liveness.prompts: expected at most {MAX_PROMPTS} prompt codes")
        object.__setattr__(self, "prompts", tuple(check_text(p, METHOD_RE, "liveness.prompts[]")
                                                  for p in prompts))
        check_text(self.outcome, METHOD_RE, "liveness.outcome")
        if self.passed != (self.outcome == "passed"):
            raise _bad(f"liveness: passed={self.passed} contradicts outcome {self.outcome!r}")
        if self.nonce != "":
            check_text(self.nonce, NONCE_RE, "liveness.nonce")

    @property
    def challenge(self) -> bool:
        """True for the challenge record shape (with version, prompts, outcome, nonce)."""
        return self.version != ""


@dataclass(frozen=True)
class ConsentRecord:
    """The customer's consent the capture was made under: the consent text's version and
    when it was accepted (only an accepted consent is ever sealed: a decline captures nothing)."""

    text_version: str
    accepted_at_ms: int

    def __post_init__(self) -> None:
        check_text(self.text_version, ids.CONSENT_VERSION_RE, "consent.version")
        check_int(self.accepted_at_ms, MIN_TIME_MS, MAX_TIME_MS, "consent.accepted_at_ms")


def _freeze_quality(quality: Mapping[str, float]) -> Mapping[str, float]:
    if not isinstance(quality, Mapping) or len(quality) > MAX_QUALITY_ENTRIES:
        raise _bad(f"quality: expected a map of at most {MAX_QUALITY_ENTRIES} entries")
    checked = {check_text(k, QUALITY_KEY_RE, "quality key"): check_float(v, f"quality.{k}")
               for k, v in quality.items()}
    return MappingProxyType(dict(sorted(checked.items())))


@dataclass(frozen=True)
class Payload:
    """What the device signs about one capture (the header fields are added by seal)."""

    template: Template
    captured_at_ms: int
    liveness: Liveness
    reference: str
    prev_digest: bytes = GENESIS_DIGEST
    quality: Mapping[str, float] = field(default_factory=dict)
    consent: ConsentRecord | None = None  # absent in payloads sealed before consent was recorded

    def __post_init__(self) -> None:
        if not isinstance(self.template, Template) or not isinstance(self.liveness, Liveness):
            raise _bad("payload: expected a Template and a Liveness")
        if self.consent is not None and not isinstance(self.consent, ConsentRecord):
            raise _bad("payload.consent: expected a ConsentRecord")
        check_int(self.captured_at_ms, MIN_TIME_MS, MAX_TIME_MS, "captured_at_ms")
        check_reference(self.reference)
        check_bytes(self.prev_digest, 32, "prev_digest")
        object.__setattr__(self, "quality", _freeze_quality(self.quality))


@dataclass(frozen=True)
class Sealed:
    """A sealed envelope: ``data`` goes to the outbox; ``digest`` is the next prev_digest."""

    data: bytes
    header: Header
    digest: bytes

    def __post_init__(self) -> None:
        check_bytes(self.digest, 32, "sealed.digest")
        size_ok = MIN_ENVELOPE_BYTES <= len(self.data) <= MAX_ENVELOPE_BYTES
        if not isinstance(self.header, Header) or not size_ok:
            raise _bad(f"sealed: expected a Header and {MIN_ENVELOPE_BYTES}..{MAX_ENVELOPE_BYTES} bytes")


@dataclass(frozen=True)
class Opened:
    """An opened, verified envelope.

    ``signed`` is the COSE_Sign1 (the device's non-repudiable statement, verifiable on
    its own); ``digest`` = SHA-256(signed), which the next envelope carries as prev_digest.
    """

    header: Header
    payload: Payload
    digest: bytes
    signed: bytes

    def __post_init__(self) -> None:
        check_bytes(self.digest, 32, "opened.digest")
        if not isinstance(self.header, Header) or not isinstance(self.payload, Payload):
            raise _bad("opened: expected a Header and a Payload")


def as_mapping(value: Any, keys: frozenset[str], what: str) -> dict[str, Any]:
    """``value`` must be a map with exactly ``keys`` (text)."""
    if not isinstance(value, dict):
        raise _bad(f"{what}: expected a CBOR map, got {type(value).__name__}")
    got = set(value)
    if got != keys:
        missing = sorted(keys - got)
        extra = sorted(str(k)[:20] for k in got - keys)
        raise _bad(f"{what}: expected keys {sorted(keys)}, missing {missing}, unexpected {extra}")
    return value
