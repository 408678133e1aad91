"""The local API: HTTP/JSON on a Unix socket and/or 127.0.0.1 for the agent's app.

Documented for integrators in ``docs/local-api.md``. Routes::

    GET    /v1/info                       device, models, status (ready|busy|not-ready), queue
    GET    /v1/health                     200 {"ok": true} or 503 with why
    POST   /v1/sessions                   {"ref": "...", "timeout_s": 30, "nonce": "..."}
                                          → 201 {"session", "events"}
    GET    /v1/sessions/{id}              state and result
    GET    /v1/sessions/{id}/events       the event stream: NDJSON (default) or SSE
                                          (Accept: text/event-stream), from the first event,
                                          closed after a terminal event
    DELETE /v1/sessions/{id}              cancel a capturing session
    GET    /v1/messages/{message_id}      queued / receipt for a message (also after a restart)

Errors are ``{"error": {"code": REASON, "message": TEXT}}`` with 400 (bad request),
404, 405, 409 (``busy``, ``not-cancellable``), 413, 415, 503 (``shutting-down``,
``not-ready``). Like the MOSIP SBI device service this listens on the loopback interface
only and has a device-status call; unlike SBI it uses plain REST verbs and a streamed
event list instead of custom HTTP methods. Requests carrying an ``Origin`` header are
refused unless the origin is configured (a web page in the unit's browser must not drive
the camera), and on TCP the ``Host`` header must name the loopback (DNS rebinding).

Only the standard library is used (``http.server``); one thread per connection, bounded.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import select
import socket
import socketserver
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kycedge.core.config import section
from kycedge.core.errors import KycEdgeError, SessionError
from kycedge.protocol.ids import MESSAGE_ID_TEXT_RE
from kycedge.unit.session import SessionBusyError, SessionManager, SessionNotFoundError

__all__ = ["ApiConfig", "ApiServer", "MessageLookup", "StatusProvider"]

log = logging.getLogger(__name__)

MAX_BODY = 4096
_SESSION_RE = re.compile(r"^/v1/sessions/([0-9a-f]{32})(/events)?$")
_MESSAGE_RE = re.compile(rf"^/v1/messages/({MESSAGE_ID_TEXT_RE.pattern})$")

StatusProvider = Callable[[], dict[str, Any]]
MessageLookup = Callable[[str], dict[str, Any] | None]


@dataclass(frozen=True)
class ApiConfig:
    """[api] local API for the agent's app (Unix socket and/or loopback TCP)."""

    socket_path: str = section(
        "/run/kycedge/api.sock", help="Unix socket path; empty string = no Unix socket"
    )
    socket_mode: int = section(0o660, min=0o600, max=0o666, help="permissions of the Unix socket")
    tcp_host: str = section("127.0.0.1", help="TCP address; must be a loopback address")
    tcp_port: int = section(
        0, min=0, max=65535, help="TCP port (0 = no TCP listener; MOSIP SBI uses 4501-4600)"
    )
    max_connections: int = section(16, min=1, max=1024, help="concurrent connections")
    allowed_origins: tuple[str, ...] = section(
        (), help="browser Origin values allowed to call the API (none by default)"
    )

    def __post_init__(self) -> None:
        try:
            loopback = ipaddress.ip_address(self.tcp_host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"api.tcp_host: expected a loopback address, got {self.tcp_host!r}")
        if not self.socket_path and not self.tcp_port:
            raise ValueError("api: expected socket_path or tcp_port (or both), got neither")


class _UnixHTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_UNIX

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's getfqdn on a path
        self.server_name, self.server_port = "localhost", 0


class ApiServer:
    """Serves the routes above for a :class:`SessionManager` until :meth:`close`."""

    def __init__(
        self,
        config: ApiConfig,
        sessions: SessionManager,
        status: StatusProvider,
        messages: MessageLookup,
    ) -> None:
        self.config = config
        self.sessions = sessions
        self.status = status
        self.messages = messages
        self.stopping = threading.Event()
        self.ready = threading.Event()
        self._slots = threading.BoundedSemaphore(config.max_connections)
        self._servers: list[ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.tcp_address: tuple[str, int] | None = None

    def start(self) -> None:
        handler = _make_handler(self)
        if self.config.socket_path:
            path = Path(self.config.socket_path)
            path.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                if stat.S_ISSOCK(path.lstat().st_mode):
                    path.unlink()  # a stale socket from a previous run
            old = os.umask(0o177)
            try:
                srv: ThreadingHTTPServer = _UnixHTTPServer(str(path), handler)  # type: ignore[arg-type]
            finally:
                os.umask(old)
            os.chmod(path, self.config.socket_mode)
            self._servers.append(srv)
        if self.config.tcp_port:
            tcp = ThreadingHTTPServer((self.config.tcp_host, self.config.tcp_port), handler)
            host, port = tcp.server_address[:2]
            self.tcp_address = (str(host), int(port))
            self._servers.append(tcp)
        for srv in self._servers:
            srv.daemon_threads = True
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name="api", daemon=True)
            t.start()
            self._threads.append(t)

    def close(self) -> None:
        self.stopping.set()
        for srv in self._servers:
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=2)
        if self.config.socket_path:
            with contextlib.suppress(OSError):
                Path(self.config.socket_path).unlink()
        self._servers, self._threads = [], []


class _ApiError(Exception):
    def __init__(self, status: HTTPStatus, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _make_handler(api: ApiServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "kycedge"
        sys_version = ""

        def log_message(self, format: str, *args: Any) -> None:
            return  # access lines go through _access() with no query data

        def address_string(self) -> str:
            return "unix" if isinstance(self.client_address, str) else str(self.client_address[0])

        def _access(self, status: int) -> None:
            log.debug("api request", extra={"method": self.command, "route": _route(self.path),
                                            "status": status})

        def _dispatch(self, method: str) -> None:
            if not api._slots.acquire(blocking=False):
                self._send_error(_ApiError(HTTPStatus.SERVICE_UNAVAILABLE, "too-many-connections",
                                           f"more than {api.config.max_connections} connections"))
                return
            try:
                self._guard()
                self._route(method)
            except _ApiError as e:
                self._send_error(e)
            except SessionBusyError as e:
                self._send_error(_ApiError(HTTPStatus.CONFLICT, e.reason, e.message))
            except SessionNotFoundError as e:
                self._send_error(_ApiError(HTTPStatus.NOT_FOUND, e.reason, e.message))
            except SessionError as e:
                status = {"not-cancellable": HTTPStatus.CONFLICT,
                          "shutting-down": HTTPStatus.SERVICE_UNAVAILABLE,
                          }.get(e.reason, HTTPStatus.BAD_REQUEST)
                self._send_error(_ApiError(status, e.reason, e.message))
            except KycEdgeError as e:
                self._send_error(_ApiError(HTTPStatus.INTERNAL_SERVER_ERROR, e.reason, e.message))
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            finally:
                api._slots.release()

        def do_GET(self) -> None:
            self._dispatch("GET")

        def do_POST(self) -> None:
            self._dispatch("POST")

        def do_DELETE(self) -> None:
            self._dispatch("DELETE")

        def do_PUT(self) -> None:
            self._dispatch("PUT")

        def _guard(self) -> None:
            origin = self.headers.get("Origin")
            if origin is not None and origin not in api.config.allowed_origins:
                raise _ApiError(HTTPStatus.FORBIDDEN, "origin-refused",
                                f"requests from browser origin {origin[:80]!r} are not allowed")
            if not isinstance(self.client_address, str):
                host = (self.headers.get("Host") or "").rsplit(":", 1)[0].strip("[]")
                if host not in ("localhost", "127.0.0.1", "::1") and not host.startswith("127."):
                    raise _ApiError(HTTPStatus.FORBIDDEN, "host-refused",
                                    f"Host header must name the loopback, got {host[:80]!r}")

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/v1/info":
                self._only(method, "GET")
                self._send(HTTPStatus.OK, api.status())
            elif path == "/v1/health":
                self._only(method, "GET")
                ok, why = api.sessions.healthy()
                self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE,
                           {"ok": ok, "detail": why})
            elif path == "/v1/sessions":
                self._only(method, "POST")
                body = self._body()
                unknown = sorted(set(body) - {"ref", "timeout_s", "nonce"})
                if unknown:
                    raise _ApiError(HTTPStatus.BAD_REQUEST, "bad-request",
                                    f"unknown field(s) {', '.join(unknown)}; expected ref, timeout_s, nonce")
                if "ref" not in body:
                    raise _ApiError(HTTPStatus.BAD_REQUEST, "bad-request", "field ref is required")
                timeout = body.get("timeout_s")
                if timeout is not None and (
                        isinstance(timeout, bool) or not isinstance(timeout, int | float)):
                    raise _ApiError(HTTPStatus.BAD_REQUEST, "bad-request",
                                    f"timeout_s: expected a number, got {type(timeout).__name__}")
                s = api.sessions.start(body["ref"], timeout, body.get("nonce"))
                self._send(HTTPStatus.CREATED, {"session": s.id, "ref": s.ref,
                                                "events": f"/v1/sessions/{s.id}/events"})
            elif m := _SESSION_RE.match(path):
                s = api.sessions.get(m.group(1))
                if m.group(2):
                    self._only(method, "GET")
                    self._stream(s)
                elif method == "DELETE":
                    api.sessions.cancel(s.id)
                    self._send(HTTPStatus.ACCEPTED, {"session": s.id, "state": "cancelling"})
                else:
                    self._only(method, "GET", "DELETE")
                    self._send(HTTPStatus.OK, s.summary())
            elif m := _MESSAGE_RE.match(path):
                self._only(method, "GET")
                found = api.messages(m.group(1))
                if found is None:
                    raise _ApiError(HTTPStatus.NOT_FOUND, "no-such-message",
                                    f"message {m.group(1)!r} is neither queued nor receipted here")
                self._send(HTTPStatus.OK, found)
            else:
                raise _ApiError(HTTPStatus.NOT_FOUND, "no-such-route", f"no route {path[:80]!r}")

        def _only(self, method: str, *allowed: str) -> None:
            if method not in allowed:
                raise _ApiError(HTTPStatus.METHOD_NOT_ALLOWED, "method-not-allowed",
                                f"expected {' or '.join(allowed)}, got {method}")

        def _body(self) -> dict[str, Any]:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
            if ctype != "application/json":
                raise _ApiError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "bad-request",
                                f"Content-Type: expected application/json, got {ctype[:60]!r}")
            try:
                n = int(self.headers.get("Content-Length") or "-1")
            except ValueError:
                n = -1
            if n < 0:
                raise _ApiError(HTTPStatus.LENGTH_REQUIRED, "bad-request", "Content-Length required")
            if n > MAX_BODY:
                self._body_done = n > 4 * MAX_BODY  # small excess is drained, big is not read
                raise _ApiError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "bad-request",
                                f"body: expected at most {MAX_BODY} bytes, got {n}")
            raw = self.rfile.read(n)
            self._body_done = True
            try:
                body = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise _ApiError(HTTPStatus.BAD_REQUEST, "bad-request",
                                f"body: expected a JSON object, got invalid JSON ({e})") from e
            if not isinstance(body, dict):
                raise _ApiError(HTTPStatus.BAD_REQUEST, "bad-request",
                                f"body: expected a JSON object, got {type(body).__name__}")
            return body

        def _send(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
            data = json.dumps(payload, separators=(",", ":")).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(data)
            self._access(status)

        def _send_error(self, e: _ApiError) -> None:
            self.close_connection = True
            self._drain_body()
            with contextlib.suppress(OSError):
                self._send(e.status, {"error": {"code": e.code, "message": e.message}})

        def _drain_body(self) -> None:
            """Read an unread small request body, so closing does not reset the connection
            (the client would lose our error answer)."""
            if getattr(self, "_body_done", False):
                return
            self._body_done = True
            try:
                n = int(self.headers.get("Content-Length") or "0")
            except ValueError:
                return
            if 0 < n <= 4 * MAX_BODY:
                with contextlib.suppress(OSError, ValueError):
                    self.connection.settimeout(1.0)
                    self.rfile.read(n)

        def _stream(self, s: Any) -> None:
            sse = "text/event-stream" in (self.headers.get("Accept") or "")
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream" if sse else "application/x-ndjson")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self._access(200)
            for ev in s.stream(poll_s=0.5, stop=api.stopping, alive=self._peer_alive):
                line = json.dumps(ev, separators=(",", ":"))
                out = f"event: {ev['event']}\ndata: {line}\n\n" if sse else line + "\n"
                self.wfile.write(out.encode())
                self.wfile.flush()

        def _peer_alive(self) -> bool:
            """False once the client closed its end (so a waiting stream frees its slot)."""
            try:
                ready, _, _ = select.select([self.connection], [], [], 0)
                if not ready:
                    return True
                return bool(self.connection.recv(1, socket.MSG_PEEK) != b"")
            except (OSError, ValueError):
                return False

    return Handler


def _route(path: str) -> str:
    """The route template for logs (ids elided)."""
    path = path.split("?", 1)[0]
    path = _SESSION_RE.sub(lambda m: "/v1/sessions/{id}" + (m.group(2) or ""), path)
    return _MESSAGE_RE.sub("/v1/messages/{id}", path)[:80]
