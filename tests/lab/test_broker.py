"""The one Mosquitto harness (kycedge.lab.broker): no pytest inside, the guard built from
source once per version, the shipped config rewritten only where it must be."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from kycedge.lab import broker as lab_broker
from kycedge.lab.broker import GUARD_IN_CONF, Broker, Pki, build_guard


def test_the_harness_does_not_import_pytest() -> None:
    code = "import sys, kycedge.lab.broker, kycedge.lab.harness; sys.exit('pytest' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_guard_is_built_once_per_source_version(tmp_path: Path) -> None:
    first = build_guard(tmp_path)
    assert first.exists()
    assert first.stat().st_size > 0
    assert build_guard(tmp_path) == first  # cached: same digest, same file
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary left behind


def test_a_broken_build_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "guard.c"
    bad.write_text("this is not C\n")
    monkeypatch.setattr(lab_broker, "GUARD_SOURCE", bad)
    build = tmp_path / "build.sh"
    build.write_text(lab_broker.GUARD_BUILD.read_text().replace('"$here/kycedge_guard.c"', f'"{bad}"'))
    monkeypatch.setattr(lab_broker, "GUARD_BUILD", build)
    with pytest.raises(lab_broker.BrokerHarnessError, match="mosquitto-dev and libssl-dev"):
        build_guard(tmp_path / "out")


def test_config_with_and_without_the_guard(pki: Pki, tmp_path: Path) -> None:
    shipped = Broker(tmp_path / "a", pki).conf_path.read_text()
    assert f"plugin {build_guard()}\n" in shipped
    assert GUARD_IN_CONF not in shipped
    settings = [line for line in shipped.splitlines() if line and not line.startswith("#")]
    assert not [line for line in settings if line.startswith("use_identity_as_username")]
    before = Broker(tmp_path / "b", pki, guard=False).conf_path.read_text()
    assert "\nuse_identity_as_username true" in before
    assert not [line for line in before.splitlines() if line.startswith("plugin")]
