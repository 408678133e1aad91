"""Our own disconnect is quiet; losing the broker is still a warning."""

from __future__ import annotations

import logging
import time

import pytest
from kycedge.lab.broker import Broker, Pki
from kycedge.mqtt.client import MqttClient

pytestmark = pytest.mark.broker


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "kycedge.mqtt.client" and r.levelno >= logging.WARNING]


def test_stop_is_not_reported_as_an_outage(broker: Broker, pki: Pki,
                                           caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kycedge.mqtt.client")
    c = MqttClient(broker.uplink_config(pki.service("fleet-admin")), client_id="fleet-admin")
    c.start()
    assert c.wait_connected(5), c.last_error
    c.stop()
    time.sleep(0.2)
    assert _warnings(caplog) == []


def test_broker_loss_is_still_a_warning(broker: Broker, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kycedge.mqtt.client")
    c = MqttClient(broker.uplink_config(pki.service("fleet-admin")), client_id="fleet-admin-2")
    c.start()
    try:
        assert c.wait_connected(5), c.last_error
        broker.kill()
        deadline = time.monotonic() + 10
        while not _warnings(caplog) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert any("disconnected" in m for m in _warnings(caplog))
    finally:
        c.stop()
