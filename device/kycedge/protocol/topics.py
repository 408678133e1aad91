"""MQTT topic names: pure builders and parsers (no I/O, no paho).

Layout (documented in ``docs/topics.md``)::

    kyc/v1/{tenant}/{device}/templates   unit -> carrier, QoS 1, sealed envelopes
    kyc/v1/{tenant}/{device}/receipts    carrier -> unit, QoS 1, signed receipts
    kyc/v1/{tenant}/{device}/status      unit, retained; last will "offline"
    fleet/v1/{tenant}/{kind}             fleet admin -> units (bundle announcements, commands)
    $share/{group}/kyc/v1/+/+/templates  carrier receivers, shared subscription

Tenant and device ids are one topic level each, with the grammars of
:mod:`kycedge.protocol.ids` (tenant ``[a-z0-9][a-z0-9-]{0,31}``, device
``[A-Za-z0-9][A-Za-z0-9._-]{0,63}``). Both exclude the MQTT wildcards ``+``/``#``, the
level separator ``/``, ``$`` (reserved prefixes) and NUL, so an id can never widen a
subscription or an ACL pattern.

A unit's broker identity is ``{tenant}/{device}`` (:func:`kycedge.protocol.ids.device_common_name`):
its certificate's CN, its MQTT username and its MQTT client id, all three the same string;
the broker's guard plugin refuses any other client id for that certificate (ADR 0010).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from kycedge.core.errors import IdError, UplinkError
from kycedge.protocol import ids

__all__ = [
    "DeviceTopic",
    "Kind",
    "device_topic",
    "fleet_topic",
    "parse_device_topic",
    "receipts",
    "shared_templates_subscription",
    "status",
    "status_subscription",
    "templates",
]

PREFIX = "kyc/v1"
FLEET_PREFIX = "fleet/v1"
Kind = Literal["templates", "receipts", "status"]
KINDS: tuple[str, ...] = ("templates", "receipts", "status")


class TopicError(UplinkError):
    """A topic or a topic component is not one this project uses."""

    reason = "bad-topic"


def _level(check: Callable[[object, str], str], value: object, what: str) -> str:
    try:
        return check(value, what)
    except IdError as e:
        raise TopicError(e.message) from e


@dataclass(frozen=True)
class DeviceTopic:
    """A parsed ``kyc/v1/{tenant}/{device}/{kind}`` topic."""

    tenant: str
    device: str
    kind: Kind

    def __post_init__(self) -> None:
        _level(ids.check_tenant, self.tenant, "tenant")
        _level(ids.check_device_id, self.device, "device")
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


def status_subscription(tenant: str) -> str:
    """``kyc/v1/{tenant}/+/status``: every unit's retained status of one tenant (fleet admin)."""
    return f"{PREFIX}/{_level(ids.check_tenant, tenant, 'tenant')}/+/status"


def fleet_topic(tenant: str, kind: str) -> str:
    tenant = _level(ids.check_tenant, tenant, "tenant")
    return f"{FLEET_PREFIX}/{tenant}/{_level(ids.check_service_name, kind, 'fleet topic kind')}"


def shared_templates_subscription(group: str, tenant: str | None = None) -> str:
    """``$share/{group}/kyc/v1/{tenant or +}/+/templates`` for carrier receivers."""
    t = "+" if tenant is None else _level(ids.check_tenant, tenant, "tenant")
    return f"$share/{_level(ids.check_service_name, group, 'share group')}/{PREFIX}/{t}/+/templates"


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
