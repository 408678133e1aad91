"""Readable stand-ins for message ids in tests: ``M("m3")`` is a valid UUIDv7 text id.

The mapping is deterministic and keeps the sort order of the names (up to 8 bytes), so a
test can still reason about "m0 before m1".
"""

from __future__ import annotations

from kycedge.protocol.ids import new_message_id

T0_MS = 1_764_000_000_000


def M(name: str) -> str:
    raw = name.encode().ljust(8, b"\0")
    if len(raw) != 8:
        raise ValueError(f"M(): expected a name of at most 8 bytes, got {name!r}")
    return str(new_message_id(now_ms=T0_MS, random_bytes=b"\0" + raw[:1] + b"\0" + raw[1:]))
