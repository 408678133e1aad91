"""The local API over a real Unix socket (and loopback TCP), on the fake session seams."""

from __future__ import annotations

import http.client
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kycedge.lab.broker import free_port
from kycedge.unit.api import ApiConfig, ApiServer
from kycedge.unit.capture.fake import FakeCamera
from kycedge.unit.client import ApiClient, ApiClientError
from kycedge.unit.session import SessionConfig, SessionManager
from kycedge.unit.webapp import consent_version

from .fakes import GOOD, NO_FACE, FakeAnalyzer, FakeQueue, FakeSealer, frame, receipt

KNOWN = "019ab697-e800-706d-8031-000000000000"


CONSENT = consent_version()


def serve(d: Path, frames: list[Any], *, port: int = 0,
          cfg: SessionConfig | None = None) -> tuple[ApiServer, SessionManager, FakeCamera]:
    cam = FakeCamera(frames)
    m = SessionManager(cam, FakeAnalyzer(), FakeSealer(), FakeQueue(),
                       cfg or SessionConfig(settle_s=0.0, best_of=1, receipt_wait_s=10))
    queued: dict[str, dict[str, Any]] = {}

    def lookup(mid: str) -> dict[str, Any] | None:
        return queued.get(mid)

    queued[KNOWN] = {"message_id": KNOWN, "state": "queued"}
    api = ApiServer(ApiConfig(socket_path=str(d / "api.sock"), tcp_port=port), m,
                    lambda: {"status": "ready", "queue": {"count": 0}}, lookup)
    api.start()
    return api, m, cam


def test_registration_over_the_unix_socket(short_dir: Path) -> None:
    api, m, _ = serve(short_dir, [frame(NO_FACE), frame(GOOD)])
    try:
        mode = stat.S_IMODE(os.stat(short_dir / "api.sock").st_mode)
        assert mode == 0o660
        c = ApiClient(unix_socket=str(short_dir / "api.sock"))
        assert c.info()["status"] == "ready"
        assert c.request("GET", "/v1/health")["ok"] is True
        started = c.start_session("REG-registration-1", timeout_s=10, consent_version=CONSENT)
        sid = started["session"]
        assert started["events"] == f"/v1/sessions/{sid}/events"
        seen = []
        for ev in c.events(sid):
            seen.append(ev)
            if ev["event"] == "queued":
                m.deliver_receipt(receipt(ev["message_id"], "match", score=0.8, threshold=0.4))
        assert [e["event"] for e in seen] == ["started", "guidance", "guidance", "captured", "queued",
                                              "receipt"]
        assert seen[1]["reason"] == "no-face"
        assert seen[-1]["reason"] == "match"
        assert c.session(sid)["state"] == "done"
        assert c.message(KNOWN)["state"] == "queued"
        with pytest.raises(ApiClientError) as e:
            c.message(KNOWN[:-1] + "1")
        assert (e.value.status, e.value.code) == (404, "no-such-message")
    finally:
        api.close()
    assert not (short_dir / "api.sock").exists()


def test_busy_cancel_and_sse(short_dir: Path) -> None:
    api, _, cam = serve(short_dir, [frame(NO_FACE)])
    try:
        c = ApiClient(unix_socket=str(short_dir / "api.sock"))
        sid = c.start_session("REG-registration-2", consent_version=CONSENT)["session"]
        with pytest.raises(ApiClientError) as e:
            c.start_session("REG-registration-3", consent_version=CONSENT)
        assert (e.value.status, e.value.code) == (409, "busy")
        assert sid in e.value.message
        assert c.cancel(sid)["state"] == "cancelling"
        raw = _raw(short_dir, "GET", f"/v1/sessions/{sid}/events", headers={"Accept": "text/event-stream"})
        assert raw.startswith("retry: 2000\n\nid: 0\nevent: started\ndata: {")
        assert raw.rstrip().endswith('"reason":"cancelled","message":"the session was cancelled"}')
        with pytest.raises(ApiClientError) as e:
            c.cancel(sid)
        assert (e.value.status, e.value.code) == (409, "not-cancellable")
    finally:
        api.close()
    assert cam.opens == cam.closes


def _raw(d: Path, method: str, path: str, body: bytes | None = None,
         headers: dict[str, str] | None = None) -> str:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(str(d / "api.sock"))
    conn = http.client.HTTPConnection("localhost")
    conn.sock = s
    conn.request(method, path, body=body, headers=headers or {})
    resp = conn.getresponse()
    text = resp.read().decode()
    conn.close()
    return text


@pytest.mark.parametrize(("method", "path", "body", "headers", "status", "code"), [
    ("POST", "/v1/sessions", b"{", {"Content-Type": "application/json"}, 400, "bad-request"),
    ("POST", "/v1/sessions", b"[1]", {"Content-Type": "application/json"}, 400, "bad-request"),
    ("POST", "/v1/sessions", b'{"ref":"A","x":1}', {"Content-Type": "application/json"}, 400, "bad-request"),
    ("POST", "/v1/sessions", b'{"ref":"A"}', {"Content-Type": "text/plain"}, 415, "bad-request"),
    ("POST", "/v1/sessions", b'{"ref":"A","timeout_s":"5"}', {"Content-Type": "application/json"}, 400,
     "bad-request"),
    ("POST", "/v1/sessions", b'{"ref":"123 456 789","consent":{"version":"2026-12-01.1","accepted":true}}',
     {"Content-Type": "application/json"}, 400,
     "bad-reference"),
    ("POST", "/v1/sessions", b"x" * 5000, {"Content-Type": "application/json"}, 413, "body-too-large"),
    ("PUT", "/v1/sessions", None, {}, 405, "method-not-allowed"),
    ("GET", "/v1/nope", None, {}, 404, "no-such-route"),
    ("GET", "/v1/sessions/" + "0" * 32, None, {}, 404, "no-such-session"),
    ("GET", "/v1/info", None, {"Origin": "http://evil.example"}, 403, "origin-refused"),
])
def test_bad_requests_get_specific_errors(short_dir: Path, method: str, path: str, body: bytes | None,
                                          headers: dict[str, str], status: int, code: str) -> None:
    api, _, cam = serve(short_dir, [frame(NO_FACE)])
    try:
        text = _raw(short_dir, method, path, body, headers)
        err = json.loads(text)["error"]
        assert err["code"] == code
        assert err["message"]
    finally:
        api.close()
    assert cam.opens == 0  # nothing started


def test_loopback_tcp_and_dns_rebinding_guard(short_dir: Path) -> None:
    port = free_port()
    api, _, _ = serve(short_dir, [frame(NO_FACE)], port=port)
    try:
        assert ApiClient(tcp=("127.0.0.1", port)).info()["status"] == "ready"
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", "/v1/info", headers={"Host": "attacker.example:80"})
        resp = conn.getresponse()
        assert resp.status == 403
        assert json.loads(resp.read())["error"]["code"] == "host-refused"
        conn.close()
    finally:
        api.close()


def test_config_refuses_non_loopback() -> None:
    with pytest.raises(ValueError, match=r"expected a loopback address, got '0\.0\.0\.0'"):
        ApiConfig(tcp_host="0.0.0.0", tcp_port=4501)
    with pytest.raises(ValueError, match="got neither"):
        ApiConfig(socket_path="", tcp_port=0)


def test_a_reader_that_goes_away_frees_its_connection_slot(short_dir: Path) -> None:
    cfg = SessionConfig(settle_s=0.0, best_of=1, receipt_wait_s=600)
    cam = FakeCamera([frame(GOOD)])
    m = SessionManager(cam, FakeAnalyzer(), FakeSealer(), FakeQueue(), cfg)
    api = ApiServer(ApiConfig(socket_path=str(short_dir / "api.sock"), max_connections=2), m,
                    lambda: {"status": "ready"}, lambda mid: None)
    api.start()
    try:
        c = ApiClient(unix_socket=str(short_dir / "api.sock"), timeout_s=10)
        for i in range(4):  # more abandoned streams than slots
            sid = c.start_session(f"REG-registration-slot-{i}", consent_version=CONSENT)["session"]
            for ev in c.events(sid):
                if ev["event"] == "queued":
                    break  # the app stops listening while the receipt is awaited
            time.sleep(0.7)  # one poll of the server's stream
        assert c.info()["status"] == "ready"
    finally:
        api.close()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.one_of(st.binary(max_size=300),
                      st.dictionaries(st.text(max_size=8),
                                      st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats()),
                                      max_size=3).map(lambda d: json.dumps(d).encode())),
       path=st.sampled_from(["/v1/sessions", "/v1/info", "/v1/sessions/" + "a" * 32, "/v1/messages/x"]),
       method=st.sampled_from(["POST", "GET", "DELETE", "PUT"]))
def test_any_request_gets_an_answer_never_a_crash(short_dir: Path, body: bytes, path: str,
                                                  method: str) -> None:
    _, m, _ = serve_once(short_dir)
    text = _raw(short_dir, method, path, body, {"Content-Type": "application/json"})
    payload = json.loads(text)
    assert isinstance(payload, dict)
    if "error" in payload:
        assert payload["error"]["code"]
    active = m.active
    if active is not None:
        m.cancel(active.id)


_SERVERS: dict[str, tuple[ApiServer, SessionManager]] = {}


def serve_once(d: Path) -> tuple[ApiServer, SessionManager, None]:
    """One server per directory for the property test (hypothesis reuses the fixture)."""
    if str(d) not in _SERVERS:
        api, m, _ = serve(d, [frame(NO_FACE)])
        _SERVERS[str(d)] = (api, m)
    api, m = _SERVERS[str(d)]
    return api, m, None


@pytest.fixture(autouse=True)
def _close_property_servers() -> Iterator[None]:
    yield
    for api, _ in _SERVERS.values():
        api.close()
    _SERVERS.clear()
