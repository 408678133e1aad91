"""The clear binary header: encode, and :func:`peek_header` for untrusted bytes.

Layout (all integers big-endian; see docs/wire-format.md). Version 2, what seal() writes::

    off  len  field
    0    4    magic "KYCE"
    4    1    format version (2)
    5    1    suite (1 = DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305)
    6    16   message id (UUIDv7)
    22   8    sequence (uint64, < 2**63)
    30   16   device key id
    46   16   carrier key id
    62   1    signature algorithm (COSE alg as int8: -8 = EdDSA/Ed25519, -7 = ES256)
    63   1    key protection (1 = software, 2 = tpm)
    64   1    T = tenant length (1..32)
    65   T    tenant (ASCII)
    65+T 1    D = device id length (1..64)
    66+T D    device id (ASCII)

Version 1 (still opened) has no bytes 62-63: tenant length at 62; it means Ed25519, software.

followed by the HPKE part: enc (32) || ciphertext || tag (16).
"""

from __future__ import annotations

import hashlib
import struct
import uuid
from typing import Final

from kycedge.core.errors import EnvelopeError
from kycedge.protocol.envelope.model import (
    FORMAT_VERSION_1,
    MAGIC,
    MAX_ENVELOPE_BYTES,
    SIGNATURE_ALG_IDS,
    SUITE_X25519_SHA256_CHACHA20POLY1305,
    SUPPORTED_FORMAT_VERSIONS,
    UNIT_KEY_PROTECTIONS,
    Header,
)

__all__ = ["HPKE_INFO_PREFIX", "MIN_HEADER_BYTES", "encode_header", "hpke_info", "peek_header", "split"]

_FIXED: Final = struct.Struct(">4sBB16sQ16s16s")  # 62 bytes, both versions
_KEY: Final = struct.Struct(">bB")  # version 2: COSE alg (int8), key protection
MIN_HEADER_BYTES: Final = _FIXED.size + 1 + 1 + 1 + 1  # version 1
MAX_HEADER_BYTES: Final = _FIXED.size + _KEY.size + 1 + 32 + 1 + 64
_ALG_BY_ID: Final = {v: k for k, v in SIGNATURE_ALG_IDS.items()}
_PROTECTION_BY_ID: Final = {v: k for k, v in UNIT_KEY_PROTECTIONS.items()}
HPKE_MIN_BYTES: Final = 32 + 16
HPKE_INFO_PREFIX: Final = b"kycedge-envelope-v1\x00"


def encode_header(header: Header) -> bytes:
    tenant = header.tenant.encode("ascii")
    device = header.device_id.encode("ascii")
    return (
        _FIXED.pack(
            MAGIC,
            header.version,
            header.suite,
            header.message_id.bytes,
            header.sequence,
            bytes.fromhex(header.device_key_id),
            bytes.fromhex(header.carrier_key_id),
        )
        + _key_bytes(header)
        + bytes([len(tenant)]) + tenant + bytes([len(device)]) + device
    )


def _key_bytes(header: Header) -> bytes:
    if header.version == FORMAT_VERSION_1:
        return b""
    return _KEY.pack(SIGNATURE_ALG_IDS[header.signature_alg], UNIT_KEY_PROTECTIONS[header.key_protection])


def hpke_info(header_bytes: bytes) -> bytes:
    """HPKE ``info``: the prefix and SHA-256 of the header bytes (52 bytes, within the
    64-byte minimum every RFC 9180 implementation must accept)."""
    return HPKE_INFO_PREFIX + hashlib.sha256(header_bytes).digest()


def _malformed(message: str) -> EnvelopeError:
    return EnvelopeError(message, reason="malformed")


def split(data: bytes) -> tuple[Header, bytes, bytes]:
    """``(header, header_bytes, hpke_part)``; validates structure and limits, no crypto."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _malformed(f"envelope: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_ENVELOPE_BYTES:
        raise _malformed(f"envelope: expected at most {MAX_ENVELOPE_BYTES} bytes, got {len(data)}")
    if len(data) < 6 or data[:4] != MAGIC:
        raise _malformed(f"envelope: expected magic {MAGIC!r}, got {data[:4]!r}")
    if data[4] not in SUPPORTED_FORMAT_VERSIONS:
        raise EnvelopeError(
            f"envelope: expected format version in {SUPPORTED_FORMAT_VERSIONS}, got {data[4]}",
            reason="unsupported-version",
        )
    if data[5] != SUITE_X25519_SHA256_CHACHA20POLY1305:
        raise EnvelopeError(
            f"envelope: expected suite {SUITE_X25519_SHA256_CHACHA20POLY1305}, got {data[5]}",
            reason="unsupported-version",
        )
    if len(data) < MIN_HEADER_BYTES + HPKE_MIN_BYTES:
        raise _malformed(
            f"envelope: expected at least {MIN_HEADER_BYTES + HPKE_MIN_BYTES} bytes, got {len(data)}"
        )
    _, version, suite, mid, seq, dkid, ckid = _FIXED.unpack_from(data, 0)
    off = _FIXED.size
    alg, protection = "ed25519", "software"
    if version != FORMAT_VERSION_1:
        alg_id, prot_id = _KEY.unpack_from(data, off)
        off += _KEY.size
        if alg_id not in _ALG_BY_ID:
            raise EnvelopeError(f"envelope header: expected signature algorithm -8 (EdDSA) or -7 (ES256), "
                                f"got {alg_id}", reason="unsupported-version")
        if prot_id not in _PROTECTION_BY_ID:
            raise _malformed(f"envelope header: expected key protection 1 (software) or 2 (tpm), "
                             f"got {prot_id}")
        alg, protection = _ALG_BY_ID[alg_id], _PROTECTION_BY_ID[prot_id]
    tenant, off = _text(data, off, 32, "tenant")
    device, off = _text(data, off, 64, "device_id")
    if len(data) - off < HPKE_MIN_BYTES:
        raise _malformed(
            f"envelope: expected at least {HPKE_MIN_BYTES} bytes after the {off}-byte header, "
            f"got {len(data) - off}"
        )
    header = Header(
        tenant=tenant,
        device_id=device,
        device_key_id=dkid.hex(),
        carrier_key_id=ckid.hex(),
        message_id=uuid.UUID(bytes=mid),
        sequence=seq,
        version=version,
        suite=suite,
        signature_alg=alg,
        key_protection=protection,
    )
    return header, data[:off], data[off:]


def _text(data: bytes, off: int, max_len: int, what: str) -> tuple[str, int]:
    if off >= len(data):
        raise _malformed(f"envelope header: {what} length byte missing")
    n = data[off]
    if not 1 <= n <= max_len or off + 1 + n > len(data):
        raise _malformed(f"envelope header: expected {what} of 1..{max_len} bytes, got length {n}")
    raw = data[off + 1 : off + 1 + n]
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise _malformed(f"envelope header: expected ASCII {what}, got {raw!r:.80}") from e
    return text, off + 1 + n


def peek_header(data: bytes) -> Header:
    """The clear header of an envelope: cheap, no keys, no crypto.

    Validates magic, version, suite, every header field and the size limits; raises
    ``EnvelopeError`` with reason ``malformed`` or ``unsupported-version``. The header is
    NOT authenticated until :func:`kycedge.protocol.envelope.open_envelope` succeeds: use it to
    route and to pick keys, never to decide.
    """
    return split(data)[0]
