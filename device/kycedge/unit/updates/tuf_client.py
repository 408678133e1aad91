"""The unit's TUF client: the only module that imports ``tuf`` on the unit.

:class:`RepositoryClient` wraps python-tuf's ``ngclient.Updater`` so that the unit checks
exactly what TUF checks (signatures and thresholds, expiry, version monotonicity,
snapshot/timestamp consistency, target lengths and hashes) and converts every TUF or
transport failure into an :class:`~kycedge.protocol.update_errors.UpdateError` with a stable
``reason`` code.

The trust anchor is the ``root.json`` provisioned on the unit; TUF's metadata cache
lives in the state directory. Root rotations are followed automatically (each new root
must be signed by a threshold of the old and of the new root keys).

Downloads go through :class:`ResumableFetcher`: a target that breaks off mid-transfer is
resumed with an HTTP ``Range`` request (within the check, and in a later check from the
partial file it keeps), every download stops as soon as it exceeds its length limit, and
nothing reaches its destination before TUF has verified length and hash.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

import urllib3
from tuf.api import exceptions as tuf_exc
from tuf.ngclient.config import UpdaterConfig
from tuf.ngclient.fetcher import FetcherInterface
from tuf.ngclient.updater import Updater
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from kycedge.core.fsutil import storage_error, storage_reason
from kycedge.protocol.update_errors import FetchError, MetadataError, StageError, UpdateError

__all__ = [
    "HttpResponse",
    "HttpTransport",
    "RepositoryClient",
    "ResumableFetcher",
    "TargetMeta",
    "Urllib3Transport",
]

CHUNK = 64 * 1024


class HttpResponse(Protocol):
    status: int

    def header(self, name: str) -> str | None: ...
    def chunks(self) -> Iterator[bytes]: ...
    def close(self) -> None: ...


class HttpTransport(Protocol):
    """The one seam to HTTP: a GET with extra headers, streamed."""

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse: ...


class _Urllib3Response:
    def __init__(self, resp: urllib3.BaseHTTPResponse) -> None:
        self._resp = resp
        self.status = resp.status

    def header(self, name: str) -> str | None:
        value = self._resp.headers.get(name)
        return None if value is None else str(value)

    def chunks(self) -> Iterator[bytes]:
        # read1: at most one socket read per call, so the caller sees bytes as they arrive.
        # stream(CHUNK)/read(CHUNK) wait until CHUNK bytes are in: a server dripping 10 B/s
        # held each 64 KiB read for 6,500 s and the slow-retrieval guard never ran.
        while data := self._resp.read1(CHUNK):
            yield data

    def close(self) -> None:
        self._resp.release_conn()


def _with_header_deadline(base: type[HTTPConnection], deadline_s: float) -> type[HTTPConnection]:
    """``base`` whose response headers must be complete within ``deadline_s``.

    The read timeout bounds the wait for each byte only: a server dripping its status
    line and headers one byte at a time would hold the request for ever. A timer shuts
    the socket down at the deadline; the request then fails (http.client would take the
    resulting end of file for the end of the headers, so the cut is raised explicitly).
    """
    class DeadlineConnection(base):  # type: ignore[valid-type,misc]
        def getresponse(self) -> urllib3.HTTPResponse:
            sock = self.sock
            fired = threading.Event()

            def cut() -> None:
                fired.set()
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

            timer = threading.Timer(deadline_s, cut)
            timer.daemon = True
            if sock is not None:
                timer.start()
            try:
                resp: urllib3.HTTPResponse = super().getresponse()
            finally:
                timer.cancel()
            if fired.is_set():
                resp.release_conn()
                raise urllib3.exceptions.ProtocolError(
                    f"response headers not complete within {deadline_s:.0f} s; connection cut")
            return resp

    return DeadlineConnection


class Urllib3Transport:
    """HTTP(S) through urllib3 with connect/read timeouts and no automatic retries.

    ``header_deadline_s`` (the slow-retrieval grace) bounds the wait for a response's
    headers as a whole; the body is bounded by :class:`ResumableFetcher`'s rate guard.
    """

    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float,
                 ca_file: Path | None = None, header_deadline_s: float | None = None) -> None:
        kwargs: dict[str, object] = {"cert_reqs": "CERT_REQUIRED"}
        if ca_file is not None:
            kwargs["ca_certs"] = str(ca_file)
        self._pool = urllib3.PoolManager(**kwargs)  # type: ignore[arg-type]
        self._timeout = urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s)
        self._header_deadline_s = header_deadline_s
        if header_deadline_s is not None:
            http_conn = _with_header_deadline(HTTPConnection, header_deadline_s)
            https_conn = _with_header_deadline(HTTPSConnection, header_deadline_s)
            self._pool.pool_classes_by_scheme = {
                "http": type("DeadlineHTTPPool", (HTTPConnectionPool,), {"ConnectionCls": http_conn}),
                "https": type("DeadlineHTTPSPool", (HTTPSConnectionPool,), {"ConnectionCls": https_conn}),
            }

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        t0 = time.monotonic()
        try:
            # Length is checked by ResumableFetcher, which keeps the bytes of a short read.
            resp = self._pool.request("GET", url, headers=dict(headers), preload_content=False,
                                      enforce_content_length=False, retries=False, redirect=False,
                                      timeout=self._timeout)
        except urllib3.exceptions.HTTPError as e:
            took = time.monotonic() - t0
            if self._header_deadline_s is not None and took >= self._header_deadline_s:
                raise tuf_exc.DownloadError(
                    f"{url}: too slow: response headers not complete after {took:.0f} s, expected "
                    f"within {self._header_deadline_s:.0f} s ({e})") from e
            raise tuf_exc.DownloadError(f"{url}: cannot connect: {e}") from e
        return _Urllib3Response(resp)


class _Transient(Exception):
    """A download broke off; worth resuming."""


class _LocalWriteError(tuf_exc.DownloadError):
    """Our own write failed (a full or read-only state filesystem): not the network's fault,
    so not retried and not reported as ``unreachable``. A ``DownloadError`` so that TUF's
    fetcher passes it through; :func:`_translated` finds the ``OSError`` behind it."""


def _write(f: IO[bytes], data: bytes) -> None:
    try:
        f.write(data)
    except OSError as e:
        raise _LocalWriteError(f"cannot write the download: {e}") from e


def _flush(f: IO[bytes]) -> None:
    try:
        f.flush()
    except OSError as e:
        raise _LocalWriteError(f"cannot write the download: {e}") from e


def _local_storage_failure(e: BaseException) -> OSError | None:
    """The OSError in ``e``'s chain that says the local filesystem is full or read-only."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, OSError) and storage_reason(cur) != "storage-error":
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class ResumableFetcher(FetcherInterface):
    """A TUF fetcher with resumable downloads and strict length limits.

    URLs under one of ``resumable_prefixes`` (the targets) keep their bytes in
    ``partial_dir`` while downloading; after a broken transfer the next attempt asks for
    the rest with ``Range: bytes=N-`` (a server that ignores Range answers 200 and the
    file starts over). A partial file is removed once TUF has used it, whether it verified
    or not, so a corrupted partial is never resumed twice.
    """

    def __init__(self, transport: HttpTransport, partial_dir: Path, *,
                 resumable_prefixes: tuple[str, ...] = (), retries: int = 5,
                 backoff_s: float = 1.0, hard_limit_bytes: int = 4 * 2**30,
                 min_bytes_per_s: float = 0.0, slow_grace_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._transport = transport
        self._partial_dir = partial_dir
        self._prefixes = resumable_prefixes
        self._retries = retries
        self._backoff_s = backoff_s
        self._hard_limit = hard_limit_bytes
        # Slow-retrieval guard: a transfer must average at least min_bytes_per_s after a
        # grace period, else it is cut (and resumed later) instead of tying the unit up.
        self._min_rate = min_bytes_per_s
        self._grace_s = slow_grace_s
        self._clock = clock
        self.resumed = 0  # number of Range resumptions that the server honoured

    def _fetch(self, url: str) -> Iterator[bytes]:
        resp = self._transport.get(url, {})
        if resp.status != 200:
            resp.close()
            raise tuf_exc.DownloadHTTPError(f"{url}: expected HTTP 200, got {resp.status}", resp.status)
        try:
            yield from resp.chunks()
        except urllib3.exceptions.HTTPError as e:
            raise tuf_exc.DownloadError(f"{url}: transfer broke off: {e}") from e
        finally:
            resp.close()

    @contextlib.contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        max_length = min(max_length, self._hard_limit)
        resumable = any(url.startswith(p) for p in self._prefixes)
        if resumable:
            self._partial_dir.mkdir(parents=True, exist_ok=True)
            part = self._partial_dir / (hashlib.sha256(url.encode()).hexdigest()[:40] + ".part")
            f: IO[bytes] = open(part, "a+b")  # noqa: SIM115 - closed in finally
        else:
            part = None
            f = tempfile.TemporaryFile()  # noqa: SIM115
        try:
            attempt = 0
            while True:
                try:
                    if not resumable:
                        f.seek(0)
                        f.truncate(0)  # metadata may change between attempts: start over
                    self._download_into(url, f, max_length)
                    break
                except _Transient as e:
                    attempt += 1
                    if attempt > self._retries:
                        raise tuf_exc.DownloadError(
                            f"{url}: transfer broke off {attempt} times, last: {e}") from e
                    time.sleep(self._backoff_s)
            f.seek(0)
            try:
                yield f
            finally:
                # Used (verified or rejected): never resume from this partial again.
                if part is not None:
                    part.unlink(missing_ok=True)
        except (tuf_exc.DownloadLengthMismatchError, _LocalWriteError):
            # too long, or our filesystem refused it: a partial to resume would only keep
            # the space taken (a full disk would stay full and block every later update)
            if part is not None:
                part.unlink(missing_ok=True)
            raise
        finally:
            f.close()

    def _download_into(self, url: str, f: IO[bytes], max_length: int) -> None:
        f.seek(0, os.SEEK_END)
        have = f.tell()
        if have > max_length:
            f.truncate(0)
            have = 0
        headers = {"Range": f"bytes={have}-"} if have else {}
        try:
            resp = self._transport.get(url, headers)
        except tuf_exc.DownloadError as e:
            raise _Transient(str(e)) from e
        try:
            if have and resp.status == 206:
                m = _CONTENT_RANGE.match(resp.header("Content-Range") or "")
                if m is None or int(m.group(1)) != have:
                    raise tuf_exc.DownloadError(
                        f"{url}: expected Content-Range starting at byte {have}, "
                        f"got {resp.header('Content-Range')!r}")
                self.resumed += 1
            elif have and resp.status == 416:
                f.truncate(0)  # our partial is longer than the file: start over
                raise _Transient("server refused the range (416)")
            elif resp.status == 200:
                f.seek(0)
                f.truncate(0)
                have = 0
            else:
                raise tuf_exc.DownloadHTTPError(
                    f"{url}: expected HTTP 200 or 206, got {resp.status}", resp.status)
            declared = resp.header("Content-Length")
            if declared is not None and declared.isdigit() and have + int(declared) > max_length:
                raise tuf_exc.DownloadLengthMismatchError(
                    f"{url}: expected at most {max_length} bytes, server announces "
                    f"{have + int(declared)}")
            total = have
            started = self._clock()
            try:
                for chunk in resp.chunks():
                    total += len(chunk)
                    if total > max_length:
                        raise tuf_exc.DownloadLengthMismatchError(
                            f"{url}: expected at most {max_length} bytes, got more than that")
                    _write(f, chunk)
                    if self._min_rate > 0:
                        elapsed = self._clock() - started
                        if elapsed > self._grace_s and (total - have) < self._min_rate * elapsed:
                            _flush(f)
                            raise _Transient(
                                f"too slow: {total - have} bytes in {elapsed:.0f} s, expected at least "
                                f"{self._min_rate:.0f} B/s after {self._grace_s:.0f} s")
            except (urllib3.exceptions.HTTPError, OSError) as e:
                _flush(f)
                raise _Transient(f"{type(e).__name__} after {total} bytes") from e
            if declared is not None and declared.isdigit() and total - have < int(declared):
                _flush(f)
                raise _Transient(f"got {total - have} of {declared} announced bytes")
            _flush(f)
        finally:
            resp.close()


@dataclass(frozen=True)
class TargetMeta:
    path: str
    length: int
    sha256: str


class RepositoryClient:
    """One check against the repository: ``refresh()`` once, then fetch targets.

    Construct a new client for each check (python-tuf refreshes once per Updater).
    """

    def __init__(self, *, repository_url: str, trusted_root: bytes, metadata_dir: Path,
                 partial_dir: Path, transport: HttpTransport, max_metadata_bytes: int = 512 * 1024,
                 retries: int = 5, backoff_s: float = 1.0, min_bytes_per_s: float = 0.0,
                 slow_grace_s: float = 30.0) -> None:
        base = repository_url.rstrip("/")
        self._targets_url = base + "/targets/"
        self.fetcher = ResumableFetcher(transport, partial_dir, resumable_prefixes=(self._targets_url,),
                                        retries=retries, backoff_s=backoff_s,
                                        min_bytes_per_s=min_bytes_per_s, slow_grace_s=slow_grace_s)
        cfg = UpdaterConfig(root_max_length=max_metadata_bytes, timestamp_max_length=min(
            max_metadata_bytes, 64 * 1024))
        try:
            metadata_dir.mkdir(parents=True, exist_ok=True)
            self._updater = Updater(str(metadata_dir), base + "/metadata/", target_dir=None,
                                    target_base_url=self._targets_url, fetcher=self.fetcher,
                                    config=cfg, bootstrap=trusted_root)
        except (tuf_exc.RepositoryError, ValueError, OSError) as e:
            _raise_if_local_storage(e, "trusted root.json")
            raise MetadataError(f"trusted root.json: expected valid TUF root metadata, got: {e}",
                                reason="bad-trusted-root") from e

    def refresh(self) -> None:
        """Update root (following rotations), timestamp, snapshot and targets."""
        with _translated("refresh"):
            self._updater.refresh()

    def target_info(self, path: str) -> TargetMeta:
        with _translated(path):
            info = self._updater.get_targetinfo(path)
        if info is None:
            raise MetadataError(f"{path}: expected a signed target, got none in targets metadata",
                                reason="no-bundle")
        sha = info.hashes.get("sha256")
        if sha is None:
            raise MetadataError(f"{path}: expected a sha256 hash in targets metadata, got "
                                f"{sorted(info.hashes)}")
        return TargetMeta(path, info.length, sha)

    def download(self, path: str, dest: Path, *, max_bytes: int) -> TargetMeta:
        """Verify ``path`` against signed targets metadata, then write it to ``dest``."""
        meta = self.target_info(path)
        if meta.length > max_bytes:
            raise FetchError(f"{path}: expected at most {max_bytes} bytes, signed length is "
                             f"{meta.length}", reason="oversized")
        with _translated(path):
            info = self._updater.get_targetinfo(path)
            assert info is not None
            self._updater.download_target(info, filepath=str(dest))
        return meta

    def read(self, path: str, *, max_bytes: int) -> bytes:
        """The verified bytes of a small target (rollout.json, bundle.json)."""
        meta = self.target_info(path)
        if meta.length > max_bytes:
            raise FetchError(f"{path}: expected at most {max_bytes} bytes, signed length is "
                             f"{meta.length}", reason="oversized")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "t"
            self.download(path, out, max_bytes=max_bytes)
            return out.read_bytes()


_SIGNED_BY = re.compile(r"signed by (\d+)/(\d+)")


@contextlib.contextmanager
def _translated(what: str) -> Iterator[None]:
    try:
        yield
    except UpdateError:
        raise
    except (tuf_exc.DownloadError, tuf_exc.RepositoryError, OSError) as e:
        _raise_if_local_storage(e, what)
        raise _translation(e, what) from e


def _raise_if_local_storage(e: BaseException, what: str) -> None:
    """``storage-full`` / ``read-only`` when the local filesystem is what failed."""
    local = _local_storage_failure(e)
    if local is not None:
        se = storage_error(local, what)
        raise StageError(f"{what}: cannot store the update: {local.strerror or local}",
                         reason=se.reason) from e


def _translation(e: BaseException, what: str) -> UpdateError:
    """The update error, with its reason code, for a TUF or local I/O failure."""
    if isinstance(e, tuf_exc.UnsignedMetadataError):
        m = _SIGNED_BY.search(str(e))
        reason = "signature-threshold" if m and int(m.group(1)) > 0 else "bad-signature"
        return MetadataError(f"{what}: {e}", reason=reason)
    if isinstance(e, tuf_exc.ExpiredMetadataError):
        return MetadataError(f"{what}: {e}", reason="expired-metadata")
    if isinstance(e, tuf_exc.BadVersionNumberError):
        text = str(e)
        reason = "mix-and-match" if text.startswith("Expected") else "rollback-attack"
        return MetadataError(f"{what}: {text or type(e).__name__}", reason=reason)
    if isinstance(e, tuf_exc.LengthOrHashMismatchError):
        return MetadataError(f"{what}: {e}", reason="hash-mismatch")
    if isinstance(e, tuf_exc.RepositoryError):
        return MetadataError(f"{what}: {e}", reason="bad-metadata")
    if isinstance(e, tuf_exc.DownloadLengthMismatchError):
        return FetchError(f"{what}: {e}", reason="oversized")
    if isinstance(e, tuf_exc.DownloadHTTPError):
        return FetchError(f"{what}: {e}", reason="http-error")
    if isinstance(e, tuf_exc.DownloadError):
        cause = e.__cause__
        return FetchError(f"{what}: {e}{f' ({cause})' if cause else ''}", reason="unreachable")
    return FetchError(f"{what}: local I/O failed: {e}", reason="stage-failed")
