"""MQTT 5 session over mutual TLS with paho-mqtt 2.x: the ONLY module that imports paho.

- ``CallbackAPIVersion.VERSION2``, ``MQTTv5``, TLS 1.2+ with the client certificate;
- persistent session: ``clean_start=False`` with ``SessionExpiryInterval`` from config;
- QoS 1; :meth:`MqttClient.publish` returns only after the broker's PUBACK and raises
  :class:`UplinkError` if the PUBACK does not come or carries a failure reason code
  (reason ``not-authorized`` for an ACL refusal);
- a last will (for units: ``offline``, retained, on the status topic);
- reconnects forever with exponential backoff (paho's ``reconnect_delay_set``); every
  subscription is renewed after each reconnect.

Library errors (``ssl``, ``OSError``, paho error codes) are converted to
:class:`UplinkError` here.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from kycedge.core.errors import UplinkError
from kycedge.mqtt.config import UplinkConfig
from kycedge.mqtt.seam import AckHandler, ConnectListener, Handler, Will

__all__ = ["MqttClient", "UplinkError", "filter_matches"]

log = logging.getLogger(__name__)
paho_log = logging.getLogger("kycedge.mqtt.paho")


class _OutageChatter(logging.Filter):
    """Demote paho's per-iteration "Client is not connected" ERROR to DEBUG.

    While the broker is away paho logs that line at ERROR on every loop iteration; the
    outage itself is already reported once at WARNING by our on_disconnect, so at ERROR
    it is noise that buries real errors in the journal of a unit whose uplink comes and goes.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR and str(record.msg).startswith("Client is not connected"):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return paho_log.isEnabledFor(logging.DEBUG)
        return True


paho_log.addFilter(_OutageChatter())


def filter_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching; a ``$share/<group>/`` prefix is stripped from the filter."""
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        topic_filter = parts[2] if len(parts) == 3 else ""
    return bool(mqtt.topic_matches_sub(topic_filter, topic))


def _reason_name(rc: Any) -> str:
    if isinstance(rc, ReasonCode):
        return str(rc.getName())
    return str(rc)


def _reason_slug(rc: Any) -> str:
    name = _reason_name(rc).lower()
    if "not authori" in name:
        return "not-authorized"
    if "bad user" in name or "bad username" in name:
        return "not-authorized"
    return "uplink-error"


class MqttClient:
    """One MQTT session (implements :class:`kycedge.mqtt.seam.Transport`).

    >>> c = MqttClient(cfg, client_id="dev-acme-0001", will=Will(status_topic, b'{"state":"offline"}'))
    >>> c.subscribe(receipts_topic, on_receipt)   # renewed on every reconnect
    >>> c.start(); c.wait_connected(10)
    >>> c.publish(templates_topic, envelope)      # returns after PUBACK
    """

    def __init__(self, config: UplinkConfig, *, client_id: str, will: Will | None = None,
                 manual_ack: bool = False) -> None:
        if not client_id:
            raise UplinkError("expected a non-empty MQTT client id, got ''", reason="bad-config")
        self.config = config
        self.client_id = config.client_id or client_id
        self._will = will
        self._subs: dict[str, tuple[Handler, int]] = {}
        self._acked: dict[str, AckHandler] = {}
        self._manual_ack = manual_ack
        self._listeners: list[ConnectListener] = []
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._started = False
        self._last_error = ""
        self._puback: dict[int, Any] = {}
        self._suback: dict[int, tuple[threading.Event, list[Any]]] = {}
        self.connects = 0
        self._client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=MQTTProtocolVersion.MQTTv5,
            reconnect_on_failure=True,
            manual_ack=manual_ack,
        )
        c = self._client
        c.enable_logger(paho_log)
        c.max_inflight_messages_set(config.max_inflight)
        c.max_queued_messages_set(0)
        c.reconnect_delay_set(config.reconnect_min_s, config.reconnect_max_s)
        c.on_connect = self._on_connect
        c.on_connect_fail = self._on_connect_fail
        c.on_disconnect = self._on_disconnect
        c.on_message = self._on_message
        c.on_publish = self._on_publish
        c.on_subscribe = self._on_subscribe
        if will is not None:
            c.will_set(will.topic, will.payload, qos=will.qos, retain=will.retain)
        if config.tls:
            c.tls_set_context(self._tls_context())
        else:
            log.warning("uplink: TLS is off (%s:%d); use this only with a local test broker",
                        config.host, config.port)

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.config
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(cfg.ca_file))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(certfile=str(cfg.cert_file), keyfile=str(cfg.key_file))
        except (OSError, ssl.SSLError, ValueError) as e:
            raise UplinkError(
                f"TLS set-up failed (ca_file={cfg.ca_file}, cert_file={cfg.cert_file}, "
                f"key_file={cfg.key_file}): {e}",
                reason="bad-tls-config",
            ) from e
        return ctx

    # -- paho callbacks (network thread) ------------------------------------------------

    def _on_connect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            self._last_error = f"connect refused: {_reason_name(rc)}"
            log.warning("uplink: %s", self._last_error)
            return
        self.connects += 1
        self._last_error = ""
        session_present = bool(getattr(flags, "session_present", False))
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, (_, qos) in subs:
            client.subscribe(topic_filter, qos=qos)
        self._connected.set()
        log.info("uplink: connected to %s:%d as %s (session present: %s)",
                 self.config.host, self.config.port, self.client_id, session_present)
        self._notify(True, session_present)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        if not self._last_error:
            self._last_error = "connect failed (network or TLS handshake)"
        log.debug("uplink: connect to %s:%d failed", self.config.host, self.config.port)

    def _on_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if getattr(rc, "is_failure", False) and (was or not self._last_error.startswith("connect refused")):
            # after a refused CONNACK paho reports a protocol error: keep the broker's reason
            self._last_error = f"disconnected: {_reason_name(rc)}"
        if was:
            # stop() clears _started first: our own disconnect is not an outage worth a warning
            # (a command-line tool printed "Normal disconnection" on every run).
            log.log(logging.WARNING if self._started else logging.DEBUG,
                    "uplink: disconnected from %s:%d: %s", self.config.host, self.config.port,
                    _reason_name(rc))
            self._notify(False, False)

    def _notify(self, connected: bool, session_present: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(connected, session_present)
            except Exception:
                log.exception("uplink: connect listener failed")

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        topic = msg.topic
        payload = bytes(msg.payload)
        with self._lock:
            handlers = [h for f, (h, _) in self._subs.items() if filter_matches(f, topic)]
            acked = [h for f, h in self._acked.items() if filter_matches(f, topic)]
        if not handlers and not acked:
            log.warning("uplink: message on unexpected topic %r dropped (no subscription)", topic[:200])
        ok = True
        for h in handlers:
            try:
                h(topic, payload)
            except Exception:
                ok = False
                log.exception("uplink: handler for %r failed; message left to redelivery", topic[:200])
        if not self._manual_ack:
            return
        mid, qos = msg.mid, msg.qos
        if acked:
            done = {"n": 0}

            def ack() -> None:
                with self._lock:
                    done["n"] += 1
                    last = done["n"] == len(acked)
                if last and qos > 0:
                    self._client.ack(mid, qos)

            for ah in acked:
                try:
                    ah(topic, payload, ack)
                except Exception:
                    log.exception("uplink: handler for %r failed; message left to redelivery", topic[:200])
        elif ok and qos > 0:
            self._client.ack(mid, qos)

    def _on_publish(self, client: mqtt.Client, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            self._puback[mid] = rc

    def _on_subscribe(self, client: mqtt.Client, userdata: Any, mid: int, rcs: list[Any], props: Any) -> None:
        with self._lock:
            waiter = self._suback.pop(mid, None)
        if waiter is not None:
            waiter[1].extend(rcs)
            waiter[0].set()
        elif any(getattr(r, "is_failure", False) for r in rcs):
            self._last_error = f"subscription refused: {', '.join(_reason_name(r) for r in rcs)}"
            log.error("uplink: %s", self._last_error)

    # -- Transport ------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def last_error(self) -> str:
        return self._last_error

    def add_connect_listener(self, listener: ConnectListener) -> None:
        self._listeners.append(listener)

    def start(self) -> None:
        if self._started:
            return
        props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        props.SessionExpiryInterval = self.config.session_expiry_s
        try:
            self._client.connect_async(
                self.config.host, self.config.port, keepalive=self.config.keepalive_s,
                clean_start=False, properties=props,
            )
        except (OSError, ValueError) as e:
            raise UplinkError(
                f"cannot start MQTT connect to {self.config.host}:{self.config.port}: {e}"
            ) from e
        if self._client.loop_start() != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise UplinkError("cannot start the MQTT network thread")
        self._started = True

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        try:
            if self._connected.is_set():
                self._client.disconnect()
        finally:
            self._client.loop_stop()
            self._connected.clear()

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        with self._lock:
            self._subs[topic_filter] = (handler, qos)
        if not self._connected.is_set():
            return  # subscribed in _on_connect
        ev = threading.Event()
        codes: list[Any] = []
        with self._lock:
            rc, mid = self._client.subscribe(topic_filter, qos=qos)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                self._suback[mid] = (ev, codes)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or mid is None:
            return  # not connected any more: _on_connect subscribes
        if not ev.wait(self.config.publish_timeout_s):
            with self._lock:
                self._suback.pop(mid, None)
            raise UplinkError(
                f"subscribe {topic_filter!r}: no SUBACK within {self.config.publish_timeout_s} s",
                reason="timeout",
            )
        failed = [r for r in codes if getattr(r, "is_failure", False)]
        if failed:
            with self._lock:
                self._subs.pop(topic_filter, None)
            raise UplinkError(
                f"subscribe {topic_filter!r} refused by the broker: {_reason_name(failed[0])}",
                reason=_reason_slug(failed[0]),
            )

    def subscribe_acked(self, topic_filter: str, handler: AckHandler, qos: int = 1) -> None:
        """Like :meth:`subscribe`, but the PUBACK is sent only when ``handler``'s ``ack`` is
        called (needs ``manual_ack=True``): a message whose processing never finished is
        redelivered by the broker (to this session, or after its expiry to another)."""
        if not self._manual_ack:
            raise UplinkError("subscribe_acked needs MqttClient(manual_ack=True)", reason="bad-config")
        with self._lock:
            self._acked[topic_filter] = handler
        self.subscribe(topic_filter, lambda t, p: None, qos)

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            raise UplinkError(f"publish to {topic!r} failed: {mqtt.error_string(info.rc)}")

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout_s: float | None = None) -> None:
        if not self._connected.is_set():
            raise UplinkError(f"publish to {topic!r}: not connected ({self._last_error or 'connecting'})",
                              reason="not-connected")
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        self._wait(info, topic, timeout_s if timeout_s is not None else self.config.publish_timeout_s)

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1,
                     timeout_s: float | None = None) -> list[bool]:
        if not self._connected.is_set():
            return [False] * len(messages)
        infos = [self._client.publish(t, p, qos=qos) for t, p in messages]
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.config.publish_timeout_s)
        out: list[bool] = []
        for (topic, _), info in zip(messages, infos, strict=True):
            try:
                self._wait(info, topic, max(0.0, deadline - time.monotonic()))
                out.append(True)
            except UplinkError as e:
                log.debug("uplink: %s", e)
                out.append(False)
        return out

    def _wait(self, info: mqtt.MQTTMessageInfo, topic: str, timeout_s: float) -> None:
        try:
            info.wait_for_publish(timeout_s)
        except (RuntimeError, ValueError) as e:
            raise UplinkError(f"publish to {topic!r} failed: {e}", reason="not-connected") from e
        if not info.is_published():
            raise UplinkError(f"publish to {topic!r}: no PUBACK within {timeout_s:.1f} s", reason="timeout")
        rc = self._puback.pop(info.mid, None)
        if rc is not None:
            raise UplinkError(
                f"publish to {topic!r} refused by the broker: {_reason_name(rc)}", reason=_reason_slug(rc)
            )
