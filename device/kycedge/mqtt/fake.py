"""An in-memory broker implementing the :class:`~kycedge.mqtt.seam.Transport` seam.

For logic tests of the forwarder and the receiver loop without a network: QoS 1
delivery, shared subscriptions (round robin inside a group), retained messages, wills,
and fault injection:

- ``broker.online = False``: every client is disconnected (wills fire), publishes fail;
- ``broker.drop_next(topic_filter, n)``: the next ``n`` matching messages vanish after
  the PUBACK (lost on the way to the subscriber);
- ``broker.duplicate_next(topic_filter, n)``: the next ``n`` matching messages are
  delivered twice.

Delivery is synchronous on the publisher's thread unless ``deliver_async=True``, in which
case one worker thread per broker delivers (closer to a real network thread).
"""

from __future__ import annotations

import itertools
import queue
import threading
from collections.abc import Sequence

from kycedge.core.errors import UplinkError
from kycedge.mqtt.seam import ConnectListener, Handler, Will

__all__ = ["FakeBroker", "FakeTransport"]


def _matches(topic_filter: str, topic: str) -> bool:
    if topic_filter.startswith("$share/"):
        parts = topic_filter.split("/", 2)
        topic_filter = parts[2] if len(parts) == 3 else ""
    f, t = topic_filter.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)


class FakeBroker:
    def __init__(self, *, deliver_async: bool = False) -> None:
        self._lock = threading.RLock()
        self._clients: list[FakeTransport] = []
        self.retained: dict[str, bytes] = {}
        self.published: list[tuple[str, bytes]] = []
        self._online = True
        self._drops: list[list[object]] = []
        self._dups: list[list[object]] = []
        self._rr = itertools.count()
        self._q: queue.Queue[tuple[FakeTransport, Handler, str, bytes] | None] | None = None
        if deliver_async:
            self._q = queue.Queue()
            threading.Thread(target=self._worker, daemon=True, name="fake-broker").start()

    def _worker(self) -> None:
        assert self._q is not None
        while True:
            item = self._q.get()
            if item is None:
                return
            client, handler, topic, payload = item
            if client.connected:
                handler(topic, payload)

    def close(self) -> None:
        if self._q is not None:
            self._q.put(None)

    def client(self, client_id: str, will: Will | None = None) -> FakeTransport:
        return FakeTransport(self, client_id, will)

    @property
    def online(self) -> bool:
        return self._online

    @online.setter
    def online(self, value: bool) -> None:
        self._online = value
        for c in list(self._clients):
            if value and c._started:
                c._connect()
            elif not value:
                c._drop(fire_will=True)

    def drop_next(self, topic_filter: str, n: int = 1) -> None:
        with self._lock:
            self._drops.append([topic_filter, n])

    def duplicate_next(self, topic_filter: str, n: int = 1) -> None:
        with self._lock:
            self._dups.append([topic_filter, n])

    def _take(self, rules: list[list[object]], topic: str) -> bool:
        for rule in rules:
            if int(rule[1]) > 0 and _matches(str(rule[0]), topic):  # type: ignore[call-overload]
                rule[1] = int(rule[1]) - 1  # type: ignore[call-overload]
                return True
        return False

    def _route(self, topic: str, payload: bytes, retain: bool) -> None:
        with self._lock:
            if not self._online:
                raise UplinkError("fake broker is offline", reason="not-connected")
            self.published.append((topic, payload))
            if retain:
                self.retained[topic] = payload
            if self._take(self._drops, topic):
                return
            copies = 2 if self._take(self._dups, topic) else 1
            targets: list[tuple[FakeTransport, Handler]] = []
            groups: dict[str, list[tuple[FakeTransport, Handler]]] = {}
            for c in self._clients:
                if not c.connected:
                    continue
                for f, h in list(c._subs.items()):
                    if not _matches(f, topic):
                        continue
                    if f.startswith("$share/"):
                        groups.setdefault(f.split("/")[1], []).append((c, h))
                    else:
                        targets.append((c, h))
            for members in groups.values():
                targets.append(members[next(self._rr) % len(members)])
        for _ in range(copies):
            for c, h in targets:
                if self._q is not None:
                    self._q.put((c, h, topic, payload))
                else:
                    h(topic, payload)


class FakeTransport:
    def __init__(self, broker: FakeBroker, client_id: str, will: Will | None) -> None:
        self.broker = broker
        self.client_id = client_id
        self.will = will
        self._subs: dict[str, Handler] = {}
        self._listeners: list[ConnectListener] = []
        self._connected = threading.Event()
        self._started = False
        self._session = False
        self.connects = 0

    def _connect(self) -> None:
        with self.broker._lock:
            if self not in self.broker._clients:
                self.broker._clients.append(self)
        if not self.broker.online:
            return
        self._connected.set()
        self.connects += 1
        present, self._session = self._session, True
        for cb in list(self._listeners):
            cb(True, present)

    def _drop(self, *, fire_will: bool) -> None:
        if not self._connected.is_set():
            return
        self._connected.clear()
        if fire_will and self.will is not None:
            self.broker.retained[self.will.topic] = self.will.payload
            self.broker.published.append((self.will.topic, self.will.payload))
        for cb in list(self._listeners):
            cb(False, False)

    def start(self) -> None:
        self._started = True
        self._connect()

    def stop(self) -> None:
        self._started = False
        self._drop(fire_will=False)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def last_error(self) -> str:
        return "" if self.broker.online else "fake broker offline"

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def add_connect_listener(self, listener: ConnectListener) -> None:
        self._listeners.append(listener)

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        self._subs[topic_filter] = handler

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False,
                timeout_s: float | None = None) -> None:
        if not self.connected:
            raise UplinkError(f"publish to {topic!r}: not connected", reason="not-connected")
        self.broker._route(topic, bytes(payload), retain)

    def publish_many(self, messages: Sequence[tuple[str, bytes]], *, qos: int = 1,
                     timeout_s: float | None = None) -> list[bool]:
        out = []
        for t, p in messages:
            try:
                self.publish(t, p, qos=qos)
                out.append(True)
            except UplinkError:
                out.append(False)
        return out

    def publish_nowait(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if self.connected:
            self.broker._route(topic, bytes(payload), retain)
