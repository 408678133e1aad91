"""The daemon's metrics file: a snapshot of its parts, written for node_exporter's textfile collector."""

from __future__ import annotations

import logging
import time
from typing import Any

from kycedge.core.errors import KycEdgeError
from kycedge.core.metrics import write_textfile
from kycedge.unit.metrics import LIVENESS, MetricsConfig, UnitSnapshot, unit_metrics

__all__ = ["MetricsFile", "snapshot"]

log = logging.getLogger(__name__)


def snapshot(daemon: Any, now: float | None = None) -> UnitSnapshot:
    """What the daemon's outbox, forwarder, sessions and update agent say right now."""
    kw: dict[str, Any] = {}
    if daemon.outbox is not None:
        try:
            st = daemon.outbox.stats()
            kw.update(queue_count=st.count, queue_bytes=st.bytes, oldest_enqueued_at=st.oldest_enqueued_at)
        except KycEdgeError:
            pass  # the outbox error is already logged and shown in STATUS=
    if daemon.forwarder is not None:
        kw.update(connected=bool(daemon.forwarder.transport.connected),
                  forwarder=dict(daemon.forwarder.counters))
    if daemon.sessions is not None:
        kw["session_counts"] = dict(daemon.sessions.counts)
        a = daemon.sessions.analyzer
        kw.update(model_id=str(a.model_id), model_version=str(a.model_version))
    if daemon.agent is not None:
        st = daemon.agent.status
        kw.update(update_state=st.state, update_outcome=st.outcome, bundle_version=st.bundle_version)
    return UnitSnapshot(now=time.time() if now is None else now, liveness=LIVENESS.snapshot(), **kw)


class MetricsFile:
    """Rewrites ``[metrics] textfile`` every ``interval_s`` (``tick()`` from the main loop)."""

    def __init__(self, config: MetricsConfig, daemon: Any) -> None:
        self.config = config
        self._daemon = daemon
        self._next = 0.0
        self._failing = False

    def tick(self, force: bool = False) -> None:
        if self.config.textfile is None:
            return
        now = time.monotonic()
        if not force and now < self._next:
            return
        self._next = now + self.config.interval_s
        try:
            write_textfile(self.config.textfile, unit_metrics(snapshot(self._daemon)))
            if self._failing:
                log.info("metrics file written again", extra={"path": str(self.config.textfile)})
            self._failing = False
        except KycEdgeError as e:
            if not self._failing:  # once per failure run, not every interval
                log.warning("metrics file not written: %s", e.message,
                            extra={"path": str(self.config.textfile)})
            self._failing = True
