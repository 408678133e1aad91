"""The daemon process in-process: real broker (mTLS), real carrier receiver, real outbox and
envelopes; fake camera and fake pipeline so lifecycle faults can be staged."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kycedge.core.errors import ModelError
from kycedge.lab.broker import MOSQUITTO
from kycedge.lab.harness import Lab
from kycedge.unit.capture.fake import FakeCamera
from kycedge.unit.client import ApiClientError
from kycedge.unit.daemon import settings
from kycedge.unit.daemon.notify import Notifier
from kycedge.unit.daemon.service import Daemon
from kycedge.unit.metrics import MetricsConfig

from .fakes import GOOD, NO_FACE, STUCK, FakeAnalyzer, frame

pytestmark = [pytest.mark.broker, pytest.mark.slow,
              pytest.mark.skipif(not Path(MOSQUITTO).exists(), reason="mosquitto not installed")]


class Systemd:
    """The notify socket as systemd's manager sees it."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.1)
        self.path = path
        self.log: list[tuple[float, str]] = []
        self._run = True
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()

    def _pump(self) -> None:
        while self._run:
            try:
                self.log.append((time.monotonic(), self.sock.recv(4096).decode()))
            except TimeoutError:
                continue
            except OSError:
                return

    def seen(self, key: str) -> list[float]:
        return [t for t, m in self.log if key in m.split("\n")]

    def close(self) -> None:
        self._run = False
        self.thread.join(2)
        self.sock.close()


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    lab = Lab.create(tmp_path / "lab", session_timeout_s=8.0, receipt_wait_s=15.0,
                     session_extra="stuck_after_s = 1.5\nguidance_repeat_s = 0.5\n")
    lab.provision(tmp_path / "no-models", {})
    lab.start_broker()
    lab.start_receiver()
    yield lab
    lab.close(remove=False)


@pytest.fixture
def systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Systemd]:
    sd = Systemd(tmp_path / "notify.sock")
    monkeypatch.setenv("WATCHDOG_USEC", "2000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sd
    sd.close()


def start(lab: Lab, systemd: Systemd, frames: list[Any], loader: Any = None,
          metrics_file: Path | None = None) -> tuple[Daemon, FakeCamera, threading.Thread, list[int]]:
    cam = FakeCamera(frames)
    s = settings.load(lab.config_path)
    if metrics_file is not None:
        s = replace(s, metrics=MetricsConfig(textfile=metrics_file, interval_s=1.0))
    d = Daemon(s, config_path=lab.config_path,
               notifier=Notifier(str(systemd.path)), source=cam,
               load_analyzer=loader or (lambda p: FakeAnalyzer()), install_signals=False)
    d.start()
    code: list[int] = []
    t = threading.Thread(target=lambda: code.append(d.run()), daemon=True)
    t.start()
    return d, cam, t, code


def wait_for(cond: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_ready_registration_receipt_and_clean_stop(lab: Lab, systemd: Systemd, tmp_path: Path) -> None:
    prom = tmp_path / "kycedge.prom"
    d, cam, t, code = start(lab, systemd, [frame(NO_FACE), frame(GOOD)], metrics_file=prom)
    wait_for(lambda: systemd.seen("READY=1"))
    c = lab.client()
    sid = c.start_session("registration-ref-000A", consent_version=c.consent_version())["session"]
    events = list(c.events(sid))
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["started", "guidance"]
    assert kinds[-1] == "receipt"
    # the fake template has no reference at the carrier: a signed, verified "no-reference"
    assert (events[-1]["status"], events[-1]["reason"]) == ("accepted", "no-reference")
    mid = next(e["message_id"] for e in events if e["event"] == "queued")
    assert c.message(mid)["state"] == "receipted"
    info = c.info()
    assert info["queue"]["count"] == 0
    assert info["last_upload"] is not None
    assert (info["device_key"]["algorithm"], info["device_key"]["key_protection"]) == ("ed25519", "software")
    wait_for(lambda: len(systemd.seen("WATCHDOG=1")) >= 2)
    assert any("queued" in m and "last upload" in m for _, m in systemd.log if m.startswith("STATUS="))
    d.stop_event.set()
    t.join(15)
    assert code == [0]
    assert systemd.seen("STOPPING=1")
    assert cam.opens == cam.closes
    # the textfile for node_exporter, last written at stop
    from prometheus_client.parser import text_string_to_metric_families

    fams = {f.name: f for f in text_string_to_metric_families(prom.read_text())}
    value = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams.values() for s in f.samples}
    assert value[("kycedge_unit_sessions_total", (("outcome", "queued"), ("reason", "")))] == 1
    assert value[("kycedge_unit_receipts_total", (("outcome", "accepted"),))] == 1
    assert value[("kycedge_unit_outbox_entries", ())] == 0
    assert value[("kycedge_unit_published_total", ())] >= 1  # a re-send after a lost session counts
    assert ("kycedge_unit_link_up", ()) in value
    assert any(k[0] == "kycedge_unit_model_info" for k in value)


def test_stuck_pipeline_stops_watchdog_pings(lab: Lab, systemd: Systemd) -> None:
    an = FakeAnalyzer()
    d, _, t, code = start(lab, systemd, [frame(STUCK)], loader=lambda p: an)
    wait_for(lambda: len(systemd.seen("WATCHDOG=1")) >= 1)
    c = lab.client()
    sid = c.start_session("registration-ref-000B", consent_version=c.consent_version())["session"]
    wait_for(lambda: an.seen >= 1)
    time.sleep(2.5)  # stuck_after_s = 1.5, tick 0.5 s
    stuck_from = time.monotonic() - 0.8
    time.sleep(1.5)
    assert not [x for x in systemd.seen("WATCHDOG=1") if x > stuck_from]
    with pytest.raises(ApiClientError) as e:
        c.request("GET", "/v1/health")
    assert e.value.status == 503
    resumed = time.monotonic()
    an.release.set()  # the pipeline recovers: the session completes and pings resume
    assert list(c.events(sid))[-1]["event"] in ("receipt", "receipt-pending")
    wait_for(lambda: [x for x in systemd.seen("WATCHDOG=1") if x > resumed])
    d.stop_event.set()
    t.join(15)
    assert code == [0]


def test_sigterm_cancels_a_session_that_cannot_finish(lab: Lab, systemd: Systemd) -> None:
    d, cam, t, code = start(lab, systemd, [frame(NO_FACE)])
    c = lab.client()
    sid = c.start_session("registration-ref-000C", consent_version=c.consent_version())["session"]
    got: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: got.extend(c.events(sid)), daemon=True)
    reader.start()
    time.sleep(0.5)
    t0 = time.monotonic()
    d.stop_event.set()  # what SIGTERM does
    t.join(20)
    took = time.monotonic() - t0
    assert code == [0]
    assert took < 15  # stop_grace_s = 5 in the lab config, far below TimeoutStopSec
    reader.join(5)
    assert got
    assert got[-1]["event"] == "failed"
    assert got[-1]["reason"] == "cancelled"
    assert cam.opens == cam.closes


def test_sighup_applies_safe_keys_and_refuses_a_broken_file(lab: Lab, systemd: Systemd) -> None:
    d, _, t, code = start(lab, systemd, [frame(NO_FACE)])
    text = lab.config_path.read_text()
    lab.config_path.write_text(text.replace("timeout_s = 8.0", "timeout_s = 42.0").replace(
        "fps = 15.0", "fps = 5.0"))
    d.reload_event.set()
    wait_for(lambda: d.sessions is not None and d.sessions.config.timeout_s == 42.0)
    lab.config_path.write_text(text + "\n[session]\nbogus = 1\n")
    d.reload_event.set()
    time.sleep(1.5)
    assert d.sessions is not None
    assert d.sessions.config.timeout_s == 42.0  # kept the running config
    assert systemd.seen("RELOADING=1")
    d.stop_event.set()
    t.join(15)
    assert code == [0]


def test_reload_models_keeps_serving_and_refuses_a_broken_set(lab: Lab, systemd: Systemd) -> None:
    versions = iter(["2", "3"])

    def loader(p: Path) -> Any:
        if p.name == "broken":
            raise ModelError("broken model set", reason="bad-model")
        return FakeAnalyzer(model_version=next(versions, "1") if p.name == "new" else "1")

    d, _, t, code = start(lab, systemd, [frame(GOOD)], loader=loader)
    d.reload_models(Path("/models/new"))
    assert d.sessions is not None
    assert d.sessions.analyzer.model_version == "2"
    with pytest.raises(ModelError):
        d.reload_models(Path("/models/broken"))
    assert d.sessions.analyzer.model_version == "2"  # still serving on the last good set
    c = lab.client()
    sid = c.start_session("registration-ref-000D", consent_version=c.consent_version())["session"]
    evs = list(c.events(sid))
    assert next(e for e in evs if e["event"] == "queued")["model"] == "fake-embed@2"
    d.stop_event.set()
    t.join(15)
    assert code == [0]


def test_start_refuses_without_identity(tmp_path: Path) -> None:
    lab = Lab.create(tmp_path / "lab2")
    lab.provision(tmp_path / "no-models", {})
    (lab.unit_state / "device-ed25519.pem").unlink()
    d = Daemon(settings.load(lab.config_path), source=FakeCamera([frame(GOOD)]),
               load_analyzer=lambda p: FakeAnalyzer(), install_signals=False, notifier=Notifier(""))
    from kycedge.core.errors import KeyStoreError

    with pytest.raises(KeyStoreError):
        d.start()
    d.stop()
    lab.close(remove=False)


def test_updates_enabled_seeds_the_store_and_an_unreachable_repository_does_not_stop_serving(
        lab: Lab, systemd: Systemd, tmp_path: Path) -> None:
    factory = tmp_path / "factory-models"
    factory.mkdir()
    (factory / "manifest.json").write_text("{}")
    root = tmp_path / "root.json"
    root.write_text("{}")
    text = lab.config_path.read_text().replace(f'models_dir = "{tmp_path / "no-models"}"',
                                               f'models_dir = "{factory}"')
    lab.config_path.write_text(text + f"""
[updates]
enabled = true
repository_url = "http://127.0.0.1:9/kycedge"
trusted_root = "{root}"
state_dir = "{tmp_path / 'model-store'}"
poll_interval_s = 10.0
poll_jitter_s = 0.0
""")
    seen: list[Path] = []

    def loader(p: Path) -> Any:
        seen.append(p)
        return FakeAnalyzer()

    d, _, t, code = start(lab, systemd, [frame(GOOD)], loader=loader)
    assert seen[0].parent == tmp_path / "model-store" / "sets"  # the seeded factory set
    assert (seen[0] / "manifest.json").exists()
    wait_for(lambda: d.agent is not None and d.agent.status.outcome == "failed")
    c = lab.client()
    sid = c.start_session("registration-ref-000E", consent_version=c.consent_version())["session"]
    assert list(c.events(sid))[-1]["event"] == "receipt"  # still serving
    d.stop_event.set()
    t.join(15)
    assert code == [0]


def test_no_template_or_frame_bytes_in_the_daemons_log_lines(lab: Lab, systemd: Systemd) -> None:
    import base64
    import io
    import logging

    import numpy as np
    from kycedge.core.logs import JsonFormatter

    buf = io.StringIO()
    h = logging.StreamHandler(buf)
    h.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(h)
    try:
        good = frame(GOOD, 123)
        d, _, t, code = start(lab, systemd, [frame(NO_FACE), good])
        c = lab.client()
        sid = c.start_session("registration-ref-000F", consent_version=c.consent_version())["session"]
        assert list(c.events(sid))[-1]["event"] == "receipt"
        d.stop_event.set()
        t.join(15)
        assert code == [0]
    finally:
        logging.getLogger().removeHandler(h)
    text = buf.getvalue()
    assert "template queued" in text
    template = FakeAnalyzer().process_frame(good).template
    assert template is not None
    raw = np.asarray(template, "<f4").tobytes()
    for form in (raw[:16].hex(), base64.b64encode(raw[:24]).decode(), repr(float(template[0])),
                 f"{float(template[0]):.6f}", good.tobytes()[:16].hex()):
        assert form not in text, form
    assert raw[:16].decode("latin-1") not in text


def test_not_enrolled_is_shown_on_the_local_api_and_delivered_once_enrolled(
        lab: Lab, systemd: Systemd) -> None:
    """Issue 10 item 2 through the daemon: the carrier does not know the unit yet
    (``unknown-device``): the registration stays queued, ``/v1/info`` says ``not-enrolled``,
    the session keeps waiting; once enrolled, the same session gets its receipt."""
    import sqlite3

    from kycedge.carrier.receiver import Receiver
    from kycedge.unit.identity import load_identity

    db = sqlite3.connect(lab.carrier_config.database_target)
    with db:
        db.execute("DELETE FROM devices")  # installed before its enrolment
    db.close()
    d, _cam, t, code = start(lab, systemd, [frame(NO_FACE), frame(GOOD)])
    wait_for(lambda: systemd.seen("READY=1"))
    c = lab.client()
    sid = c.start_session("registration-ref-00C2", consent_version=c.consent_version())["session"]
    events: list[dict[str, Any]] = []
    reader = threading.Thread(target=lambda: events.extend(c.events(sid)), daemon=True)
    reader.start()
    wait_for(lambda: c.info()["delivery"] == "not-enrolled")
    info = c.info()
    assert info["queue"]["count"] == 1
    assert info["queue"]["held"] == {"unknown-device": 1}
    # the event stream is read by another thread: it may not have parsed "queued" yet
    wait_for(lambda: any(e["event"] == "queued" for e in events))
    assert not any(e["event"] == "receipt" for e in events)
    mid = next(e["message_id"] for e in events if e["event"] == "queued")
    assert c.message(mid) == {"message_id": mid, "state": "queued", "condition": "unknown-device"}
    with Receiver.from_config(lab.carrier_config) as rx:
        rx.registry.enroll(lab.tenant, lab.device, load_identity(lab.unit_state).public_key)
    reader.join(20)
    assert [e["event"] for e in events][-1] == "receipt"
    assert (events[-1]["status"], events[-1]["reason"]) == ("accepted", "no-reference")
    assert c.info()["delivery"] == "ok"
    assert c.info()["queue"]["count"] == 0
    d.stop_event.set()
    t.join(15)
    assert code == [0]


def test_every_state_file_the_daemon_creates_is_0600_whatever_the_umask(
        lab: Lab, systemd: Systemd) -> None:
    """Issue 10 item 13: started under umask 000, the daemon's outbox (+ -wal, -shm), sealer
    state and anything else it writes under the state dir are private."""
    import os
    import stat

    before = {p for p in lab.unit_state.rglob("*")}
    old = os.umask(0)
    try:
        d, _cam, t, code = start(lab, systemd, [frame(NO_FACE), frame(GOOD)])
        wait_for(lambda: systemd.seen("READY=1"))
        c = lab.client()
        sid = c.start_session("registration-ref-00D2", consent_version=c.consent_version())["session"]
        events = list(c.events(sid))
        assert events[-1]["event"] == "receipt"
        d.stop_event.set()
        t.join(15)
    finally:
        os.umask(old)
    assert code == [0]
    new = {p: stat.S_IMODE(p.lstat().st_mode) for p in lab.unit_state.rglob("*")
           if p not in before and not p.is_symlink() and not p.is_socket()}
    assert any(p.name == "outbox.sqlite" for p in new), sorted(map(str, new))
    loose = {str(p): oct(m) for p, m in new.items() if m & 0o077}
    assert loose == {}
