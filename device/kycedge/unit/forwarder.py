"""The forwarding loop: outbox → uplink, receipts → verify → outbox.ack.

One :class:`Forwarder` per unit, run by the daemon (``start()`` / ``stop()``, no global
state). It owns one thread that

1. takes incoming receipts (queued by the transport's network thread), verifies each
   signature with the injected ``verify_receipt`` (the carrier's public keys, once), and
   only then acts (one transaction per batch of receipts):

   * a *final* receipt (:attr:`Receipt.final`: the carrier authenticated the envelope
     and recorded its outcome: accepted, ``no-match``, ``replayed``, ``stale``...)
     removes the envelope from the outbox; a final rejection is logged at WARNING with
     the carrier's reason — the carrier has decided, re-sending cannot change that;
   * a verified *pre-authentication* rejection (``unknown-device``, ``undecryptable``,
     ``bad-signature``...) says nothing about the genuine envelope (anyone who can
     publish can provoke one with a forged envelope under its message id; a unit not
     enrolled yet gets ``unknown-device``): the envelope stays, is re-sent with the
     outbox's backoff, and the condition is shown (:meth:`Outbox.hold`, the status'
     ``delivery``: ``not-enrolled``, ``revoked`` or ``not-delivered``);
   * a receipt that fails verification is logged and ignored (the envelope stays);

   the verified receipt then goes straight to the sink set with :meth:`receipts_to`
   (the session manager), as the one receipt type :class:`Receipt`;
2. when connected, publishes due envelopes (oldest first, bounded by the outbox's
   in-flight window) to ``kyc/v1/{tenant}/{device}/templates`` with QoS 1, waits for the
   PUBACKs and records the attempts (so each one's receipt wait/backoff starts);
3. after a connect, publishes the retained ``online`` status with the daemon's figures
   (model, queue) — the transport's will publishes ``offline`` when the unit vanishes —
   and, if the broker lost the session, makes every in-flight envelope due at once.

Exactly-once in effect = at-least-once here (an envelope is re-sent until a verified
receipt arrives) + the receiver's de-duplication by message id.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kycedge.core.config import section
from kycedge.core.errors import KycEdgeError, MessageError, OutboxError, UplinkError
from kycedge.mqtt.seam import Transport, Will
from kycedge.protocol import topics
from kycedge.protocol.envelope.receipt import Receipt
from kycedge.protocol.status import OFFLINE, QueueState, UnitStatus, delivery_state
from kycedge.unit.outbox import Ack, Outbox, OutboxStats

__all__ = [
    "Forwarder",
    "ForwarderConfig",
    "offline_will",
]

log = logging.getLogger(__name__)

class ReceiptSink(Protocol):
    def __call__(self, receipt: Receipt, /) -> object: ...


@dataclass(frozen=True)
class ForwarderConfig:
    """[forwarder] moving envelopes from the outbox to the broker."""

    batch_max: int = section(64, min=1, max=10_000, help="envelopes published per batch (pipelined)")
    receipt_batch_max: int = section(512, min=1, max=100_000, help="receipts acknowledged per transaction")
    idle_poll_s: float = section(1.0, min=0.01, max=60.0, help="longest sleep when nothing is due")
    status_interval_s: float = section(300.0, min=1.0, max=86_400.0, help="re-publish the online status")
    error_pause_s: float = section(1.0, min=0.01, max=600.0, help="pause after a storage or uplink error")


def offline_will(tenant: str, device: str, last_known: Mapping[str, Any] | None = None) -> Will:
    """The last will a unit's transport must carry: retained ``offline`` on its status topic,
    with ``last_known`` (status fields of what the unit runs when it connects: model,
    firmware, update/bundle) so that the fleet still sees the bundle of a unit that vanished."""
    return Will(topics.status(tenant, device), _offline_payload(last_known or {}), retain=True)


def _offline_payload(last_known: Mapping[str, Any]) -> bytes:
    """``offline`` with the model/firmware/update of ``last_known`` (no queue: it is not live)."""
    body = {k: v for k, v in last_known.items() if k in ("firmware", "model", "update", "ts")}
    try:
        return UnitStatus.from_dict({**body, "state": "offline"}).to_json()
    except MessageError:
        log.exception("forwarder: last known status has a wrong shape; offline without it")
        return OFFLINE


class Forwarder:
    """Moves envelopes from ``outbox`` over ``transport``; see the module docstring.

    ``verify_receipt(bytes) -> Receipt`` must raise :class:`KycEdgeError` unless the
    receipt's signature verifies with a trusted carrier key. ``on_receipt`` (optional, or
    later :meth:`receipts_to`) is called on the forwarder thread with each verified
    receipt for a queued envelope *after* the outbox committed its removal (final) or its
    hold (not final): the session manager's ``deliver_receipt``.
    ``status`` (optional) returns extra figures for the online status (model id/version...).
    """

    def __init__(
        self,
        outbox: Outbox,
        transport: Transport,
        *,
        tenant: str,
        device: str,
        verify_receipt: Callable[[bytes], Receipt],
        config: ForwarderConfig | None = None,
        on_receipt: ReceiptSink | None = None,
        status: Callable[[], Mapping[str, Any]] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        self.transport = transport
        self.tenant = topics.DeviceTopic(tenant, device, "templates").tenant
        self.device = device
        self.config = config or ForwarderConfig()
        self._verify = verify_receipt
        self._on_receipt = on_receipt
        self._status = status
        self._clock = clock
        self.templates_topic = topics.templates(tenant, device)
        self.receipts_topic = topics.receipts(tenant, device)
        self.status_topic = topics.status(tenant, device)
        self._receipts: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._connect_pending = False
        self._session_lost = False
        self._next_status = 0.0
        self._lock = threading.Lock()
        self._sticky: dict[str, Any] = {}
        self.counters: dict[str, int] = {
            "published": 0, "publish_failed": 0, "receipts": 0, "accepted": 0, "rejected": 0,
            "receipt_invalid": 0, "receipt_unknown": 0, "errors": 0, "reconnects": 0,
            "not_delivered": 0,
        }
        self.last_error = ""
        self.last_delivered_at: float | None = None  # wall time of the latest final receipt
        self._last_final: bool | None = None  # was the latest receipt for a queued envelope final?
        self._delivery = ""
        transport.add_connect_listener(self._on_connect)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the receipts topic, start the transport and the forwarder thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self.transport.subscribe(self.receipts_topic, self._on_receipt_message, 1)
        self.transport.start()
        self._thread = threading.Thread(target=self._run, name="kycedge-forwarder", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the thread (finishing the current batch), then the transport.

        A clean stop publishes ``offline`` itself (the broker sends the will only on an
        unclean end), with the model and update status last published.
        """
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None
        try:
            if self.transport.connected:
                self.transport.publish(self.status_topic, _offline_payload(self._last_known()),
                                       retain=True, timeout_s=2.0)
        except UplinkError as e:
            log.info("forwarder: offline status not published: %s", e)
        self.transport.stop()

    def receipts_to(self, sink: ReceiptSink | None) -> None:
        """Where verified receipts go (the session manager's ``deliver_receipt``)."""
        self._on_receipt = sink

    def delivery(self, st: OutboxStats | None = None) -> str:
        """The delivery state (:data:`kycedge.protocol.status.DELIVERY_STATES`) from the outbox."""
        st = st or self.outbox.stats()
        return delivery_state(st.held, st.last_condition, self._last_final)

    def wake(self) -> None:
        """Send now (call after putting an envelope in the outbox)."""
        self._wake.set()

    def submit(self, message_id: str, envelope: bytes) -> bool:
        """``outbox.put`` then :meth:`wake` (raises OutboxFullError / OutboxError)."""
        stored = self.outbox.put(message_id, envelope)
        self._wake.set()
        return stored

    def put(self, message_id: str, envelope: bytes) -> bool:
        """Alias of :meth:`submit` (the daemon's ``Queue`` protocol)."""
        return self.submit(message_id, envelope)

    def stats(self) -> dict[str, Any]:
        """Forwarder counters, the outbox figures and the link state (for status and the API)."""
        out: dict[str, Any] = {"connected": self.transport.connected, "link_error": self.transport.last_error,
                               "last_error": self.last_error, "last_delivered_at": self.last_delivered_at,
                               **self.counters}
        try:
            st = self.outbox.stats()
            out["queue"] = st.as_dict()
            out["delivery"] = self.delivery(st)
        except OutboxError as e:
            out["queue"] = {"error": e.reason}
            out["delivery"] = "unknown"
        return out

    # -- network-thread callbacks (never block) -------------------------------------------

    def _on_receipt_message(self, topic: str, payload: bytes) -> None:
        self._receipts.put(payload)
        self._wake.set()

    def _on_connect(self, connected: bool, session_present: bool) -> None:
        if connected:
            with self._lock:
                self._connect_pending = True
                self._session_lost = self._session_lost or not session_present
            self._wake.set()

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                busy = self.step()
            except Exception as e:  # never die: report, pause, go on
                self.counters["errors"] += 1
                self.last_error = f"{getattr(e, 'reason', type(e).__name__)}: {e}"
                if isinstance(e, KycEdgeError):
                    log.error("forwarder: %s", e)
                else:
                    log.exception("forwarder: unexpected error")
                self._stop.wait(self.config.error_pause_s)
                continue
            if not busy:
                self._wake.wait(self._sleep_s())

    def _sleep_s(self) -> float:
        nxt = self.outbox.next_due_at(self._clock())
        idle = self.config.idle_poll_s
        if nxt is None or not self.transport.connected:
            return idle
        return max(0.0, min(idle, nxt - self._clock()))

    def step(self) -> bool:
        """One round (receipts, connect duties, one publish batch). True if it did work."""
        busy = self._process_receipts()
        if not self.transport.connected:
            return busy
        with self._lock:
            pending, lost = self._connect_pending, self._session_lost
            self._connect_pending = self._session_lost = False
        if pending:
            self.counters["reconnects"] += 1
            if lost:
                n = self.outbox.reschedule_inflight(self._clock())
                if n:
                    log.info("forwarder: broker had no session; re-sending %d in-flight envelopes", n)
            self._next_status = 0.0
        if self._clock() >= self._next_status:
            self._publish_status_now()
        return self._publish_due() or busy

    def _publish_due(self) -> bool:
        now = self._clock()
        due = self.outbox.due(now, limit=self.config.batch_max)
        if not due:
            return False
        results = self.transport.publish_many([(self.templates_topic, d.envelope) for d in due])
        sent = [d.message_id for d, ok in zip(due, results, strict=True) if ok]
        failed = len(due) - len(sent)
        self.counters["published"] += len(sent)
        self.counters["publish_failed"] += failed
        if sent:
            self.outbox.record_attempts(sent, self._clock())
        if failed:
            log.info("forwarder: %d of %d publishes not acknowledged (%s); will retry",
                     failed, len(due), self.transport.last_error or "no PUBACK")
        return bool(sent)

    def _process_receipts(self) -> bool:
        acks: list[Ack] = []
        holds: list[tuple[str, str]] = []
        verified: list[Receipt] = []
        while len(acks) + len(holds) < self.config.receipt_batch_max:
            try:
                raw = self._receipts.get_nowait()
            except queue.Empty:
                break
            self.counters["receipts"] += 1
            try:
                r = self._verify(raw)
            except KycEdgeError as e:
                self.counters["receipt_invalid"] += 1
                log.warning("forwarder: receipt ignored (%s: %s); the envelope stays queued", e.reason, e)
                continue
            mid = str(r.message_id)
            if r.final:
                acks.append(Ack(mid, r.status, r.reason, raw, r.score, r.threshold))
            else:
                holds.append((mid, r.reason))
            verified.append(r)
        if not verified:
            return False
        now = self._clock()
        before = self._delivery
        removed = set(self.outbox.ack(acks, now)) if acks else set()
        held = set(self.outbox.hold(holds, now)) if holds else set()
        for r in verified:
            mid = str(r.message_id)
            if r.final and mid in removed:
                removed.discard(mid)
                self._last_final = True
                self.last_delivered_at = time.time()
                if r.status == "rejected":
                    self.counters["rejected"] += 1
                    log.warning("forwarder: carrier rejected %s: %s; dropped from the queue", mid, r.reason)
                else:
                    self.counters["accepted"] += 1
            elif not r.final and mid in held:
                self._last_final = False
                self.counters["not_delivered"] += 1
                log.warning("forwarder: carrier refused %s before authenticating it (%s): not delivered as "
                            "is; the envelope stays queued and is re-sent with backoff", mid, r.reason)
            else:  # not queued (any more): a duplicate receipt, or one for an envelope already done
                self.counters["receipt_unknown"] += 1
                log.debug("forwarder: receipt for %s (%s) which is not queued", mid, r.reason)
                continue
            if self._on_receipt is not None:
                try:
                    self._on_receipt(r)
                except Exception:
                    log.exception("forwarder: receipt sink failed")
        if holds or before != "ok":  # the stats query only when the state can change
            try:
                self._delivery = self.delivery()
            except OutboxError:
                self._delivery = "unknown"
        if self._delivery != before:
            if self._delivery != "ok":
                log.warning("forwarder: delivery %s (the carrier answered %s)", self._delivery,
                            ", ".join(sorted({reason for _, reason in holds})) or "-")
            self._next_status = 0.0  # tell the fleet now
        return True

    def publish_status(self, extra: Mapping[str, Any] | None = None) -> bool:
        """Publish the retained ``online`` status (with ``extra`` merged in, kept for later
        status messages too).

        Safe from any thread: called from outside the forwarder's own thread while it runs,
        it only records ``extra`` and wakes the forwarder, which publishes on its next round
        (returns True). On the forwarder thread (or before ``start``) it publishes now and
        returns False if the broker did not acknowledge it.
        """
        if extra:
            with self._lock:
                self._sticky.update(extra)
        t = self._thread
        if t is not None and t.is_alive() and threading.current_thread() is not t:
            self._next_status = 0.0
            self._wake.set()
            return True
        return self._publish_status_now()

    def _last_known(self) -> dict[str, Any]:
        """What the unit last ran (model, firmware, update/bundle): a stopped unit's retained
        ``offline`` status still names its bundle."""
        body: dict[str, Any] = {"ts": round(self._clock(), 3)}
        if self._status is not None:
            try:
                body.update(self._status())
            except Exception:
                log.exception("forwarder: status provider failed")
        with self._lock:
            body.update(self._sticky)
        return body

    def _publish_status_now(self) -> bool:
        self._next_status = self._clock() + self.config.status_interval_s
        body: dict[str, Any] = {"state": "online", "ts": round(self._clock(), 3)}
        try:
            st = self.outbox.stats()
            body["queue"] = QueueState(st.count, st.bytes, st.inflight, st.oldest_enqueued_at,
                                       st.full, held=st.held, last_error=st.last_error).to_dict()
            body["delivery"] = self.delivery(st)
        except OutboxError as e:
            body["queue"] = QueueState(error=e.reason).to_dict()
        if self._status is not None:
            try:
                body.update(self._status())
            except Exception:
                log.exception("forwarder: status provider failed")
        with self._lock:
            body.update(self._sticky)
        try:
            payload = UnitStatus.from_dict(body).to_json()
        except MessageError:
            log.exception("forwarder: status not published: its shape is wrong")
            return False
        try:
            self.transport.publish(self.status_topic, payload, retain=True)
        except UplinkError as e:
            log.info("forwarder: status not published: %s", e)
            return False
        return True
