"""The slow-retrieval guard fires at its grace period over real HTTP (urllib3, loopback),
for metadata and for targets, against a server that drips the body one byte at a time."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from kycedge.unit.updates.agent import UpdateAgent, UpdateReport
from kycedge.unit.updates.tuf_client import ResumableFetcher, Urllib3Transport
from tuf.api import exceptions as tuf_exc

from .helpers import FakeDaemon, Fleet, make_agent

GRACE_S = 2.0
DRIP_BPS = 10.0        # the review's 10 B/s against a 1000 B/s floor


def timed_check(agent: UpdateAgent, limit_s: float) -> tuple[UpdateReport | None, float]:
    """check_now in a thread: (status, seconds), status None if it did not end within limit_s."""
    out: list[UpdateReport] = []
    t0 = time.monotonic()
    th = threading.Thread(target=lambda: out.append(agent.check_now()), daemon=True)
    th.start()
    th.join(limit_s)
    return (out[0] if out else None), time.monotonic() - t0


def slow_agent(tmp_path: Path, fleet: Fleet, daemon: FakeDaemon) -> UpdateAgent:
    return make_agent(tmp_path, fleet, daemon, min_download_bytes_per_s=1000, slow_grace_s=GRACE_S,
                      download_retries=0, read_timeout_s=5.0)


def test_dripped_metadata_cut_at_the_grace_period(unit_on_v1: UpdateAgent, fleet: Fleet,
                                                  daemon: FakeDaemon, tmp_path: Path) -> None:
    fleet.release(2)
    fleet.faults.drip[r"/metadata/timestamp\.json$"] = DRIP_BPS
    st, took = timed_check(slow_agent(tmp_path, fleet, daemon), 30.0)
    assert st is not None, f"still downloading after {took:.0f} s (grace {GRACE_S} s)"
    assert (st.outcome, st.reason) == ("failed", "unreachable"), st
    assert "too slow" in st.message
    assert GRACE_S <= took < GRACE_S + 8.0, took  # a 10 B/s drip of the file takes minutes
    assert unit_on_v1.store.installed_version() == 1


def test_dripped_target_cut_at_the_grace_period_then_resumed(unit_on_v1: UpdateAgent, fleet: Fleet,
                                                             daemon: FakeDaemon, tmp_path: Path) -> None:
    fleet.release(2)
    fleet.faults.drip[r"/targets/bundles/2/.*emb\.tflite$"] = DRIP_BPS
    agent = slow_agent(tmp_path, fleet, daemon)
    st, took = timed_check(agent, 30.0)
    assert st is not None, f"still downloading after {took:.0f} s (grace {GRACE_S} s)"
    assert (st.outcome, st.reason) == ("failed", "unreachable"), st
    assert "too slow" in st.message
    assert GRACE_S <= took < GRACE_S + 8.0, took  # a 10 B/s drip of the file takes minutes
    fleet.faults.drip.clear()
    assert agent.check_now().bundle_version == 2                   # the next check resumes
    with fleet.faults.lock:
        ranges = [r for p, r in fleet.faults.requests if p.endswith("emb.tflite") and r]
    assert ranges, fleet.faults.requests
    assert ranges[0].startswith("bytes=")
    assert ranges[0] != "bytes=0-"


def test_fetcher_over_urllib3_sees_each_dripped_byte(fleet: Fleet, tmp_path: Path) -> None:
    """The fetcher itself, metadata path (never resumed) and target path (resumable)."""
    (fleet.www / "metadata").mkdir(exist_ok=True)
    (fleet.www / "targets").mkdir(exist_ok=True)
    (fleet.www / "metadata" / "big.json").write_bytes(b"{" + b" " * 4998 + b"}")
    (fleet.www / "targets" / "t.bin").write_bytes(bytes(5000))
    fleet.faults.drip[r"/(big\.json|t\.bin)$"] = DRIP_BPS
    f = ResumableFetcher(Urllib3Transport(connect_timeout_s=2.0, read_timeout_s=5.0), tmp_path / "partial",
                         resumable_prefixes=(f"{fleet.url}/targets/",), retries=0, backoff_s=0.0,
                         min_bytes_per_s=1000, slow_grace_s=GRACE_S)
    for url in (f"{fleet.url}/metadata/big.json", f"{fleet.url}/targets/t.bin"):
        errors: list[BaseException] = []

        def fetch(u: str = url, errors: list[BaseException] = errors) -> None:
            try:
                with f.download_file(u, 10_000) as out:
                    out.read()
            except BaseException as e:
                errors.append(e)

        t0 = time.monotonic()
        th = threading.Thread(target=fetch, daemon=True)
        th.start()
        th.join(30.0)
        took = time.monotonic() - t0
        assert errors, f"{url}: not cut after {took:.0f} s"
        assert isinstance(errors[0], tuf_exc.DownloadError)
        assert "too slow" in str(errors[0])
        assert GRACE_S <= took < GRACE_S + 8.0, (url, took)
    assert list((tmp_path / "partial").glob("*.part"))             # the target's bytes are kept


@pytest.fixture(autouse=True)
def _stop_dripping(fleet: Fleet) -> object:
    yield None
    fleet.faults.stop.set()                                        # frees a stuck client at once


def test_dripped_response_headers_cut_at_the_grace_period(tmp_path: Path) -> None:
    """Each header byte comes within the read timeout, the headers never end: the transport's
    header deadline (the grace period) cuts the request."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    stop = threading.Event()

    class HeaderDrip(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                while not stop.is_set():
                    self.wfile.write(b"a")
                    self.wfile.flush()
                    stop.wait(1.0 / DRIP_BPS)
            except OSError:
                pass

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), HeaderDrip)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/metadata/timestamp.json"
    f = ResumableFetcher(Urllib3Transport(connect_timeout_s=2.0, read_timeout_s=5.0,
                                          header_deadline_s=GRACE_S),
                         tmp_path / "partial", retries=0, backoff_s=0.0, min_bytes_per_s=1000,
                         slow_grace_s=GRACE_S)
    errors: list[BaseException] = []

    def fetch() -> None:
        try:
            with f.download_file(url, 10_000) as out:
                out.read()
        except BaseException as e:
            errors.append(e)

    try:
        t0 = time.monotonic()
        th = threading.Thread(target=fetch, daemon=True)
        th.start()
        th.join(30.0)
        took = time.monotonic() - t0
        assert errors, f"not cut after {took:.0f} s"
        assert isinstance(errors[0], tuf_exc.DownloadError)
        assert "response headers not complete" in str(errors[0])
        assert GRACE_S <= took < GRACE_S + 8.0, took
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
