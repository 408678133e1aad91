"""The prompt-independent clip judgement on model-free meshes."""

from __future__ import annotations

from kycedge.vision.liveness.checks import CheckConfig, blink_events, judge
from support.liveness import obs


def _clip(**kw: object) -> list:  # type: ignore[type-arg]
    out = []
    for i in range(30):
        t = i / 15
        yaw = 25.0 * min(max((t - 0.5) / 0.6, 0.0), 1.0) if kw.get("turn") else 0.0
        blink = 0.9 if kw.get("blink") and 1.0 <= t <= 1.2 else 0.0
        out.append(obs(t, yaw_deg=yaw, blink=blink, flat=bool(kw.get("flat"))))
    return out


def test_a_turning_head_is_bona_fide_a_turning_picture_is_an_attack() -> None:
    head = judge(_clip(turn=True))
    assert (head.decision, head.reason) == ("bona-fide", "parallax-3d")
    assert head.score >= 1.0
    flat = judge(_clip(turn=True, flat=True))
    assert flat.decision in ("attack", "no-decision")  # flat: planar, or FaceMesh saw no turn
    assert flat.decision != "bona-fide"


def test_no_motion_is_no_decision_and_a_blink_alone_never_decides() -> None:
    still = judge(_clip(blink=True))
    assert (still.decision, still.reason) == ("no-decision", "no-motion")
    assert still.measures["blinks"] == 1
    assert judge([]).reason == "no-face"
    assert blink_events(_clip(), CheckConfig()) == []
