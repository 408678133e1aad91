"""The local API's HTTP server: uvicorn (h11) on one asyncio loop in one thread.

Why not ``http.server``: it spends a thread per connection, has no read timeout (16
clients sending a body slowly locked everyone out) and a listen backlog of 5. Here:

- one event loop serves every connection; an idle connection costs a socket and a few
  KiB, no thread;
- **read deadline**: a request's line, headers and body must arrive within
  ``api.read_timeout_s`` of the connection opening (or of the previous response), else
  the connection gets ``408`` and is closed (uvicorn itself only times out idle
  keep-alive connections, so slow-header and slow-body clients would otherwise stay);
- idle keep-alive connections close after ``api.idle_timeout_s``;
- at most ``api.max_connections`` open connections: a new one beyond that closes the
  oldest connection that is idle or still sending its request (idle or half-open
  sockets cannot lock anyone out); if every connection is busy answering a request (event
  streams), the new request gets ``503 too-many-connections`` (from the app, as JSON);
  uvicorn's own ``limit_concurrency`` (four times that, plain-text 503) is the backstop;
- both listeners (Unix socket, loopback TCP) are bound here with ``api.backlog`` and
  handed to uvicorn, so a bind error is raised in the caller's thread with the path.

This is the only module that imports uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from kycedge.core.errors import KycEdgeError
from kycedge.unit.api.app import ApiApp, MessageLookup, StatusProvider
from kycedge.unit.api.config import ApiConfig
from kycedge.unit.session import SessionManager

__all__ = ["ApiServer", "ApiServerError", "openapi_document"]

log = logging.getLogger(__name__)

_TIMEOUT_BODY = json.dumps({"error": {"code": "request-timeout",
                                      "message": "the request did not arrive in time"}}).encode()
_TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/json\r\n"
                     b"Cache-Control: no-store\r\nConnection: close\r\n"
                     b"Content-Length: " + str(len(_TIMEOUT_BODY)).encode() + b"\r\n\r\n" + _TIMEOUT_BODY)


class ApiServerError(KycEdgeError):
    reason = "api-failed"


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document shipped beside this module."""
    doc: dict[str, Any] = json.loads(resources.files("kycedge.unit.api").joinpath("openapi.json").read_text())
    return doc


def _protocol(read_timeout_s: float, max_connections: int) -> type[H11Protocol]:
    class DeadlineH11(H11Protocol):
        """uvicorn's h11 protocol plus a read deadline per request and eviction of idle
        connections when the server is full."""

        _deadline: asyncio.TimerHandle | None = None
        _opened: float = 0.0

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self._opened = self.loop.time()
            self._arm()
            if _open_count(self.connections) > max_connections:
                self._evict_one()

        def _busy(self) -> bool:
            """True while a fully received request is being answered (maybe a stream)."""
            c = self.cycle
            return c is not None and not c.more_body and not c.response_complete

        def _evict_one(self) -> None:
            """Full: close the oldest connection that is idle or still sending its request,
            so connections that do nothing cannot lock out a client that asks something."""
            idle = [c for c in self.connections if c is not self and isinstance(c, DeadlineH11)
                    and not c.transport.is_closing() and not c._busy()]
            if idle:
                victim = min(idle, key=lambda c: c._opened)
                victim._disarm()
                if not victim.transport.is_closing():
                    victim.transport.close()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm()

        def _arm(self) -> None:
            self._disarm()
            self._deadline = self.loop.call_later(read_timeout_s, self._read_timed_out)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _read_timed_out(self) -> None:
            self._deadline = None
            cycle = self.cycle
            if cycle is not None and not cycle.more_body:
                return  # the request is in; the app is answering (maybe an event stream)
            if self.transport.is_closing():
                return
            if cycle is None or not cycle.response_started:
                with contextlib.suppress(Exception):
                    self.transport.write(_TIMEOUT_RESPONSE)
            self.transport.close()

    return DeadlineH11


def _open_count(connections: set[Any]) -> int:
    """Connections not already closing (a closed transport leaves the set a loop turn later)."""
    return sum(1 for c in connections if not c.transport.is_closing())


def _bind_unix(path: Path, mode: int, backlog: int) -> socket.socket:
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()  # a stale socket from a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as e:
        sock.close()
        raise ApiServerError(f"api.socket_path {path}: cannot listen: {e.strerror or e}") from e
    finally:
        os.umask(old)
    os.chmod(path, mode)
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def _bind_tcp(host: str, port: int, backlog: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        sock = socket.create_server((host, port), family=family, backlog=backlog)
    except OSError as e:
        raise ApiServerError(f"api.tcp_host/tcp_port {host}:{port}: cannot listen: {e.strerror or e}") from e
    sock.setblocking(False)
    return sock


class ApiServer:
    """Serves :class:`ApiApp` for a :class:`SessionManager` until :meth:`close`."""

    def __init__(self, config: ApiConfig, sessions: SessionManager, status: StatusProvider,
                 messages: MessageLookup) -> None:
        from kycedge.unit import webapp

        self.config = config
        self.sessions = sessions
        self.stopping = threading.Event()
        self.tcp_address: tuple[str, int] | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.app = ApiApp(config, sessions, status, messages, stopping=self.stopping,
                          connections=self._connections, consent_version=webapp.consent_version(),
                          app_dir=webapp.static_dir() if config.app_enabled else None,
                          openapi=openapi_document)

    def _connections(self) -> int:
        server = self._server
        return _open_count(server.server_state.connections) if server is not None else 0

    def start(self, timeout_s: float = 10.0) -> None:
        c = self.config
        sockets: list[socket.socket] = []
        try:
            if c.socket_path:
                sockets.append(_bind_unix(Path(c.socket_path), c.socket_mode, c.backlog))
            if c.tcp_port:
                tcp = _bind_tcp(c.tcp_host, c.tcp_port, c.backlog)
                host, port = tcp.getsockname()[:2]
                self.tcp_address = (str(host), int(port))
                sockets.append(tcp)
        except BaseException:
            for s in sockets:
                s.close()
            raise
        # uvicorn's start/stop chatter and its per-request "Exceeded concurrency limit."
        # (the backstop, answered with 503) stay out of the daemon's log
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        config = uvicorn.Config(
            self.app, lifespan="off", log_config=None, access_log=False, ws="none", loop="asyncio",
            http=_protocol(c.read_timeout_s, c.max_connections),
            timeout_keep_alive=int(max(1, round(c.idle_timeout_s))),
            backlog=c.backlog, limit_concurrency=4 * c.max_connections, timeout_graceful_shutdown=2,
            server_header=False, h11_max_incomplete_event_size=16 * 1024,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": sockets},
                                        name="api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ApiServerError("the local API server did not start (see the log above)")
            time.sleep(0.01)

    def close(self) -> None:
        self.stopping.set()
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.config.socket_path:
            with contextlib.suppress(OSError):
                Path(self.config.socket_path).unlink()
        self._server, self._thread = None, None
