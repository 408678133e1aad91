"""The session event stream on the wire (pure): SSE frames with ids, NDJSON lines, heartbeats.

SSE (``Accept: text/event-stream``)::

    retry: 2000                       once, at the start
    id: 3                             the event's number in its session (0 = started)
    event: guidance
    data: {"event":"guidance",...}
                                      (blank line)
    : heartbeat                       every ``api.heartbeat_s`` of silence

A reconnecting ``EventSource`` sends ``Last-Event-ID: N`` and the stream resumes at N+1;
a finished session with nothing after N answers ``204`` (which tells ``EventSource``
to stop reconnecting). NDJSON (the default) is one JSON object per line; its heartbeat
is an empty line, which readers skip.
"""

from __future__ import annotations

import json
from typing import Any, Final

__all__ = ["MAX_EVENT_ID", "RETRY_MS", "frame", "heartbeat", "parse_last_event_id", "preamble"]

RETRY_MS: Final = 2000
MAX_EVENT_ID: Final = 10**9


def preamble(sse: bool) -> str:
    return f"retry: {RETRY_MS}\n\n" if sse else ""


def frame(number: int, event: dict[str, Any], sse: bool) -> str:
    data = json.dumps(event, separators=(",", ":"))
    if sse:
        return f"id: {number}\nevent: {event['event']}\ndata: {data}\n\n"
    return data + "\n"


def heartbeat(sse: bool) -> str:
    return ": heartbeat\n\n" if sse else "\n"


def parse_last_event_id(value: str | None) -> int | None:
    """The number after which to resume, or None (from the start). Raises ValueError."""
    if value is None or value == "":
        return None
    if not value.isdigit() or len(value) > 10 or int(value) > MAX_EVENT_ID:
        raise ValueError(f"Last-Event-ID: expected an event number 0..{MAX_EVENT_ID}, got {value[:20]!r}")
    return int(value)
