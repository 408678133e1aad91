"""Forwarding logic through the in-memory transport fake (no network, fast).

The receipts here are HMAC-"signed" JSON so that the logic (verify before ack, drop on
rejection, ignore forgeries, re-send on loss) is tested apart from the wire format;
tests/mqtt/ runs the same flows with real envelopes, real receipts and a real broker.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kycedge.core.errors import EnvelopeError, OutboxFullError
from kycedge.mqtt.fake import FakeBroker, FakeTransport
from kycedge.protocol import topics
from kycedge.protocol.envelope import FINAL_REASONS, NOT_DELIVERED_REASONS
from kycedge.protocol.status import UpdateReport
from kycedge.unit.forwarder import Forwarder, ForwarderConfig, offline_will
from kycedge.unit.outbox import Outbox, OutboxConfig
from support.ids import M

KEY = b"carrier-test-key"


@dataclass(frozen=True)
class R:
    message_id: str
    status: str
    reason: str = "accepted"
    score: float | None = None
    threshold: float | None = None

    @property
    def final(self) -> bool:  # the one rule, from the protocol
        return self.reason in FINAL_REASONS


def sign(mid: str, status: str, reason: str = "", key: bytes = KEY) -> bytes:
    body = json.dumps({"mid": mid, "status": status, "reason": reason}).encode()
    return hmac.new(key, body, hashlib.sha256).digest() + body


def verify(raw: bytes) -> R:
    tag, body = raw[:32], raw[32:]
    if not hmac.compare_digest(tag, hmac.new(KEY, body, hashlib.sha256).digest()):
        raise EnvelopeError("receipt signature does not verify", reason="bad-signature")
    d = json.loads(body)
    return R(d["mid"], d["status"], d["reason"])


class FakeReceiver:
    """Idempotent by message id: a re-delivery gets the first receipt again."""

    def __init__(self, broker: FakeBroker, *, reject: set[str] | None = None) -> None:
        self.t = broker.client("receiver")
        self.first: dict[str, bytes] = {}
        self.deliveries: dict[str, int] = {}
        self.reject = reject or set()
        self.lock = threading.Lock()
        self.t.subscribe(topics.shared_templates_subscription("g"), self.on_template)
        self.t.start()

    def on_template(self, topic: str, payload: bytes) -> None:
        dt = topics.parse_device_topic(topic)
        mid = payload.decode()
        with self.lock:
            self.deliveries[mid] = self.deliveries.get(mid, 0) + 1
            if mid not in self.first:
                status = ("rejected", "replayed") if mid in self.reject else ("accepted", "accepted")
                self.first[mid] = sign(mid, *status)
            receipt = self.first[mid]
        self.t.publish_nowait(str(dt.sibling("receipts")), receipt)


def wait_for(cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError("condition not met in time")


OB_CFG = OutboxConfig(retry_initial_s=0.1, retry_max_s=0.4, retry_jitter=0.2, inflight_window=8)
FW_CFG = ForwarderConfig(idle_poll_s=0.05, batch_max=4, error_pause_s=0.05)


@pytest.fixture
def broker() -> Iterator[FakeBroker]:
    b = FakeBroker()
    yield b
    b.close()


def make(tmp_path: Path, broker: FakeBroker, **kw):  # type: ignore[no-untyped-def]
    ob = Outbox(tmp_path / "outbox.sqlite", kw.pop("ob_cfg", OB_CFG))
    tr = broker.client("dev-u1", will=offline_will("acme", "u1"))
    fw = Forwarder(ob, tr, tenant="acme", device="u1", verify_receipt=verify, config=FW_CFG,
                   status=lambda: {"model": {"id": "sface-int8", "version": "1"}}, **kw)
    return ob, tr, fw


def test_delivers_each_once_and_publishes_status(tmp_path: Path, broker: FakeBroker) -> None:
    rx = FakeReceiver(broker)
    got: list[R] = []
    ob, _, fw = make(tmp_path, broker, on_receipt=got.append)
    for i in range(20):
        fw.submit(M(f"m{i:02d}"), M(f"m{i:02d}").encode())
    fw.start()
    try:
        wait_for(lambda: ob.stats().count == 0)
    finally:
        fw.stop()
    assert sorted(rx.first) == [M(f"m{i:02d}") for i in range(20)]
    assert sorted(r.message_id for r in got) == sorted(rx.first)
    status = json.loads(broker.retained[topics.status("acme", "u1")])
    assert status["state"] == "offline"  # clean stop, with what the unit ran
    assert status["model"] == {"id": "sface-int8", "version": "1"}
    assert "queue" not in status
    online = next(json.loads(p) for t, p in broker.published if t.endswith("/status"))
    assert online["state"] == "online"
    assert online["model"] == {"id": "sface-int8", "version": "1"}
    assert online["queue"]["count"] == 20


def test_lost_receipts_are_resent_and_answered_with_the_first(tmp_path: Path, broker: FakeBroker) -> None:
    rx = FakeReceiver(broker)
    broker.drop_next("kyc/v1/+/+/receipts", 5)
    ob, _, fw = make(tmp_path, broker)
    for i in range(5):
        fw.submit(M(f"m{i}"), M(f"m{i}").encode())
    fw.start()
    try:
        wait_for(lambda: ob.stats().count == 0)
    finally:
        fw.stop()
    assert all(n >= 2 for n in rx.deliveries.values())  # re-sent after the receipt wait
    assert len(rx.first) == 5  # one effect each
    assert fw.counters["accepted"] == 5


def test_duplicate_deliveries_ack_once(tmp_path: Path, broker: FakeBroker) -> None:
    rx = FakeReceiver(broker)
    broker.duplicate_next("kyc/v1/+/+/templates", 3)
    ob, _, fw = make(tmp_path, broker)
    for i in range(3):
        fw.submit(M(f"m{i}"), M(f"m{i}").encode())
    fw.start()
    try:
        wait_for(lambda: ob.stats().count == 0 and fw.counters["receipts"] >= 6)
    finally:
        fw.stop()
    assert rx.deliveries == {M("m0"): 2, M("m1"): 2, M("m2"): 2}
    assert fw.counters["accepted"] == 3
    assert fw.counters["receipt_unknown"] == 3
    assert ob.stats().accepted_total == 3


def test_forged_receipt_is_ignored(
    tmp_path: Path, broker: FakeBroker, caplog: pytest.LogCaptureFixture
) -> None:
    ob, _tr, fw = make(tmp_path, broker)
    fw.submit(M("m0"), M("m0").encode())
    attacker = broker.client("attacker")
    attacker.start()
    fw.start()
    try:
        with caplog.at_level(logging.WARNING, "kycedge.unit.forwarder"):
            attacker.publish(topics.receipts("acme", "u1"), sign(M("m0"), "accepted", key=b"wrong"))
            attacker.publish(topics.receipts("acme", "u1"), b"\x00garbage")
            wait_for(lambda: fw.counters["receipt_invalid"] == 2)
        assert ob.contains(M("m0"))
        assert "bad-signature" in caplog.text
        # the real receipt still works afterwards
        FakeReceiver(broker)
        wait_for(lambda: ob.stats().count == 0)
    finally:
        fw.stop()


def test_rejection_is_logged_then_dropped(tmp_path: Path, broker: FakeBroker,
                                          caplog: pytest.LogCaptureFixture) -> None:
    FakeReceiver(broker, reject={M("m1")})
    ob, _, fw = make(tmp_path, broker)
    fw.submit(M("m0"), M("m0").encode())
    fw.submit(M("m1"), M("m1").encode())
    with caplog.at_level(logging.WARNING, "kycedge.unit.forwarder"):
        fw.start()
        try:
            wait_for(lambda: ob.stats().count == 0)
        finally:
            fw.stop()
    assert f"carrier rejected {M('m1')}: replayed" in caplog.text
    assert ob.receipt(M("m1")) is not None
    assert ob.receipt(M("m1")).status == "rejected"  # type: ignore[union-attr]
    assert fw.counters["rejected"] == 1


def test_retry_status_keeps_the_envelope(tmp_path: Path, broker: FakeBroker) -> None:
    ob, _, fw = make(tmp_path, broker)
    fw.submit(M("m0"), M("m0").encode())
    other = broker.client("rx")
    other.start()
    fw.start()
    try:
        other.publish(topics.receipts("acme", "u1"), sign(M("m0"), "retry", "storage-busy"))
        wait_for(lambda: fw.counters["receipts"] == 1)
        time.sleep(0.05)
        assert ob.contains(M("m0"))
    finally:
        fw.stop()


def test_broker_outage_keeps_queue_and_will_fires(tmp_path: Path, broker: FakeBroker) -> None:
    rx = FakeReceiver(broker)
    ob, _, fw = make(tmp_path, broker)
    fw.start()
    try:
        broker.online = False
        assert json.loads(broker.retained[topics.status("acme", "u1")]) == {"state": "offline"}
        for i in range(10):
            fw.submit(M(f"m{i}"), M(f"m{i}").encode())
        time.sleep(0.2)
        assert ob.stats().count == 10
        broker.online = True
        wait_for(lambda: ob.stats().count == 0)
        assert json.loads(broker.retained[topics.status("acme", "u1")])["state"] == "online"
    finally:
        fw.stop()
    assert len(rx.first) == 10


def test_window_bounds_unreceipted_sends(tmp_path: Path, broker: FakeBroker) -> None:
    sink = broker.client("sink")
    seen: list[str] = []
    sink.subscribe("$share/g/kyc/v1/+/+/templates", lambda t, p: seen.append(p.decode()))
    sink.start()
    cfg = OutboxConfig(retry_initial_s=60.0, retry_max_s=60.0, inflight_window=5)
    _ob, _, fw = make(tmp_path, broker, ob_cfg=cfg)
    for i in range(12):
        fw.submit(M(f"m{i:02d}"), M(f"m{i:02d}").encode())
    fw.start()
    try:
        wait_for(lambda: len(seen) == 5)
        time.sleep(0.2)
        assert seen == [M(f"m{i:02d}") for i in range(5)]  # oldest first, no more than the window
    finally:
        fw.stop()


def test_clock_jump_back_still_resends(tmp_path: Path, broker: FakeBroker) -> None:
    clock = {"t": 1_800_000_000.0}
    rx = FakeReceiver(broker)
    broker.drop_next("kyc/v1/+/+/receipts", 1)
    ob, _, fw = make(tmp_path, broker, clock=lambda: clock["t"])
    fw.submit(M("m0"), M("m0").encode())
    fw.start()
    try:
        wait_for(lambda: rx.deliveries.get(M("m0")) == 1)
        clock["t"] -= 86_400.0  # the unit's clock jumps back a day
        fw.wake()
        wait_for(lambda: ob.stats(clock["t"]).count == 0)
    finally:
        fw.stop()
    assert rx.deliveries[M("m0")] == 2
    assert len(rx.first) == 1


def test_full_outbox_refuses_with_operator_message(tmp_path: Path, broker: FakeBroker) -> None:
    _ob, _, fw = make(tmp_path, broker, ob_cfg=OutboxConfig(max_count=2))
    fw.submit(M("a"), M("a").encode())
    fw.submit(M("b"), M("b").encode())
    with pytest.raises(OutboxFullError, match="New captures are refused"):
        fw.submit(M("c"), M("c").encode())


def test_transport_is_a_transport(broker: FakeBroker) -> None:
    from kycedge.mqtt.seam import Transport

    assert isinstance(FakeTransport(broker, "x", None), Transport)


def test_publish_status_from_another_thread_is_deferred_and_sticky(
    tmp_path: Path, broker: FakeBroker
) -> None:
    _, _, fw = make(tmp_path, broker)
    fw.start()
    try:
        wait_for(lambda: topics.status("acme", "u1") in broker.retained)
        report = UpdateReport("trial", "updated", 2, "sface-int8", "2").to_dict()
        assert fw.publish_status({"update": report}) is True
        wait_for(lambda: "update" in json.loads(broker.retained[topics.status("acme", "u1")]))
        # a later periodic status still carries it
        fw.publish_status()
        wait_for(lambda: sum(1 for t, _ in broker.published if t.endswith("/status")) >= 3)
        last = json.loads(broker.retained[topics.status("acme", "u1")])
        assert last["update"] == report
        assert last["model"] == {"id": "sface-int8", "version": "1"}
    finally:
        fw.stop()


def test_offline_status_keeps_the_bundle(tmp_path: Path, broker: FakeBroker) -> None:
    """A stopped unit (clean stop or will) still shows its bundle in `kycedge-fleet status`."""
    from kycedge.fleet.announce import summarize

    update = {"state": "idle", "outcome": "updated", "bundle_version": 7, "model_id": "sface",
              "model_version": "2021dec-int8", "reason": "", "message": "now serving b000007"}
    ob = Outbox(tmp_path / "outbox.sqlite", OB_CFG)
    will = offline_will("acme", "u1", {"model": {"id": "sface", "version": "2021dec-int8"},
                                       "update": update})
    tr = broker.client("dev-u1", will=will)
    fw = Forwarder(ob, tr, tenant="acme", device="u1", verify_receipt=verify, config=FW_CFG,
                   status=lambda: {"model": {"id": "sface", "version": "2021dec-int8"}})
    fw.start()
    fw.publish_status({"update": update})
    wait_for(lambda: json.loads(broker.retained.get(topics.status("acme", "u1"), b"{}")).get("update"))
    fw.stop()
    stopped = summarize("u1", broker.retained[topics.status("acme", "u1")])
    assert (stopped.online, stopped.bundle_version, stopped.model) == (False, 7, "sface@2021dec-int8")
    # an unclean end: the broker publishes the will, which names the bundle too
    tr2 = broker.client("dev-u1", will=will)
    tr2.start()
    broker.online = False
    vanished = summarize("u1", broker.retained[topics.status("acme", "u1")])
    assert (vanished.online, vanished.bundle_version) == (False, 7)


class ScriptedReceiver(FakeReceiver):
    """Answers the first ``n`` deliveries of each message id with ``reason`` (a verified,
    pre-authentication rejection), then accepts."""

    def __init__(self, broker: FakeBroker, reason: str, n: int) -> None:
        self.reason, self.n = reason, n
        super().__init__(broker)

    def on_template(self, topic: str, payload: bytes) -> None:
        dt = topics.parse_device_topic(topic)
        mid = payload.decode()
        with self.lock:
            k = self.deliveries[mid] = self.deliveries.get(mid, 0) + 1
            receipt = sign(mid, "rejected", self.reason) if k <= self.n else sign(mid, "accepted", "accepted")
        self.t.publish_nowait(str(dt.sibling("receipts")), receipt)


@pytest.mark.parametrize("reason", sorted(NOT_DELIVERED_REASONS))
def test_pre_authentication_rejection_keeps_the_envelope_and_resends(
        tmp_path: Path, broker: FakeBroker, reason: str) -> None:
    """Issue 10 item 1: a verified ``undecryptable`` (or any pre-authentication reason) is not
    the carrier's decision on the genuine envelope: it stays, is re-sent, and is delivered."""
    rx = ScriptedReceiver(broker, reason, n=2)
    got: list[R] = []
    ob, _, fw = make(tmp_path, broker, on_receipt=got.append)
    fw.submit(M("m1"), M("m1").encode())
    fw.start()
    try:
        wait_for(lambda: ob.stats().held == {reason: 1})
        st = fw.stats()
        assert st["delivery"] == {"unknown-device": "not-enrolled", "revoked-device": "revoked"}.get(
            reason, "not-delivered")
        assert ob.contains(M("m1"))
        wait_for(lambda: ob.stats().count == 0)
    finally:
        fw.stop()
    assert rx.deliveries[M("m1")] == 3
    assert ob.receipt(M("m1")).reason == "accepted"  # type: ignore[union-attr]
    assert [r.reason for r in got] == [reason, reason, "accepted"]
    assert fw.counters["not_delivered"] == 2
    assert fw.stats()["delivery"] == "ok"


def test_forged_rejection_injected_does_not_drop_the_genuine_envelope(
        tmp_path: Path, broker: FakeBroker) -> None:
    """A receipt for a forged envelope under a queued message id arrives first: the genuine
    envelope stays until its own (final) receipt."""
    rx = FakeReceiver(broker)
    ob, _, fw = make(tmp_path, broker)
    fw.submit(M("m1"), M("m1").encode())
    rx.t.publish_nowait(str(topics.receipts("acme", "u1")), sign(M("m1"), "rejected", "undecryptable"))
    fw.start()
    try:
        wait_for(lambda: ob.stats().count == 0)
    finally:
        fw.stop()
    assert ob.receipt(M("m1")).status == "accepted"  # type: ignore[union-attr]


def test_not_enrolled_is_shown_in_the_status_and_delivered_once_enrolled(
        tmp_path: Path, broker: FakeBroker) -> None:
    """Issue 10 item 2: ``unknown-device`` keeps the registrations and says ``not-enrolled``
    on the MQTT status; once the carrier knows the unit they are delivered."""
    statuses: list[dict[str, object]] = []
    obs = broker.client("observer")
    obs.subscribe(str(topics.status("acme", "u1")), lambda t, p: statuses.append(json.loads(p)))
    obs.start()
    rx = ScriptedReceiver(broker, "unknown-device", n=10**9)
    ob, _, fw = make(tmp_path, broker)
    for i in range(3):
        fw.submit(M(f"m{i}"), M(f"m{i}").encode())
    fw.start()
    try:
        wait_for(lambda: any(s.get("delivery") == "not-enrolled" for s in statuses))
        assert ob.stats().count == 3
        rx.n = 0  # enrolled
        wait_for(lambda: ob.stats().count == 0, 15)
        wait_for(lambda: statuses[-1].get("delivery") == "ok")
    finally:
        fw.stop()
        obs.stop()
    held = next(s for s in statuses if s.get("delivery") == "not-enrolled")
    assert held["queue"]["held"] == {"unknown-device": 3}  # type: ignore[index]
