"""journald-friendly logs: a syslog priority prefix before the same JSON, for unit and receiver."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kycedge.core.errors import ConfigError
from kycedge.core.logs import (
    JournalFormatter,
    JsonFormatter,
    journal_attached,
    log_style,
    setup_logging,
    syslog_priority,
)


def _record(level: int, msg: str = "m") -> logging.LogRecord:
    rec = logging.LogRecord("kycedge.t", level, __file__, 1, msg, None, None)
    rec.queue_depth = 3
    return rec


@pytest.mark.parametrize(("level", "prio"), [
    (logging.DEBUG, 7), (logging.INFO, 6), (logging.WARNING, 4), (logging.ERROR, 3), (logging.CRITICAL, 2)])
def test_prefix_is_the_syslog_priority_then_the_same_json(level: int, prio: int) -> None:
    rec = _record(level)
    line = JournalFormatter().format(rec)
    assert line.startswith(f"<{prio}>{{")
    assert syslog_priority(level) == prio
    assert json.loads(line[len(f"<{prio}>"):]) == json.loads(JsonFormatter().format(rec))


def test_journal_stream_detection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with open(tmp_path / "f", "w") as f:
        st = os.fstat(f.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        monkeypatch.delenv("KYCEDGE_LOG_FORMAT", raising=False)
        assert journal_attached(f)
        assert log_style(f) == "journal"
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino + 1}")
        assert not journal_attached(f)
        assert log_style(f) == "json"
        monkeypatch.setenv("KYCEDGE_LOG_FORMAT", "journal")
        assert log_style(f) == "journal"
        monkeypatch.setenv("KYCEDGE_LOG_FORMAT", "syslog")
        with pytest.raises(ConfigError, match="KYCEDGE_LOG_FORMAT: expected one of json, journal"):
            log_style(f)
    assert not journal_attached(io.StringIO())


def test_setup_logging_journal_style() -> None:
    buf = io.StringIO()
    h = setup_logging("info", buf, style="journal")
    try:
        logging.getLogger("kycedge.x").warning("link down", extra={"queue_depth": 2})
    finally:
        logging.getLogger().removeHandler(h)
    line = buf.getvalue().splitlines()[-1]
    assert line.startswith("<4>")
    assert json.loads(line[3:])["queue_depth"] == 2


def test_receiver_logs_the_same_form(tmp_path: Path) -> None:
    """kycedge-carrier serve writes the unit's JSON lines (stderr), journal-prefixed on request."""
    cfg = tmp_path / "serve.toml"
    cfg.write_text(f'[carrier]\nstate_dir = "{tmp_path / "st"}"\n\n'
                   '[mqtt]\nhost = "127.0.0.1"\nport = 1\ntls = false\nsession_expiry_s = 3600\n')
    env = {**os.environ, "KYCEDGE_LOG_FORMAT": "journal"}
    proc = subprocess.run([sys.executable, "-m", "kycedge.carrier.cli", "serve", "--config", str(cfg)],
                          capture_output=True, text=True, timeout=60, env=env)
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("<")]
    assert lines, proc.stderr
    assert lines[0].startswith("<4>{")
    obj = json.loads(lines[0][3:])
    assert set(obj) >= {"ts", "level", "logger", "msg"}
    assert (obj["level"], obj["logger"]) == ("warning", "kycedge.carrier.serve")
