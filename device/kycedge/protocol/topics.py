"""MQTT topic names: pure builders and parsers (no I/O, no paho).

Layout (documented in ``docs/topics.md``)::

    kyc/v1/{tenant}/{device}/templates   unit -> carrier, QoS 1, sealed envelopes
    kyc/v1/{tenant}/{device}/receipts    carrier -> unit, QoS 1, signed receipts
    kyc/v1/{tenant}/{device}/status      unit, retained; last will "offline"
    fleet/v1/{tenant}/{kind}             fleet admin -> units (bundle announcements, commands)
    $share/{group}/kyc/v1/+/+/templates  carrier receivers, shared subscription

Tenant and device ids are one topic level each: 1..64 characters from
``[A-Za-z0-9._-]``, not starting with ``.``. That excludes the MQTT wildcards ``+``/``#``,
the level separator ``/``, ``$`` (reserved prefixes) and NUL, so an id can never widen a
subscription or an ACL pattern.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from kycedge.core.errors import UplinkError

__all__ = [
    "DeviceTopic",
    "Kind",
    "check_id",
    "device_topic",
    "fleet_topic",
    "parse_device_topic",
    "receipts",
    "shared_templates_subscription",
    "status",
    "templates",
]

PREFIX = "kyc/v1"
FLEET_PREFIX = "fleet/v1"
Kind = Literal["templates", "receipts", "status"]
KINDS: tuple[str, ...] = ("templates", "receipts", "status")
_ID = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


class TopicError(UplinkError):
    """A topic or a topic component is not one this project uses."""

    reason = "bad-topic"


def check_id(value: str, what: str = "id") -> str:
    """Return ``value`` if it is a safe single topic level, else raise :class:`TopicError`."""
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise TopicError(
            f"expected {what} of 1-64 characters [A-Za-z0-9._-] not starting with '.', got {value!r:.80}"
        )
    return value


@dataclass(frozen=True)
class DeviceTopic:
    """A parsed ``kyc/v1/{tenant}/{device}/{kind}`` topic."""

    tenant: str
    device: str
    kind: Kind

    def __post_init__(self) -> None:
        check_id(self.tenant, "tenant")
        check_id(self.device, "device")
        if self.kind not in KINDS:
            raise TopicError(f"expected topic kind one of {', '.join(KINDS)}, got {self.kind!r}")

    def __str__(self) -> str:
        return f"{PREFIX}/{self.tenant}/{self.device}/{self.kind}"

    def sibling(self, kind: Kind) -> DeviceTopic:
        return DeviceTopic(self.tenant, self.device, kind)


def device_topic(tenant: str, device: str, kind: Kind) -> str:
    return str(DeviceTopic(tenant, device, kind))


def templates(tenant: str, device: str) -> str:
    return device_topic(tenant, device, "templates")


def receipts(tenant: str, device: str) -> str:
    return device_topic(tenant, device, "receipts")


def status(tenant: str, device: str) -> str:
    return device_topic(tenant, device, "status")


def fleet_topic(tenant: str, kind: str) -> str:
    return f"{FLEET_PREFIX}/{check_id(tenant, 'tenant')}/{check_id(kind, 'fleet topic kind')}"


def shared_templates_subscription(group: str, tenant: str | None = None) -> str:
    """``$share/{group}/kyc/v1/{tenant or +}/+/templates`` for carrier receivers."""
    t = "+" if tenant is None else check_id(tenant, "tenant")
    return f"$share/{check_id(group, 'share group')}/{PREFIX}/{t}/+/templates"


def parse_device_topic(topic: str) -> DeviceTopic:
    """Parse an incoming topic; raise :class:`TopicError` for anything else."""
    if not isinstance(topic, str):
        raise TopicError(f"expected a topic string, got {type(topic).__name__}")
    parts = topic.split("/")
    if len(parts) != 5 or "/".join(parts[:2]) != PREFIX:
        raise TopicError(f"expected a topic {PREFIX}/<tenant>/<device>/<kind>, got {topic!r:.120}")
    kind = parts[4]
    if kind not in KINDS:
        raise TopicError(f"expected topic kind one of {', '.join(KINDS)}, got {kind!r:.40}")
    return DeviceTopic(parts[2], parts[3], kind)  # type: ignore[arg-type]
