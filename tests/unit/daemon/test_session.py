"""The registration session state machine, on a fake camera and fake pipeline/sealer/outbox."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.core.errors import SessionError
from kycedge.unit.capture.fake import FakeCamera
from kycedge.unit.session import (
    SessionBusyError,
    SessionConfig,
    SessionManager,
    check_ref,
)

from .fakes import (
    BROKEN,
    FAR,
    GOOD,
    NO_FACE,
    STUCK,
    FakeAnalyzer,
    FakeQueue,
    FakeSealer,
    frame,
    mid,
    receipt,
)

FAST = SessionConfig(timeout_s=5.0, settle_s=5.0, best_of=3, receipt_wait_s=5.0, guidance_repeat_s=60.0)


def manager(frames: list[Any], config: SessionConfig = FAST, **kw: Any) -> tuple[
        SessionManager, FakeCamera, FakeAnalyzer, FakeSealer, FakeQueue]:
    cam = FakeCamera(frames)
    an, se, q = FakeAnalyzer(), FakeSealer(), FakeQueue(**kw)
    return SessionManager(cam, an, se, q, config), cam, an, se, q


def events_until(s: Any, last: str) -> list[dict[str, Any]]:
    out = []
    for e in s.stream(poll_s=0.05):
        out.append(e)
        if e["event"] == last:
            break
    return out


def test_guidance_then_best_frame_sealed_queued_and_receipt() -> None:
    m, cam, _an, se, q = manager([frame(NO_FACE), frame(FAR), frame(GOOD, 50), frame(GOOD, 150),
                                  frame(GOOD, 100), frame(NO_FACE)])
    s = m.start("REG-registration-0001")
    evs = events_until(s, "queued")
    kinds = [(e["event"], e.get("reason")) for e in evs]
    assert kinds == [("started", None), ("guidance", "no-face"), ("guidance", "move-closer"),
                     ("guidance", "ok"), ("captured", "ok"), ("queued", None)]
    assert evs[4]["good_frames"] == 3
    assert evs[4]["quality"]["sharpness"] == 150.0  # the best of the three good frames
    assert se.captures[0].registration_ref == "REG-registration-0001"
    assert se.captures[0].model_id == "fake-embed"
    assert list(q.items) == [mid(1)]
    assert evs[5]["message_id"] == mid(1)
    assert m.active is None  # the camera is free while the receipt is awaited
    assert cam.opens == cam.closes == 1
    assert m.deliver_receipt(receipt(mid(1), "match", score=0.71, threshold=0.36))
    assert m.deliver_receipt(receipt(mid(1), "match", score=0.71, threshold=0.36))  # duplicate
    all_events = list(s.stream(poll_s=0.05))
    assert [e["event"] for e in all_events][-1] == "receipt"
    assert sum(e["event"] == "receipt" for e in all_events) == 1
    assert all_events[-1]["reason"] == "match"
    assert s.state == "done"
    assert not m.deliver_receipt(receipt(mid(999), "match"))


def test_no_event_carries_template_or_pixels() -> None:
    m, *_ = manager([frame(GOOD)])
    s = m.start("REG-registration-2")
    m.deliver_receipt(receipt(mid(1), "no-match"))  # may arrive before queued: ignored
    evs = events_until(s, "queued")
    for e in evs:
        for v in e.values():
            assert isinstance(v, str | int | float | bool | dict | type(None))


def test_timeout_reports_last_guidance() -> None:
    cfg = SessionConfig(timeout_s=1.0, guidance_repeat_s=0.2)
    m, cam, *_ = manager([frame(FAR)], cfg)
    s = m.start("REG-registration-3")
    evs = list(s.stream(poll_s=0.05))
    assert evs[-1]["event"] == "failed"
    assert evs[-1]["reason"] == "timeout"
    assert evs[-1]["last_guidance"] == "move-closer"
    assert sum(e["event"] == "guidance" for e in evs) >= 2  # repeated while unchanged
    assert cam.closes == 1
    assert s.state == "failed"


def test_second_session_refused_while_capturing_then_cancel() -> None:
    m, cam, *_ = manager([frame(NO_FACE)])
    s = m.start("REG-registration-4")
    with pytest.raises(SessionBusyError, match=f"session {s.id} is capturing") as e:
        m.start("REG-registration-5")
    assert e.value.reason == "busy"
    m.cancel(s.id)
    evs = list(s.stream(poll_s=0.05))
    assert evs[-1]["event"] == "failed"
    assert evs[-1]["reason"] == "cancelled"
    assert s.state == "cancelled"
    with pytest.raises(SessionError, match="expected a capturing session") as e2:
        m.cancel(s.id)
    assert e2.value.reason == "not-cancellable"
    deadline = time.monotonic() + 5
    while m.active is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    s5 = m.start("REG-registration-5")  # the camera is free again
    assert cam.opens == 2
    m.cancel(s5.id)
    list(s5.stream(poll_s=0.05))


def test_new_session_while_previous_awaits_receipt() -> None:
    m, *_ = manager([frame(GOOD)], SessionConfig(settle_s=0.0, best_of=1))
    a = m.start("REG-registration-A")
    events_until(a, "queued")
    b = m.start("REG-registration-B")
    events_until(b, "queued")
    m.deliver_receipt(receipt(mid(2), "no-match", score=0.1, threshold=0.36))
    m.deliver_receipt(receipt(mid(1), "match", score=0.8, threshold=0.36))
    assert list(a.stream())[-1]["reason"] == "match"
    assert list(b.stream())[-1]["reason"] == "no-match"


def test_receipt_pending_after_wait_then_late_receipt() -> None:
    m, *_ = manager([frame(GOOD)], SessionConfig(settle_s=0.0, best_of=1, receipt_wait_s=0.2))
    s = m.start("REG-registration-P")
    evs = list(s.stream(poll_s=0.05))
    assert evs[-1]["event"] == "receipt-pending"
    assert evs[-1]["message_id"] == mid(1)
    m.deliver_receipt(receipt(mid(1), "match"))
    assert list(s.stream())[-1]["event"] == "receipt"


def test_pipeline_error_and_camera_error_and_outbox_full() -> None:
    m, *_ = manager([frame(BROKEN)])
    evs = list(m.start("REG-registration-E").stream(poll_s=0.05))
    assert (evs[-1]["event"], evs[-1]["reason"]) == ("failed", "inference-failed")

    cam = FakeCamera([frame(GOOD)], fail_open=True)
    m2 = SessionManager(cam, FakeAnalyzer(), FakeSealer(), FakeQueue(), FAST)
    evs = list(m2.start("REG-registration-C").stream(poll_s=0.05))
    assert (evs[-1]["event"], evs[-1]["reason"]) == ("failed", "capture-unavailable")

    m3, *_ = manager([frame(GOOD)], SessionConfig(settle_s=0.0, best_of=1), full=True)
    evs = list(m3.start("REG-registration-F").stream(poll_s=0.05))
    assert (evs[-1]["event"], evs[-1]["reason"]) == ("failed", "outbox-full")
    assert "captures refused" in evs[-1]["message"]


def test_stuck_pipeline_reported_unhealthy() -> None:
    m, _, an, *_ = manager([frame(STUCK)], SessionConfig(stuck_after_s=1.0))
    s = m.start("REG-registration-S")
    deadline = time.monotonic() + 5
    while an.seen == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert m.healthy()[0]
    ok, why = m.healthy(now=time.monotonic() + 30)
    assert not ok
    assert s.id in why
    an.release.set()
    m.cancel(s.id)
    list(s.stream(poll_s=0.05))


def test_reload_keeps_session_on_its_models() -> None:
    m, _cam, old, se, _ = manager([frame(NO_FACE), frame(NO_FACE), frame(GOOD)],
                                 SessionConfig(settle_s=0.0, best_of=1))
    gate = threading.Event()
    orig = old.guide

    def slow(rgb: Any) -> Any:
        gate.wait(5)
        return orig(rgb)

    old.guide = slow  # type: ignore[method-assign]
    s = m.start("REG-registration-R")
    new = FakeAnalyzer(model_id="fake-embed", model_version="2")
    m.reload_analyzer(new)
    gate.set()
    events_until(s, "queued")
    assert se.captures[0].model_version == "1"  # the session finished on the models it began with
    s2 = m.start("REG-registration-R2")
    events_until(s2, "queued")
    assert se.captures[1].model_version == "2"


def test_shutdown_cancels_a_session_that_does_not_finish() -> None:
    m, cam, *_ = manager([frame(NO_FACE)])
    s = m.start("REG-registration-X")
    assert m.shutdown(grace_s=0.2) == "cancelled"
    assert s.state == "cancelled"
    with pytest.raises(SessionError, match="shutting down"):
        m.start("REG-registration-Y")
    assert cam.closes == cam.opens


def test_shutdown_lets_a_short_session_finish() -> None:
    m, *_ = manager([frame(GOOD)], SessionConfig(settle_s=0.0, best_of=1))
    s = m.start("REG-registration-Z")
    assert m.shutdown(grace_s=5) in ("finished", "none")
    assert s.message_id == mid(1)


@given(st.text(max_size=140))
def test_reference_check(ref: str) -> None:
    from kycedge.protocol.ids import ID_NUMBER_RE, REFERENCE_RE

    ok = bool(REFERENCE_RE.fullmatch(ref)) and not ID_NUMBER_RE.search(ref)
    if ok:
        assert check_ref(ref) == ref
    else:
        with pytest.raises(SessionError, match="registration reference"):
            check_ref(ref)


def test_bad_timeout_and_types() -> None:
    m, *_ = manager([frame(NO_FACE)])
    with pytest.raises(SessionError, match=r"expected a number in \[1, 600\], got 0.5"):
        m.start("REG-registration-T", timeout_s=0.5)
    with pytest.raises(SessionError, match="got int"):
        m.start(12345)


def test_face_box_is_fractions_of_the_frame_from_the_detectors_corners() -> None:
    from kycedge.unit.session import face_box

    class R:
        box = (289.0, 190.0, 357.0, 257.0)  # x0, y0, x1, y1 on a 640x480 frame

    assert face_box(R(), (480, 640, 3)) == [0.45, 0.4, 0.11, 0.14]

    class Bad:
        box = (10.0, 10.0, 5.0, 20.0)  # x1 < x0

    assert face_box(Bad(), (480, 640, 3)) is None
    assert face_box(object(), (480, 640, 3)) is None


def test_template_fuses_the_best_k_frames_and_embeds_only_at_the_decision() -> None:
    cfg = SessionConfig(timeout_s=5.0, settle_s=5.0, best_of=5, template_frames=3, guidance_repeat_s=60.0)
    m, _cam, an, se, _q = manager([frame(GOOD, 50), frame(GOOD, 150), frame(FAR), frame(GOOD, 100),
                                   frame(GOOD, 20), frame(GOOD, 120)], cfg)
    s = m.start("REG-registration-K")
    evs = events_until(s, "queued")
    captured = next(e for e in evs if e["event"] == "captured")
    assert captured["good_frames"] == 5
    assert captured["template_frames"] == 3
    assert captured["quality"]["sharpness"] == 150.0  # the best frame's measures
    assert an.fused == [[150.0, 120.0, 100.0]]  # one template call, at the decision, best first
    # a candidate crop was made only for frames entering the best 3: 50, 150, 100, 120 (not 20)
    assert an.candidates == 4
    from .fakes import vector
    assert np.allclose(se.captures[0].template, vector((150 + 120 + 100) / 3))


def test_fewer_good_frames_than_k_fuse_what_there_is() -> None:
    cfg = SessionConfig(timeout_s=5.0, settle_s=5.0, best_of=2, template_frames=3, guidance_repeat_s=60.0)
    m, _cam, an, _se, _q = manager([frame(GOOD, 60), frame(NO_FACE), frame(GOOD, 80)], cfg)
    s = m.start("REG-registration-K1")
    evs = events_until(s, "queued")
    assert next(e for e in evs if e["event"] == "captured")["template_frames"] == 2
    assert an.fused == [[80.0, 60.0]]


def test_template_failure_fails_the_session_with_nothing_sealed() -> None:
    from kycedge.core.errors import ModelError

    m, _cam, an, se, q = manager([frame(GOOD, 80)], SessionConfig(settle_s=0.0, best_of=1))

    def broken(cands: Any) -> Any:
        raise ModelError("interpreter failed", reason="inference-failed")

    an.template = broken  # type: ignore[method-assign]
    s = m.start("REG-registration-KF")
    evs = list(s.stream(poll_s=0.05))
    assert evs[-1]["event"] == "failed"
    assert evs[-1]["reason"] == "inference-failed"
    assert se.captures == []
    assert q.items == {}


def test_a_pre_authentication_rejection_does_not_end_the_session() -> None:
    """Issue 10: ``unknown-device`` / ``undecryptable`` say nothing about this registration: the
    stream keeps waiting (the envelope stays queued) and the final receipt ends it."""
    m, *_ = manager([frame(GOOD)])
    s = m.start("REG-registration-7")
    events_until(s, "queued")
    assert not m.deliver_receipt(receipt(mid(1), "unknown-device"))
    assert not m.deliver_receipt(receipt(mid(1), "undecryptable"))
    assert s.state != "done"
    assert m.deliver_receipt(receipt(mid(1), "no-reference"))
    evs = list(s.stream(poll_s=0.05))
    assert [e["event"] for e in evs].count("receipt") == 1
    assert (evs[-1]["status"], evs[-1]["reason"]) == ("accepted", "no-reference")
