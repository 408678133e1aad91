"""The unit's retained status and the fleet's bundle announcement: one writer, one parser.

Both are JSON objects on MQTT (``docs/topics.md``); nothing in them is secret or biometric.

Status, retained on ``kyc/v1/{tenant}/{device}/status`` (the unit writes it, the broker
publishes ``{"state": "offline"}`` with the model, firmware and update the unit ran as its
last will, ``kycedge-fleet status`` reads it)::

    {"state": "online" | "offline",
     "ts": 1764590000.123,                       # unit clock, seconds
     "firmware": "0.1.0",
     "model": {"id": "sface", "version": "2021dec-kycedge.2"},
     "queue": {"count": 3, "bytes": 5120, "inflight": 1,
               "oldest_enqueued_at": 1764589000.0, "full": false,
               "held": {"unknown-device": 3},       # queued envelopes by pre-authentication reason
               "last_error": ""},                    # or {"error": CODE}
     "delivery": "ok" | "not-enrolled" | "revoked" | "not-delivered",   # see delivery_state
     "update": {"state", "outcome", "bundle_version", "model_id", "model_version",
                "target_version", "reason", "message", "at"},        # after the first outcome
     ...}                                         # other keys: kept in ``extra``

Announcement, retained on ``fleet/v1/{tenant}/bundles``; it carries no authority (a unit
installs only what signed TUF metadata says)::

    {"bundle_version": 5, "repository_url": "https://...", "published_utc": "2026-12-01T07:00:00Z"}

:func:`parse_status` and :func:`parse_announce` take untrusted bytes and raise
:class:`~kycedge.core.errors.MessageError` (reason ``bad-message``) naming what is wrong.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Any, Final, Literal

from kycedge.core.errors import MessageError

__all__ = [
    "DELIVERY_STATES",
    "MAX_ANNOUNCE_BYTES",
    "MAX_STATUS_BYTES",
    "OFFLINE",
    "Announce",
    "QueueState",
    "UnitStatus",
    "UpdateReport",
    "delivery_state",
    "parse_announce",
    "parse_status",
]

MAX_STATUS_BYTES: Final = 64 * 1024
MAX_ANNOUNCE_BYTES: Final = 4096
State = Literal["online", "offline"]
_KNOWN: Final = frozenset({"state", "ts", "firmware", "model", "queue", "update", "delivery"})
#: What a unit's status says about delivery (local API and MQTT status ``delivery``).
DELIVERY_STATES: Final = ("ok", "not-enrolled", "revoked", "not-delivered")
_HELD_STATE: Final = {"unknown-device": "not-enrolled", "revoked-device": "revoked"}


def delivery_state(held: Mapping[str, int], last_condition: str, last_final: bool | None = None) -> str:
    """``ok`` unless envelopes are held by pre-authentication rejections
    (:data:`kycedge.protocol.envelope.NOT_DELIVERED_REASONS`): then the state of the most recent
    one (``unknown-device`` → ``not-enrolled``, ``revoked-device`` → ``revoked``, any other →
    ``not-delivered``); a final receipt after it (``last_final``) means the carrier knows the
    unit: ``ok`` (the held ones are being re-sent)."""
    if not held or last_final:
        return "ok"
    return _HELD_STATE.get(last_condition, "not-delivered")


def _load(payload: bytes, limit: int, what: str) -> dict[str, Any]:
    if not isinstance(payload, bytes | bytearray) or len(payload) > limit:
        size = len(payload) if isinstance(payload, bytes | bytearray) else type(payload).__name__
        raise MessageError(f"{what}: expected at most {limit} bytes of JSON, got {size}")
    try:
        obj = json.loads(bytes(payload).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        detail = f"{what}: expected a JSON object, got unparsable bytes ({type(e).__name__})"
        raise MessageError(detail) from e
    if not isinstance(obj, dict):
        raise MessageError(f"{what}: expected a JSON object, got {type(obj).__name__}")
    return obj


def _int(obj: Mapping[str, Any], key: str, what: str, *, optional: bool = False) -> int | None:
    v = obj.get(key)
    if v is None and optional:
        return None
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise MessageError(f"{what}.{key}: expected an integer >= 0, got {v!r:.40}")
    return v


def _num(obj: Mapping[str, Any], key: str, what: str) -> float | None:
    v = obj.get(key)
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise MessageError(f"{what}.{key}: expected a number, got {v!r:.40}")
    return float(v)


def _str(obj: Mapping[str, Any], key: str, what: str) -> str:
    v = obj.get(key, "")
    if not isinstance(v, str) or len(v) > 1024:
        raise MessageError(f"{what}.{key}: expected text of at most 1024 characters, got {v!r:.40}")
    return v


@dataclass(frozen=True)
class QueueState:
    """The unit's outbox as the status reports it (``error`` set when it cannot say)."""

    count: int = 0
    bytes: int = 0
    inflight: int = 0
    oldest_enqueued_at: float | None = None
    full: bool = False
    error: str = ""
    held: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    last_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        if self.error:
            return {"error": self.error}
        return {"count": self.count, "bytes": self.bytes, "inflight": self.inflight,
                "oldest_enqueued_at": self.oldest_enqueued_at, "full": self.full,
                "held": dict(self.held), "last_error": self.last_error}

    @classmethod
    def from_dict(cls, obj: object) -> QueueState:
        if not isinstance(obj, dict):
            raise MessageError(f"status.queue: expected an object, got {type(obj).__name__}")
        if "error" in obj:
            return cls(error=_str(obj, "error", "status.queue") or "unknown")
        held = obj.get("held") or {}
        if not isinstance(held, dict) or len(held) > 32:
            raise MessageError(f"status.queue.held: expected an object of counts, got {held!r:.40}")
        counts = {str(k)[:64]: _int(held, k, "status.queue.held") or 0 for k in held}
        return cls(_int(obj, "count", "status.queue") or 0, _int(obj, "bytes", "status.queue") or 0,
                   _int(obj, "inflight", "status.queue") or 0,
                   _num(obj, "oldest_enqueued_at", "status.queue"), bool(obj.get("full", False)),
                   held=MappingProxyType(counts), last_error=_str(obj, "last_error", "status.queue"))


@dataclass(frozen=True)
class UpdateReport:
    """The model-update agent's last report (``kycedge.unit.updates.agent``)."""

    state: str                 # idle | checking | downloading | self-testing | switching | trial
    outcome: str               # none | up-to-date | updated | failed | rolled-back | recovered
    bundle_version: int        # the bundle currently served (0: factory models)
    model_id: str
    model_version: str
    target_version: int | None = None
    reason: str = ""
    message: str = ""
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"state": self.state, "outcome": self.outcome, "bundle_version": self.bundle_version,
                "model_id": self.model_id, "model_version": self.model_version,
                "target_version": self.target_version, "reason": self.reason, "message": self.message,
                "at": self.at}

    @classmethod
    def from_dict(cls, obj: object) -> UpdateReport:
        w = "status.update"
        if not isinstance(obj, dict):
            raise MessageError(f"{w}: expected an object, got {type(obj).__name__}")
        return cls(_str(obj, "state", w), _str(obj, "outcome", w), _int(obj, "bundle_version", w) or 0,
                   _str(obj, "model_id", w), _str(obj, "model_version", w),
                   _int(obj, "target_version", w, optional=True), _str(obj, "reason", w),
                   _str(obj, "message", w), _num(obj, "at", w) or 0.0)


@dataclass(frozen=True)
class UnitStatus:
    state: State
    ts: float | None = None
    firmware: str = ""
    model_id: str = ""
    model_version: str = ""
    queue: QueueState | None = None
    update: UpdateReport | None = None
    extra: Mapping[str, Any] = field(default_factory=lambda: MappingProxyType({}))
    delivery: str = ""  # one of DELIVERY_STATES ("" when the unit did not say)

    def __post_init__(self) -> None:
        if self.state not in ("online", "offline"):
            raise MessageError(f"status.state: expected 'online' or 'offline', got {self.state!r:.40}")
        if self.delivery and self.delivery not in DELIVERY_STATES:
            raise MessageError(f"status.delivery: expected one of {', '.join(DELIVERY_STATES)}, "
                               f"got {self.delivery!r:.40}")

    @property
    def model(self) -> str:
        """``id@version`` of the model the unit serves (the update report's if newer), or ``?``."""
        if self.update is not None and self.update.model_id:
            return f"{self.update.model_id}@{self.update.model_version}"
        return f"{self.model_id}@{self.model_version}" if self.model_id else "?"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {k: v for k, v in self.extra.items() if k not in _KNOWN}
        out["state"] = self.state
        if self.ts is not None:
            out["ts"] = self.ts
        if self.firmware:
            out["firmware"] = self.firmware
        if self.model_id:
            out["model"] = {"id": self.model_id, "version": self.model_version}
        if self.queue is not None:
            out["queue"] = self.queue.to_dict()
        if self.update is not None:
            out["update"] = self.update.to_dict()
        if self.delivery:
            out["delivery"] = self.delivery
        return out

    def to_json(self) -> bytes:
        data = json.dumps(self.to_dict(), sort_keys=True, default=str).encode()
        if len(data) > MAX_STATUS_BYTES:
            raise MessageError(f"status: expected at most {MAX_STATUS_BYTES} bytes, got {len(data)}")
        return data


    @classmethod
    def from_dict(cls, obj: Mapping[str, Any]) -> UnitStatus:
        """The status from its JSON object (what the unit assembles, what readers parse)."""
        return _status_from_dict(obj)


def parse_status(payload: bytes) -> UnitStatus:
    """A unit's retained status from untrusted bytes (MessageError names what is wrong)."""
    return _status_from_dict(_load(payload, MAX_STATUS_BYTES, "status"))


def _status_from_dict(obj: Mapping[str, Any]) -> UnitStatus:
    state = obj.get("state")
    if state not in ("online", "offline"):
        raise MessageError(f"status.state: expected 'online' or 'offline', got {state!r:.40}")
    model = obj.get("model")
    if model is not None and not isinstance(model, dict):
        raise MessageError(f"status.model: expected an object, got {type(model).__name__}")
    model = model or {}
    return UnitStatus(
        state, _num(obj, "ts", "status"), _str(obj, "firmware", "status"),
        _str(model, "id", "status.model"), _str(model, "version", "status.model"),
        QueueState.from_dict(obj["queue"]) if obj.get("queue") is not None else None,
        UpdateReport.from_dict(obj["update"]) if obj.get("update") is not None else None,
        MappingProxyType({k: v for k, v in obj.items() if k not in _KNOWN}),
        delivery=_str(obj, "delivery", "status"),
    )


OFFLINE: Final = UnitStatus("offline").to_json()


@dataclass(frozen=True)
class Announce:
    bundle_version: int
    repository_url: str = ""
    published_utc: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.bundle_version, bool) or not isinstance(self.bundle_version, int) \
                or self.bundle_version < 0:
            raise MessageError(
                f"announce.bundle_version: expected an integer >= 0, got {self.bundle_version!r:.40}")

    @classmethod
    def now(cls, bundle_version: int, repository_url: str = "") -> Announce:
        return cls(bundle_version, repository_url,
                   datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))

    def to_json(self) -> bytes:
        return json.dumps({"bundle_version": self.bundle_version, "repository_url": self.repository_url,
                           "published_utc": self.published_utc}, sort_keys=True).encode()


def parse_announce(payload: bytes) -> Announce:
    obj = _load(payload, MAX_ANNOUNCE_BYTES, "announce")
    return Announce(_int(obj, "bundle_version", "announce") or 0, _str(obj, "repository_url", "announce"),
                    _str(obj, "published_utc", "announce"))
