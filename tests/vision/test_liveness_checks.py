"""The prompt-independent clip judgement on model-free meshes."""

from __future__ import annotations

from kycedge.vision.liveness.checks import BlinkRule, CheckConfig, blink_events, judge
from kycedge.vision.liveness.observe import Observation
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


def _feed(rule: BlinkRule, ratios: list[float]) -> list[str]:
    return [rule.feed(r * rule.baseline, i / 15) for i, r in enumerate(ratios)]


def test_blink_rule_counts_real_shaped_blinks_and_refuses_held_eyes() -> None:
    # shapes of real blinks measured with the shipped FaceMesh (pad-video-dev, 15 fps)
    short = [1.0, 0.96, 0.61, 0.64, 0.93, 1.0]                       # grid_id2_vcd_swwp2s
    double = [1.0, 0.83, 0.60, 0.74, 0.86, 0.85, 0.68, 0.53, 0.69, 0.76, 0.8, 0.86, 0.97]  # grid_bbaf2n
    smiling = [1.0, 0.9, 0.84, 0.48, 0.57, 0.80, 0.82, 0.80, 0.82]   # pyfeat_single_face
    for trace in (short, double, smiling):
        assert "blink" in _feed(BlinkRule(0.3), trace), trace
    # the old rule (back to 0.925 of the baseline) refused the last two
    held = [1.0, 0.5] + [0.5] * 14 + [1.0]
    out = _feed(BlinkRule(0.3), held)
    assert "held" in out
    assert "blink" not in out[: out.index("held") + 1]
    # noise above the closed threshold is no blink; a shallow dip to 0.86 neither
    assert set(_feed(BlinkRule(0.3), [1.0, 0.97, 1.02, 0.86, 0.95, 1.0])) == {"open"}


def test_blink_events_use_the_rule() -> None:
    base = [obs(i / 15) for i in range(30)]
    ears = [1.0] * 10 + [0.6, 0.55, 0.8, 0.82] + [0.83] * 16   # blink, then a smile narrows the eyes
    clip = [Observation(t_s=o.t_s, faces=1, box=o.box, points=o.points, yaw_deg=o.yaw_deg,
                        ear=o.ear * e, iod_px=o.iod_px) for o, e in zip(base, ears, strict=True)]
    assert blink_events(clip, CheckConfig(), baseline=base[0].ear) == [clip[10].t_s]
