"""Broker security with the shipped deploy/mosquitto config: mTLS identity and ACLs."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from kycedge.core.errors import UplinkError
from kycedge.fleet import provision
from kycedge.lab.broker import Broker, Pki
from kycedge.mqtt.client import MqttClient
from kycedge.protocol import topics

pytestmark = pytest.mark.broker


def connect(broker: Broker, creds, client_id: str) -> MqttClient:  # type: ignore[no-untyped-def]
    c = MqttClient(broker.uplink_config(creds), client_id=client_id)
    c.start()
    assert c.wait_connected(5), c.last_error
    return c


def test_unit_cannot_publish_as_another(broker: Broker, pki: Pki) -> None:
    u1 = connect(broker, pki.device("acme", "u1"), "acme/u1")
    try:
        u1.publish(topics.templates("acme", "u1"), b"own")  # allowed
        for topic in (topics.templates("acme", "u2"), topics.templates("other", "u1"),
                      topics.status("acme", "u2"), topics.receipts("acme", "u1"),
                      "fleet/v1/acme/bundles", "kyc/v1/acme/u1/templates/x"):
            with pytest.raises(UplinkError) as ei:
                u1.publish(topic, b"forged")
            assert ei.value.reason == "not-authorized", topic
    finally:
        u1.stop()


def test_unit_cannot_read_another_units_topics(broker: Broker, pki: Pki) -> None:
    u1 = connect(broker, pki.device("acme", "u1"), "acme/u1")
    u2 = connect(broker, pki.device("acme", "u2"), "acme/u2")
    rx = connect(broker, pki.service(), "carrier-receiver-1")
    spied: list[str] = []
    own: list[str] = []
    try:
        # The guard plugin refuses these in the SUBACK (Mosquitto's acl_file alone grants
        # them and filters the deliveries); see test_isolation.py for the shared group.
        for f in (topics.receipts("acme", "u2"), "kyc/v1/#", "$share/g/kyc/v1/+/+/templates"):
            with pytest.raises(UplinkError) as ei:
                u1.subscribe(f, lambda t, p: spied.append(t))
            assert ei.value.reason == "not-authorized", f
        u2.subscribe(topics.receipts("acme", "u2"), lambda t, p: own.append(t))
        rx.publish(topics.receipts("acme", "u2"), b"receipt for u2")
        u2.publish(topics.templates("acme", "u2"), b"template of u2")
        u2.publish(topics.status("acme", "u2"), b"status of u2", retain=True)
        deadline = time.monotonic() + 3
        while not own and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.3)
        assert own == [topics.receipts("acme", "u2")]
        assert spied == []
    finally:
        for c in (u1, u2, rx):
            c.stop()


def test_receiver_cannot_impersonate_units_status_or_fleet(broker: Broker, pki: Pki) -> None:
    rx = connect(broker, pki.service(), "carrier-receiver-1")
    try:
        for topic in (topics.templates("acme", "u1"), topics.status("acme", "u1"), "fleet/v1/acme/x"):
            with pytest.raises(UplinkError) as ei:
                rx.publish(topic, b"x")
            assert ei.value.reason == "not-authorized"
    finally:
        rx.stop()


def test_no_client_certificate_cannot_connect(broker: Broker) -> None:
    result = broker.tls_probe()
    assert result != "ok"
    assert "New client connected" not in broker.log()


def test_certificate_from_another_ca_cannot_connect(broker: Broker, pki: Pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rogue = Pki(tmp_path / "rogue")
    provision.init_ca(rogue.ca_dir, "rogue CA", days=30)
    creds = rogue.device("acme", "u1")
    cfg = replace(broker.uplink_config(creds), ca_file=pki.ca_cert)  # trusts the real broker
    c = MqttClient(cfg, client_id="acme/u1")
    c.start()
    try:
        assert not c.wait_connected(2.5)
        assert c.last_error
    finally:
        c.stop()
    assert "New client connected" not in broker.log()
    assert broker.tls_probe(creds.cert, creds.key) != "ok"


def test_plain_tcp_is_not_offered(broker: Broker) -> None:
    cfg = replace(broker.uplink_config(None), tls=False)
    c = MqttClient(cfg, client_id="plain")
    c.start()
    try:
        assert not c.wait_connected(2.0)
    finally:
        c.stop()


def test_bad_tls_files_are_a_clear_error(broker: Broker, pki: Pki, tmp_path) -> None:  # type: ignore[no-untyped-def]
    creds = pki.device("acme", "u1")
    cfg = replace(broker.uplink_config(creds), key_file=tmp_path / "missing.key")
    with pytest.raises(UplinkError) as ei:
        MqttClient(cfg, client_id="x")
    assert ei.value.reason == "bad-tls-config"
    assert "missing.key" in ei.value.message
