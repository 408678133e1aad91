"""ResumableFetcher through a fake of its one HTTP seam."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import urllib3
from kycedge.unit.updates.tuf_client import ResumableFetcher
from tuf.api import exceptions as tuf_exc

URL = "http://repo/targets/x.bin"
DATA = bytes(range(256)) * 40  # 10240 bytes


class Resp:
    def __init__(self, status: int, headers: dict[str, str], body: bytes, cut: bool = False) -> None:
        self.status, self._headers, self._body, self._cut = status, headers, body, cut
        self.read = 0

    def header(self, name: str) -> str | None:
        return self._headers.get(name)

    def chunks(self) -> Iterator[bytes]:
        for i in range(0, len(self._body), 1000):
            self.read += 1
            yield self._body[i:i + 1000]
        if self._cut:
            raise urllib3.exceptions.ProtocolError("connection broken")

    def close(self) -> None:
        pass


class FakeTransport:
    def __init__(self, script: list[object]) -> None:
        self.script = script
        self.calls: list[Mapping[str, str]] = []

    def get(self, url: str, headers: Mapping[str, str]) -> Resp:
        self.calls.append(dict(headers))
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, Resp)
        return step


def fetcher(t: FakeTransport, tmp: Path, retries: int = 3) -> ResumableFetcher:
    return ResumableFetcher(t, tmp / "partial", resumable_prefixes=("http://repo/targets/",),
                            retries=retries, backoff_s=0.0)


def full(n: int = len(DATA)) -> dict[str, str]:
    return {"Content-Length": str(n)}


def test_resume_after_cut(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, full(), DATA[:4000], cut=True),
                       Resp(206, {"Content-Length": str(len(DATA) - 4000),
                                  "Content-Range": f"bytes 4000-{len(DATA) - 1}/{len(DATA)}"}, DATA[4000:])])
    f = fetcher(t, tmp_path)
    with f.download_file(URL, len(DATA)) as out:
        assert out.read() == DATA
    assert t.calls == [{}, {"Range": "bytes=4000-"}]
    assert f.resumed == 1
    assert not list((tmp_path / "partial").iterdir())


def test_short_body_without_error_is_resumed(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, full(), DATA[:3000]),
                       Resp(206, {"Content-Range": f"bytes 3000-{len(DATA) - 1}/{len(DATA)}"}, DATA[3000:])])
    with fetcher(t, tmp_path).download_file(URL, len(DATA)) as out:
        assert out.read() == DATA


def test_server_ignoring_range_starts_over(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, full(), DATA[:5000], cut=True), Resp(200, full(), DATA)])
    with fetcher(t, tmp_path).download_file(URL, len(DATA)) as out:
        assert out.read() == DATA


def test_wrong_content_range_is_an_error(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, full(), DATA[:5000], cut=True),
                       Resp(206, {"Content-Range": f"bytes 0-{len(DATA) - 1}/{len(DATA)}"}, DATA)])
    with pytest.raises(tuf_exc.DownloadError, match="expected Content-Range starting at byte 5000"), \
            fetcher(t, tmp_path).download_file(URL, len(DATA)):
        pass


def test_announced_length_over_limit_is_refused_before_reading(tmp_path: Path) -> None:
    big = Resp(200, full(10**9), DATA)
    t = FakeTransport([big])
    with pytest.raises(tuf_exc.DownloadLengthMismatchError, match="expected at most 10240 bytes"), \
            fetcher(t, tmp_path).download_file(URL, len(DATA)):
        pass
    assert big.read == 0


def test_body_over_limit_stops_and_drops_partial(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, {}, DATA * 3)])
    with pytest.raises(tuf_exc.DownloadLengthMismatchError), \
            fetcher(t, tmp_path).download_file(URL, len(DATA)):
        pass
    assert not list((tmp_path / "partial").iterdir())


def test_416_restarts(tmp_path: Path) -> None:
    (tmp_path / "partial").mkdir()
    f = fetcher(FakeTransport([]), tmp_path)
    # A partial from an earlier, different file version: longer than the new file.
    import hashlib
    part = tmp_path / "partial" / (hashlib.sha256(URL.encode()).hexdigest()[:40] + ".part")
    part.write_bytes(b"x" * 9000)
    t = FakeTransport([Resp(416, {"Content-Range": "bytes */100"}, b""), Resp(200, full(100), DATA[:100])])
    f._transport = t
    with f.download_file(URL, len(DATA)) as out:
        assert out.read() == DATA[:100]
    assert t.calls == [{"Range": "bytes=9000-"}, {}]


def test_gives_up_after_retries_keeping_partial(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, full(), DATA[:2000], cut=True),
                       tuf_exc.DownloadError("refused"),
                       tuf_exc.DownloadError("refused")])
    with pytest.raises(tuf_exc.DownloadError, match="broke off 3 times"), \
            fetcher(t, tmp_path, retries=2).download_file(URL, len(DATA)):
        pass
    (part,) = (tmp_path / "partial").iterdir()
    assert part.stat().st_size == 2000


def test_http_error_status(tmp_path: Path) -> None:
    t = FakeTransport([Resp(404, {}, b"")])
    with pytest.raises(tuf_exc.DownloadHTTPError, match="got 404"), \
            fetcher(t, tmp_path).download_file(URL, len(DATA)):
        pass


def test_metadata_is_never_resumed(tmp_path: Path) -> None:
    t = FakeTransport([Resp(200, full(), DATA[:10], cut=True), Resp(200, full(), DATA)])
    with fetcher(t, tmp_path).download_file("http://repo/metadata/timestamp.json", len(DATA)) as out:
        assert out.read() == DATA
    assert t.calls == [{}, {}]


def test_slow_retrieval_is_cut_and_resumed(tmp_path: Path) -> None:
    """A server dripping bytes cannot hold the unit: after the grace period a transfer
    below the minimum average rate is cut, and the next attempt resumes with Range."""
    now = [0.0]

    class Drip(Resp):
        def chunks(self) -> Iterator[bytes]:
            for i in range(0, len(self._body), 1000):
                now[0] += 10.0                        # 1000 bytes every 10 s: 100 B/s
                self.read += 1
                yield self._body[i:i + 1000]

    t = FakeTransport([Drip(200, full(), DATA),
                       Resp(206, {"Content-Range": f"bytes 4000-{len(DATA) - 1}/{len(DATA)}"}, DATA[4000:])])
    f = ResumableFetcher(t, tmp_path / "partial", resumable_prefixes=("http://repo/targets/",), retries=1,
                         backoff_s=0.0, min_bytes_per_s=1024, slow_grace_s=30.0, clock=lambda: now[0])
    with f.download_file(URL, len(DATA)) as out:
        assert out.read() == DATA
    assert t.calls == [{}, {"Range": "bytes=4000-"}]
