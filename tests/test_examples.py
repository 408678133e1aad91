"""The example config files in deploy/examples/ load with the same code the programs run."""

from __future__ import annotations

from pathlib import Path

import pytest
from kycedge.carrier.serve import load_serve_file
from kycedge.core.config import load_toml
from kycedge.fleet.cli.updates import UplinkFile
from kycedge.unit.cli import main as unit_main
from kycedge.unit.daemon import settings

EXAMPLES = Path(__file__).resolve().parents[1] / "deploy" / "examples"


def test_unit_example_passes_config_check(capsys: pytest.CaptureFixture[str]) -> None:
    assert unit_main(["config", "check", "--no-files", str(EXAMPLES / "unit.toml")]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    s = settings.load(EXAMPLES / "unit.toml")
    assert s.updates.state_dir == s.daemon.state_dir / "models"
    # with the files: only the ones provisioning installs are missing here, nothing else
    problems = settings.check_files(s)
    assert problems
    assert all("expected an existing file, got missing path /etc/kycedge/" in p
               or "got missing path /var/lib/kycedge/" in p for p in problems), problems


def test_receiver_example_loads() -> None:
    cfg = load_serve_file(EXAMPLES / "receiver.toml")
    assert cfg.carrier.database_target.startswith("postgresql://")
    assert cfg.serve.metrics_port == 9464
    assert cfg.mqtt.tls


def test_fleet_example_loads() -> None:
    up = load_toml(EXAMPLES / "fleet.toml", UplinkFile).uplink
    assert up.client_id == "fleet-admin"
