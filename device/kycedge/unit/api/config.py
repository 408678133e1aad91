"""[api] the local API and the agent's web app: listeners, limits, timeouts, browser origins."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal

from kycedge.core.config import section

__all__ = ["LANGUAGES", "ApiConfig"]

LANGUAGES = ("en", "zh-Hans", "ur", "fr")
Language = Literal["en", "zh-Hans", "ur", "fr"]


@dataclass(frozen=True)
class ApiConfig:
    """[api] local API for the agent's app (Unix socket and/or loopback TCP)."""

    socket_path: str = section(
        "/run/kycedge/api.sock", help="Unix socket path; empty string = no Unix socket"
    )
    socket_mode: int = section(0o660, min=0o600, max=0o777,
                               help="permissions of the Unix socket (never writable by others)")
    tcp_host: str = section("127.0.0.1", help="TCP address; must be a loopback address")
    tcp_port: int = section(
        0, min=0, max=65535, help="TCP port (0 = no TCP listener; MOSIP SBI uses 4501-4600)"
    )
    max_connections: int = section(
        64, min=1, max=1024, help="open connections served; beyond this a request gets 503"
    )
    backlog: int = section(256, min=16, max=4096, help="listen backlog of each listener")
    read_timeout_s: float = section(
        5.0, min=0.5, max=120.0,
        help="a request's line, headers and body must arrive within this (else the connection is closed)",
    )
    idle_timeout_s: float = section(
        5.0, min=0.5, max=600.0, help="an idle keep-alive connection is closed after this"
    )
    heartbeat_s: float = section(
        10.0, min=0.5, max=120.0, help="an event stream with nothing to say sends a heartbeat this often"
    )
    allowed_origins: tuple[str, ...] = section(
        (), help="browser Origin values (other than the daemon's own app) allowed to call the API; "
        "none by default; scheme://host[:port], http or https, never null or *"
    )
    app_enabled: bool = section(True, help="serve the agent's web app at /app/ (TCP listener only)")
    preview_enabled: bool = section(
        False, help="operator's choice: the app shows a live camera preview (small JPEGs served "
        "no-store, RAM only); off = the app draws only the face outline"
    )
    app_language: Language = section(  # noqa: RUF009 - a Literal of str
        "en", help="the web app's default language (en, zh-Hans, ur, fr)"
    )

    def __post_init__(self) -> None:
        problems = []  # every problem, one a line (from_mapping reports each with the file name)
        try:
            loopback = ipaddress.ip_address(self.tcp_host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            problems.append(f"api.tcp_host: expected a loopback address, got {self.tcp_host!r:.80}")
        if not self.socket_path and not self.tcp_port:
            problems.append("api: expected socket_path or tcp_port (or both), got neither")
        if self.socket_mode & 0o002:
            problems.append(
                f"api.socket_mode: expected no write permission for others (e.g. 0o660 or 0o600), "
                f"got {self.socket_mode:#o}: a socket others can write to "
                "lets any local user drive the camera and queue registrations")
        for i, origin in enumerate(self.allowed_origins):
            why = _origin_problem(origin)
            if why:
                problems.append(f"api.allowed_origins[{i}]: {why}")
        if problems:
            raise ValueError("\n".join(problems))


_ORIGIN_RE = re.compile(r"https?://(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?)(:[0-9]{1,5})?")


def _origin_problem(origin: str) -> str:
    """Why ``origin`` must not be allowed ('' if it may)."""
    if origin == "null":
        return ("expected a scheme://host[:port] origin, got 'null': browsers send Origin: null from "
                "sandboxed frames, file:// pages and data: URLs, so allowing it lets any such page call "
                "the unit's API")
    if origin == "*":
        return "expected a scheme://host[:port] origin, got '*': a wildcard would allow every web page"
    if not _ORIGIN_RE.fullmatch(origin):
        return ("expected an origin like https://agent-app.example or http://localhost:8080, "
                f"got {origin!r:.80}")
    return ""
