"""Fakes behind the session's seams (analyzer, sealer, queue) for the daemon tests."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from kycedge.core.errors import OutboxFullError
from kycedge.protocol.envelope.receipt import SCORED_REASONS, Receipt
from kycedge.unit.session import Capture, SealedCapture
from kycedge.vision.template import Candidate


def mid(n: int) -> str:
    """The fake sealer's n-th message id (a UUID, like a real one)."""
    return str(uuid.UUID(int=n))


def receipt(message_id: str, reason: str, score: float | None = None,
            threshold: float | None = None) -> Receipt:
    """A verified carrier receipt as the forwarder hands it to the session (one type)."""
    if reason in SCORED_REASONS and score is None:
        score, threshold = 0.8, 0.4
    return Receipt(message_id=uuid.UUID(message_id), tenant="acme", device_id="unit-1", reason=reason,
                   issued_at_ms=1_800_000_000_000, carrier_key_id="0" * 32, score=score, threshold=threshold)

# A frame's first pixel says what the fake pipeline "sees": 0 no face, 1 move closer,
# 2 good (quality from pixel[0,1]), 3 raises a pipeline error, 4 blocks (stuck pipeline).
NO_FACE, FAR, GOOD, BROKEN, STUCK = 0, 1, 2, 3, 4


def frame(kind: int, q: int = 100) -> np.ndarray:
    f = np.zeros((8, 8, 3), np.uint8)
    f[0, 0, 0] = kind
    f[0, 1, 0] = q
    return f


@dataclass(frozen=True)
class FakeResult:
    ok: bool
    reason: str
    message: str
    faces: int
    quality: Mapping[str, float]
    template: np.ndarray | None
    score: float = 0.0


@dataclass
class FakeAnalyzer:
    """Guide = the frame's first pixels; a candidate's "crop" is its quality value; the template
    is the normalised weighted mean of per-candidate vectors (so fusion is visible in tests)."""

    model_id: str = "fake-embed"
    model_version: str = "1"
    seen: int = 0
    candidates: int = 0
    fused: list[list[float]] = field(default_factory=list)  # the scores of each template call
    release: threading.Event = field(default_factory=threading.Event)

    def guide(self, rgb: np.ndarray) -> FakeResult:
        from kycedge.core.errors import ModelError

        self.seen += 1
        kind, q = int(rgb[0, 0, 0]), int(rgb[0, 1, 0])
        if kind not in (FAR, GOOD, BROKEN, STUCK):  # NO_FACE and any other scene
            return FakeResult(False, "no-face", "No face found.", 0, {}, None)
        if kind == FAR:
            return FakeResult(False, "move-closer", "Move closer.", 1, {"eye_distance_px": 10.0}, None)
        if kind == BROKEN:
            raise ModelError("interpreter failed", reason="inference-failed")
        if kind == STUCK:
            self.release.wait(30)
        return FakeResult(True, "ok", "Capture accepted.", 1,
                          {"sharpness": float(q), "eye_distance_px": 60.0}, None, score=float(q))

    def candidate(self, rgb: np.ndarray, guide: FakeResult) -> Candidate:
        self.candidates += 1
        crop = np.full((2, 2, 3), int(rgb[0, 1, 0]), np.uint8)
        return Candidate(crop=crop, score=guide.score, quality=guide.quality)

    def template(self, candidates: list[Candidate]) -> np.ndarray:
        self.fused.append([c.score for c in candidates])
        return vector(sum(c.score for c in candidates) / len(candidates))

    def process_frame(self, rgb: np.ndarray) -> FakeResult:
        g = self.guide(rgb)
        if not g.ok:
            return g
        template = self.template([self.candidate(rgb, g)])
        return FakeResult(True, "ok", g.message, 1, g.quality, template, g.score)


def vector(q: float) -> np.ndarray:
    """A deterministic unit vector that depends on ``q`` (a stand-in template)."""
    t = np.cos(np.arange(128, dtype=np.float64) * (1.0 + q / 1000.0)).astype(np.float32)
    return t / np.linalg.norm(t)


@dataclass
class FakeSealer:
    captures: list[Capture] = field(default_factory=list)
    n: int = 0

    def __call__(self, cap: Capture) -> SealedCapture:
        self.captures.append(cap)
        self.n += 1
        return SealedCapture(message_id=mid(self.n), envelope=b"sealed:" + bytes([self.n % 256]) * 16)


@dataclass
class FakeQueue:
    items: dict[str, bytes] = field(default_factory=dict)
    full: bool = False

    def put(self, message_id: str, envelope: bytes) -> bool:
        if self.full:
            raise OutboxFullError("outbox full: 10 of 10 envelopes; captures refused until the link is back")
        self.items[message_id] = envelope
        return True
