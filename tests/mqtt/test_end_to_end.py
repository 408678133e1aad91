"""Unit → Mosquitto (shipped config, mTLS, ACL) → receiver → signed receipt → outbox, for real.

Real envelopes (kycedge.protocol.envelope), the real receiver (kycedge.carrier) behind the
shared subscription (kycedge.carrier.serve), the real forwarder and paho session. After
every fault: each accepted template is stored exactly once at the carrier and the unit's
outbox is empty.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kycedge.carrier.serve import ReceiverService, ServeConfig
from kycedge.lab.broker import Broker, Pki
from kycedge.mqtt.client import MqttClient
from kycedge.protocol import topics
from kycedge.protocol.ids import device_common_name
from kycedge.unit.forwarder import Forwarder, ForwarderConfig, offline_will
from kycedge.unit.outbox import Outbox, OutboxConfig
from support.kyc import Carrier, Unit
from support.roles import spawn, write_world

pytestmark = pytest.mark.broker

TENANT = "acme"
OB_CFG = OutboxConfig(retry_initial_s=0.5, retry_max_s=1.0, retry_jitter=0.2, inflight_window=32)
FW_CFG = ForwarderConfig(idle_poll_s=0.05, error_pause_s=0.1, batch_max=16)


def wait_for(cond: Callable[[], bool], timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.02)
    raise AssertionError(f"{what} not met within {timeout} s")


@dataclass
class World:
    broker: Broker
    pki: Pki
    carrier: Carrier
    tmp: Path
    t0_ms: int

    def unit(self, device: str = "u1", *, enrolled: bool = True) -> Unit:
        return self.carrier.enroll(self.tmp / "units" / device, TENANT, device, t0_ms=self.t0_ms,
                                   register=enrolled)

    def receiver(self, instance: str = "1") -> ReceiverService:
        t = MqttClient(self.broker.uplink_config(self.pki.service(), session_expiry_s=60),
                       client_id=f"carrier-receiver-{instance}", manual_ack=True)
        svc = ReceiverService(self.carrier.receiver(), t, ServeConfig(group="g"))
        svc.start()
        assert t.wait_connected(5), t.last_error
        return svc

    def forwarder(self, unit: Unit, ob: Outbox, **kw: object) -> Forwarder:
        t = MqttClient(self.broker.uplink_config(self.pki.device(TENANT, unit.device)),
                       client_id=device_common_name(TENANT, unit.device),
                       will=offline_will(TENANT, unit.device))
        return Forwarder(ob, t, tenant=TENANT, device=unit.device, verify_receipt=unit.verify,
                         config=FW_CFG, **kw)  # type: ignore[arg-type]

    def stored(self) -> dict[str, int]:
        """message id -> number of stored templates at the carrier."""
        c = sqlite3.connect(self.carrier.config.database_target)
        try:
            rows = c.execute("SELECT message_id, COUNT(*) FROM templates GROUP BY message_id").fetchall()
            refs = c.execute(
                "SELECT reference, COUNT(*) FROM templates GROUP BY reference HAVING COUNT(*) > 1"
            )
            assert refs.fetchall() == [], "a registration was stored twice"
        finally:
            c.close()
        return dict(rows)


@pytest.fixture
def world(broker: Broker, pki: Pki, tmp_path: Path) -> World:
    return World(broker, pki, Carrier.create(tmp_path / "carrier"), tmp_path, int(time.time() * 1000))


@pytest.fixture
def observer(world: World) -> Iterator[list[tuple[str, bytes]]]:
    """Everything published on the unit's status topic (as the receiver group sees it)."""
    seen: list[tuple[str, bytes]] = []
    c = MqttClient(world.broker.uplink_config(world.pki.service()), client_id="carrier-receiver-observer")
    c.subscribe("kyc/v1/+/+/status", lambda t, p: seen.append((t, p)))
    c.start()
    assert c.wait_connected(5)
    yield seen
    c.stop()


def put_all(ob: Outbox, unit: Unit, n: int, start: int = 0) -> list[str]:
    ids = []
    for i in range(start, start + n):
        mid = str(unit.message_id(i))
        ob.put(mid, unit.seal(i).data)
        ids.append(mid)
    return ids


def test_happy_path_status_and_exactly_once(world: World, observer: list[tuple[str, bytes]]) -> None:
    rx = world.receiver()
    unit = world.unit()
    ob = Outbox(world.tmp / "u1.sqlite", OB_CFG)
    receipts = []
    fw = world.forwarder(unit, ob, on_receipt=receipts.append,
                         status=lambda: {"model": {"id": "sface", "version": "2021dec-int8"}})
    ids = put_all(ob, unit, 25)
    fw.start()
    try:
        wait_for(lambda: ob.stats().count == 0, what="outbox drained")
        wait_for(lambda: any(json.loads(p).get("state") == "online" for _, p in observer), 5, "online status")
    finally:
        fw.stop()
        rx.stop()
    assert world.stored() == dict.fromkeys(ids, 1)
    assert sorted(str(r.message_id) for r in receipts) == sorted(ids)
    assert {r.reason for r in receipts} == {"no-reference"}
    online = next(json.loads(p) for _, p in observer if json.loads(p).get("state") == "online")
    assert online["model"] == {"id": "sface", "version": "2021dec-int8"}
    assert online["queue"]["count"] == 25
    last = json.loads(observer[-1][1])                             # clean stop: offline, and
    assert last["state"] == "offline"                              # what the unit ran (issue 10)
    assert last["model"] == {"id": "sface", "version": "2021dec-int8"}


def test_will_announces_offline_on_unclean_loss(world: World, observer: list[tuple[str, bytes]]) -> None:
    unit = world.unit()
    ob = Outbox(world.tmp / "u1.sqlite", OB_CFG)
    fw = world.forwarder(unit, ob)
    fw.start()
    try:
        wait_for(lambda: any(json.loads(p).get("state") == "online" for _, p in observer), 5, "online")
        n = len(observer)
        sock = fw.transport._client.socket()  # type: ignore[attr-defined]
        sock.close()  # the link dies without DISCONNECT: the broker publishes the will
        wait_for(lambda: any(json.loads(p) == {"state": "offline"} for _, p in observer[n:]), 15, "will")
        # and the unit comes back by itself, announcing itself online again
        wait_for(lambda: json.loads(observer[-1][1]).get("state") == "online", 15, "back online")
    finally:
        fw.stop()


def test_altered_and_replayed_envelopes_get_signed_rejections(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    rx = world.receiver()
    unit = world.unit()
    ob = Outbox(world.tmp / "u1.sqlite", OB_CFG)
    good = put_all(ob, unit, 3)
    altered = bytearray(unit.seal(3).data)
    altered[-3] ^= 0x40
    ob.put(str(unit.message_id(3)), bytes(altered))
    # a replay: a new message id re-using sequence 2 (already claimed by registration 1)
    replay_id = unit.message_id(1000)
    ob.put(str(replay_id), unit.seal(1, message_id=replay_id).data)
    got = []
    fw = world.forwarder(unit, ob, on_receipt=got.append)
    with caplog.at_level(logging.WARNING, "kycedge.unit.forwarder"):
        fw.start()
        try:  # the altered one is refused before authentication: it stays (not delivered as is)
            wait_for(lambda: ob.stats().count == 1 and ob.stats().held == {"undecryptable": 1},
                     what="outbox drained but for the undecryptable one")
        finally:
            fw.stop()
            rx.stop()
    reasons = {str(r.message_id): (r.status, r.reason) for r in got}
    assert reasons[str(unit.message_id(3))] == ("rejected", "undecryptable")
    assert reasons[str(replay_id)] == ("rejected", "replayed")
    assert f"carrier refused {unit.message_id(3)} before authenticating it (undecryptable)" in caplog.text
    assert ob.message_ids() == [str(unit.message_id(3))]
    assert f"carrier rejected {replay_id}: replayed" in caplog.text
    assert world.stored() == dict.fromkeys(good, 1)
    rec = ob.receipt(str(replay_id))
    assert rec is not None
    assert rec.status == "rejected"
    assert unit.verify(rec.receipt).reason == "replayed"  # the signed receipt is kept


@pytest.mark.parametrize("persistence", [True, False])
def test_broker_restart_mid_stream(world: World, persistence: bool) -> None:
    world.broker.kill()
    world.broker.persistence = persistence
    world.broker._write_conf()
    world.broker.start()
    rx = world.receiver()
    unit = world.unit()
    ob = Outbox(world.tmp / "u1.sqlite", OB_CFG)
    ids = put_all(ob, unit, 40)
    fw = world.forwarder(unit, ob)
    fw.start()
    try:
        wait_for(lambda: ob.stats().count < 35, what="some delivered")
        world.broker.stop()  # SIGTERM: persistence saved if enabled
        if not persistence:
            world.broker.wipe_persistence()
        ids += put_all(ob, unit, 10, start=40)  # captures go on while the broker is away
        time.sleep(1.0)
        assert not fw.transport.connected
        world.broker.start()
        wait_for(lambda: ob.stats().count == 0, 30, "outbox drained after the broker came back")
    finally:
        fw.stop()
        rx.stop()
    assert world.stored() == dict.fromkeys(ids, 1)


def test_duplicate_deliveries_and_lost_receipts_with_clock_jump(world: World) -> None:
    """The unit sends while nobody listens for its receipts (they are lost), then its
    clock jumps back a day; it re-sends, duplicates reach the receiver, which answers
    each with the first receipt; one effect each."""
    rx = world.receiver()
    unit = world.unit()
    ob = Outbox(world.tmp / "u1.sqlite", OB_CFG)
    ids = put_all(ob, unit, 6)
    # First attempt by a session that does not subscribe to receipts: they are lost.
    raw = MqttClient(world.broker.uplink_config(world.pki.device(TENANT, unit.device)),
                     client_id=device_common_name(TENANT, unit.device))
    raw.start()
    assert raw.wait_connected(5)
    for d in ob.due():
        raw.publish(topics.templates(TENANT, unit.device), d.envelope)
        raw.publish(topics.templates(TENANT, unit.device), d.envelope)  # a duplicate delivery
    ob.record_attempts(ids)
    raw.stop()
    wait_for(lambda: rx.counters["receipts"] == 12, what="first deliveries answered")
    assert len(world.stored()) == 6
    offset = -86_400.0
    fw = world.forwarder(unit, ob, clock=lambda: time.time() + offset)
    fw.start()
    try:
        wait_for(lambda: ob.stats(time.time() + offset).count == 0, what="outbox drained")
    finally:
        fw.stop()
        rx.stop()
    assert rx.receiver.counters["duplicate"] >= 6 + 6
    assert world.stored() == dict.fromkeys(ids, 1)


def test_receiver_killed_mid_batch_and_unit_killed_mid_publish(world: World) -> None:
    world_file = world.tmp / "world.json"
    write_world(world_file, broker=world.broker, pki=world.pki, carrier_dir=world.carrier.dir,
                tenant=TENANT, t0_ms=world.t0_ms, run="",
                outbox={"retry_initial_s": 1.0, "retry_max_s": 2.0, "inflight_window": 64},
                forwarder={"idle_poll_s": 0.05, "batch_max": 32})
    log = world.tmp / "roles.log"
    rx = spawn("receiver", world_file, "--instance", "1", log=log)
    assert rx.stdout is not None
    assert rx.stdout.readline().strip() == "READY"
    unit = spawn("unit", world_file, "--device", "u1", "--count", "300", log=log)
    assert unit.stdout is not None
    accepted = set()
    # kill the receiver after some envelopes are in, then the unit mid-stream
    while len(accepted) < 60:
        line = unit.stdout.readline()
        assert line, "unit exited early"
        if line.startswith("P "):
            accepted.add(int(line.split()[1]))
    rx.kill()
    rx.wait()
    while len(accepted) < 150:
        line = unit.stdout.readline()
        if line.startswith("P "):
            accepted.add(int(line.split()[1]))
    unit.kill()
    rest = unit.communicate()[0]
    accepted |= {int(x.split()[1]) for x in rest.splitlines() if x.startswith("P ")}
    rx = spawn("receiver", world_file, "--instance", "1", log=log)
    unit = spawn("unit", world_file, "--device", "u1", "--count", "300", "--exit-when-drained", log=log)
    try:
        out, _ = unit.communicate(timeout=60)
    finally:
        rx.terminate()
        rx.wait(10)
    assert "DRAINED" in out, Path(log).read_text()[-3000:]
    accepted |= {int(x.split()[1]) for x in out.splitlines() if x.startswith("P ")}
    u = world.unit()
    stored = world.stored()
    assert set(stored.values()) == {1}
    assert {str(u.message_id(i)) for i in accepted} <= set(stored)
    assert len(stored) == 300


def forged(genuine: bytes) -> bytes:
    """The genuine envelope's clear header with random ciphertext (what a publisher can forge)."""
    from kycedge.protocol.envelope import peek_header
    from kycedge.protocol.envelope.header import encode_header

    hb = encode_header(peek_header(genuine))
    return hb + os.urandom(len(genuine) - len(hb))


def test_forged_envelopes_do_not_make_the_unit_drop_genuine_ones(world: World) -> None:
    """Issue 10 item 1, for real: someone who can publish on the unit's templates topic (a
    compromised broker; the guard plugin binds a unit's credentials to its one session)
    republishes its clear headers with random ciphertext; the carrier's receiver signs
    ``undecryptable`` for those message ids and sends it through Mosquitto; the unit keeps
    the genuine envelopes (condition shown) and delivers them."""
    rx = world.receiver()
    unit = world.unit()
    ob = Outbox(world.tmp / "u1.sqlite", OutboxConfig(retry_initial_s=0.5, retry_max_s=5.0, retry_jitter=0.2))
    later = time.time() + 2.0  # the genuine ones are first due in 2 s: the forgeries arrive first
    ids = []
    for i in range(5):
        mid = str(unit.message_id(i))
        ob.put(mid, unit.seal(i).data, now=later)
        ids.append(mid)
    fw = world.forwarder(unit, ob)
    fw.start()
    injector = MqttClient(world.broker.uplink_config(world.pki.service()),
                          client_id="carrier-receiver-forged")
    injector.start()
    forged_rx = world.carrier.receiver()
    try:
        assert injector.wait_connected(5), injector.last_error
        assert fw.transport.wait_connected(5)
        time.sleep(0.3)  # the forwarder's receipt subscription is in place
        for i in range(5):  # what the receiver answers when the forged envelope reaches it
            out = forged_rx.handle(forged(unit.seal(i).data))
            assert (out.reason, out.recorded) == ("undecryptable", False)
            injector.publish(topics.receipts(TENANT, unit.device), out.receipt)
        wait_for(lambda: ob.stats().held == {"undecryptable": 5}, 10, "forged rejections held")
        assert fw.stats()["delivery"] == "not-delivered"
        assert time.time() < later, "too slow to show the order"
        wait_for(lambda: ob.stats().count == 0, 20, "genuine envelopes delivered")
    finally:
        forged_rx.close()
        injector.stop()
        fw.stop()
        rx.stop()
    assert world.stored() == dict.fromkeys(ids, 1)
    assert {ob.receipt(m).reason for m in ids} == {"no-reference"}  # type: ignore[union-attr]
    assert fw.counters["not_delivered"] == 5


def test_unit_enrolled_late_keeps_its_registrations_and_says_not_enrolled(
        world: World, observer: list[tuple[str, bytes]], capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 10 item 2, for real: ``unknown-device`` keeps the envelopes, the unit's MQTT
    status says ``not-enrolled``; once the carrier enrols it they are delivered."""
    rx = world.receiver()
    unit = world.unit(enrolled=False)
    ob = Outbox(world.tmp / "u1.sqlite", OB_CFG)
    ids = put_all(ob, unit, 4)
    fw = world.forwarder(unit, ob)
    fw.start()
    try:
        wait_for(lambda: ob.stats().held == {"unknown-device": 4}, 10, "held as not enrolled")
        wait_for(lambda: any(json.loads(p).get("delivery") == "not-enrolled" for _, p in observer), 10,
                 "not-enrolled on the status topic")
        assert fw.stats()["delivery"] == "not-enrolled"
        assert "not-enrolled" in fleet_status(world, capsys)[unit.device]
        time.sleep(2.5)  # several re-sends (backoff 0.5..1 s), all refused, nothing lost
        assert ob.stats().count == 4
        world.unit(enrolled=True)
        wait_for(lambda: ob.stats().count == 0, 20, "delivered once enrolled")
        wait_for(lambda: json.loads(observer[-1][1]).get("delivery") == "ok", 10, "delivery ok again")
        assert fleet_status(world, capsys)[unit.device].split()[2] == "ok"
    finally:
        fw.stop()
        rx.stop()
    assert world.stored() == dict.fromkeys(ids, 1)


def fleet_status(world: World, capsys: pytest.CaptureFixture[str]) -> dict[str, str]:
    """``kycedge-fleet status`` as a fleet admin runs it: device -> its line."""
    from kycedge.fleet.cli import main as fleet_main

    c = world.pki.service("fleet-admin")
    toml = world.tmp / "fleet.toml"
    toml.write_text(f'[uplink]\nhost = "127.0.0.1"\nport = {world.broker.port}\nca_file = "{c.ca}"\n'
                    f'cert_file = "{c.cert}"\nkey_file = "{c.key}"\n')
    capsys.readouterr()
    assert fleet_main(["status", "--uplink", str(toml), "--tenant", TENANT, "--wait", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["device", "online", "delivery"]
    return {ln.split()[0]: ln for ln in lines[1:]}
