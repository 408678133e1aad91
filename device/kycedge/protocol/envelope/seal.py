"""Sign then encrypt: :func:`seal` on the unit, :func:`open_envelope` at the carrier.

    envelope = header || HPKE-Seal(pk_carrier, info = "kycedge-envelope-v1\\0" || SHA-256(header),
                                   plaintext = COSE_Sign1(device key, payload))

The payload repeats every header field, so a decrypted, signed payload can never be
presented under another header (a re-encryption under a forged header is refused as
``bad-signature``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from kycedge import crypto
from kycedge.core.errors import EnvelopeError, KeyStoreError
from kycedge.protocol.envelope import _cbor
from kycedge.protocol.envelope.cose import CT_TEMPLATE, parse_sign1, sign1, verify_sign1
from kycedge.protocol.envelope.header import encode_header, hpke_info, split
from kycedge.protocol.envelope.model import (
    FORMAT_VERSION,
    FORMAT_VERSION_1,
    MAX_ENVELOPE_BYTES,
    SIGNATURE_ALG_IDS,
    SUPPORTED_FORMAT_VERSIONS,
    ConsentRecord,
    Header,
    Liveness,
    Opened,
    Payload,
    Sealed,
    Template,
    as_mapping,
    check_bytes,
    check_int,
    check_message_id,
)
from kycedge.protocol.ids import new_message_id

__all__ = ["CarrierKey", "decode_payload", "encode_payload", "open_envelope", "seal"]

_PAYLOAD_KEYS_V1: Final = frozenset(
    {"v", "tenant", "device", "dkid", "ckid", "mid", "seq", "captured_at_ms", "template",
     "quality", "liveness", "ref", "prev"}
)
_PAYLOAD_KEYS: Final = _PAYLOAD_KEYS_V1 | {"alg", "kp"}  # version 2 repeats the key header bytes
_TEMPLATE_KEYS: Final = frozenset({"model_id", "model_version", "dtype", "dim", "vector"})
_LIVENESS_KEYS: Final = frozenset({"passed", "method", "score"})
_CONSENT_KEYS: Final = frozenset({"version", "accepted", "at_ms"})
_CHALLENGE_KEYS: Final = _LIVENESS_KEYS | {"version", "prompts", "outcome", "nonce"}


@dataclass(frozen=True)
class CarrierKey:
    """A carrier HPKE (X25519) public key and its key id; the id must match the key."""

    key_id: str
    public_key: crypto.KemPublicKey = field(repr=False)

    def __post_init__(self) -> None:
        actual = crypto.key_id(self.public_key)
        if self.key_id != actual:
            raise KeyStoreError(f"carrier key id: expected {self.key_id}, the key's own id is {actual}")

    @classmethod
    def from_public_key(cls, public_key: crypto.KemPublicKey) -> CarrierKey:
        return cls(key_id=crypto.key_id(public_key), public_key=public_key)

    def encrypt(self, plaintext: bytes, info: bytes) -> bytes:
        """HPKE-seal ``plaintext`` to this key (a fresh ephemeral key every call)."""
        return crypto.hpke_seal(self.public_key, plaintext, info=info)


def encode_payload(header: Header, payload: Payload) -> bytes:
    """Deterministic CBOR of the signed payload map (header fields repeated)."""
    t = payload.template
    key_fields: dict[str, object] = {}
    if header.version != FORMAT_VERSION_1:
        key_fields = {"alg": SIGNATURE_ALG_IDS[header.signature_alg], "kp": header.key_protection}
    consent = {} if payload.consent is None else {"consent": {
        "version": payload.consent.text_version, "accepted": True, "at_ms": payload.consent.accepted_at_ms}}
    return _cbor.encode({
        **key_fields,
        "v": header.version,
        "tenant": header.tenant,
        "device": header.device_id,
        "dkid": bytes.fromhex(header.device_key_id),
        "ckid": bytes.fromhex(header.carrier_key_id),
        "mid": header.message_id.bytes,
        "seq": header.sequence,
        "captured_at_ms": payload.captured_at_ms,
        "template": {"model_id": t.model_id, "model_version": t.model_version, "dtype": t.dtype,
                     "dim": t.dim, "vector": t.vector},
        "quality": dict(payload.quality),
        "liveness": _encode_liveness(payload.liveness),
        "ref": payload.reference,
        "prev": payload.prev_digest,
        **consent,
    })


def _encode_liveness(lv: Liveness) -> dict[str, object]:
    out: dict[str, object] = {"passed": lv.passed, "method": lv.method, "score": lv.score}
    if lv.challenge:  # the challenge record; the original shape stays byte-identical
        out.update({"version": lv.version, "prompts": list(lv.prompts), "outcome": lv.outcome,
                    "nonce": lv.nonce})
    return out


def _decode_liveness(lm: dict[str, object]) -> Liveness:
    if "version" not in lm:
        return Liveness(passed=lm["passed"], method=lm["method"], score=lm["score"])  # type: ignore[arg-type]
    prompts = lm["prompts"]
    if not isinstance(prompts, list):
        raise EnvelopeError("payload.liveness.prompts: expected an array", reason="malformed")
    if not isinstance(lm["version"], str) or lm["version"] == "":
        raise EnvelopeError("payload.liveness.version: expected a non-empty text", reason="malformed")
    return Liveness(passed=lm["passed"], method=lm["method"], score=lm["score"],  # type: ignore[arg-type]
                    version=lm["version"], prompts=tuple(prompts), outcome=lm["outcome"],  # type: ignore[arg-type]
                    nonce=lm["nonce"])  # type: ignore[arg-type]


def decode_payload(data: bytes) -> tuple[Header, Payload]:
    """Parse a signed payload map; ``malformed`` on any deviation."""
    raw = _cbor.decode(data, what="payload", max_depth=3)
    v1 = isinstance(raw, dict) and raw.get("v") == FORMAT_VERSION_1
    keys = _PAYLOAD_KEYS_V1 if v1 else _PAYLOAD_KEYS
    if isinstance(raw, dict) and "consent" in raw:
        keys = keys | {"consent"}  # optional in every version (absent before consent was recorded)
    m = as_mapping(raw, keys, "payload")
    consent = None
    if "consent" in m:
        cm = as_mapping(m["consent"], _CONSENT_KEYS, "payload.consent")
        if cm["accepted"] is not True:
            raise EnvelopeError("payload.consent.accepted: expected true (a declined consent is never "
                                f"sealed), got {cm['accepted']!r:.20}", reason="malformed")
        consent = ConsentRecord(text_version=cm["version"], accepted_at_ms=cm["at_ms"])
    tm = as_mapping(m["template"], _TEMPLATE_KEYS, "payload.template")
    lv = m["liveness"]
    lm = as_mapping(lv, _CHALLENGE_KEYS if isinstance(lv, dict) and "version" in lv else _LIVENESS_KEYS,
                    "payload.liveness")
    if not isinstance(m["quality"], dict):
        raise EnvelopeError("payload.quality: expected a map", reason="malformed")
    check_int(m["v"], min(SUPPORTED_FORMAT_VERSIONS), max(SUPPORTED_FORMAT_VERSIONS), "payload.v")
    alg, protection = "ed25519", "software"
    if not v1:
        algs = {v: k for k, v in SIGNATURE_ALG_IDS.items()}
        if isinstance(m["alg"], bool) or m["alg"] not in algs or not isinstance(m["kp"], str):
            raise EnvelopeError("payload.alg/kp: expected -8 or -7 and a key protection", reason="malformed")
        alg, protection = algs[m["alg"]], m["kp"]
    template = Template(model_id=tm["model_id"], model_version=tm["model_version"], dtype=tm["dtype"],
                        vector=tm["vector"])
    if check_int(tm["dim"], 0, 2**16, "template.dim") != template.dim:
        raise EnvelopeError(f"template.dim: expected {template.dim} (vector length / 4), got {tm['dim']}",
                            reason="malformed")
    header = Header(
        tenant=m["tenant"], device_id=m["device"],
        device_key_id=check_bytes(m["dkid"], 16, "payload.dkid").hex(),
        carrier_key_id=check_bytes(m["ckid"], 16, "payload.ckid").hex(),
        message_id=check_message_id(uuid.UUID(bytes=check_bytes(m["mid"], 16, "payload.mid"))),
        sequence=m["seq"], version=m["v"], signature_alg=alg, key_protection=protection,
    )
    payload = Payload(
        template=template, captured_at_ms=m["captured_at_ms"],
        liveness=_decode_liveness(lm),
        reference=m["ref"], prev_digest=m["prev"], quality=m["quality"], consent=consent,
    )
    return header, payload


def seal(
    payload: Payload,
    *,
    tenant: str,
    device_id: str,
    sequence: int,
    signing_key: crypto.Signer | crypto.SigningKey,
    carrier_key: CarrierKey,
    message_id: uuid.UUID | None = None,
    format_version: int = FORMAT_VERSION,
) -> Sealed:
    """Sign ``payload`` with the device key, then encrypt it to ``carrier_key``.

    ``signing_key`` is a :class:`~kycedge.crypto.Signer` (software, TPM) or a bare Ed25519
    key (software); the header records its algorithm and protection. ``message_id``
    defaults to a fresh UUIDv7; ``sequence`` is the device's monotonic counter (the caller
    persists it). ``format_version=1`` writes the version-1 header (Ed25519 software keys
    only), for carriers that do not open version 2 yet.
    Raises EnvelopeError(reason="malformed") if a field is outside the wire limits,
    KeyStoreError if the carrier key yields no shared secret (a low-order point).
    """
    signer = crypto.as_signer(signing_key)
    protection = signer.protection
    if protection not in ("software", "tpm"):
        raise KeyStoreError(f"device key protection: expected software or tpm, got {protection}")
    header = Header(
        tenant=tenant,
        device_id=device_id,
        device_key_id=crypto.key_id(signer.public_key()),
        carrier_key_id=carrier_key.key_id,
        message_id=message_id if message_id is not None else new_message_id(),
        sequence=sequence,
        version=format_version,
        signature_alg=signer.algorithm,
        key_protection=protection,
    )
    signed = sign1(signer, encode_payload(header, payload), CT_TEMPLATE, key_id=header.device_key_id)
    header_bytes = encode_header(header)
    data = header_bytes + carrier_key.encrypt(signed, hpke_info(header_bytes))
    if len(data) > MAX_ENVELOPE_BYTES:
        raise EnvelopeError(f"envelope: expected at most {MAX_ENVELOPE_BYTES} bytes, got {len(data)}")
    return Sealed(data=data, header=header, digest=hashlib.sha256(signed).digest())


def open_envelope(
    data: bytes,
    *,
    device_public_key: crypto.AnyVerifyKey,
    carrier_private_keys: Mapping[str, crypto.KemPrivateKey],
) -> Opened:
    """Decrypt with the carrier key the header names, verify the device signature, parse.

    ``device_public_key`` is the enrolled key of ``peek_header(data).device_id`` (the
    caller looks it up); ``carrier_private_keys`` maps key id -> X25519 private key.
    Raises EnvelopeError with reason exactly one of ``malformed``,
    ``unsupported-version``, ``undecryptable`` (no key with that id, wrong key, any bit
    of header or ciphertext altered), ``bad-signature`` (signature, key id, or signed
    fields differing from the clear header). Never raises anything else.
    """
    header, header_bytes, sealed_part = split(data)
    key = carrier_private_keys.get(header.carrier_key_id)
    if key is None:
        raise EnvelopeError(
            f"no carrier private key with id {header.carrier_key_id} (have {len(carrier_private_keys)} keys)",
            reason="undecryptable",
        )
    signed = crypto.hpke_open(key, sealed_part, info=hpke_info(header_bytes))
    part = parse_sign1(signed, what="envelope COSE_Sign1", content_type=CT_TEMPLATE)
    if part.kid != header.device_key_id:
        raise EnvelopeError(
            f"COSE kid {part.kid} differs from header device key id {header.device_key_id}",
            reason="bad-signature",
        )
    if part.algorithm != header.signature_alg:
        raise EnvelopeError(
            f"COSE alg {part.algorithm} differs from header signature algorithm {header.signature_alg}",
            reason="bad-signature",
        )
    verify_sign1(part, device_public_key)
    inner, payload = decode_payload(part.payload)
    if inner != header:
        raise EnvelopeError(
            f"signed fields {_diff(inner, header)} differ from the clear header", reason="bad-signature"
        )
    return Opened(header=header, payload=payload, digest=hashlib.sha256(signed).digest(), signed=signed)


def _diff(a: Header, b: Header) -> list[str]:
    return [f.name for f in dataclasses.fields(a) if getattr(a, f.name) != getattr(b, f.name)]
