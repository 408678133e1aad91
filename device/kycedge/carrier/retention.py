"""Retention policy: what the carrier keeps, and for how long.

* accepted templates (encrypted at rest): ``template_retention_s`` after receipt;
* receipts, de-duplication and sequence entries: ``receipt_retention_s`` after receipt.
  The config refuses a value below ``replay_window_s + future_skew_s``: a replayed
  envelope is then always either still de-duplicated (same first receipt) or already
  outside the capture-time window (``stale``), never processed twice;
* reference templates and device enrolments are kept until removed/revoked by an
  operator (they are inputs, not captures).

Run :func:`purge` periodically (``kycedge-carrier purge``, or the serve loop); it is one
transaction and safe to run from several receivers at once.
"""

from __future__ import annotations

from kycedge.carrier.config import CarrierConfig
from kycedge.carrier.store import PurgeCounts, SqlStore
from kycedge.carrier.store import now_ms as _now_ms

__all__ = ["cutoffs", "purge"]


def cutoffs(config: CarrierConfig, now_ms: int) -> tuple[int, int]:
    """``(templates_before_ms, receipts_before_ms)`` for the policy at ``now_ms``."""
    return now_ms - config.template_retention_s * 1000, now_ms - config.receipt_retention_s * 1000


def purge(store: SqlStore, config: CarrierConfig, *, now_ms: int | None = None) -> PurgeCounts:
    t_before, r_before = cutoffs(config, _now_ms() if now_ms is None else now_ms)
    return store.purge(templates_before_ms=t_before, receipts_before_ms=r_before)
