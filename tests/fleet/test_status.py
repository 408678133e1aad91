"""``kycedge-fleet status``: what each unit runs, the last outcome and why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kycedge.fleet import announce
from kycedge.fleet.announce import summarize
from kycedge.fleet.cli import main
from kycedge.fleet.cli import updates as cli_updates

FAILED = {"state": "online", "model": {"id": "sface", "version": "1"}, "update": {
    "state": "idle", "outcome": "failed", "bundle_version": 6, "model_id": "sface", "model_version": "1",
    "target_version": 7, "reason": "selftest-failed",
    "message": "bundle 7 was rejected here before, not retried: golden image g0-obama: expected "
               "1 - cosine to the bundle's embedding <= 0.02, got 0.4000; waiting for a newer bundle"}}
STOPPED = {"state": "offline", "model": {"id": "sface", "version": "1"}, "update": {
    "state": "idle", "outcome": "up-to-date", "bundle_version": 6, "model_id": "sface", "model_version": "1",
    "reason": "", "message": ""}}


class NoTransport:
    def stop(self) -> None:
        pass


@pytest.fixture
def units(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {d: summarize(d, json.dumps(body).encode()) for d, body in
            (("unit-0001", FAILED), ("unit-0002", STOPPED))}

    def collect(_t: Any, _tenant: str, _wait: float) -> dict[str, Any]:
        return seen

    monkeypatch.setattr(cli_updates, "_transport", lambda _p: NoTransport())
    monkeypatch.setattr(announce, "collect_status", collect)


def test_status_says_why(units: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--uplink", str(tmp_path / "fleet.toml"), "--tenant", "acme", "--wait", "0"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("unit-0001"))
    assert "failed selftest-failed" in lines[row]
    assert "why: bundle 7 was rejected here before" in lines[row + 1]
    assert "golden image g0-obama" in lines[row + 1]
    stopped = next(line for line in lines if line.startswith("unit-0002"))
    assert stopped.split()[1:4] == ["no", "-", "6"]  # offline, delivery not reported, still on bundle 6


def test_status_json_carries_the_message(units: None, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--uplink", str(tmp_path / "f.toml"), "--tenant", "acme", "--wait", "0",
                 "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["unit-0001"]["message"].startswith("bundle 7 was rejected here before")
    assert (got["unit-0002"]["online"], got["unit-0002"]["bundle_version"]) == (False, 6)
