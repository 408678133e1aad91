"""``kycedge updates``: --config, no store is an error, readable text; the store follows state_dir."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from kycedge.unit.cli import main
from kycedge.unit.daemon import settings
from kycedge.unit.updates.switch import ModelStore

ROOT = Path(__file__).resolve().parents[3]

CONFIG = """
[daemon]
tenant = "acme"
device_id = "unit-0001"
state_dir = "{state}"

[uplink]
tls = false
host = "127.0.0.1"
port = 1883

[updates]
enabled = true
"""


def test_model_store_follows_the_state_dir(tmp_path: Path) -> None:
    cfg = tmp_path / "kycedge.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state"))
    assert settings.load(cfg).updates.state_dir == tmp_path / "state" / "models"


def test_config_check_catches_a_store_outside_the_state_dir(tmp_path: Path) -> None:
    cfg = tmp_path / "kycedge.toml"
    cfg.write_text(CONFIG.format(state=tmp_path / "state") + f'state_dir = "{tmp_path / "elsewhere"}"\n')
    problems = settings.check_files(settings.load(cfg))
    assert any(p.startswith("updates.state_dir: expected a directory inside daemon.state_dir")
               for p in problems), problems


def test_status_without_a_store_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["updates", "status", "--state-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "expected a model store" in err
    assert "no-store" in err


def test_status_from_config_prints_text_with_the_factory_model_name(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = tmp_path / "state"
    cfg = tmp_path / "kycedge.toml"
    cfg.write_text(CONFIG.format(state=state))
    factory = tmp_path / "factory"
    shutil.copytree(ROOT / "models", factory)
    ModelStore(state / "models").seed(factory)
    assert main(["updates", "status", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "{" not in out, out  # not Python dict text
    assert "'" not in out, out
    lines = dict(line.split(": ", 1) for line in out.splitlines())
    assert lines["state"] == "stable"
    assert lines["previous"] == "none"
    assert "model sface" in lines["current"], lines["current"]
    assert "factory@factory" not in out
