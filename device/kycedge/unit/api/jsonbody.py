"""Request bodies of the local API: one small JSON object, parsed with limits (pure).

Python's ``json`` module alone accepts what an untrusted client should not get away
with: duplicate keys (the last silently wins), thousands of digits in a number (a slow
int conversion, then ``ValueError`` deep in the parser) and nesting deep enough to hit
the recursion limit. :func:`parse_object` refuses each with :class:`BodyError` and a
``reason`` that names the rule, before or while decoding, so the API answers ``400``.
"""

from __future__ import annotations

import json
from typing import Any, Final

from kycedge.core.errors import KycEdgeError

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "MAX_NUMBER_CHARS", "BodyError", "parse_object"]

MAX_BODY_BYTES: Final = 4096
MAX_DEPTH: Final = 8
MAX_NUMBER_CHARS: Final = 32


class BodyError(KycEdgeError):
    """A request body the API refuses; ``reason`` is the rule it broke."""

    reason = "bad-request"


def _depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside strings (a linear scan, no recursion)."""
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise BodyError(f"body: duplicate key {k[:40]!r} (each key at most once)",
                            reason="duplicate-key")
        out[k] = v
    return out


def _number(kind: str) -> Any:
    def parse(text: str) -> Any:
        if len(text) > MAX_NUMBER_CHARS:
            raise BodyError(f"body: expected numbers of at most {MAX_NUMBER_CHARS} characters, "
                            f"got one of {len(text)}", reason="number-too-long")
        return int(text) if kind == "int" else float(text)
    return parse


def _constant(name: str) -> Any:
    raise BodyError(f"body: expected a finite number, got {name}", reason="bad-number")


def parse_object(raw: bytes) -> dict[str, Any]:
    """``raw`` (at most :data:`MAX_BODY_BYTES`) as a JSON object, or :class:`BodyError`."""
    if len(raw) > MAX_BODY_BYTES:
        raise BodyError(f"body: expected at most {MAX_BODY_BYTES} bytes, got {len(raw)}",
                        reason="body-too-large")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BodyError(f"body: expected UTF-8 JSON, got undecodable bytes at {e.start}") from e
    depth = _depth(text)
    if depth > MAX_DEPTH:
        raise BodyError(f"body: expected JSON nested at most {MAX_DEPTH} deep, got {depth}",
                        reason="too-deep")
    try:
        body = json.loads(text, object_pairs_hook=_no_duplicates, parse_int=_number("int"),
                          parse_float=_number("float"), parse_constant=_constant)
    except json.JSONDecodeError as e:
        raise BodyError(f"body: expected a JSON object, got invalid JSON ({e})") from e
    if not isinstance(body, dict):
        raise BodyError(f"body: expected a JSON object, got {type(body).__name__}")
    return body
