"""One unit cannot touch another (issue 11, ADR 0010): each attack against the real broker
with the shipped config and the guard plugin built from deploy/mosquitto/plugin/.

Before the guard (measured by tools/bench_isolation.py with ``--no-guard``): a unit's
certificate could join the receivers' shared group and swallow templates, take over
another unit's client id, and leave retained messages on its templates topic.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from kycedge.carrier.serve import ReceiverService, ServeConfig
from kycedge.core.errors import UplinkError
from kycedge.lab.broker import FLEET_ADMIN, Broker, BrokerHarnessError, Creds, Pki
from kycedge.mqtt.client import MqttClient
from kycedge.protocol import ids, topics
from kycedge.unit.forwarder import Forwarder, ForwarderConfig, offline_will
from kycedge.unit.outbox import Outbox, OutboxConfig
from support.kyc import Carrier

pytestmark = pytest.mark.broker

GROUP = ServeConfig().group  # the receivers' group, "kyc-receivers"
SHARED = topics.shared_templates_subscription(GROUP)


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def client(broker: Broker, creds: Creds, client_id: str, **kw: object) -> MqttClient:
    c = MqttClient(broker.uplink_config(creds, reconnect_min_s=1, reconnect_max_s=1), client_id=client_id,
                   **kw)  # type: ignore[arg-type]
    c.start()
    return c


def connected(broker: Broker, creds: Creds, client_id: str, **kw: object) -> MqttClient:
    c = client(broker, creds, client_id, **kw)
    assert c.wait_connected(5), c.last_error
    return c


# ---- 1. the receivers' shared group ---------------------------------------------------------------
def test_unit_cannot_join_the_receivers_shared_group(broker: Broker, pki: Pki) -> None:
    evil = connected(broker, pki.device("acme", "evil"), "acme/evil")
    try:
        for f in (SHARED, topics.shared_templates_subscription("other"), "$share/kyc-receivers/#",
                  f"$share/{GROUP}/kyc/v1/acme/evil/receipts"):
            with pytest.raises(UplinkError) as ei:
                evil.subscribe(f, lambda t, p: None)
            assert ei.value.reason == "not-authorized", f
        # what a unit may subscribe stays allowed
        evil.subscribe(topics.receipts("acme", "evil"), lambda t, p: None)
        evil.subscribe(topics.fleet_topic("acme", "bundles"), lambda t, p: None)
    finally:
        evil.stop()
    assert f"kycedge_guard: denied shared subscription {SHARED} to acme/evil" in broker.log()


def test_fleet_admin_cannot_join_the_receivers_group_either(broker: Broker, pki: Pki) -> None:
    admin = connected(broker, pki.service(FLEET_ADMIN), FLEET_ADMIN)
    try:
        with pytest.raises(UplinkError) as ei:
            admin.subscribe(SHARED, lambda t, p: None)
        assert ei.value.reason == "not-authorized"
        admin.subscribe("kyc/v1/+/+/status", lambda t, p: None)  # its own grant
    finally:
        admin.stop()


def test_templates_reach_the_receiver_while_a_unit_tries_to_join_its_group(broker: Broker, pki: Pki) -> None:
    got: list[str] = []
    rx = connected(broker, pki.service(), "carrier-receiver-1")
    rx.subscribe(SHARED, lambda t, p: got.append(p.decode()))
    evil = connected(broker, pki.device("acme", "evil"), "acme/evil")
    victim = connected(broker, pki.device("acme", "u1"), "acme/u1")
    try:
        with pytest.raises(UplinkError):
            evil.subscribe(SHARED, lambda t, p: None)
        sent = [f"template-{i}" for i in range(20)]
        for body in sent:
            victim.publish(topics.templates("acme", "u1"), body.encode())
        assert wait_for(lambda: len(got) == len(sent)), f"receiver got {len(got)} of {len(sent)}"
        assert sorted(got) == sorted(sent)
    finally:
        for c in (victim, evil, rx):
            c.stop()


# ---- 2. client-id takeover ---------------------------------------------------------------------------
def test_a_unit_cannot_take_over_another_units_client_id(broker: Broker, pki: Pki) -> None:
    events: list[bool] = []
    a = client(broker, pki.device("acme", "a"), "acme/a")
    a.add_connect_listener(lambda up, _session: events.append(up))
    assert a.wait_connected(5), a.last_error
    b = client(broker, pki.device("acme", "b"), "acme/a")  # B's certificate, A's client id
    try:
        assert wait_for(lambda: "Not authorized" in b.last_error, 5), b.last_error
        time.sleep(0.5)  # B keeps retrying meanwhile
        assert not b.connected
        assert a.connected  # A was never kicked
        assert events == [True], events
        a.publish(topics.templates("acme", "a"), b"still mine")
    finally:
        b.stop()
        a.stop()
    assert "kycedge_guard: refused client id acme/a for certificate acme/b" in broker.log()


@pytest.mark.parametrize(("who", "client_id"), [
    (("device", "acme", "u1"), "acme/u2"),            # another unit's id
    (("device", "acme", "u1"), "acme/u1-2"),          # a unit has exactly one id
    (("device", "acme", "u1"), "carrier-receiver-1"),  # a receiver's id
    (("device", "acme", "u1"), "acme.u1"),            # the old default (not injective)
    (("service", "carrier-receiver"), "acme/u1"),     # a service cannot kick a unit
    (("service", "carrier-receiver"), "fleet-admin"),
    (("service", "carrier-receiver"), "carrier-receiver-"),
    (("service", "carrier-receiver"), "carrier-receiver-a/b"),
])
def test_client_id_must_belong_to_the_certificate(broker: Broker, pki: Pki, who: tuple[str, ...],
                                                  client_id: str) -> None:
    creds = pki.device(who[1], who[2]) if who[0] == "device" else pki.service(who[1])
    c = client(broker, creds, client_id)
    try:
        assert wait_for(lambda: "Not authorized" in c.last_error, 5), c.last_error
        assert not c.connected
    finally:
        c.stop()


@pytest.mark.parametrize(("service", "client_id"), [
    ("carrier-receiver", "carrier-receiver"), ("carrier-receiver", "carrier-receiver-host-7"),
    (FLEET_ADMIN, FLEET_ADMIN), (FLEET_ADMIN, "fleet-admin-cli.1"),
])
def test_services_connect_with_their_name_or_name_dash_suffix(broker: Broker, pki: Pki, service: str,
                                                              client_id: str) -> None:
    connected(broker, pki.service(service), client_id).stop()


def test_a_username_other_than_the_certificate_is_refused(broker: Broker, pki: Pki) -> None:
    """The identity is the certificate's CN; a CONNECT claiming another username is refused."""
    creds = pki.device("acme", "u1")
    results: list[str] = []
    for username in ("carrier-receiver", "acme/u1"):
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="acme/u1", protocol=mqtt.MQTTv5)
        c.tls_set(ca_certs=str(creds.ca), certfile=str(creds.cert), keyfile=str(creds.key))
        c.tls_insecure_set(True)  # the test broker's certificate names localhost
        c.username_pw_set(username)
        done = threading.Event()

        def on_connect(_c: object, _u: object, _f: object, rc: object, _p: object,
                       done: threading.Event = done) -> None:
            results.append(str(rc))
            done.set()

        c.on_connect = on_connect
        c.connect("127.0.0.1", broker.port)
        c.loop_start()
        assert done.wait(5)
        c.disconnect()
        c.loop_stop()
    assert results == ["Not authorized", "Success"]


# ---- 3. retained publishes ---------------------------------------------------------------------------
def test_retained_publish_refused_where_the_protocol_has_none(broker: Broker, pki: Pki) -> None:
    u1 = connected(broker, pki.device("acme", "u1"), "acme/u1")
    rx = connected(broker, pki.service(), "carrier-receiver-1")
    try:
        with pytest.raises(UplinkError) as ei:
            u1.publish(topics.templates("acme", "u1"), b"left for later", retain=True)
        assert ei.value.reason == "not-authorized"
        with pytest.raises(UplinkError) as ei:
            rx.publish(topics.receipts("acme", "u1"), b"left for later", retain=True)
        assert ei.value.reason == "not-authorized"
        u1.publish(topics.status("acme", "u1"), b'{"state":"online"}', retain=True)  # the protocol's one
        u1.publish(topics.templates("acme", "u1"), b"normal")  # not retained: fine
    finally:
        u1.stop()
        rx.stop()
    # a later, non-shared subscriber gets the retained status and no retained template
    late: list[tuple[str, bytes]] = []
    rx2 = client(broker, pki.service(), "carrier-receiver-2")
    rx2.subscribe("kyc/v1/+/+/templates", lambda t, p: late.append((t, p)))
    rx2.subscribe("kyc/v1/+/+/status", lambda t, p: late.append((t, p)))
    try:
        assert rx2.wait_connected(5)
        assert wait_for(lambda: bool(late), 3)
        time.sleep(0.3)
        assert late == [(topics.status("acme", "u1"), b'{"state":"online"}')]
    finally:
        rx2.stop()
    assert "kycedge_guard: denied retained publish kyc/v1/acme/u1/templates to acme/u1" in broker.log()


# ---- the victim's registrations flow while a peer attacks ---------------------------------------------
def test_registrations_flow_while_a_peer_attacks(broker: Broker, pki: Pki, tmp_path: Path) -> None:
    carrier = Carrier.create(tmp_path / "carrier")
    unit = carrier.enroll(tmp_path / "u1", "acme", "u1", t0_ms=int(time.time() * 1000))
    rx_t = MqttClient(broker.uplink_config(pki.service(), session_expiry_s=60),
                      client_id="carrier-receiver-1", manual_ack=True)
    rx = ReceiverService(carrier.receiver(), rx_t, ServeConfig())
    rx.start()
    assert rx_t.wait_connected(5)
    ob = Outbox(tmp_path / "u1.sqlite", OutboxConfig(retry_initial_s=0.5, retry_max_s=1.0))
    link = MqttClient(broker.uplink_config(pki.device("acme", "u1")),
                      client_id=ids.device_common_name("acme", "u1"), will=offline_will("acme", "u1"))
    drops: list[bool] = []
    link.add_connect_listener(lambda up, _s: None if up else drops.append(up))
    fw = Forwarder(ob, link, tenant="acme", device="u1", verify_receipt=unit.verify,
                   config=ForwarderConfig(idle_poll_s=0.05))
    stop = threading.Event()
    refused: dict[str, int] = {"connect": 0, "subscribe": 0, "retain": 0}

    def attacker() -> None:  # unit "evil": takeover, group join, retained template, in a loop
        evil_creds = pki.device("acme", "evil")
        while not stop.is_set():
            thief = client(broker, evil_creds, "acme/u1")
            if not thief.wait_connected(0.5) and "Not authorized" in thief.last_error:
                refused["connect"] += 1
            thief.stop()
            own = client(broker, evil_creds, "acme/evil")
            if own.wait_connected(2):
                try:
                    own.subscribe(SHARED, lambda t, p: None)
                except UplinkError:
                    refused["subscribe"] += 1
                try:
                    own.publish(topics.templates("acme", "evil"), b"x", retain=True)
                except UplinkError:
                    refused["retain"] += 1
            own.stop()

    t = threading.Thread(target=attacker, daemon=True)
    t.start()
    fw.start()
    try:
        time.sleep(1.0)
        n = 20
        for i in range(n):
            ob.put(str(unit.message_id(i)), unit.seal(i).data)
            fw.wake()
        assert wait_for(lambda: ob.stats().count == 0, 30), ob.stats()
        drops_while_attacked = list(drops)  # fw.stop() below disconnects on purpose
    finally:
        stop.set()
        t.join(10)
        fw.stop()
        rx.stop()
    assert rx.counters["receipts"] >= n
    assert drops_while_attacked == [], "the victim's link was dropped while the peer attacked"
    assert min(refused.values()) >= 1, refused


# ---- the plugin itself ---------------------------------------------------------------------------
def test_the_broker_refuses_to_start_with_an_unknown_guard_option(pki: Pki, tmp_path: Path) -> None:
    b = Broker(tmp_path / "b", pki)
    b.conf_path.write_text(b.conf_path.read_text().replace("plugin_opt_share_users", "plugin_opt_share_usr"))
    with pytest.raises(BrokerHarnessError, match="mosquitto exited"):
        b.start()
    assert "kycedge_guard: unknown option plugin_opt_share_usr" in b.log()


# ---- fleet announcements: a unit gets its own tenant's, and the broker starts without a warning ----
def test_a_unit_reads_its_own_tenants_fleet_topics_only(broker: Broker, pki: Pki) -> None:
    admin = connected(broker, pki.service(FLEET_ADMIN), FLEET_ADMIN)
    own = connected(broker, pki.device("acme", "u1"), "acme/u1")
    other = connected(broker, pki.device("globex", "u2"), "globex/u2")
    got_own: list[bytes] = []
    try:
        admin.publish(topics.fleet_topic("acme", "bundles"), b'{"bundle_version": 7}', qos=1, retain=True)
        own.subscribe(topics.fleet_topic("acme", "bundles"), lambda t, p: got_own.append(p))
        assert wait_for(lambda: got_own == [b'{"bundle_version": 7}'])
        with pytest.raises(UplinkError) as ei:  # another tenant's announcements: refused at SUBSCRIBE
            other.subscribe(topics.fleet_topic("acme", "bundles"), lambda t, p: None)
        assert ei.value.reason == "not-authorized"
        with pytest.raises(UplinkError):
            other.subscribe("fleet/v1/#", lambda t, p: None)
    finally:
        for c in (admin, own, other):
            c.stop()
    assert "denied subscription fleet/v1/acme/bundles to globex/u2" in broker.log()
    assert "Warning: ACL pattern" not in broker.log()  # the shipped ACL loads without a warning
