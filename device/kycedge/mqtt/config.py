"""The ``[uplink]`` config section: where the broker is and how the unit talks to it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kycedge.core.config import section

__all__ = ["UplinkConfig"]


@dataclass(frozen=True)
class UplinkConfig:
    """[uplink] MQTT 5 session to the broker (mutual TLS, persistent session, QoS 1)."""

    host: str = section("localhost", help="broker host name (must match its certificate)")
    port: int = section(8883, min=1, max=65535, help="broker TLS port")
    tls: bool = section(True, help="mutual TLS; false only for a local test broker")
    ca_file: Path | None = section(None, help="CA certificate that signed the broker's certificate")  # noqa: RUF009
    cert_file: Path | None = section(None, help="this client's certificate (CN = its broker identity)")  # noqa: RUF009
    key_file: Path | None = section(None, help="this client's TLS private key (EC P-256, mode 0600)")  # noqa: RUF009
    client_id: str = section("", help="MQTT client id; empty = derived from the identity")
    keepalive_s: int = section(30, min=5, max=3600, help="MQTT keep-alive")
    session_expiry_s: int = section(
        7 * 86_400, min=0, max=0xFFFFFFFE, help="broker keeps the session (and queued receipts) this long"
    )
    connect_timeout_s: float = section(10.0, min=0.1, max=600.0, help="wait for CONNACK")
    publish_timeout_s: float = section(10.0, min=0.1, max=600.0, help="wait for PUBACK")
    reconnect_min_s: int = section(1, min=1, max=3600, help="first reconnect delay (doubles each failure)")
    reconnect_max_s: int = section(60, min=1, max=86_400, help="longest reconnect delay")
    max_inflight: int = section(64, min=1, max=65535, help="QoS 1 publishes awaiting PUBACK")

    def __post_init__(self) -> None:
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError(
                f"reconnect_max_s must be >= reconnect_min_s ({self.reconnect_min_s}), "
                f"got {self.reconnect_max_s}"
            )
        if self.tls and (self.ca_file is None or self.cert_file is None or self.key_file is None):
            missing = [n for n in ("ca_file", "cert_file", "key_file") if getattr(self, n) is None]
            raise ValueError(
                f"tls = true needs ca_file, cert_file and key_file; missing: {', '.join(missing)}"
            )
