"""What a fresh carrier install hits first: a missing driver, a missing database, defaults."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from kycedge.carrier.cli import main
from kycedge.carrier.config import DEFAULT_STATE_DIR, CarrierConfig
from kycedge.carrier.store import POSTGRES_EXTRA, open_store
from kycedge.core.errors import CarrierError


def test_postgres_dsn_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delitem(sys.modules, "kycedge.carrier.store.pg", raising=False)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ModuleNotFoundError
    with pytest.raises(CarrierError, match=r"pip install 'kycedge\[carrier\]'") as e:
        open_store("postgresql://kycedge@localhost/kycedge")
    assert e.value.reason == "no-driver"
    assert POSTGRES_EXTRA == "kycedge[carrier]"
    code = main(["db", "status", "--database", "postgresql://u@localhost/db"])
    assert code == 2
    err = capsys.readouterr().err
    assert "kycedge[carrier]" in err
    assert "Traceback" not in err


def test_db_status_does_not_create_a_database(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "nothing-here.db"
    code = main(["db", "status", "--database", str(db)])
    assert code == 2
    assert "db migrate" in capsys.readouterr().err
    assert not db.exists()
    assert main(["db", "migrate", "--database", str(db)]) == 0
    capsys.readouterr()
    assert main(["db", "status", "--database", str(db)]) == 0
    assert "schema_version" in capsys.readouterr().out


def test_config_file_without_state_dir_uses_the_documented_default(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    from kycedge.carrier.cli import load_config

    monkeypatch.setenv("COLUMNS", "200")  # argparse would wrap the path at its hyphen
    cfg_file = tmp_path / "carrier.toml"
    cfg_file.write_text("[carrier]\nreplay_window_s = 3600\n")
    assert load_config(cfg_file).state_dir == DEFAULT_STATE_DIR == CarrierConfig().state_dir
    with pytest.raises(SystemExit):
        main(["db", "status", "--help"])
    assert str(DEFAULT_STATE_DIR) in capsys.readouterr().out
