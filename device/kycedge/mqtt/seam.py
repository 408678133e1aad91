"""The transport seam: what the forwarder and the carrier's serve loop need from MQTT.

:class:`kycedge.mqtt.client.MqttClient` implements it with paho over TLS;
:class:`kycedge.mqtt.fake.FakeBroker` implements it in memory for logic tests (with
fault injection: dropped, duplicated and delayed deliveries).

Threading contract: ``handler`` and connect listeners run on the transport's network
thread. They must not block and must not call :meth:`Transport.publish` /
:meth:`Transport.publish_many` (those wait for the broker's ack, which that thread
delivers); use :meth:`Transport.publish_nowait` there or hand work to another thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["AckHandler", "ConnectListener", "Handler", "Transport", "Will"]

#: ``handler(topic, payload)`` for an incoming message.
Handler = Callable[[str, bytes], None]
#: ``handler(topic, payload, ack)`` for manual acknowledgement: call ``ack()`` (any thread)
#: once the message is safely processed; until then the broker keeps it for redelivery.
AckHandler = Callable[[str, bytes, Callable[[], None]], None]
#: ``listener(connected, session_present)``: called on every connect and disconnect.
ConnectListener = Callable[[bool, bool], None]


@dataclass(frozen=True)
class Will:
    """Last will: published by the broker when the session ends uncleanly."""

    topic: str
    payload: bytes
    retain: bool = True
    qos: int = 1

    def __post_init__(self) -> None:
        if self.qos not in (0, 1):
            raise ValueError(f"expected will qos 0 or 1, got {self.qos}")


@runtime_checkable
class Transport(Protocol):
    def start(self) -> None:
        """Begin connecting in the background (reconnects forever with backoff)."""

    def stop(self) -> None:
        """Disconnect cleanly (the will is *not* published) and stop the network thread."""

    @property
    def connected(self) -> bool: ...

    @property
    def last_error(self) -> str: ...

    def wait_connected(self, timeout_s: float) -> bool:
        """Block until connected; ``False`` on timeout."""

    def add_connect_listener(self, listener: ConnectListener) -> None: ...

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Subscribe now (if connected, waiting for SUBACK) and again after every reconnect.

        Raises :class:`~kycedge.core.errors.UplinkError` (reason ``not-authorized``) if refused.
        """

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout_s: float | None = None) -> None:
        """Publish and wait for the broker's PUBACK; raise UplinkError if it does not come."""

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1,
                     timeout_s: float | None = None) -> list[bool]:
        """Publish all (pipelined), then wait: ``True`` per message the broker acknowledged."""

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue a publish without waiting (safe from handlers)."""
