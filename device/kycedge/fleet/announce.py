"""Bundle announcements and fleet status over MQTT (through :mod:`kycedge.mqtt`).

- ``announce``: a retained QoS 1 message on ``fleet/v1/{tenant}/bundles`` so units fetch
  at once instead of at their next poll. It carries no authority: a unit only installs
  what the signed TUF metadata says, so a forged announce costs one repository check.
- ``collect_status``: subscribe to ``kyc/v1/{tenant}/+/status`` (retained) and gather, per
  unit, the bundle and model it runs and the outcome of its last update.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kycedge.core.errors import KycEdgeError
from kycedge.mqtt.seam import Transport
from kycedge.protocol.topics import fleet_topic, parse_device_topic

__all__ = ["UnitStatus", "announce", "announce_payload", "collect_status", "parse_status"]

BUNDLES_KIND = "bundles"
MAX_STATUS_BYTES = 64 * 1024


def announce_payload(bundle_version: int, repository_url: str = "") -> bytes:
    return json.dumps({
        "bundle_version": bundle_version,
        "repository_url": repository_url,
        "published_utc": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }, sort_keys=True).encode()


def announce(transport: Transport, tenant: str, bundle_version: int, repository_url: str = "") -> str:
    """Publish the retained announcement (waits for the broker's PUBACK); returns the topic."""
    topic = fleet_topic(tenant, BUNDLES_KIND)
    transport.publish(topic, announce_payload(bundle_version, repository_url), qos=1, retain=True)
    return topic


@dataclass(frozen=True)
class UnitStatus:
    device: str
    online: bool
    bundle_version: int | None
    model: str
    outcome: str
    reason: str
    raw: Mapping[str, Any]


def parse_status(device: str, payload: bytes) -> UnitStatus:
    """One unit's retained status; tolerant of shapes, never raises on bad input."""
    obj: Any = None
    if len(payload) <= MAX_STATUS_BYTES:
        try:
            obj = json.loads(payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            obj = None
    if not isinstance(obj, dict):
        text = payload[:40].decode("utf-8", "replace")
        return UnitStatus(device, text != "offline" and bool(text), None, "?", "unknown", text, {})
    # The daemon publishes {"state": "online", "model": {"id", "version"}, "firmware",
    # "update": UpdateStatus…}; "update" is absent until the first update outcome.
    nested = obj.get("update", obj.get("updates"))
    upd: dict[str, Any] = nested if isinstance(nested, dict) else obj
    online = obj.get("state", "online") != "offline"
    version = upd.get("bundle_version")
    model_obj = obj.get("model")
    if "model_id" in upd:
        model = f"{upd.get('model_id')}@{upd.get('model_version', '?')}"
    elif isinstance(model_obj, dict):
        model = f"{model_obj.get('id', '?')}@{model_obj.get('version', '?')}"
    else:
        model = "?"
    return UnitStatus(device, bool(online), version if isinstance(version, int) else None, model,
                      str(upd.get("outcome", "")), str(upd.get("reason", "")), obj)


def collect_status(transport: Transport, tenant: str, wait_s: float = 2.0) -> dict[str, UnitStatus]:
    """Retained statuses of every unit of ``tenant`` seen within ``wait_s``."""
    seen: dict[str, UnitStatus] = {}
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        try:
            t = parse_device_topic(topic)
        except KycEdgeError:  # a foreign topic is ignored, never fatal
            return
        if t.kind != "status":
            return
        with lock:
            seen[t.device] = parse_status(t.device, payload)

    transport.subscribe(f"kyc/v1/{tenant}/+/status", on_message, qos=1)
    time.sleep(wait_s)
    with lock:
        return dict(sorted(seen.items()))
