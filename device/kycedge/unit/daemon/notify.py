"""``sd_notify(3)`` by hand: one datagram per state change over ``$NOTIFY_SOCKET``.

No libsystemd binding is needed: the protocol is newline-separated ``KEY=VALUE`` pairs
in one ``AF_UNIX``/``SOCK_DGRAM`` datagram sent to the path in ``$NOTIFY_SOCKET`` (a
leading ``@`` names an abstract socket). Outside systemd the variable is unset and every
call is a no-op, so the daemon runs the same under a shell, a test or systemd.

The watchdog interval comes from ``$WATCHDOG_USEC`` (only when ``$WATCHDOG_PID`` is
unset or names this process); the daemon pings at half of it from its main loop, so a
stuck main loop stops the pings and systemd restarts the unit.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["Notifier", "watchdog_interval_s"]


def watchdog_interval_s(env: Mapping[str, str] | None = None, pid: int | None = None) -> float | None:
    """The watchdog timeout systemd expects (seconds), or None when there is none."""
    env = os.environ if env is None else env
    usec = env.get("WATCHDOG_USEC", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    wpid = env.get("WATCHDOG_PID", "")
    if wpid and wpid != str(os.getpid() if pid is None else pid):
        return None
    return int(usec) / 1e6


class Notifier:
    """Sends READY/WATCHDOG/STATUS/STOPPING/RELOADING to systemd (no-op without it)."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._addr: str | None = None
        if address:
            self._addr = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        self.sent: list[str] = []  # last few messages, for diagnostics and tests
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self._addr is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=VALUE`` lines; returns False (and counts) when sending failed."""
        if self._addr is None:
            return False
        msg = "\n".join(f"{k}={v}" for k, v in fields.items())
        if "\n" in "".join(str(v) for v in fields.values()):
            raise ValueError("sd_notify values must be single-line")
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto(msg.encode("utf-8"), self._addr)
        except OSError:
            self.errors += 1
            return False
        self.sent = [*self.sent[-15:], msg]
        return True

    def ready(self, status: str = "") -> bool:
        return self.notify(READY=1, **({"STATUS": status} if status else {}))

    def watchdog(self) -> bool:
        return self.notify(WATCHDOG=1)

    def status(self, text: str) -> bool:
        return self.notify(STATUS=text)

    def reloading(self) -> bool:
        usec = int(_monotonic_usec())
        return self.notify(RELOADING=1, MONOTONIC_USEC=usec)

    def stopping(self, status: str = "") -> bool:
        return self.notify(STOPPING=1, **({"STATUS": status} if status else {}))

    def extend_timeout(self, seconds: float) -> bool:
        return self.notify(EXTEND_TIMEOUT_USEC=int(seconds * 1e6))

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _monotonic_usec() -> float:
    import time

    return time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
