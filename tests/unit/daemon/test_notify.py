"""sd_notify over a real datagram socket, as systemd's manager would receive it."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from kycedge.unit.daemon.notify import Notifier, watchdog_interval_s


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    yield path, s
    s.close()


def test_messages_arrive_as_systemd_reads_them(listener: tuple[str, socket.socket]) -> None:
    path, s = listener
    n = Notifier(path)
    assert n.enabled
    assert n.ready(status="ready: queue 0")
    assert s.recv(4096) == b"READY=1\nSTATUS=ready: queue 0"
    n.watchdog()
    assert s.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert s.recv(4096) == b"STOPPING=1"
    n.reloading()
    msg = s.recv(4096).decode()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=")
    with pytest.raises(ValueError, match="single-line"):
        n.status("two\nlines")
    n.close()


def test_abstract_socket_address() -> None:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0kycedge-test-notify")
    s.settimeout(2)
    try:
        Notifier("@kycedge-test-notify").status("hello")
        assert s.recv(100) == b"STATUS=hello"
    finally:
        s.close()


def test_without_systemd_everything_is_a_no_op(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    n = Notifier()
    assert not n.enabled
    assert not n.ready()
    gone = Notifier(str(tmp_path / "missing.sock"))
    assert not gone.watchdog()
    assert gone.errors == 1


def test_watchdog_interval() -> None:
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000"}) == 30.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "7"}, pid=7) == 5.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "junk"}) is None
