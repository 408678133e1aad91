"""The only ``cbor2`` importer: deterministic encoding and a strict decoder.

:func:`decode` is for untrusted bytes. It accepts only the CBOR subset the wire format
uses (unsigned/negative integers, byte and text strings, arrays, maps, floats, true,
false, null), definite lengths only, no duplicate map keys, no semantic tags, nesting
at most ``max_depth``, and no trailing bytes. Anything else raises
``EnvelopeError(reason="malformed")``, never a ``cbor2`` exception.
"""

from __future__ import annotations

import io
from typing import Any

import cbor2

from kycedge.core.errors import EnvelopeError

__all__ = ["decode", "encode"]


def _reject_tag(decoder: Any, *args: Any) -> Any:
    raise ValueError("CBOR semantic tags are not allowed here")


# Override cbor2's built-in semantic decoders (datetime, bignum, shared references,
# sets, ...) so that no tag is ever interpreted; unknown tags go to _reject_tag too.
_NO_TAGS = {t: _reject_tag for t in (*range(0, 1100), 22098, 55799, 55800, 55801)}
_PLAIN = (int, float, str, bytes, bool, type(None))


def encode(value: Any) -> bytes:
    """Deterministic CBOR (RFC 8949 section 4.2.1: definite lengths, sorted map keys,
    shortest integer and float forms)."""
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, *, what: str, max_depth: int = 6) -> Any:
    """Decode one CBOR data item that must span all of ``data``."""
    fp = io.BytesIO(data)
    try:
        value = cbor2.CBORDecoder(
            fp,
            tag_hook=_reject_tag,
            semantic_decoders=_NO_TAGS,
            str_errors="strict",
            max_depth=max_depth,
            allow_indefinite=False,
            allow_duplicate_keys=False,
        ).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        raise EnvelopeError(f"{what}: expected well-formed CBOR, got: {e}", reason="malformed") from e
    if fp.tell() != len(data):
        raise EnvelopeError(
            f"{what}: expected one CBOR item of {fp.tell()} bytes, "
            f"got {len(data) - fp.tell()} trailing bytes",
            reason="malformed",
        )
    _check_plain(value, what, max_depth)
    return value


def _check_plain(value: Any, what: str, depth: int) -> None:
    if isinstance(value, _PLAIN):
        return
    if depth <= 0:
        raise EnvelopeError(f"{what}: CBOR nested too deeply", reason="malformed")
    if isinstance(value, list):
        for v in value:
            _check_plain(v, what, depth - 1)
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _check_plain(k, what, depth - 1)
            _check_plain(v, what, depth - 1)
        return
    raise EnvelopeError(f"{what}: unexpected CBOR type {type(value).__name__}", reason="malformed")
