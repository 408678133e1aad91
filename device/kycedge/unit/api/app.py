"""The local API as an ASGI application (Starlette requests/responses; the only Starlette importer).

Routes (documented in ``docs/local-api.md``, machine-readable at ``/v1/openapi.json``)::

    GET    /v1/info                       device, models, status (ready|busy|not-ready), queue, app
    GET    /v1/health                     200 {"ok": true} or 503 with why
    GET    /v1/openapi.json               the OpenAPI 3.1 description of this API
    GET    /v1/sessions                   today's sessions (references masked) for the app's list
    POST   /v1/sessions                   {"ref", "consent": {"version", "accepted"}, "timeout_s"?, "nonce"?}
                                          → 201 {"session", "events"}, Location: /v1/sessions/{id}
    GET    /v1/sessions/{id}              state and result
    DELETE /v1/sessions/{id}              cancel a capturing session
    GET    /v1/sessions/{id}/events       NDJSON (default) or SSE (Accept: text/event-stream) with
                                          ids, heartbeats, resume from Last-Event-ID
    GET    /v1/sessions/{id}/preview      the latest frame as a small JPEG (only with api.preview_enabled;
                                          no-store; 404 no-preview otherwise)
    GET    /v1/messages/{message_id}      queued / receipt for a message (also after a restart)
    GET    /app/...                       the agent's web app (TCP listener only)

Every GET route answers HEAD; every route answers OPTIONS (``Allow``; a CORS preflight
for a configured origin); a method a route does not have gets ``405`` with ``Allow``.
Errors are ``{"error": {"code": REASON, "message": TEXT}}``. Who may call is decided
first by :mod:`kycedge.unit.api.guard` (Host, Origin); request bodies are parsed by
:mod:`kycedge.unit.api.jsonbody`; the event stream's framing is :mod:`kycedge.unit.api.events`.
Provider calls (status, message look-up, session start) run in the thread pool, so a
slow SQLite read never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from kycedge.core.errors import KycEdgeError, SessionError
from kycedge.protocol.ids import CONSENT_VERSION_RE, MESSAGE_ID_TEXT_RE
from kycedge.unit.api import events as wire
from kycedge.unit.api import guard
from kycedge.unit.api.config import ApiConfig
from kycedge.unit.api.jsonbody import MAX_BODY_BYTES, BodyError, parse_object
from kycedge.unit.session import Consent, Session, SessionBusyError, SessionManager, SessionNotFoundError

__all__ = ["ApiApp", "MessageLookup", "StatusProvider"]

log = logging.getLogger(__name__)

StatusProvider = Callable[[], dict[str, Any]]
MessageLookup = Callable[[str], dict[str, Any] | None]
Handler = Callable[[Request, re.Match[str]], Awaitable[Response]]

_STREAM_POLL_S = 0.1
_FINAL_WAIT_S = 1.5  # within uvicorn's 2 s graceful shutdown
_NO_STORE = {"Cache-Control": "no-store"}
# the app's own files: nothing from elsewhere, no framing, revalidated on every load
_APP_HEADERS = [(k.encode(), v.encode()) for k, v in {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' blob:; connect-src 'self'; form-action 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
}.items()]


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}


def json_response(status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    data = json.dumps(payload, separators=(",", ":")).encode()
    return Response(data, status_code=status, media_type="application/json",
                    headers={**_NO_STORE, **(headers or {})})


def error_response(e: ApiError) -> Response:
    return json_response(e.status, {"error": {"code": e.code, "message": e.message}}, e.headers)


def mask_ref(ref: str) -> str:
    """What the app's list shows of a reference: never the whole of it."""
    return "\u2026" + ref[-3:] if len(ref) > 6 else "\u2026"


@dataclass(frozen=True)
class _Route:
    pattern: re.Pattern[str]
    template: str
    methods: dict[str, Handler]

    @property
    def allow(self) -> list[str]:
        names = list(self.methods)
        if "GET" in names:
            names.append("HEAD")
        return [*names, "OPTIONS"]


class ApiApp:
    """The ASGI callable: guard, route, answer. ``connections`` counts open connections."""

    def __init__(self, config: ApiConfig, sessions: SessionManager, status: StatusProvider,
                 messages: MessageLookup, *, stopping: threading.Event,
                 connections: Callable[[], int] = lambda: 0,
                 consent_version: str | None = None, app_dir: Path | None = None,
                 openapi: Callable[[], dict[str, Any]] | None = None) -> None:
        self.config, self.sessions, self.status, self.messages = config, sessions, status, messages
        self.stopping = stopping
        self.connections = connections
        self.consent_version = consent_version
        self.openapi = openapi
        self.static = StaticFiles(directory=app_dir, html=True) if app_dir is not None else None
        s = r"([0-9a-f]{32})"
        self.routes = [
            _Route(re.compile(r"/v1/info"), "/v1/info", {"GET": self._info}),
            _Route(re.compile(r"/v1/health"), "/v1/health", {"GET": self._health}),
            _Route(re.compile(r"/v1/openapi\.json"), "/v1/openapi.json", {"GET": self._openapi}),
            _Route(re.compile(r"/v1/sessions"), "/v1/sessions", {"GET": self._list, "POST": self._start}),
            _Route(re.compile(rf"/v1/sessions/{s}"), "/v1/sessions/{id}",
                   {"GET": self._session, "DELETE": self._cancel}),
            _Route(re.compile(rf"/v1/sessions/{s}/events"), "/v1/sessions/{id}/events",
                   {"GET": self._events}),
            _Route(re.compile(rf"/v1/sessions/{s}/preview"), "/v1/sessions/{id}/preview",
                   {"GET": self._preview}),
            _Route(re.compile(rf"/v1/messages/({MESSAGE_ID_TEXT_RE.pattern})"), "/v1/messages/{id}",
                   {"GET": self._message}),
        ]

    # ---- ASGI ---------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        route_name = "?"
        cross_origin = False
        try:
            cross_origin = self._guard(request)
            if self.connections() > self.config.max_connections:
                raise ApiError(503, "too-many-connections",
                               f"more than {self.config.max_connections} open connections; retry shortly",
                               {"Connection": "close", "Retry-After": "1"})
            path = scope["path"]
            server = scope.get("server")
            on_tcp = server is not None and server[1] is not None
            if self.static is not None and on_tcp and (path == "/" or path.startswith("/app")):
                await self._serve_app(scope, receive, send)
                return
            route, match = self._match(path)
            route_name = route.template
            response = await self._dispatch(request, route, match, cross_origin)
        except ApiError as e:
            response = error_response(e)
        except Exception as e:  # a bug: answer and log it, never a bare connection reset
            log.error("api handler failed", extra={"route": route_name, "error": type(e).__name__})
            response = error_response(ApiError(500, "internal-error",
                                               f"internal error ({type(e).__name__}); see the daemon log"))
        if cross_origin:
            response.headers.update(guard.cors_headers(request.headers["origin"]))
        log.debug("api request", extra={"method": scope["method"], "route": route_name,
                                        "status": response.status_code})
        await response(scope, receive, send)

    def _guard(self, request: Request) -> bool:
        server = request.scope.get("server")
        port = server[1] if server is not None else None
        host = request.headers.get("host")
        refused = guard.check_host(host, port)
        if refused is not None:
            raise ApiError(403, "host-refused", refused)
        cross, refused = guard.check_origin(request.headers.get("origin"), host, port,
                                            self.config.allowed_origins)
        if refused is not None:
            raise ApiError(403, "origin-refused", refused)
        return cross

    def _match(self, path: str) -> tuple[_Route, re.Match[str]]:
        for route in self.routes:
            m = route.pattern.fullmatch(path)
            if m is not None:
                return route, m
        raise ApiError(404, "no-such-route", f"no route {path[:80]!r}")

    async def _dispatch(self, request: Request, route: _Route, match: re.Match[str],
                        cross_origin: bool) -> Response:
        method = request.method
        allow = ", ".join(route.allow)
        if method == "OPTIONS":
            wanted = request.headers.get("access-control-request-method")
            if cross_origin and wanted is not None:
                return Response(status_code=204, headers=guard.preflight_headers(
                    request.headers["origin"], route.allow))
            return Response(status_code=204, headers={"Allow": allow})
        handler = route.methods.get("GET" if method == "HEAD" else method)
        if handler is None:
            raise ApiError(405, "method-not-allowed",
                           f"{route.template}: expected {allow}, got {method[:16]}", {"Allow": allow})
        try:
            return await handler(request, match)
        except SessionBusyError as e:
            raise ApiError(409, e.reason, e.message) from e
        except SessionNotFoundError as e:
            raise ApiError(404, e.reason, e.message) from e
        except BodyError as e:
            raise ApiError(413 if e.reason == "body-too-large" else 400, e.reason, e.message) from e
        except SessionError as e:
            status = {"not-cancellable": 409, "shutting-down": 503}.get(e.reason, 400)
            raise ApiError(status, e.reason, e.message) from e
        except KycEdgeError as e:
            raise ApiError(500, e.reason, e.message) from e

    async def _serve_app(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.static is not None
        if scope["path"] in ("/", "/app"):
            await Response(status_code=308, headers={"Location": "/app/", **_NO_STORE})(scope, receive, send)
            return
        if scope["method"] not in ("GET", "HEAD"):
            refusal = ApiError(405, "method-not-allowed", "the app is read-only; expected GET",
                               {"Allow": "GET, HEAD"})
            await error_response(refusal)(scope, receive, send)
            return
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_APP_HEADERS]
            await send(message)

        try:
            await self.static({**scope, "root_path": scope.get("root_path", "") + "/app"}, receive,
                              with_headers)
        except HTTPException as e:  # not found, outside the app's directory, bad method
            code = "no-such-route" if e.status_code == 404 else "bad-request"
            await error_response(ApiError(e.status_code, code, f"app: {e.detail}"))(scope, receive, send)

    # ---- handlers -----------------------------------------------------------------------
    async def _info(self, request: Request, m: re.Match[str]) -> Response:
        info = await run_in_threadpool(self.status)
        info["app"] = {"language": self.config.app_language, "consent_version": self.consent_version,
                       "preview": self.config.preview_enabled}
        return json_response(200, info)

    async def _health(self, request: Request, m: re.Match[str]) -> Response:
        ok, why = self.sessions.healthy()
        return json_response(200 if ok else 503, {"ok": ok, "detail": why})

    async def _openapi(self, request: Request, m: re.Match[str]) -> Response:
        if self.openapi is None:
            raise ApiError(404, "no-such-route", "no OpenAPI document in this build")
        return json_response(200, self.openapi())

    async def _list(self, request: Request, m: re.Match[str]) -> Response:
        midnight = time.mktime((*time.localtime()[:3], 0, 0, 0, 0, 0, -1))
        items = []
        for s in reversed(self.sessions.recent()):
            if s.started_at < midnight:
                continue
            with s.cond:
                result = s.result or {}
                items.append({"session": s.id, "ref_hint": mask_ref(s.ref), "state": s.state,
                              "started_at": round(s.started_at, 3),
                              "status": result.get("status"), "reason": result.get("reason")})
        return json_response(200, {"sessions": items})

    async def _start(self, request: Request, m: re.Match[str]) -> Response:
        body = await self._body(request)
        allowed = {"ref", "timeout_s", "consent", "nonce"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            names = ", ".join(k[:40] for k in unknown)
            raise ApiError(400, "bad-request", f"unknown field(s) {names}; expected ref, consent, "
                           "timeout_s, nonce")
        if "ref" not in body:
            raise ApiError(400, "bad-request", "field ref is required")
        timeout = body.get("timeout_s")
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
            raise ApiError(400, "bad-request", f"timeout_s: expected a number, got {type(timeout).__name__}")
        if "consent" not in body:
            raise ApiError(400, "consent-required", 'field consent is required: {"version": the consent '
                           "text's version shown to the customer, \"accepted\": true|false}")
        consent = self._consent(body.get("consent"))
        s = await run_in_threadpool(self.sessions.start, body["ref"], timeout, consent, body.get("nonce"))
        where = f"/v1/sessions/{s.id}"
        return json_response(201, {"session": s.id, "ref": s.ref, "events": f"{where}/events"},
                             {"Location": where})

    def _consent(self, raw: object) -> Consent:
        if not isinstance(raw, dict) or set(raw) != {"version", "accepted"}:
            raise ApiError(400, "bad-consent",
                           'consent: expected {"version": TEXT, "accepted": true|false}')
        version, accepted = raw["version"], raw["accepted"]
        if not isinstance(accepted, bool):
            raise ApiError(400, "bad-consent",
                           f"consent.accepted: expected true or false, got {accepted!r:.20}")
        if not isinstance(version, str) or not CONSENT_VERSION_RE.fullmatch(version):
            raise ApiError(400, "bad-consent", f"consent.version: expected {CONSENT_VERSION_RE.pattern}, "
                           f"got {version!r:.40}")
        if self.consent_version is not None and version != self.consent_version:
            raise ApiError(409, "consent-outdated", f"consent.version: this unit shows consent text "
                           f"{self.consent_version!r}, got {version!r}; reload the app")
        return Consent(version=version, accepted=accepted)

    async def _body(self, request: Request) -> dict[str, Any]:
        ctype = (request.headers.get("content-type") or "").split(";")[0].strip()
        if ctype != "application/json":
            raise ApiError(415, "bad-request", f"Content-Type: expected application/json, got {ctype[:60]!r}")
        try:
            n = int(request.headers.get("content-length") or "-1")
        except ValueError:
            n = -1
        if n < 0:
            raise ApiError(411, "bad-request", "Content-Length required")
        if n > MAX_BODY_BYTES:
            if n <= 4 * MAX_BODY_BYTES:  # read a small excess, so the client hears the answer
                with contextlib.suppress(ClientDisconnect):
                    async for _ in request.stream():
                        pass
            raise ApiError(413, "body-too-large", f"body: expected at most {MAX_BODY_BYTES} bytes, got {n}",
                           {"Connection": "close"})
        raw = bytearray()
        try:
            async for chunk in request.stream():
                raw += chunk
                if len(raw) > n:
                    break
        except ClientDisconnect as e:
            raise ApiError(400, "bad-request", "the client went away while sending the body") from e
        return parse_object(bytes(raw[:n]))

    async def _session(self, request: Request, m: re.Match[str]) -> Response:
        return json_response(200, self.sessions.get(m.group(1)).summary())

    async def _cancel(self, request: Request, m: re.Match[str]) -> Response:
        s = self.sessions.cancel(m.group(1))
        return json_response(202, {"session": s.id, "state": "cancelling"})

    async def _preview(self, request: Request, m: re.Match[str]) -> Response:
        s = self.sessions.get(m.group(1))
        jpeg = s.preview if self.config.preview_enabled else None
        if jpeg is None:
            why = "disabled on this unit (api.preview_enabled)" if not self.config.preview_enabled else (
                "no frame yet, or the capture has ended")
            raise ApiError(404, "no-preview", f"no preview: {why}")
        return Response(jpeg, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store, max-age=0", "Pragma": "no-cache"})

    async def _message(self, request: Request, m: re.Match[str]) -> Response:
        found = await run_in_threadpool(self.messages, m.group(1))
        if found is None:
            raise ApiError(404, "no-such-message",
                           f"message {m.group(1)!r} is neither queued nor receipted here")
        return json_response(200, found)

    async def _events(self, request: Request, m: re.Match[str]) -> Response:
        s = self.sessions.get(m.group(1))
        sse = "text/event-stream" in (request.headers.get("accept") or "")
        try:
            after = wire.parse_last_event_id(request.headers.get("last-event-id"))
        except ValueError as e:
            raise ApiError(400, "bad-request", str(e)) from e
        start = 0 if after is None else after + 1
        pending, done = s.since(start)
        if done and not pending:
            return Response(status_code=204, headers=_NO_STORE)  # EventSource: stop reconnecting
        media = "text/event-stream" if sse else "application/x-ndjson"
        headers = {**_NO_STORE, "X-Accel-Buffering": "no"}
        if request.method == "HEAD":
            return Response(status_code=200, media_type=media, headers=headers)
        return StreamingResponse(self._stream(s, start, sse), media_type=media, headers=headers)

    async def _stream(self, s: Session, start: int, sse: bool) -> AsyncIterator[str]:
        i = start
        beat = self.config.heartbeat_s
        yield wire.preamble(sse)
        quiet_since = time.monotonic()
        while True:
            pending, done = s.since(i)
            for n, ev in pending:
                yield wire.frame(n, ev, sse)
                i = n + 1
            if done:
                return
            if self.stopping.is_set():  # shutting down: let a cancelled session say so, briefly
                deadline = time.monotonic() + _FINAL_WAIT_S
                while not done and time.monotonic() < deadline:
                    await asyncio.sleep(_STREAM_POLL_S)
                    pending, done = s.since(i)
                    for n, ev in pending:
                        yield wire.frame(n, ev, sse)
                        i = n + 1
                return
            now = time.monotonic()
            if pending:
                quiet_since = now
            elif now - quiet_since >= beat:
                yield wire.heartbeat(sse)
                quiet_since = now
            await asyncio.sleep(_STREAM_POLL_S)
