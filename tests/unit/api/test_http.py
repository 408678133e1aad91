"""The local API as a browser and an attacker on the same machine see it (real uvicorn server).

Every response a test gets here is checked against the shipped OpenAPI document.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from pathlib import Path

import pytest
from openapi_spec_validator import validate as validate_spec

from tests.unit.daemon.fakes import FAR, GOOD, NO_FACE, frame, receipt

from . import openapi_check
from .conftest import CONSENT, KNOWN, Live, Reply, make_live


def checked(live: Live, method: str, path: str, **kw: object) -> Reply:
    r = live.request(method, path, **kw)  # type: ignore[arg-type]
    if method not in ("OPTIONS", "HEAD"):
        openapi_check.check(method, path, r.status, r.headers, r.body)
    return r


def test_the_document_is_valid_openapi_3_1_and_served(live: Live) -> None:
    r = checked(live, "GET", "/v1/openapi.json")
    validate_spec(r.json())
    assert r.json()["openapi"] == "3.1.0"


@pytest.mark.parametrize("host", ["127.0.0.1:{p}", "localhost:{p}", "[::1]:{p}", "LOCALHOST:{p}"])
def test_exact_loopback_hosts_pass(live: Live, host: str) -> None:
    assert checked(live, "GET", "/v1/info", host=host.format(p=live.port)).status == 200


@pytest.mark.parametrize("host", ["127.evil.example:{p}", "127.0.0.1.nip.io:{p}", "evil.example",
                                  "127.0.0.1", "127.0.0.2:{p}", "localhost:1{p}", "localhost.:{p}", ""])
def test_other_hosts_are_refused(live: Live, host: str) -> None:
    r = checked(live, "GET", "/v1/info", host=host.format(p=live.port))
    assert (r.status, r.json()["error"]["code"]) == (403, "host-refused")


def test_unix_socket_needs_no_host(live: Live) -> None:
    assert live.request("GET", "/v1/info", unix=True, host="anything").status == 200


def test_no_cors_by_default_but_the_own_app_is_same_origin(live: Live) -> None:
    r = checked(live, "GET", "/v1/info", headers={"Origin": "http://evil.example"})
    assert (r.status, r.json()["error"]["code"]) == (403, "origin-refused")
    assert "access-control-allow-origin" not in r.headers
    r = live.request("OPTIONS", "/v1/sessions", headers={"Origin": "http://evil.example",
                                                         "Access-Control-Request-Method": "POST"})
    assert r.status == 403
    assert "access-control-allow-origin" not in r.headers
    same = f"http://127.0.0.1:{live.port}"
    r = checked(live, "GET", "/v1/info", headers={"Origin": same})
    assert r.status == 200
    assert "access-control-allow-origin" not in r.headers  # same origin needs none


def test_configured_origin_gets_cors_and_preflight(short_dir: Path) -> None:
    lv = make_live(short_dir, allowed_origins=("https://agent.example",))
    try:
        r = lv.request("OPTIONS", "/v1/sessions", headers={
            "Origin": "https://agent.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type"})
        assert r.status == 204
        assert r.headers["access-control-allow-origin"] == "https://agent.example"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert "Content-Type" in r.headers["access-control-allow-headers"]
        assert r.headers["vary"] == "Origin"
        r = lv.request("GET", "/v1/info", headers={"Origin": "https://agent.example"})
        assert r.status == 200
        assert r.headers["access-control-allow-origin"] == "https://agent.example"
        assert "Location" in r.headers["access-control-expose-headers"]
        r = lv.request("GET", "/v1/info", headers={"Origin": "https://other.example"})
        assert r.status == 403
    finally:
        lv.api.close()


def test_head_options_allow_and_405(live: Live) -> None:
    g, h = live.request("GET", "/v1/info"), checked(live, "HEAD", "/v1/info")
    assert h.status == 200
    assert h.body == b""
    assert h.headers["content-length"] == g.headers["content-length"]
    r = live.request("OPTIONS", "/v1/sessions")
    assert r.status == 204
    assert r.headers["allow"] == "GET, POST, HEAD, OPTIONS"
    r = live.request("PUT", "/v1/info")
    assert (r.status, r.json()["error"]["code"]) == (405, "method-not-allowed")
    assert r.headers["allow"] == "GET, HEAD, OPTIONS"
    r = live.request("PATCH", "/v1/sessions/" + "a" * 32)
    assert r.status == 405
    assert r.headers["allow"] == "GET, DELETE, HEAD, OPTIONS"


def test_start_gives_201_with_location_and_the_stream_resumes(live: Live) -> None:
    live.camera.set_frames([frame(NO_FACE), frame(FAR), frame(GOOD)])
    r = checked(live, "POST", "/v1/sessions", body={"ref": "rTestRef-abcdefghij",
                                                    "consent": {"version": CONSENT, "accepted": True}})
    assert r.status == 201
    sid = r.json()["session"]
    assert r.headers["location"] == f"/v1/sessions/{sid}"
    assert checked(live, "GET", r.headers["location"]).json()["session"] == sid
    deadline = time.monotonic() + 5
    while live.sessions.get(sid).state != "queued" and time.monotonic() < deadline:
        time.sleep(0.02)
    mid = live.sessions.get(sid).message_id
    assert mid is not None
    live.sessions.deliver_receipt(receipt(mid, "match", score=0.8, threshold=0.4))
    sse = live.request("GET", f"/v1/sessions/{sid}/events", headers={"Accept": "text/event-stream"})
    frames = [f for f in sse.body.decode().split("\n\n") if f.startswith("id:")]
    ids = [int(f.split("\n")[0][4:]) for f in frames]
    events = [json.loads(f.split("data: ", 1)[1]) for f in frames]
    assert ids == list(range(len(ids)))
    assert [e["event"] for e in events] == ["started", "guidance", "guidance", "guidance", "captured",
                                            "queued", "receipt"]
    for e in events:
        openapi_check.check_event(e)
    again = live.request("GET", f"/v1/sessions/{sid}/events",
                         headers={"Accept": "text/event-stream", "Last-Event-ID": str(ids[-2])})
    tail = [f for f in again.body.decode().split("\n\n") if f.startswith("id:")]
    assert tail == [frames[-1]]
    assert tail[0].startswith(f"id: {ids[-1]}\nevent: receipt\n")
    done = checked(live, "GET", f"/v1/sessions/{sid}/events",
                   headers={"Accept": "text/event-stream", "Last-Event-ID": str(ids[-1])})
    assert done.status == 204  # finished: EventSource stops reconnecting
    bad = checked(live, "GET", f"/v1/sessions/{sid}/events", headers={"Last-Event-ID": "x1"})
    assert bad.status == 400


def test_guidance_carries_a_coarse_box_when_the_detector_has_one(live: Live) -> None:
    class Boxed:
        ok, reason, message, faces, quality, score = False, "move-closer", "Move closer.", 1, {}, 0.0
        box = (2.0, 1.0, 6.0, 5.0)  # the detector's x0, y0, x1, y1

    class BoxAnalyzer:
        model_id, model_version = "fake", "1"

        def guide(self, rgb: object) -> Boxed:
            return Boxed()

        def candidate(self, rgb: object, guide: object) -> None:
            return None

        def template(self, candidates: object) -> None:
            raise AssertionError("no good frame: never called")

    live.sessions.reload_analyzer(BoxAnalyzer())
    sid = live.start().json()["session"]
    time.sleep(0.3)
    live.sessions.cancel(sid)
    lines = [json.loads(x) for x in live.request("GET", f"/v1/sessions/{sid}/events").body.splitlines() if x]
    guidance = [e for e in lines if e["event"] == "guidance"]
    assert guidance
    assert guidance[0]["box"] == [0.25, 0.12, 0.5, 0.5]
    assert "landmarks" not in guidance[0]


def test_heartbeats_while_waiting(live: Live) -> None:
    sid = live.start().json()["session"]  # NO_FACE forever: guidance once a second, silence between
    s = socket.create_connection(("127.0.0.1", live.port), timeout=5)
    s.sendall(f"GET /v1/sessions/{sid}/events HTTP/1.1\r\nHost: 127.0.0.1:{live.port}\r\n"
              "Accept: text/event-stream\r\n\r\n".encode())
    data = b""
    deadline = time.monotonic() + 4
    while time.monotonic() < deadline and b": heartbeat" not in data:
        data += s.recv(65536)
    s.close()
    assert b"id: 0\nevent: started" in data
    assert b": heartbeat\n\n" in data  # heartbeat_s=0.5 in the fixture


def test_consent_declined_ends_with_nothing_captured(live: Live) -> None:
    r = checked(live, "POST", "/v1/sessions", body={"ref": "rTestRef-abcdefghij",
                                                    "consent": {"version": CONSENT, "accepted": False}})
    assert r.status == 201
    s = checked(live, "GET", f"/v1/sessions/{r.json()['session']}").json()
    assert s["state"] == "failed"
    assert s["result"]["reason"] == "consent-declined"
    assert live.camera.opens == 0


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"ref": "rTestRef-abcdefghij"}, 400, "consent-required"),
    ({"ref": "rTestRef-abcdefghij", "consent": {"version": "1999-01-01.0", "accepted": True}}, 409,
     "consent-outdated"),
    ({"ref": "rTestRef-abcdefghij", "consent": {"version": CONSENT, "accepted": "yes"}}, 400, "bad-consent"),
    ({"ref": "rTestRef-abcdefghij", "consent": {"version": CONSENT}}, 400, "bad-consent"),
    ({"ref": "id-19850101-1234-x", "consent": {"version": CONSENT, "accepted": True}}, 400, "bad-reference"),
])
def test_session_start_refusals(live: Live, body: dict[str, object], status: int, code: str) -> None:
    r = checked(live, "POST", "/v1/sessions", body=body)
    assert (r.status, r.json()["error"]["code"]) == (status, code)
    assert live.camera.opens == 0


@pytest.mark.parametrize(("raw", "status", "code"), [
    (b"[" * 4000 + b"]" * 4000, 413, "body-too-large"),
    (b'{"x":' * 20 + b"1" + b"}" * 20, 400, "too-deep"),
    (b'{"ref": "rTestRef-abcdefghij", "timeout_s": ' + b"9" * 3000 + b"}", 400, "number-too-long"),
    (b'{"ref": "rTestRef-abcdefghij", "ref": "rOther-abcdefghijklm"}', 400, "duplicate-key"),
])
def test_json_limits_answer_400_with_a_reason(live: Live, raw: bytes, status: int, code: str) -> None:
    r = checked(live, "POST", "/v1/sessions", body=raw, headers={"Content-Type": "application/json"})
    assert (r.status, r.json()["error"]["code"]) == (status, code)


def test_today_list_masks_references(live: Live) -> None:
    live.start(ref="rSecretCustomerRef-XYZ", accepted=False)
    r = checked(live, "GET", "/v1/sessions")
    items = r.json()["sessions"]
    assert items[0]["ref_hint"] == "\u2026XYZ"
    assert "rSecretCustomerRef" not in r.body.decode()


def test_messages_and_errors_match_the_document(live: Live) -> None:
    assert checked(live, "GET", f"/v1/messages/{KNOWN}").json()["state"] == "queued"
    assert checked(live, "GET", f"/v1/messages/{KNOWN[:-1]}1").status == 404
    assert checked(live, "GET", "/v1/messages/not-a-uuid").status == 404
    assert checked(live, "GET", "/v1/health").json()["ok"] is True
    assert checked(live, "GET", "/v1/sessions/" + "0" * 32).status == 404
    assert checked(live, "DELETE", "/v1/sessions/" + "0" * 32).status == 404
    sid = live.start().json()["session"]
    assert checked(live, "DELETE", f"/v1/sessions/{sid}").status == 202
    time.sleep(0.3)
    assert checked(live, "DELETE", f"/v1/sessions/{sid}").status == 409
    r = checked(live, "POST", "/v1/sessions", body=b"{}", headers={"Content-Type": "text/plain"})
    assert r.status == 415


def test_a_slow_header_client_is_cut_off_and_others_are_served(short_dir: Path) -> None:
    lv = make_live(short_dir, read_timeout_s=1.0)
    try:
        slow = socket.create_connection(("127.0.0.1", lv.port), timeout=5)
        slow.sendall(b"GET /v1/info HTTP/1.1\r\n")
        t0 = time.monotonic()
        assert lv.request("GET", "/v1/info").status == 200
        data = b""
        while chunk := slow.recv(4096):
            data += chunk
            slow.sendall(b"X-a: b\r\n") if time.monotonic() - t0 < 0.5 else None
        assert time.monotonic() - t0 < 3
        assert data.startswith(b"HTTP/1.1 408 ")
        slow.close()
    finally:
        lv.api.close()


def test_idle_connections_make_room_for_a_request(short_dir: Path) -> None:
    lv = make_live(short_dir, max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", lv.port)) for _ in range(5)]
    try:
        time.sleep(0.2)
        assert lv.request("GET", "/v1/info").status == 200  # the oldest idle ones were closed
        closed = 0
        for s in idle:
            s.settimeout(0.5)
            with contextlib.suppress(TimeoutError):
                closed += s.recv(1) == b""
        assert closed >= 3
    finally:
        for s in idle:
            s.close()
        lv.api.close()


def test_when_every_connection_is_busy_a_request_gets_503(short_dir: Path) -> None:
    lv = make_live(short_dir, max_connections=2)
    streams = []
    try:
        sid = lv.start().json()["session"]  # NO_FACE: it keeps capturing
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", lv.port), timeout=5)
            s.sendall(f"GET /v1/sessions/{sid}/events HTTP/1.1\r\nHost: 127.0.0.1:{lv.port}\r\n\r\n".encode())
            assert s.recv(100).startswith(b"HTTP/1.1 200")
            streams.append(s)
        r = lv.request("GET", "/v1/info")
        assert (r.status, r.json()["error"]["code"]) == (503, "too-many-connections")
        assert r.headers["retry-after"] == "1"
        openapi_check.check("GET", "/v1/info", r.status, r.headers, r.body)
        streams.pop().close()
        time.sleep(0.3)
        assert lv.request("GET", "/v1/info").status == 200
    finally:
        for s in streams:
            s.close()
        lv.sessions.cancel(lv.sessions.active.id) if lv.sessions.active else None
        lv.api.close()


def test_the_documents_id_patterns_are_the_ones_the_code_uses() -> None:
    from kycedge.protocol.ids import MESSAGE_ID_TEXT_RE

    doc = openapi_check.DOC
    assert doc["paths"]["/v1/messages/{id}"]["parameters"][0]["schema"]["pattern"] == (
        f"^{MESSAGE_ID_TEXT_RE.pattern}$")
    from kycedge.protocol.ids import CONSENT_VERSION_RE

    consent = doc["components"]["schemas"]["SessionStart"]["properties"]["consent"]["properties"]["version"]
    assert consent["pattern"] == f"^{CONSENT_VERSION_RE.pattern}$"


def test_the_app_is_served_on_tcp_only_with_a_strict_policy(live: Live) -> None:
    r = live.request("GET", "/app/")
    assert r.status == 200
    assert b'<script src="app.js"' in r.body
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert live.request("GET", "/").headers["location"] == "/app/"
    assert live.request("GET", "/app/i18n.json").status == 200
    assert live.request("GET", "/app/../pyproject.toml").status == 404
    assert live.request("POST", "/app/", body=b"{}").status == 405
    assert live.request("GET", "/app/", unix=True).status == 404  # not on the Unix socket


def test_no_preview_unless_the_operator_enables_it(live: Live) -> None:
    sid = live.start().json()["session"]
    time.sleep(0.3)
    r = checked(live, "GET", f"/v1/sessions/{sid}/preview")
    assert (r.status, r.json()["error"]["code"]) == (404, "no-preview")
    assert live.sessions.get(sid).preview is None  # nothing was even encoded
    assert live.request("GET", "/v1/info").json()["app"]["preview"] is False


def test_the_enabled_preview_is_served_no_store_and_dropped_after_the_capture(short_dir: Path) -> None:
    from kycedge.vision.decode import encode_preview

    lv = make_live(short_dir, preview_enabled=True)
    lv.sessions._preview = encode_preview  # what the daemon wires when api.preview_enabled
    try:
        assert lv.request("GET", "/v1/info").json()["app"]["preview"] is True
        sid = lv.start().json()["session"]
        deadline = time.monotonic() + 5
        while lv.sessions.get(sid).preview is None and time.monotonic() < deadline:
            time.sleep(0.05)
        r = checked(lv, "GET", f"/v1/sessions/{sid}/preview")
        assert r.status == 200
        assert r.headers["content-type"] == "image/jpeg"
        assert r.headers["cache-control"].startswith("no-store")
        assert r.body[:3] == b"\xff\xd8\xff"
        lv.sessions.cancel(sid)
        deadline = time.monotonic() + 5
        while lv.sessions.get(sid).state == "capturing" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lv.sessions.get(sid).preview is None
        assert checked(lv, "GET", f"/v1/sessions/{sid}/preview").status == 404
    finally:
        lv.api.close()
