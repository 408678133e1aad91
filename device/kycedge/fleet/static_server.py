"""A static file server with HTTP Range support, for development and tests.

Production serves the published repository from any HTTPS static server (nginx, a CDN,
object storage). This one (stdlib ``http.server``) answers ``GET``/``HEAD`` with
``Range: bytes=N-`` / ``bytes=N-M`` (206 + ``Content-Range``), which
:class:`kycedge.unit.updates.tuf_client.ResumableFetcher` uses to resume.
"""

from __future__ import annotations

import os
import re
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["RangeRequestHandler", "serve_in_thread"]

_RANGE = re.compile(r"^bytes=(\d+)-(\d*)$")


class RangeRequestHandler(SimpleHTTPRequestHandler):
    """``SimpleHTTPRequestHandler`` plus single-range requests; no directory listings."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def list_directory(self, path: Any) -> None:
        self.send_error(404, "not found")
        return None

    def send_file_range(self, path: str) -> None:
        """Send ``path`` honouring a Range header; override hooks for fault injection."""
        try:
            f = open(path, "rb")  # noqa: SIM115
        except OSError:
            self.send_error(404, "not found")
            return
        with f:
            size = os.fstat(f.fileno()).st_size
            start, end = 0, size - 1
            m = _RANGE.match(self.headers.get("Range", "") or "")
            status = 200
            if m:
                start = int(m.group(1))
                end = int(m.group(2)) if m.group(2) else size - 1
                if start >= size or end < start:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                end = min(end, size - 1)
                status = 206
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Length", str(end - start + 1))
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            if self.command == "HEAD":
                return
            f.seek(start)
            try:
                self.write_body(f, end - start + 1)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (e.g. a length limit)

    def write_body(self, f: Any, length: int) -> None:
        remaining = length
        while remaining > 0:
            chunk = f.read(min(65536, remaining))
            if not chunk:
                break
            self.wfile.write(chunk)
            remaining -= len(chunk)

    def do_GET(self) -> None:
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            self.send_error(404, "not found")
            return
        self.send_file_range(path)

    def do_HEAD(self) -> None:
        self.do_GET()


def serve_in_thread(root: Path, host: str = "127.0.0.1", port: int = 0,
                    handler: type[RangeRequestHandler] = RangeRequestHandler) -> ThreadingHTTPServer:
    """Start a server for ``root`` on a daemon thread; ``server.server_address`` has the port."""
    server = ThreadingHTTPServer((host, port), partial(handler, directory=str(root)))
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="static-server", daemon=True).start()
    return server
