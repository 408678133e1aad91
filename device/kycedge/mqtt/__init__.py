"""MQTT uplink: topics, the transport seam, the paho session (``client``), an in-memory fake.

Importing this package does not import paho: ``kycedge.mqtt.client`` does (the only
module that may). Typical use on the unit goes through :class:`kycedge.unit.forwarder.Forwarder`.
"""

from __future__ import annotations

from kycedge.mqtt.config import UplinkConfig
from kycedge.mqtt.seam import ConnectListener, Handler, Transport, Will

__all__ = ["ConnectListener", "Handler", "Transport", "UplinkConfig", "Will", "connect"]


def connect(config: UplinkConfig, *, client_id: str, will: Will | None = None) -> Transport:
    """A paho-backed :class:`Transport` (not started yet: call ``start()``)."""
    from kycedge.mqtt.client import MqttClient

    return MqttClient(config, client_id=client_id, will=will)
