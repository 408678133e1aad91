"""Registration sessions: guidance while looking for a good frame, then template → seal → outbox.

One session at a time owns the camera. Its life::

    capturing ──(good frame(s), best picked)──► sealing ──► queued ──(signed receipt)──► done
        │  └─(time limit, no good frame)──► failed: timeout (with the last guidance reason)
        └─(cancel / shutdown)──► cancelled                 └─(receipt_wait_s)──► receipt-pending

Events (plain dicts, JSON-ready, **never** a template, a frame or pixel data)::

    {"event": "started",  "session": ID, "ref": REF, "timeout_s": 30.0, "consent": VERSION}
    {"event": "guidance", "reason": "move-closer", "message": "...", "faces": 1, "ok": false,
     "box": [x, y, w, h]}     # the face's position as fractions of the frame (2 decimals), if any
    {"event": "captured", "reason": "ok", "frames": 14, "good_frames": 3, "template_frames": 3,
     "quality": {...}}    # quality: the measures of the best frame
    {"event": "queued",   "message_id": "...", "model": "sface-int8@1.0"}
    {"event": "receipt",  "message_id": "...", "status": "accepted", "reason": "match",
                          "score": .., "threshold": ..}
    {"event": "receipt-pending", "message_id": "..."}     # no receipt yet; it stays queued
    {"event": "failed",   "reason": "timeout" | "cancelled" | "outbox-full" | ..., "message": "..."}

A session starts only with the customer's consent (:class:`Consent`: the version of
the consent text shown and whether it was accepted). A declined consent ends the session
at once with ``failed: consent-declined``: the camera is never opened. An accepted
consent travels with the capture into the sealed payload.

With a liveness gate (:mod:`kycedge.unit.liveness`), the frontal capture is followed by the
randomised challenge on the same camera (prompts as ``guidance`` events with
``liveness-*`` codes); a failed challenge ends the session ``failed`` with reason
``liveness-failed`` (``liveness_reason`` says why) and nothing is sealed.

``guidance`` is sent whenever the reason code changes and repeated every
``guidance_repeat_s`` while it stays the same, so the app can keep telling the customer
"move closer". Every frame gets only the cheap part of the pipeline (``Analyzer.guide``:
detect + quality gates, no embedding). A frame that passes and is among the best
``template_frames`` (K) so far by quality score becomes a candidate (``Analyzer.candidate``:
its aligned face crop and score, RAM only; the crop of a frame that falls out of the K is
dropped). After the first acceptable frame the session keeps looking for ``settle_s`` (or
until ``best_of`` acceptable frames); then ``Analyzer.template`` embeds and fuses the K
crops into the one template that is sealed (docs/decisions/0012-template-from-the-best-frames.md).
Frames are dropped as soon as the guide and candidate steps return.

With ``preview`` (an operator's choice, off by default) the worker also keeps the
latest frame as a small JPEG in ``Session.preview`` (at most every
``preview_interval_s``), in RAM only, dropped when the capture ends; the API serves it
``no-store``. Without it no pixel ever leaves the session worker.

A session that has queued its envelope no longer holds the camera: a new session may
start while the earlier one waits for its receipt. A second session while one is
*capturing* is refused with :class:`SessionBusyError` (reason ``busy``).

Models can be swapped with :meth:`SessionManager.reload_analyzer` at any time: a session
uses the analyzer it started with to its end (a template never mixes model versions),
new sessions get the new one.

Everything around the session is a seam (``Analyzer``, ``Sealer``, ``Queue``,
``FrameSource``), so the tests drive it with fakes and the service wires the real parts.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from kycedge.core.config import section
from kycedge.core.errors import CaptureError, IdError, KycEdgeError, SessionError
from kycedge.protocol import ids
from kycedge.protocol.envelope.receipt import Receipt
from kycedge.protocol.match import cosine
from kycedge.unit.capture.base import CaptureTimeoutError, FrameSource
from kycedge.unit.liveness import Analyze, LivenessGate, LivenessRecord, LivenessVerdict
from kycedge.vision.template import Candidate, keep_best, would_keep

__all__ = [
    "Analysis",
    "Analyzer",
    "Capture",
    "Consent",
    "SealedCapture",
    "Sealer",
    "Session",
    "SessionBusyError",
    "SessionConfig",
    "SessionManager",
    "SessionNotFoundError",
    "check_ref",
]

log = logging.getLogger(__name__)

TERMINAL = frozenset({"receipt", "receipt-pending", "failed"})


class SessionBusyError(SessionError):
    """A session is already capturing; the camera is in use."""

    reason = "busy"


class SessionNotFoundError(SessionError):
    reason = "no-such-session"


@dataclass(frozen=True)
class SessionConfig:
    """[session] registration sessions."""

    timeout_s: float = section(30.0, min=1.0, max=600.0, help="longest a session looks for a good frame")
    settle_s: float = section(
        0.8, min=0.0, max=10.0, help="after the first good frame, keep looking this long for a better one"
    )
    best_of: int = section(5, min=1, max=100, help="stop early after this many good frames")
    template_frames: int = section(
        3, min=1, max=10,
        help="K: the template fuses the best K good frames (fewer if fewer were seen)",
    )
    receipt_wait_s: float = section(
        120.0, min=0.0, max=86_400.0, help="how long an event stream waits for the carrier's receipt"
    )
    guidance_repeat_s: float = section(1.0, min=0.1, max=60.0, help="repeat unchanged guidance this often")
    stuck_after_s: float = section(
        20.0, min=1.0, max=600.0, help="a capture step taking longer than this stops the watchdog pings"
    )
    max_events: int = section(
        512, min=16, max=100_000, help="events kept per session (oldest guidance dropped)"
    )
    keep_sessions: int = section(256, min=1, max=100_000, help="finished sessions kept for look-up")


class Analysis(Protocol):
    """What the session needs of ``kycedge.vision.pipeline.Guide`` (and ``PipelineResult``)."""

    @property
    def ok(self) -> bool: ...
    @property
    def reason(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def faces(self) -> int: ...
    @property
    def quality(self) -> Mapping[str, float]: ...
    @property
    def score(self) -> float: ...


class Analyzer(Protocol):
    """What the session needs of ``kycedge.vision.Pipeline``."""

    @property
    def model_id(self) -> str: ...
    @property
    def model_version(self) -> str: ...
    def guide(self, rgb: np.ndarray) -> Analysis: ...  # per frame: detect + gates, no embedding
    def candidate(self, rgb: np.ndarray, guide: Any) -> Candidate | None: ...  # guide: its result
    def template(self, candidates: list[Candidate]) -> np.ndarray: ...


@dataclass(frozen=True)
class Consent:
    """The customer's answer to the consent text ``version`` (checked by the caller)."""

    version: str
    accepted: bool
    answered_at: float = field(default_factory=time.time)  # wall clock, seconds


@dataclass(frozen=True, repr=False)
class Capture:
    """The chosen template and its metadata, handed to the sealer (RAM only)."""

    template: np.ndarray
    registration_ref: str
    model_id: str
    model_version: str
    captured_at: float  # wall clock, seconds
    quality: Mapping[str, float]
    consent: Consent | None = None
    liveness: LivenessRecord | None = None  # None: no challenge ran (sealed as method "none")

    def __repr__(self) -> str:  # never print the template
        return f"Capture(ref_hash={ref_hash(self.registration_ref)}, model={self.model_id})"


@dataclass(frozen=True, repr=False)
class SealedCapture:
    message_id: str
    envelope: bytes

    def __repr__(self) -> str:
        return f"SealedCapture(message_id={self.message_id}, {len(self.envelope)} bytes)"


Sealer = Callable[[Capture], SealedCapture]


class Queue(Protocol):
    def put(self, message_id: str, envelope: bytes) -> object: ...


def receipt_event(receipt: Receipt) -> dict[str, Any]:
    """The ``receipt`` event the app gets for a verified, final carrier receipt."""
    return {"event": "receipt", "message_id": str(receipt.message_id), "status": receipt.status,
            "reason": receipt.reason, "score": receipt.score, "threshold": receipt.threshold}


def check_ref(ref: object) -> str:
    """The registration reference rule of :mod:`kycedge.protocol.ids`, as a SessionError."""
    try:
        return ids.check_reference(ref)
    except IdError as e:
        raise SessionError(e.message, reason="bad-reference") from e


def check_nonce(nonce: object) -> str | None:
    """The optional liveness nonce (:func:`kycedge.protocol.ids.check_nonce`), as a SessionError."""
    if nonce is None:
        return None
    try:
        return ids.check_nonce(nonce)
    except IdError as e:
        raise SessionError(e.message, reason="bad-request") from e


def ref_hash(ref: str) -> str:
    """What logs show instead of the reference."""
    return hashlib.sha256(ref.encode()).hexdigest()[:12]


def face_box(res: object, frame_shape: tuple[int, ...]) -> list[float] | None:
    """The detected face's box (the detector's ``x0, y0, x1, y1`` in pixels) as
    ``[x, y, w, h]`` fractions of the frame, 2 decimals.

    Coarse on purpose: enough for the app to draw where the face is, never landmarks.
    """
    box = getattr(res, "box", None)
    if box is None or len(frame_shape) < 2 or frame_shape[0] <= 0 or frame_shape[1] <= 0:
        return None
    try:
        x0, y0, x1, y1 = (float(v) for v in box)
    except (TypeError, ValueError):
        return None
    fh, fw = float(frame_shape[0]), float(frame_shape[1])
    vals = [x0 / fw, y0 / fh, (x1 - x0) / fw, (y1 - y0) / fh]
    if not all(-1.0 <= v <= 2.0 for v in vals) or vals[2] <= 0 or vals[3] <= 0:
        return None
    return [round(v, 2) for v in vals]


def _safe_quality(q: Mapping[str, float]) -> dict[str, float]:
    return {str(k): round(float(v), 3) for k, v in q.items() if isinstance(v, int | float)}


@dataclass
class Session:
    """One registration; events are appended under ``cond`` and read by any number of streams."""

    id: str
    ref: str
    timeout_s: float
    receipt_wait_s: float
    max_events: int
    started_mono: float = field(default_factory=time.monotonic)
    started_at: float = field(default_factory=time.time)
    consent: Consent | None = None
    preview: bytes | None = field(default=None, repr=False)  # latest preview JPEG, RAM only
    state: str = "capturing"
    message_id: str | None = None
    result: dict[str, Any] | None = None
    events: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    emitted: int = 0
    dropped_events: int = 0
    cond: threading.Condition = field(default_factory=threading.Condition)
    cancel_requested: threading.Event = field(default_factory=threading.Event)
    progress_mono: float = field(default_factory=time.monotonic)
    queued_mono: float | None = None
    nonce: str | None = None

    def emit(self, event: dict[str, Any]) -> None:
        with self.cond:
            if len(self.events) >= self.max_events:
                # drop the oldest guidance event; milestones and terminal events are kept
                for i, (_, e) in enumerate(self.events):
                    if e["event"] == "guidance":
                        del self.events[i]
                        self.dropped_events += 1
                        break
            self.events.append((self.emitted, event))
            self.emitted += 1
            if event["event"] in TERMINAL:
                self.result = event
            self.cond.notify_all()

    @property
    def finished(self) -> bool:
        return self.result is not None

    def summary(self) -> dict[str, Any]:
        with self.cond:
            return {"session": self.id, "ref": self.ref, "state": self.state,
                    "message_id": self.message_id, "result": self.result,
                    "events": self.emitted}

    def since(self, i: int) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
        """Events numbered ``>= i`` now, and whether the session has finished (no waiting)."""
        with self.cond:
            if i >= self.emitted and self.result is None and self._receipt_wait_over():
                self._emit_pending_locked()
            return [(n, e) for n, e in self.events if n >= i], self.result is not None

    def stream(self, *, poll_s: float = 1.0, stop: threading.Event | None = None,
               alive: Callable[[], bool] | None = None) -> Iterator[dict[str, Any]]:
        """Yield every event from the first; ends after a terminal event.

        While waiting for the receipt, a stream gives up after ``receipt_wait_s`` with a
        ``receipt-pending`` event (the envelope stays queued). ``None`` is never yielded;
        the caller may use ``stop`` to end early (shutdown) and ``alive`` (checked every
        ``poll_s`` while waiting) to end when the reader has gone away.
        """
        i = 0
        while True:
            with self.cond:
                while i >= self.emitted and self.result is None:
                    if (stop is not None and stop.is_set()) or (alive is not None and not alive()):
                        return
                    if self._receipt_wait_over():
                        self._emit_pending_locked()
                        break
                    self.cond.wait(poll_s)
                pending = [e for n, e in self.events if n >= i]
                i = self.emitted
                done = self.result is not None
            yield from pending
            if done:
                return

    def _receipt_wait_over(self) -> bool:
        return (self.state == "queued" and self.queued_mono is not None
                and time.monotonic() - self.queued_mono >= self.receipt_wait_s)

    def _emit_pending_locked(self) -> None:
        ev = {"event": "receipt-pending", "message_id": self.message_id,
              "message": "no receipt yet; the template stays queued and is sent when the link is up"}
        self.events.append((self.emitted, ev))
        self.emitted += 1
        self.result = ev
        self.state = "receipt-pending"
        self.cond.notify_all()


@dataclass(frozen=True)
class _Failure:
    reason: str
    message: str
    extra: dict[str, str] = field(default_factory=dict)


class SessionManager:
    """Runs sessions one at a time on a frame source; routes receipts to them."""

    def __init__(
        self,
        source: FrameSource,
        analyzer: Analyzer,
        sealer: Sealer,
        queue: Queue,
        config: SessionConfig | None = None,
        *,
        wall_clock: Callable[[], float] = time.time,
        after_session: Callable[[], object] | None = None,
        preview: Callable[[np.ndarray], bytes] | None = None,
        preview_interval_s: float = 0.2,
        liveness: LivenessGate | None = None,
        liveness_analyze: Callable[[Analyzer], Analyze] | None = None,
    ) -> None:
        self._source = source
        self._analyzer = analyzer
        self._sealer = sealer
        self._queue = queue
        self.config = config or SessionConfig()
        self._wall = wall_clock
        self._after = after_session
        self._preview = preview  # operator-enabled: frame -> small JPEG for the app
        self._preview_interval_s = preview_interval_s
        if liveness is not None and liveness_analyze is None:
            raise ValueError("a liveness gate needs liveness_analyze")
        self._liveness = liveness
        self._liveness_analyze = liveness_analyze
        self._lock = threading.Lock()
        self._active: Session | None = None
        self._worker: threading.Thread | None = None
        self._sessions: OrderedDict[str, Session] = OrderedDict()
        self._by_message: OrderedDict[str, Session] = OrderedDict()
        self._closed = False
        self.counts: dict[str, int] = {}

    # ---- control -------------------------------------------------------------------
    def start(self, ref: object, timeout_s: float | None = None, consent: Consent | None = None,
              nonce: object = None) -> Session:
        """Start a session for ``ref``; ``consent`` None only for callers that collected it
        out of band (the API always passes one); ``nonce``: the app's liveness nonce."""
        ref = check_ref(ref)
        nonce = check_nonce(nonce)
        limit = self.config.timeout_s if timeout_s is None else float(timeout_s)
        if not 1.0 <= limit <= 600.0:
            raise SessionError(f"timeout_s: expected a number in [1, 600], got {timeout_s}",
                               reason="bad-request")
        with self._lock:
            if self._closed:
                raise SessionError("the daemon is shutting down; no new sessions", reason="shutting-down")
            if self._active is not None:
                raise SessionBusyError(
                    f"session {self._active.id} is capturing; one session at a time "
                    "(cancel it or wait for its result)"
                )
            s = Session(id=uuid.uuid4().hex, ref=ref, timeout_s=limit, consent=consent,
                        receipt_wait_s=self.config.receipt_wait_s, max_events=self.config.max_events,
                        nonce=nonce)
            self._remember(s)
            started: dict[str, Any] = {"event": "started", "session": s.id, "ref": ref, "timeout_s": limit}
            if consent is not None:
                started["consent"] = consent.version
            declined = consent is not None and not consent.accepted
            if not declined:
                self._active = s
                self._start_worker(s, started)
        if declined:  # the camera is never opened
            s.emit(started)
            self._fail(s, "consent-declined", "the customer declined; nothing was captured")
            log.info("consent declined", extra={"session": s.id, "ref_hash": ref_hash(ref)})
            return s
        log.info("session started", extra={"session": s.id, "ref_hash": ref_hash(ref)})
        return s

    def _start_worker(self, s: Session, started: dict[str, Any]) -> None:
        """Under ``_lock``: announce ``s`` and run it on its own thread."""
        analyzer = self._analyzer
        s.emit(started)
        self._worker = threading.Thread(target=self._run, args=(s, analyzer),
                                        name=f"session-{s.id[:8]}", daemon=True)
        self._worker.start()

    def cancel(self, session_id: str) -> Session:
        s = self.get(session_id)
        if s.state != "capturing":
            raise SessionError(
                f"session {session_id}: expected a capturing session to cancel, got state {s.state!r}"
                + (" (the template is already queued and will be delivered)" if s.message_id else ""),
                reason="not-cancellable",
            )
        s.cancel_requested.set()
        return s

    def get(self, session_id: str) -> Session:
        with self._lock:
            s = self._sessions.get(session_id)
        if s is None:
            raise SessionNotFoundError(f"no session {session_id!r} (unknown or forgotten)")
        return s

    def recent(self) -> list[Session]:
        """The sessions still remembered, oldest first."""
        with self._lock:
            return list(self._sessions.values())

    def by_message_id(self, message_id: str) -> Session | None:
        with self._lock:
            return self._by_message.get(message_id)

    @property
    def active(self) -> Session | None:
        return self._active

    def reload_analyzer(self, analyzer: Analyzer) -> None:
        """New sessions use ``analyzer``; a session in progress finishes on its own."""
        with self._lock:
            self._analyzer = analyzer

    @property
    def analyzer(self) -> Analyzer:
        return self._analyzer

    def deliver_receipt(self, receipt: Receipt) -> bool:
        """Hand a *verified* receipt (straight from the forwarder) to its session's streams.

        False if no session knows its message id, or if it is not final (a rejection made
        before the carrier authenticated the envelope: the envelope stays queued and the
        stream keeps waiting for the real answer, see :attr:`Receipt.final`).
        """
        if not receipt.final:
            return False
        mid = str(receipt.message_id)
        s = self.by_message_id(mid)
        if s is None:
            return False
        with s.cond:
            if s.result is not None and s.result["event"] == "receipt":
                return True  # duplicate delivery
            s.state = "done"
            s.result = None  # a pending stream is superseded by the real receipt
        s.emit(receipt_event(receipt))
        self._count("receipt-" + receipt.status)
        log.info("receipt delivered", extra={"session": s.id, "message_id": mid,
                                              "status": receipt.status, "reason": receipt.reason})
        return True

    def healthy(self, now: float | None = None) -> tuple[bool, str]:
        """False when a capture step has made no progress for ``stuck_after_s``."""
        s = self._active
        if s is None or s.state not in ("capturing", "sealing"):
            return True, "idle"
        stalled = (time.monotonic() if now is None else now) - s.progress_mono
        if stalled > self.config.stuck_after_s:
            return False, f"session {s.id} made no progress for {stalled:.0f} s"
        return True, s.state

    def shutdown(self, grace_s: float, cancel_wait_s: float = 3.0) -> str:
        """Refuse new sessions; let a session in progress finish within ``grace_s``, else cancel it.

        Returns what happened to the active session: ``none``, ``finished`` or ``cancelled``.
        """
        with self._lock:
            self._closed = True
            s, worker = self._active, self._worker
        if s is None or worker is None:
            return "none"
        worker.join(max(grace_s, 0.0))
        if not worker.is_alive():
            return "finished"
        s.cancel_requested.set()
        worker.join(max(cancel_wait_s, 0.0))  # a stuck pipeline is left behind (daemon thread)
        return "cancelled"

    # ---- the worker --------------------------------------------------------------
    def _run(self, s: Session, analyzer: Analyzer) -> None:
        try:
            self._capture_and_queue(s, analyzer)
        except Exception as e:  # a bug must end the session cleanly, not wedge the camera
            log.error("session crashed", extra={"session": s.id, "error": type(e).__name__})
            self._fail(s, "internal-error", f"internal error ({type(e).__name__}); see the daemon log")
        finally:
            with self._lock:
                if self._active is s:
                    self._active = None
            if self._after is not None:
                self._after()  # e.g. give the session's temporaries back to the kernel

    def _capture_and_queue(self, s: Session, analyzer: Analyzer) -> None:
        try:
            self._source.open()
        except CaptureError as e:
            self._fail(s, e.reason, f"camera unavailable: {e.message}")
            return
        verdict: LivenessVerdict | None = None
        try:
            outcome = self._look(s, analyzer)
            if not isinstance(outcome, _Failure) and self._liveness is not None:
                assert self._liveness_analyze is not None
                verdict = self._liveness.run(self._source, self._liveness_analyze(analyzer), s.emit,
                                             s.cancel_requested.is_set, s.nonce)
        finally:
            s.preview = None  # no picture outlives the capture
            self._source.close()  # the camera is released before anyone hears the outcome
        if isinstance(outcome, _Failure):
            self._fail(s, outcome.reason, outcome.message, **outcome.extra)
            return
        if verdict is not None and not verdict.passed:
            if verdict.reason == "cancelled":
                self._fail(s, "cancelled", "the session was cancelled")
            else:
                self._fail(s, "liveness-failed", verdict.message, liveness_reason=verdict.reason)
            return
        best, frames, good = outcome
        s.emit({"event": "captured", "reason": "ok", "frames": frames, "good_frames": good,
                "template_frames": len(best), "quality": _safe_quality(best[0].quality)})
        self._seal_and_queue(s, analyzer, best, verdict)

    def _look(self, s: Session, analyzer: Analyzer) -> _Failure | tuple[list[Candidate], int, int]:
        """Guide on every frame, keep the best K candidates, until the decision or a failure."""
        cfg = self.config
        deadline = s.started_mono + s.timeout_s
        best: list[Candidate] = []  # best first; aligned crops in RAM only
        first_good: float | None = None
        good = frames = 0
        last_reason, last_sent = "", 0.0
        last_preview = 0.0
        while True:
            now = time.monotonic()
            s.progress_mono = now
            if s.cancel_requested.is_set():
                return _Failure("cancelled", "the session was cancelled")
            if best and first_good is not None and (
                    good >= cfg.best_of or now - first_good >= cfg.settle_s or now >= deadline):
                return best, frames, good
            if now >= deadline:
                return _Failure("timeout", f"no acceptable frame within {s.timeout_s:g} s",
                                {"last_guidance": last_reason or "no-frame"})
            try:
                frame = self._source.read(timeout_s=min(2.0, max(deadline - now, 0.05)))
            except CaptureTimeoutError:
                continue
            except CaptureError as e:
                return _Failure(e.reason, f"camera failed: {e.message}")
            frames += 1
            s.progress_mono = time.monotonic()
            shape = tuple(frame.rgb.shape)
            if self._preview is not None and time.monotonic() - last_preview >= self._preview_interval_s:
                try:
                    s.preview = self._preview(frame.rgb)
                except (KycEdgeError, ValueError, OSError):
                    s.preview = None
                last_preview = time.monotonic()
            try:
                res = analyzer.guide(frame.rgb)
                if res.ok and would_keep(best, res.score, cfg.template_frames):
                    cand = analyzer.candidate(frame.rgb, res)
                    if cand is not None:
                        best = keep_best(best, cand, cfg.template_frames)
            except KycEdgeError as e:
                return _Failure(e.reason, f"pipeline failed: {e.message}")
            finally:
                del frame  # the frame is gone once the pipeline has seen it
            if res.ok:
                good += 1
                first_good = first_good if first_good is not None else time.monotonic()
            t = time.monotonic()
            if res.reason != last_reason or t - last_sent >= cfg.guidance_repeat_s:
                ev: dict[str, Any] = {"event": "guidance", "reason": res.reason, "message": res.message,
                                      "faces": int(res.faces), "ok": bool(res.ok)}
                box = face_box(res, shape)
                if box is not None:
                    ev["box"] = box
                s.emit(ev)
                last_reason, last_sent = res.reason, t

    def _seal_and_queue(self, s: Session, analyzer: Analyzer, best: list[Candidate],
                        verdict: LivenessVerdict | None = None) -> None:
        with s.cond:
            s.state = "sealing"
        s.progress_mono = time.monotonic()
        try:
            template = analyzer.template(best)  # embed + fuse the K crops: the decision's step
        except KycEdgeError as e:
            self._fail(s, e.reason, f"pipeline failed: {e.message}")
            return
        quality = _safe_quality(best[0].quality)
        best.clear()  # the crops are gone once the template exists
        if verdict is not None and verdict.reference is not None and self._liveness is not None \
                and cosine(template, verdict.reference) < self._liveness.threshold:
            # the face that answered the challenge is not the face about to be sealed
            self._fail(s, "liveness-failed", "liveness challenge failed (the face changed)",
                       liveness_reason="identity-changed")
            return
        cap = Capture(template=template, registration_ref=s.ref, model_id=analyzer.model_id,
                      model_version=analyzer.model_version, captured_at=self._wall(),
                      quality=quality, consent=s.consent,
                      liveness=verdict.record if verdict is not None else None)
        try:
            sealed = self._sealer(cap)
            self._queue.put(sealed.message_id, sealed.envelope)
        except KycEdgeError as e:
            self._fail(s, e.reason, e.message)
            return
        finally:
            del cap, template
        with self._lock:
            self._by_message[sealed.message_id] = s
            while len(self._by_message) > self.config.keep_sessions:
                self._by_message.popitem(last=False)
        with s.cond:
            s.message_id = sealed.message_id
            s.state = "queued"
            s.queued_mono = time.monotonic()
        with self._lock:
            if self._active is s:
                self._active = None  # the camera is free while we wait for the receipt
        s.emit({"event": "queued", "message_id": sealed.message_id,
                "model": f"{analyzer.model_id}@{analyzer.model_version}"})
        self._count("queued")
        log.info("template queued", extra={"session": s.id, "message_id": sealed.message_id,
                                            "sealed_size": len(sealed.envelope)})

    def _fail(self, s: Session, reason: str, message: str, **extra: str) -> None:
        with s.cond:
            s.state = "cancelled" if reason == "cancelled" else "failed"
        with self._lock:
            if self._active is s:
                self._active = None  # free before anyone hears the outcome
        s.emit({"event": "failed", "reason": reason, "message": message, **extra})
        self._count("failed-" + reason)
        log.info("session failed", extra={"session": s.id, "reason": reason, **extra})

    def _remember(self, s: Session) -> None:
        self._sessions[s.id] = s
        while len(self._sessions) > self.config.keep_sessions:
            self._sessions.popitem(last=False)

    def _count(self, key: str) -> None:
        with self._lock:
            self.counts[key] = self.counts.get(key, 0) + 1
