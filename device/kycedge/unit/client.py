"""A small client for the local API (Unix socket or loopback TCP), standard library only.

Used by the demo, the tests, the soak tool and as a reference for app developers::

    c = ApiClient(unix_socket="/run/kycedge/api.sock")
    # after the customer accepted the consent text the unit shows (its version is in /v1/info)
    sid = c.start_session("rRegistration-0001", consent_version=c.consent_version())["session"]
    for event in c.events(sid):
        print(event["event"], event.get("reason"))
"""

from __future__ import annotations

import http.client
import json
import socket
from collections.abc import Iterator
from typing import Any

__all__ = ["ApiClient", "ApiClientError"]


class ApiClientError(Exception):
    """An error answer from the API: ``status``, ``code`` and ``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self._path)
        self.sock = s


class ApiClient:
    def __init__(self, *, unix_socket: str | None = None, tcp: tuple[str, int] | None = None,
                 timeout_s: float = 60.0) -> None:
        if (unix_socket is None) == (tcp is None):
            raise ValueError("give exactly one of unix_socket or tcp")
        self._unix, self._tcp, self._timeout = unix_socket, tcp, timeout_s

    def _conn(self) -> http.client.HTTPConnection:
        if self._unix is not None:
            return _UnixConnection(self._unix, self._timeout)
        assert self._tcp is not None
        return http.client.HTTPConnection(self._tcp[0], self._tcp[1], timeout=self._timeout)

    def request(self, method: str, path: str, body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> dict[str, Any]:
        conn = self._conn()
        try:
            hdrs = dict(headers or {})
            data = None
            if body is not None:
                data = json.dumps(body).encode()
                hdrs["Content-Type"] = "application/json"
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            payload = json.loads(resp.read() or b"{}")
        finally:
            conn.close()
        if resp.status >= 400:
            err = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise ApiClientError(resp.status, str(err.get("code", "")), str(err.get("message", "")))
        if not isinstance(payload, dict):
            raise ApiClientError(resp.status, "bad-response", "expected a JSON object")
        return payload

    def info(self) -> dict[str, Any]:
        return self.request("GET", "/v1/info")

    def consent_version(self) -> str:
        """The version of the consent text this unit shows (``/v1/info`` → ``app``)."""
        return str(self.info()["app"]["consent_version"])

    def start_session(self, ref: str, timeout_s: float | None = None, *, consent_version: str,
                      accepted: bool = True) -> dict[str, Any]:
        """Start a session; ``consent_version``/``accepted`` are the customer's answer to the
        consent text (a declined consent ends the session at once, nothing captured)."""
        body: dict[str, Any] = {"ref": ref, "consent": {"version": consent_version, "accepted": accepted}}
        if timeout_s is not None:
            body["timeout_s"] = timeout_s
        return self.request("POST", "/v1/sessions", body)

    def session(self, session_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/sessions/{session_id}")

    def cancel(self, session_id: str) -> dict[str, Any]:
        return self.request("DELETE", f"/v1/sessions/{session_id}")

    def message(self, message_id: str) -> dict[str, Any]:
        return self.request("GET", f"/v1/messages/{message_id}")

    def events(self, session_id: str) -> Iterator[dict[str, Any]]:
        """The session's NDJSON event stream, one dict per event, until the server closes it."""
        conn = self._conn()
        try:
            conn.request("GET", f"/v1/sessions/{session_id}/events")
            resp = conn.getresponse()
            if resp.status >= 400:
                payload = json.loads(resp.read() or b"{}")
                err = payload.get("error", {})
                raise ApiClientError(resp.status, str(err.get("code", "")), str(err.get("message", "")))
            while line := resp.readline():
                if line.strip():
                    yield json.loads(line)
        finally:
            conn.close()
