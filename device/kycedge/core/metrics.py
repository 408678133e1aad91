"""Prometheus/OpenMetrics exposition: the only ``prometheus_client`` import.

The unit and the receiver describe their figures as plain data (:class:`Metric`: a name,
a kind, a help text and labelled samples, built by pure functions from their own
counters) and hand a *snapshot function* to this module, which renders it:

- :func:`render` — the Prometheus text format (or OpenMetrics with ``openmetrics=True``);
- :func:`write_textfile` — atomically (temp file + rename, mode 0644) for node_exporter's
  textfile collector: the unit's way, no listening socket on the capture unit;
- :class:`MetricsServer` — ``GET /metrics`` and ``GET /health`` on a loopback (or given)
  address: the receiver's way. ``/health`` answers 200 or 503 with a small JSON body.

Metric names carry their unit (``_seconds``, ``_bytes``) and counters end in ``_total``, as
Prometheus expects. No label value ever comes from outside input unchecked: callers pass
outcome names from closed sets (reasons, statuses, states).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

from prometheus_client import CollectorRegistry
from prometheus_client import generate_latest as _prom_text
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST as _OM_TYPE
from prometheus_client.openmetrics.exposition import generate_latest as _om_untyped

from kycedge.core.errors import KycEdgeError

__all__ = ["PROM_CONTENT_TYPE", "Health", "Metric", "MetricsServer", "render", "write_textfile"]

PROM_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_om_text: Callable[[CollectorRegistry], bytes] = _om_untyped  # untyped in the library
Kind = Literal["counter", "gauge", "info"]


@dataclass(frozen=True)
class Metric:
    """One metric family: ``samples`` are ``(labels, value)``; ``info`` takes value 1."""

    name: str
    kind: Kind
    help: str
    samples: Sequence[tuple[Mapping[str, str], float]] = field(default_factory=tuple)
    labels: Sequence[str] = ()


@dataclass(frozen=True)
class Health:
    """What ``/health`` says: ``ok`` decides 200 or 503; ``detail`` goes into the JSON body."""

    ok: bool
    detail: Mapping[str, Any] = field(default_factory=dict)


def _family(m: Metric) -> Any:
    labels = list(m.labels) or sorted({k for lab, _v in m.samples for k in lab})
    if m.kind == "info":
        fam: Any = InfoMetricFamily(m.name, m.help, labels=labels)
        for lab, _v in m.samples:
            fam.add_metric([], {k: str(lab.get(k, "")) for k in labels})
        return fam
    name = m.name[: -len("_total")] if m.kind == "counter" and m.name.endswith("_total") else m.name
    fam = (CounterMetricFamily if m.kind == "counter" else GaugeMetricFamily)(name, m.help, labels=labels)
    for lab, v in m.samples:
        fam.add_metric([str(lab.get(k, "")) for k in labels], float(v))
    return fam


class _Collector:
    def __init__(self, snapshot: Callable[[], Iterable[Metric]]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Any]:
        for m in self._snapshot():
            yield _family(m)


def _registry(snapshot: Callable[[], Iterable[Metric]]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(_Collector(snapshot))
    return reg


def render(metrics: Iterable[Metric], *, openmetrics: bool = False) -> bytes:
    """The exposition text of ``metrics``."""
    items = list(metrics)
    reg = _registry(lambda: items)
    return bytes(_om_text(reg) if openmetrics else _prom_text(reg))


def write_textfile(path: Path, metrics: Iterable[Metric]) -> None:
    """Write ``path`` for node_exporter's textfile collector, atomically, mode 0644."""
    data = render(metrics)
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
    except OSError as e:
        raise KycEdgeError(f"{path}: cannot write the metrics file: {e.strerror or e}",
                           reason="metrics-error") from e


class MetricsServer:
    """``/metrics`` and ``/health`` over HTTP in a daemon thread; ``stop()`` closes it."""

    def __init__(self, host: str, port: int, snapshot: Callable[[], Iterable[Metric]],
                 health: Callable[[], Health]) -> None:
        registry = _registry(snapshot)

        class Handler(BaseHTTPRequestHandler):
            server_version = "kycedge-metrics"

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    om = "application/openmetrics-text" in (self.headers.get("Accept") or "")
                    body = bytes(_om_text(registry) if om else _prom_text(registry))
                    self._send(200, _OM_TYPE if om else PROM_CONTENT_TYPE, body)
                elif path == "/health":
                    try:
                        h = health()
                    except Exception as e:  # a failing check is an unhealthy answer, not a 500
                        h = Health(False, {"error": type(e).__name__})
                    body = json.dumps({"status": "ok" if h.ok else "unhealthy", **h.detail},
                                      sort_keys=True).encode()
                    self._send(200 if h.ok else 503, "application/json", body)
                else:
                    self._send(404, "text/plain; charset=utf-8", b"not found: /metrics or /health\n")

            def _send(self, code: int, ctype: str, body: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return  # scrapes every 15 s would flood the journal

        try:
            self._httpd = ThreadingHTTPServer((host, port), Handler)
        except OSError as e:
            raise KycEdgeError(f"metrics: cannot listen on {host}:{port}: {e.strerror or e}",
                               reason="metrics-error") from e
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="kycedge-metrics",
                                        daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
