#!/usr/bin/env python3
"""Local API under attack from the same machine: are other clients still served?

For each attack, an honest client keeps calling ``GET /v1/info`` (loopback TCP, 2 s
timeout) while the attack runs; the tool prints what that client got (200s, 503s,
errors, latency) and what the attacker's connections got. Attacks (bounded, loopback):

- ``slow-body``: 16 clients send POST headers announcing 1000 bytes, then 1 byte a second;
- ``slow-headers``: 32 clients send one header line a second and never finish (slowloris);
- ``half-open``: 70 connections opened and left idle (nothing sent);
- ``burst``: 60 clients connect at the same instant, each sends GET /v1/info;
- ``burst-unix``: 60 non-blocking connects to the Unix socket at once (``EAGAIN`` = backlog full);
- ``flood``: 200 idle connections, more than ``api.max_connections``.

``--server new`` is this package's server (uvicorn); ``--server old`` is the
``http.server`` one it replaced, loaded from git (``--old-rev``, default the commit
before the swap), as the peer in the same run; ``both`` (default) runs each.

    .venv/bin/python tools/bench_api_attacks.py [--server both] [--seconds 8]
"""

from __future__ import annotations

import argparse
import http.client
import importlib.util
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from kycedge.unit.capture.fake import FakeCamera
from kycedge.unit.session import SessionManager

OLD_REV = "9bb7500"
_SOCK: dict[int, str] = {}  # port -> the same server's Unix socket path


class _Analyzer:
    model_id, model_version = "none", "0"

    def process_frame(self, rgb: Any) -> Any:
        raise RuntimeError("no sessions in this benchmark")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(kind: str, workdir: Path, old_rev: str) -> tuple[Any, int]:
    port = _free_port()
    sock_path = str(workdir / "api.sock")
    sessions = SessionManager(FakeCamera([np.zeros((8, 8, 3), np.uint8)]), _Analyzer(),
                              lambda c: None, None)  # type: ignore[arg-type]
    status: Callable[[], dict[str, Any]] = lambda: {"status": "ready", "queue": {"count": 0}}  # noqa: E731
    if kind == "new":
        from kycedge.unit.api import ApiConfig, ApiServer

        api = ApiServer(ApiConfig(socket_path=sock_path, tcp_port=port), sessions, status, lambda m: None)
    else:
        src = subprocess.run(["git", "show", f"{old_rev}:device/kycedge/unit/api.py"], check=True,
                             capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]).stdout
        path = workdir / "old_api.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location("old_api", path)
        assert spec is not None
        assert spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        sys.modules["old_api"] = mod  # dataclasses look their module up
        spec.loader.exec_module(mod)
        api = mod.ApiServer(mod.ApiConfig(socket_path=sock_path, tcp_port=port), sessions, status,
                            lambda m: None)
    api.start()
    _SOCK[port] = sock_path
    return api, port


class Victim(threading.Thread):
    """Calls GET /v1/info back to back until stopped; records outcomes and latencies."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port, self.stop = port, threading.Event()
        self.ok = self.busy = self.errors = 0
        self.latency_ms: list[float] = []
        self.kinds: dict[str, int] = {}
        self.threads_max = 0

    def run(self) -> None:
        while not self.stop.is_set():
            self.threads_max = max(self.threads_max, len(os.listdir("/proc/self/task")))
            t0 = time.perf_counter()
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2.0)
                c.request("GET", "/v1/info")
                r = c.getresponse()
                r.read()
                c.close()
                if r.status == 200:
                    self.ok += 1
                    self.latency_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    self.busy += 1
                    self.kinds[str(r.status)] = self.kinds.get(str(r.status), 0) + 1
            except (OSError, http.client.HTTPException) as e:
                self.errors += 1
                self.kinds[type(e).__name__] = self.kinds.get(type(e).__name__, 0) + 1
                time.sleep(0.05)

    def report(self, seconds: float) -> dict[str, Any]:
        lat = sorted(self.latency_ms)
        return {"served_200": self.ok, "per_s": round(self.ok / seconds, 1), "non_200": self.busy,
                "errors": self.errors, "failures": self.kinds,
                "p50_ms": round(statistics.median(lat), 1) if lat else None,
                "max_ms": round(lat[-1], 1) if lat else None, "process_threads_max": self.threads_max}


def _connect(port: int) -> socket.socket | None:
    try:
        return socket.create_connection(("127.0.0.1", port), timeout=2.0)
    except OSError:
        return None


def _drip(socks: list[socket.socket], chunk: Callable[[int], bytes], stop: threading.Event,
          every_s: float = 1.0) -> dict[str, int]:
    """Send ``chunk(i)`` on each socket every ``every_s`` until stopped; count what the server did."""
    closed = 0
    i = 0
    while not stop.wait(every_s):
        i += 1
        for s in list(socks):
            try:
                s.sendall(chunk(i))
            except OSError:
                closed += 1
                socks.remove(s)
    return {"closed_by_server": closed, "still_open": len(socks)}


def attack_slow(port: int, n: int, first: bytes, chunk: Callable[[int], bytes],
                stop: threading.Event) -> dict[str, Any]:
    socks = [s for s in (_connect(port) for _ in range(n)) if s is not None]
    for s in socks:
        s.sendall(first)
    out = _drip(socks, chunk, stop)
    for s in socks:
        s.close()
    return {"connections": n, **out}


def attack_idle(port: int, n: int, stop: threading.Event) -> dict[str, Any]:
    socks = [s for s in (_connect(port) for _ in range(n)) if s is not None]
    opened = len(socks)
    stop.wait()
    alive = answered = 0
    for s in socks:
        s.setblocking(False)
        try:
            got = s.recv(4096)
            answered += got != b""  # e.g. 408 before the close
        except BlockingIOError:
            alive += 1  # nothing to read: still open
        except OSError:
            pass
        s.close()
    return {"connections": n, "opened": opened, "still_open_at_end": alive,
            "closed_by_server": opened - alive, "answered_before_close": answered}


def attack_burst_unix(path: str, n: int, stop: threading.Event) -> dict[str, Any]:
    """``n`` connects to the Unix socket at the same instant (non-blocking: EAGAIN = backlog full)."""
    socks, results = [], {}
    for _ in range(n):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.setblocking(False)
        try:
            s.connect(path)
            key = "connected"
            socks.append(s)
        except BlockingIOError:
            key, _ = "EAGAIN", s.close()
        except OSError as e:
            key, _ = f"errno {e.errno}", s.close()
        results[key] = results.get(key, 0) + 1
    answers: dict[str, int] = {}
    for s in socks:
        s.setblocking(True)
        s.settimeout(5)
        try:
            s.sendall(b"GET /v1/info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            key = s.recv(12).decode(errors="replace")[9:12] or "closed"
        except OSError as e:
            key = type(e).__name__
        answers[key] = answers.get(key, 0) + 1
        s.close()
    stop.wait()
    return {"connections": n, "connect": results, "answers": answers}


def attack_burst(port: int, n: int, stop: threading.Event) -> dict[str, Any]:
    barrier = threading.Barrier(n)
    results: dict[str, int] = {}
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5.0)
            c.request("GET", "/v1/info")
            key = str(c.getresponse().status)
            c.close()
        except (OSError, http.client.HTTPException) as e:
            key = type(e).__name__ + (f"[{e.errno}]" if isinstance(e, OSError) and e.errno else "")
        with lock:
            results[key] = results.get(key, 0) + 1

    threads = [threading.Thread(target=one, daemon=True) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    stop.wait()
    return {"connections": n, "answers": results}


ATTACKS: dict[str, Callable[[int, threading.Event], dict[str, Any]]] = {
    "slow-body": lambda p, s: attack_slow(
        p, 16, b"POST /v1/sessions HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000\r\n\r\n{" % p, lambda i: b" ", s),
    "slow-headers": lambda p, s: attack_slow(
        p, 32, b"GET /v1/info HTTP/1.1\r\n", lambda i: b"X-Slow-%d: 1\r\n" % i, s),
    "half-open": lambda p, s: attack_idle(p, 70, s),
    "burst": lambda p, s: attack_burst(p, 60, s),
    "burst-unix": lambda p, s: attack_burst_unix(_SOCK[p], 60, s),
    "flood": lambda p, s: attack_idle(p, 200, s),
}


def _attack(fn: Callable[[int, threading.Event], dict[str, Any]], port: int, stop: threading.Event,
            result: dict[str, Any]) -> None:
    result.update(fn(port, stop))


def run(kind: str, seconds: float, old_rev: str, only: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        api, port = start_server(kind, Path(tmp), old_rev)
        try:
            for name in only:
                time.sleep(1.0)  # let the previous attack's connections go
                victim = Victim(port)
                stop = threading.Event()
                result: dict[str, Any] = {}
                attacker = threading.Thread(target=_attack, args=(ATTACKS[name], port, stop, result),
                                            daemon=True)
                attacker.start()
                time.sleep(0.3)  # the attack is in place before the honest client starts
                victim.start()
                time.sleep(seconds)
                victim.stop.set()
                victim.join(5)
                stop.set()
                attacker.join(15)
                out[name] = {"other_client": victim.report(seconds), "attacker": result}
                print(f"{kind:>3} {name:<12} other client: {victim.ok:5d} served in {seconds:g} s, "
                      f"{victim.busy} non-200, {victim.errors} errors {victim.kinds or ''}, "
                      f"process threads <= {victim.threads_max}; attacker: {result}",
                      flush=True)
        finally:
            api.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=["new", "old", "both"], default="both")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each attack")
    ap.add_argument("--old-rev", default=OLD_REV, help="git revision holding the http.server API")
    ap.add_argument("--attacks", default=",".join(ATTACKS), help="comma-separated subset")
    ap.add_argument("--json", action="store_true", help="also print the whole report as JSON")
    args = ap.parse_args()
    only = [a for a in args.attacks.split(",") if a]
    print(f"load: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min), "
          f"{os.cpu_count()} CPUs", flush=True)
    report = {k: run(k, args.seconds, args.old_rev, only)
              for k in (["new", "old"] if args.server == "both" else [args.server])}
    if args.json:
        print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
