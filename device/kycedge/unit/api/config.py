"""[api] the local API and the agent's web app: listeners, limits, timeouts, browser origins."""

from __future__ import annotations

import ipaddress
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
    socket_mode: int = section(0o660, min=0o600, max=0o666, help="permissions of the Unix socket")
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
        "none by default"
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
        try:
            loopback = ipaddress.ip_address(self.tcp_host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"api.tcp_host: expected a loopback address, got {self.tcp_host!r}")
        if not self.socket_path and not self.tcp_port:
            raise ValueError("api: expected socket_path or tcp_port (or both), got neither")
        for origin in self.allowed_origins:
            if not origin.startswith(("http://", "https://")) or origin.endswith("/"):
                raise ValueError("api.allowed_origins: expected scheme://host[:port] values, "
                                 f"got {origin[:80]!r}")
