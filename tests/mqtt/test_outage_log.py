"""paho's outage chatter is demoted, other paho errors are kept."""

from __future__ import annotations

import logging

import pytest
from kycedge.mqtt.client import paho_log


def test_not_connected_chatter_is_demoted_and_real_errors_stay(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kycedge.mqtt.paho"):
        paho_log.error("Client is not connected. Socket: None). Last known Connection State: X")
        paho_log.error("failed to receive on socket: boom")
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("ERROR", "failed to receive on socket: boom") in messages
    assert not any(m.startswith("Client is not connected") for _, m in messages)
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="kycedge.mqtt.paho"):
        paho_log.error("Client is not connected. Socket: None).")
    demoted = [(r.levelname, r.getMessage()[:23]) for r in caplog.records]
    assert demoted == [("DEBUG", "Client is not connected")]
