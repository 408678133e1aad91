"""Bundle announcements and fleet status over MQTT (through :mod:`kycedge.mqtt`).

- ``announce``: a retained QoS 1 message on ``fleet/v1/{tenant}/bundles`` so units fetch
  at once instead of at their next poll. It carries no authority: a unit only installs
  what the signed TUF metadata says, so a forged announce costs one repository check.
- ``collect_status``: subscribe to ``kyc/v1/{tenant}/+/status`` (retained) and gather, per
  unit, the bundle and model it runs and the outcome of its last update.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from kycedge.core.errors import KycEdgeError, MessageError
from kycedge.mqtt.seam import Transport
from kycedge.protocol.status import Announce, UnitStatus, parse_status
from kycedge.protocol.topics import fleet_topic, parse_device_topic, status_subscription

__all__ = ["UnitSummary", "announce", "collect_status", "summarize"]

BUNDLES_KIND = "bundles"


def announce(transport: Transport, tenant: str, bundle_version: int, repository_url: str = "") -> str:
    """Publish the retained announcement (waits for the broker's PUBACK); returns the topic."""
    topic = fleet_topic(tenant, BUNDLES_KIND)
    transport.publish(topic, Announce.now(bundle_version, repository_url).to_json(), qos=1, retain=True)
    return topic


@dataclass(frozen=True)
class UnitSummary:
    """What ``kycedge-fleet status`` shows of one unit (from its retained status)."""

    device: str
    online: bool
    bundle_version: int | None
    model: str
    outcome: str
    reason: str
    status: UnitStatus | None   # None: the retained message was not a valid status
    problem: str = ""           # why it was not
    message: str = ""           # the unit's why of its last outcome (e.g. which golden image failed)
    delivery: str = ""          # ok, not-enrolled, revoked, not-delivered ("" if not reported)


def summarize(device: str, payload: bytes) -> UnitSummary:
    """One unit's retained status through :func:`kycedge.protocol.status.parse_status`."""
    try:
        st = parse_status(payload)
    except MessageError as e:
        return UnitSummary(device, False, None, "?", "unknown", "bad-status", None, e.message)
    upd = st.update
    return UnitSummary(device, st.state == "online", upd.bundle_version if upd else None, st.model,
                       upd.outcome if upd else "", upd.reason if upd else "", st,
                       message=upd.message if upd else "", delivery=st.delivery)


def collect_status(transport: Transport, tenant: str, wait_s: float = 2.0) -> dict[str, UnitSummary]:
    """Retained statuses of every unit of ``tenant`` seen within ``wait_s``."""
    seen: dict[str, UnitSummary] = {}
    lock = threading.Lock()

    def on_message(topic: str, payload: bytes) -> None:
        try:
            t = parse_device_topic(topic)
        except KycEdgeError:  # a foreign topic is ignored, never fatal
            return
        if t.kind != "status":
            return
        with lock:
            seen[t.device] = summarize(t.device, payload)

    transport.subscribe(status_subscription(tenant), on_message, qos=1)
    time.sleep(wait_s)
    with lock:
        return dict(sorted(seen.items()))
