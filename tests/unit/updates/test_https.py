"""The repository over HTTPS: the unit verifies the server certificate against its CA."""

from __future__ import annotations

import ssl
from pathlib import Path

from kycedge.lab.broker import Pki
from kycedge.unit.updates.agent import UpdateAgent

from .helpers import FakeDaemon, Fleet, unit_config


def test_https_repository(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon, pki: Pki) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pki.broker_dir / "broker.crt", pki.broker_dir / "broker.key")
    fleet.server.socket = ctx.wrap_socket(fleet.server.socket, server_side=True)
    fleet.release(1)
    url = fleet.url.replace("http://", "https://")

    def agent(state: str, ca: Path) -> UpdateAgent:
        return UpdateAgent(unit_config(tmp_path, fleet, repository_url=url, ca_file=ca,
                                       state_dir=tmp_path / state),
                           device_id="unit-1", reload_models=daemon.reload_models,
                           health_check=daemon.health, selftest=lambda p, m: None)

    st = agent("good", pki.ca_cert).check_now()
    assert (st.outcome, st.bundle_version) == ("updated", 1), st

    other = Pki.create(tmp_path / "other-pki")          # a CA the unit does not trust
    st = agent("bad", other.ca_cert).check_now()
    assert (st.outcome, st.reason) == ("failed", "unreachable"), st
    assert "CERTIFICATE_VERIFY_FAILED" in st.message or "certificate" in st.message.lower()
