"""The unit's metrics: a pure snapshot -> metric families, and the liveness outcome counter.

The daemon writes them for node_exporter's textfile collector (``[metrics] textfile``,
rewritten every ``interval_s``): no listening socket on the capture unit, so nothing to
collide with the local API. The families:

- ``kycedge_unit_sessions_total{outcome,reason}``: sessions queued / failed (by reason);
- ``kycedge_unit_outbox_entries``, ``_outbox_bytes``: sealed templates waiting for a receipt;
- ``kycedge_unit_outbox_oldest_age_seconds``: age of the oldest one (0 when empty);
- ``kycedge_unit_link_up``: 1 while connected to the broker; ``_reconnects_total``, ``_published_total``;
- ``kycedge_unit_receipts_total{outcome}``: accepted, rejected, invalid, unknown;
- ``kycedge_unit_update_state{state}``, ``_update_outcome{outcome}``: 1 for the agent's state
  and its last outcome; ``kycedge_unit_model_info{model_id,model_version,bundle_version}``;
- ``kycedge_unit_liveness_outcomes_total{outcome}``: liveness decisions, fed by :data:`LIVENESS`.

No biometric value is ever a metric: counts, sizes, ages and states only.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from kycedge.core.config import section
from kycedge.core.metrics import Metric

__all__ = ["LIVENESS", "MetricsConfig", "OutcomeCounter", "UnitSnapshot", "unit_metrics"]


@dataclass(frozen=True)
class MetricsConfig:
    """[metrics] Prometheus figures for node_exporter's textfile collector."""

    textfile: Path | None = section(  # noqa: RUF009 - Path is immutable
        None, help="write the metrics here (e.g. /run/kycedge/metrics.prom; point node_exporter's "
        "--collector.textfile.directory at its directory); unset = no metrics file")
    interval_s: float = section(15.0, min=1.0, max=3600.0, help="rewrite the file this often")


class OutcomeCounter:
    """A thread-safe count per outcome name (``inc("live")``); ``snapshot()`` copies it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def inc(self, outcome: str, n: int = 1) -> None:
        with self._lock:
            self._counts[outcome] = self._counts.get(outcome, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)


#: liveness decisions of this process; the liveness check calls ``LIVENESS.inc(outcome)``
LIVENESS = OutcomeCounter()


@dataclass(frozen=True)
class UnitSnapshot:
    """What the daemon knows at one instant (filled by the composition root)."""

    now: float
    session_counts: Mapping[str, int] = field(default_factory=dict)
    queue_count: int = 0
    queue_bytes: int = 0
    oldest_enqueued_at: float | None = None
    connected: bool = False
    forwarder: Mapping[str, int] = field(default_factory=dict)
    update_state: str | None = None
    update_outcome: str | None = None
    bundle_version: int = 0
    model_id: str = ""
    model_version: str = ""
    liveness: Mapping[str, int] = field(default_factory=dict)


_RECEIPTS = (("accepted", "accepted"), ("rejected", "rejected"), ("invalid", "receipt_invalid"),
             ("unknown", "receipt_unknown"))


def _sessions(counts: Mapping[str, int]) -> list[tuple[Mapping[str, str], float]]:
    out: list[tuple[Mapping[str, str], float]] = []
    for key, n in sorted(counts.items()):
        if key.startswith("receipt-"):
            continue  # receipts are counted by the forwarder, for every template, not per session
        outcome, _, reason = key.partition("-")
        out.append(({"outcome": outcome, "reason": reason}, n))
    return out


def unit_metrics(s: UnitSnapshot) -> list[Metric]:
    """The metric families of one snapshot (pure)."""
    age = max(0.0, s.now - s.oldest_enqueued_at) if s.oldest_enqueued_at is not None else 0.0
    fw = s.forwarder
    out = [
        Metric("kycedge_unit_sessions_total", "counter", "registration sessions by outcome",
               _sessions(s.session_counts), labels=("outcome", "reason")),
        Metric("kycedge_unit_outbox_entries", "gauge", "sealed templates waiting for a receipt",
               [({}, s.queue_count)]),
        Metric("kycedge_unit_outbox_bytes", "gauge", "bytes of the waiting templates", [({}, s.queue_bytes)]),
        Metric("kycedge_unit_outbox_oldest_age_seconds", "gauge",
               "age of the oldest waiting template (0 when the outbox is empty)", [({}, round(age, 3))]),
        Metric("kycedge_unit_link_up", "gauge", "1 while connected to the broker", [({}, int(s.connected))]),
        Metric("kycedge_unit_reconnects_total", "counter", "broker reconnections",
               [({}, fw.get("reconnects", 0))]),
        Metric("kycedge_unit_published_total", "counter", "templates published to the broker",
               [({}, fw.get("published", 0))]),
        Metric("kycedge_unit_receipts_total", "counter", "carrier receipts by outcome",
               [({"outcome": name}, fw.get(key, 0)) for name, key in _RECEIPTS], labels=("outcome",)),
        Metric("kycedge_unit_liveness_outcomes_total", "counter", "liveness decisions by outcome",
               [({"outcome": k}, v) for k, v in sorted(s.liveness.items())], labels=("outcome",)),
    ]
    if s.update_state is not None:
        out.append(Metric("kycedge_unit_update_state", "gauge", "1 for the update agent's current state",
                          [({"state": s.update_state}, 1)], labels=("state",)))
    if s.update_outcome is not None:
        out.append(Metric("kycedge_unit_update_outcome", "gauge", "1 for the last update check's outcome",
                          [({"outcome": s.update_outcome}, 1)], labels=("outcome",)))
    if s.model_id:
        out.append(Metric("kycedge_unit_model", "info", "the model set in use",
                          [({"model_id": s.model_id, "model_version": s.model_version,
                             "bundle_version": str(s.bundle_version)}, 1)],
                          labels=("model_id", "model_version", "bundle_version")))
    return out
