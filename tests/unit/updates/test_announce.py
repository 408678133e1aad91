"""Announce (retained MQTT) wakes the agent; fleet status reads the retained status topic."""

from __future__ import annotations

import json
import threading
import time

import pytest
from kycedge.fleet.announce import announce, collect_status, summarize
from kycedge.lab.broker import Broker, Pki
from kycedge.mqtt.fake import FakeBroker
from kycedge.unit.updates.agent import UpdateAgent

from .helpers import FakeDaemon, Fleet


def wait_for(pred, timeout: float = 20.0) -> bool:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.05)
    return False


def test_announce_wakes_the_loop_and_installs(unit_on_v1: UpdateAgent, fleet: Fleet,
                                              daemon: FakeDaemon) -> None:
    fake = FakeBroker()
    admin, unit = fake.client("fleet-admin"), fake.client("acme/unit-1")
    admin.start()
    unit.start()
    assert unit_on_v1.attach(unit, "acme") == "fleet/v1/acme/bundles"
    stop = threading.Event()
    th = threading.Thread(target=unit_on_v1.run, args=(stop,), daemon=True)
    th.start()
    try:
        assert wait_for(lambda: unit_on_v1.status.outcome == "up-to-date")   # first poll: nothing new
        fleet.release(2)
        announce(admin, "acme", 2, fleet.url)
        assert wait_for(lambda: unit_on_v1.status.bundle_version == 2), unit_on_v1.status
        assert fake.retained["fleet/v1/acme/bundles"]
    finally:
        stop.set()
        th.join(timeout=10)
    assert not th.is_alive()


def test_announce_payload_is_untrusted(unit_on_v1: UpdateAgent) -> None:
    for bad in (b"", b"\xff\xfe", b"[]", b'{"bundle_version": "9"}', b"{" * 10000, b'{"bundle_version": 1}',
                b"x" * 5000):
        assert unit_on_v1.on_announce(bad) is False
    assert unit_on_v1.on_announce(b'{"bundle_version": 7}') is True


@pytest.mark.broker
def test_announce_and_status_through_mosquitto(unit_on_v1: UpdateAgent, broker: Broker, pki: Pki) -> None:
    """Real broker, real ACL: the fleet admin announces (retained), a unit that connects
    later still gets it; the unit's retained status is what ``status`` reports."""
    from kycedge.mqtt import connect

    admin = connect(broker.uplink_config(pki.service("fleet-admin")), client_id="fleet-admin")
    admin.start()
    assert admin.wait_connected(10)
    try:
        announce(admin, "acme", 5)
        unit = connect(broker.uplink_config(pki.device("acme", "unit-1")), client_id="acme/unit-1")
        unit.start()
        assert unit.wait_connected(10)
        try:
            unit_on_v1.attach(unit, "acme")
            assert wait_for(unit_on_v1._wake.is_set, 10)
            status = {"state": "online", "model": {"id": "emb", "version": "v1"},
                      "update": unit_on_v1.status.to_dict()}
            unit.publish("kyc/v1/acme/unit-1/status", json.dumps(status).encode(), retain=True)
        finally:
            unit.stop()
        seen = collect_status(admin, "acme", wait_s=1.0)
        assert seen["unit-1"].bundle_version == 1
        assert seen["unit-1"].model == "emb@v1"
        assert seen["unit-1"].outcome == "updated"
    finally:
        admin.stop()


def test_summarize_status_shapes() -> None:
    upd = {"state": "idle", "outcome": "rolled-back", "bundle_version": 3, "model_id": "m",
           "model_version": "1", "reason": "crash-loop"}
    s = summarize("u", json.dumps({"state": "online", "update": upd}).encode())
    assert (s.bundle_version, s.model, s.reason, s.online) == (3, "m@1", "crash-loop", True)
    bad = summarize("u", b"[1,2]")
    assert (bad.bundle_version, bad.reason, bad.status) == (None, "bad-status", None)
    assert "expected a JSON object" in bad.problem
    s = summarize("u", json.dumps({"state": "online", "model": {"id": "sface", "version": "2"}}).encode())
    assert (s.online, s.model, s.bundle_version) == (True, "sface@2", None)
    assert summarize("u", json.dumps({"state": "offline"}).encode()).online is False
