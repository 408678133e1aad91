"""The receiver's metrics and health (served by ``kycedge-carrier serve`` on ``[serve] metrics_port``).

- ``kycedge_receiver_templates_received_total``, ``_batches_total``, ``_receipts_sent_total``,
  ``_no_receipt_total``, ``_topic_mismatch_total``, ``_storage_errors_total``: the consumer's counters;
- ``kycedge_receiver_outcomes_total{status,reason}``: every handled template by its receipt's
  status (accepted / rejected / none) and reason (match, no-match, bad-signature, duplicate...);
- ``kycedge_receiver_queue_depth``: templates received from the broker, not yet processed;
- ``kycedge_receiver_link_up``: 1 while connected to the broker.

``/health`` is 200 while the consumer runs, is connected and has had no storage error in the
last ``STORAGE_GRACE_S`` seconds; 503 otherwise, with the reason in the JSON body.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kycedge.core.metrics import Health, Metric

__all__ = ["STORAGE_GRACE_S", "health", "receiver_metrics"]

STORAGE_GRACE_S = 60.0
_COUNTERS = (("received", "templates_received"), ("batches", "batches"), ("receipts", "receipts_sent"),
             ("no_receipt", "no_receipt"), ("topic_mismatch", "topic_mismatch"),
             ("storage_errors", "storage_errors"))


def receiver_metrics(counters: Mapping[str, int], outcomes: Mapping[tuple[str, str], int], *,
                     queue_depth: int, connected: bool) -> list[Metric]:
    """The metric families of the consumer's state (pure)."""
    out = [Metric(f"kycedge_receiver_{name}_total", "counter", f"receiver: {key.replace('_', ' ')}",
                  [({}, counters.get(key, 0))]) for key, name in _COUNTERS]
    out.append(Metric("kycedge_receiver_outcomes_total", "counter",
                      "handled templates by receipt status and reason",
                      [({"status": st, "reason": rs}, n) for (st, rs), n in sorted(outcomes.items())],
                      labels=("status", "reason")))
    out.append(Metric("kycedge_receiver_queue_depth", "gauge", "templates received, not yet processed",
                      [({}, queue_depth)]))
    out.append(Metric("kycedge_receiver_link_up", "gauge", "1 while connected to the broker",
                      [({}, int(connected))]))
    return out


def health(*, running: bool, connected: bool, last_storage_error_age_s: float | None,
           counters: Mapping[str, int]) -> Health:
    """Healthy = running, connected, no storage error in the last STORAGE_GRACE_S seconds."""
    problems = []
    if not running:
        problems.append("consumer not running")
    if not connected:
        problems.append("not connected to the broker")
    if last_storage_error_age_s is not None and last_storage_error_age_s < STORAGE_GRACE_S:
        problems.append(f"storage error {last_storage_error_age_s:.0f} s ago")
    detail: dict[str, Any] = {"connected": connected, "received": counters.get("received", 0),
                              "receipts": counters.get("receipts", 0)}
    if problems:
        detail["problems"] = problems
    return Health(not problems, detail)
