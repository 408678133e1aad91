"""Who may talk to the local API over TCP: exact loopback Host names, and browser origins (pure).

DNS rebinding: a page on ``evil.example`` whose name later resolves to 127.0.0.1 sends
``Host: evil.example:4501``; so do ``127.evil.example`` and ``127.0.0.1.nip.io``. Only
the exact loopback names with the listening port pass (``127.0.0.1:P``, ``localhost:P``,
``[::1]:P``). On the Unix socket there is no Host to check (the socket's permissions
guard it, and no browser can reach it).

Origins: a request with an ``Origin`` header is a browser's. The daemon's own web app is
same-origin (``http://`` + the checked Host) and always allowed; any other origin only if
configured in ``api.allowed_origins`` (none by default), and then it gets CORS headers
and a preflight answer. Everything else is refused with ``403`` before any route runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["ALLOWED_REQUEST_HEADERS", "EXPOSED_HEADERS", "check_host", "check_origin",
           "cors_headers", "loopback_hosts", "preflight_headers"]

ALLOWED_REQUEST_HEADERS: Final = ("Content-Type", "Last-Event-ID")
EXPOSED_HEADERS: Final = ("Location", "Allow")
PREFLIGHT_MAX_AGE_S: Final = 600


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host header values a loopback listener on ``port`` accepts."""
    return frozenset({f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"})


def check_host(host: str | None, port: int | None) -> str | None:
    """``None`` if acceptable, else the refusal message. ``port`` None = Unix socket."""
    if port is None:
        return None
    if host is not None and host.lower() in loopback_hosts(port):
        return None
    names = f"127.0.0.1:{port}, localhost:{port}, [::1]:{port}"
    return f"Host header must be one of {names}, got {(host or '')[:80]!r}"


def check_origin(origin: str | None, host: str | None, port: int | None,
                 allowed: Iterable[str]) -> tuple[bool, str | None]:
    """``(cross_origin, refusal)``: refusal is None when the request may go on."""
    if origin is None:
        return False, None
    if port is not None and host is not None and origin.lower() == f"http://{host.lower()}":
        return False, None  # the daemon's own app
    if origin in tuple(allowed):
        return True, None
    return False, f"requests from browser origin {origin[:80]!r} are not allowed"


def cors_headers(origin: str) -> dict[str, str]:
    return {"Access-Control-Allow-Origin": origin, "Vary": "Origin",
            "Access-Control-Expose-Headers": ", ".join(EXPOSED_HEADERS)}


def preflight_headers(origin: str, methods: Iterable[str]) -> dict[str, str]:
    return {**cors_headers(origin), "Access-Control-Allow-Methods": ", ".join(methods),
            "Access-Control-Allow-Headers": ", ".join(ALLOWED_REQUEST_HEADERS),
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S)}
