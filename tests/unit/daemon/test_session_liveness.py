"""The session with the liveness gate: prompts as guidance codes, nothing sealed on failure, retries.

The camera is scripted on a virtual clock (frame n at n/15 s); the liveness analysis of a
frame comes from the model-free meshes of tests/vision/liveness_fakes (a 3-D head that
follows the prompts, or a flat picture held up and turned).
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
from kycedge.core.errors import SessionError
from kycedge.unit.capture.base import Frame
from kycedge.unit.liveness import METHOD, LivenessConfig, LivenessGate
from kycedge.unit.session import SessionConfig, SessionManager
from support.liveness import Performer

from .fakes import GOOD, FakeAnalyzer, FakeQueue, FakeSealer, frame

FAST = SessionConfig(timeout_s=30.0, settle_s=5.0, best_of=3, receipt_wait_s=5.0, guidance_repeat_s=60.0)


class Clock:
    """A camera whose frame n is taken at n/15 s (no sleeping)."""

    def __init__(self) -> None:
        self.seq = -1
        self.opens = 0

    @property
    def name(self) -> str:
        return "scripted"

    def open(self) -> None:
        self.opens += 1

    def read(self, timeout_s: float = 2.0) -> Frame:
        self.seq += 1
        return Frame(rgb=frame(GOOD), seq=self.seq, t_mono=self.seq / 15.0)

    def close(self) -> None:
        pass


def _template() -> np.ndarray:
    res = FakeAnalyzer().process_frame(frame(GOOD))
    assert res.template is not None
    return res.template


def manager(performer: Performer, *, retries: int = 0) -> tuple[SessionManager, FakeSealer]:
    ref = _template()

    def analyze_for(_analyzer: Any) -> Any:
        def analyze(rgb: np.ndarray, t: float) -> Any:
            o = performer.at(t)
            frontal = abs(o.yaw_deg) < 10 and o.ear > 0.25
            return o, (ref if frontal else None)
        return analyze

    gate = LivenessGate(LivenessConfig(retries=retries), threshold=0.4, rng=random.Random(3))
    se = FakeSealer()
    m = SessionManager(Clock(), FakeAnalyzer(), se, FakeQueue(), FAST,
                       liveness=gate, liveness_analyze=analyze_for)
    return m, se


def run(m: SessionManager, p: Performer, **kw: Any) -> list[dict[str, Any]]:
    s = m.start("REG-registration-0001", **kw)
    evs = []
    for e in s.stream(poll_s=0.05):
        evs.append(e)
        if e["event"] in ("queued", "failed"):
            break
    return evs


def _wire(m: SessionManager, p: Performer) -> None:
    # the gate's emit goes to the session; wrap the session's emit to let the performer hear
    orig = m._liveness.run  # type: ignore[union-attr]

    def run_with_ears(source: Any, analyze: Any, emit: Any, cancelled: Any, nonce: Any = None) -> Any:
        def emit_and_hear(ev: dict[str, Any]) -> None:
            if ev["event"] == "guidance" and "prompt" in ev:
                p.hear(ev["reason"], source.seq / 15.0)
            emit(ev)
        return orig(source, analyze, emit_and_hear, cancelled, nonce)

    m._liveness.run = run_with_ears  # type: ignore[union-attr, method-assign]


def test_a_live_customer_follows_the_prompts_and_is_sealed_with_the_challenge_record() -> None:
    p = Performer()
    m, se = manager(p)
    _wire(m, p)
    evs = run(m, p, nonce="carrier-nonce-0001")
    prompts = [e for e in evs if e["event"] == "guidance" and "prompt" in e]
    assert evs[-1]["event"] == "queued", evs[-3:]
    assert 2 <= len(prompts) <= 3
    assert all(e["reason"].startswith("liveness-") for e in prompts)
    assert [e["prompt"] for e in prompts] == list(range(1, len(prompts) + 1))
    lv = se.captures[0].liveness
    assert lv is not None
    assert lv.passed
    assert lv.method == METHOD
    assert lv.outcome == "passed"
    assert list(lv.prompts) == [e["reason"] for e in prompts]
    assert lv.nonce == "carrier-nonce-0001"
    assert lv.score >= 1.0
    assert "points" not in repr(lv)
    assert all(k not in str(evs) for k in ("points", "landmark"))


def test_a_printed_photo_is_refused_and_nothing_is_sealed() -> None:
    from kycedge.unit.metrics import LIVENESS

    before = LIVENESS.snapshot()
    p = Performer(flat=True)
    m, se = manager(p, retries=1)
    _wire(m, p)
    evs = run(m, p)
    after = LIVENESS.snapshot()
    reason = evs[-1]["liveness_reason"]
    assert after.get(reason, 0) == before.get(reason, 0) + 1  # the metrics textfile counts it
    assert evs[-1]["event"] == "failed"
    assert evs[-1]["reason"] == "liveness-failed"
    assert evs[-1]["liveness_reason"] in ("planar", "no-response", "late-response")
    assert [e["state"] for e in evs if e["event"] == "liveness"] == ["retry"]  # one retry, then refused
    assert se.captures == []


def test_nobody_answering_fails_after_the_retries() -> None:
    p = Performer(latency_s=30.0)
    m, se = manager(p, retries=0)
    _wire(m, p)
    evs = run(m, p)
    assert evs[-1]["reason"] == "liveness-failed"
    assert evs[-1]["liveness_reason"] == "no-response"
    assert se.captures == []


def test_a_bad_nonce_is_refused_at_start() -> None:
    m, _ = manager(Performer())
    with pytest.raises(SessionError, match="nonce"):
        m.start("REG-registration-0001", nonce="short")
    with pytest.raises(SessionError, match="nonce"):
        m.start("REG-registration-0001", nonce=123)
