"""A live API server (Unix socket + loopback TCP) on the fake session seams, and raw HTTP helpers."""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kycedge.lab.broker import free_port
from kycedge.unit.api import ApiConfig, ApiServer
from kycedge.unit.capture.fake import FakeCamera
from kycedge.unit.session import SessionConfig, SessionManager
from kycedge.unit.webapp import consent_version

from tests.unit.daemon.fakes import NO_FACE, FakeAnalyzer, FakeQueue, FakeSealer, frame

CONSENT = consent_version()
KNOWN = "019ab697-e800-706d-8031-000000000000"  # a message id the fake lookup knows


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Live:
    api: ApiServer
    sessions: SessionManager
    camera: FakeCamera
    port: int
    sock_path: Path
    messages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def request(self, method: str, path: str, body: bytes | dict[str, Any] | None = None,
                headers: dict[str, str] | None = None, *, host: str | None = None,
                unix: bool = False) -> Reply:
        hdrs = dict(headers or {})
        if isinstance(body, dict):
            body = json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        if unix:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.settimeout(10)
            s.connect(str(self.sock_path))
            conn = http.client.HTTPConnection("localhost", timeout=10)
            conn.sock = s
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        if host is not None:
            conn.putrequest(method, path, skip_host=True)
            conn.putheader("Host", host)
            for k, v in hdrs.items():
                conn.putheader(k, v)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        resp = conn.getresponse()
        data = resp.read()
        reply = Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
        conn.close()
        return reply

    def start(self, ref: str = "rTestRef-abcdefghij", accepted: bool = True, **extra: Any) -> Reply:
        return self.request("POST", "/v1/sessions",
                            {"ref": ref, "consent": {"version": CONSENT, "accepted": accepted}, **extra})


def make_live(d: Path, frames: list[Any] | None = None, **config: Any) -> Live:
    cam = FakeCamera(frames if frames is not None else [frame(NO_FACE)])
    m = SessionManager(cam, FakeAnalyzer(), FakeSealer(), FakeQueue(),
                       SessionConfig(settle_s=0.0, best_of=1, receipt_wait_s=10))
    port = free_port()
    messages: dict[str, dict[str, Any]] = {KNOWN: {"message_id": KNOWN, "state": "queued"}}
    api = ApiServer(ApiConfig(socket_path=str(d / "api.sock"), tcp_port=port, **config), m,
                    lambda: {"status": "ready", "queue": {"count": 0}}, messages.get)
    api.start()
    return Live(api, m, cam, port, d / "api.sock", messages)


@pytest.fixture
def live(short_dir: Path) -> Iterator[Live]:
    lv = make_live(short_dir, heartbeat_s=0.5)
    yield lv
    if lv.sessions.active is not None:
        lv.sessions.cancel(lv.sessions.active.id)
    lv.api.close()
