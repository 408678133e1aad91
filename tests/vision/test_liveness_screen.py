"""Passive screen cues (kycedge.vision.liveness.screen): each cue moves the way its physics says."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.vision.liveness.screen import (
    COLOUR_CUES,
    CUE_NAMES,
    DEFAULT_RULES,
    FRAME_CUE_NAMES,
    MAX_SIDE_PX,
    RULES,
    CueRule,
    ScreenConfig,
    ScreenSampler,
    area_resize,
    bezel_score,
    blue_shift,
    contrast,
    face_crop,
    frame_cues,
    glare_fraction,
    judge_screen,
    moire_peak,
    saturation_mean,
    scaled_sharpness,
    screen_cues,
    sharpness,
)


def _smooth_face(rng: np.random.Generator, h: int = 128, w: int = 112) -> np.ndarray:
    """A skin-toned blob with mild camera noise: no grid, no glare."""
    yy, xx = np.mgrid[0:h, 0:w]
    blob = np.exp(-(((xx - w / 2) / (0.35 * w)) ** 2 + ((yy - h / 2) / (0.4 * h)) ** 2))
    base = np.stack([150 + 60 * blob, 110 + 50 * blob, 90 + 40 * blob], axis=-1)
    return np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)


def test_moire_peak_rises_with_a_fine_grating() -> None:
    rng = np.random.default_rng(1)
    face = _smooth_face(rng)
    xx = np.arange(face.shape[1])[None, :, None]
    grating = np.clip(face + 12 * np.sin(2 * np.pi * 0.27 * xx), 0, 255).astype(np.uint8)
    assert moire_peak(grating) > moire_peak(face) + 0.5


def test_glare_fraction_counts_white_unsaturated_pixels() -> None:
    face = _smooth_face(np.random.default_rng(2))
    assert glare_fraction(face) == 0.0
    glared = face.copy()
    glared[:32, :56] = 252
    assert glare_fraction(glared) == pytest.approx(32 * 56 / face[..., 0].size, abs=1e-9)
    red = face.copy()
    red[:32, :56] = (255, 40, 40)          # bright but saturated: not glare
    assert glare_fraction(red) == 0.0


def test_colour_cues() -> None:
    grey = np.full((64, 64, 3), 128, np.uint8)
    assert saturation_mean(grey) == 0.0
    assert blue_shift(grey) == pytest.approx(0.0)
    cool = grey.copy()
    cool[..., 2] = 170
    assert blue_shift(cool) > 0.2
    assert saturation_mean(cool) == pytest.approx((170 - 128) / 170)
    black = np.zeros((64, 64, 3), np.uint8)
    assert saturation_mean(black) == 0.0


def test_sharpness_falls_with_blur_and_contrast_with_washout() -> None:
    rng = np.random.default_rng(3)
    sharp = rng.integers(0, 256, (96, 96, 3)).astype(np.uint8)
    f = sharp.astype(np.float64)
    for _ in range(3):  # a box blur, three times
        f = (f + np.roll(f, 1, 0) + np.roll(f, -1, 0) + np.roll(f, 1, 1) + np.roll(f, -1, 1)) / 5
    blurred = f.round().astype(np.uint8)
    assert sharpness(blurred) < 0.5 * sharpness(sharp)
    washed = (128 + (sharp.astype(np.float64) - 128) * 0.3).astype(np.uint8)
    assert contrast(washed) < 0.5 * contrast(sharp)
    assert sharpness(np.full((64, 64, 3), 7, np.uint8)) == 0.0


def test_screen_cues_has_every_cue_and_refuses_bad_crops() -> None:
    cues = screen_cues(_smooth_face(np.random.default_rng(4)))
    assert tuple(cues) == CUE_NAMES
    assert all(np.isfinite(v) for v in cues.values())
    with pytest.raises(ValueError, match="below"):
        screen_cues(np.zeros((20, 200, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB"):
        screen_cues(np.zeros((64, 64), np.uint8))  # type: ignore[arg-type]


def test_face_crop_clips_scales_and_bounds_the_size() -> None:
    frame = np.random.default_rng(5).integers(0, 256, (480, 640, 3)).astype(np.uint8)
    c = face_crop(frame, (100.0, 50.0, 300.0, 290.0))
    assert c.shape == (240, 200, 3)
    assert np.array_equal(c, frame[50:290, 100:300])
    edge = face_crop(frame, (600.0, 400.0, 700.0, 520.0))   # runs off the frame
    assert edge.shape == (80, 40, 3)
    big = face_crop(frame, (0.0, 0.0, 640.0, 480.0))
    assert max(big.shape[:2]) <= MAX_SIDE_PX
    assert big.dtype == np.uint8
    with pytest.raises(ValueError, match="below"):
        face_crop(frame, (630.0, 10.0, 700.0, 100.0))


def _room(rng: np.random.Generator, h: int = 480, w: int = 640) -> np.ndarray:
    """A smooth room with camera noise."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = 90 + 40 * np.sin(xx / 97.0) * np.cos(yy / 71.0)
    return np.clip(base[..., None] + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)


BOX = (260.0, 160.0, 380.0, 300.0)


def test_bezel_score_sees_a_screen_framing_the_face() -> None:
    rng = np.random.default_rng(6)
    room = _room(rng)
    assert bezel_score(room, BOX) < 0.2
    phone = room.copy()
    phone[60:420, 190:450] = 20             # the bezel
    phone[75:405, 205:435] = 200            # the lit screen (the face would be on it)
    s = bezel_score(phone, BOX)
    assert s > 0.5
    cues = frame_cues(phone, BOX)
    assert cues["bezel"] == pytest.approx(s)


def test_bezel_score_needs_both_sides_and_ignores_texture_and_the_frame_border() -> None:
    rng = np.random.default_rng(7)
    one_side = _room(rng)
    one_side[:, :200] = 15                  # a door frame on one side only
    assert bezel_score(one_side, BOX) < 0.2
    texture = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)   # steps in every column
    assert bezel_score(texture, BOX) < 0.2
    padded = _room(rng, 250, 250)
    padded[:, :6] = 0                       # an image's own black padding at its border
    padded[:, -6:] = 0
    assert bezel_score(padded, (70.0, 80.0, 180.0, 190.0)) < 0.2
    with pytest.raises(ValueError, match="below"):
        bezel_score(padded, (70.0, 80.0, 90.0, 190.0))


def test_frame_cues_leave_colour_out_of_a_grey_crop() -> None:
    rng = np.random.default_rng(8)
    frame = _room(rng)
    frame[160:300, 260:380] = _smooth_face(rng, 140, 120)
    assert set(frame_cues(frame, BOX)) == set(FRAME_CUE_NAMES)
    grey = np.repeat(frame[..., :1], 3, axis=2)
    cues = frame_cues(grey, BOX)
    assert not set(COLOUR_CUES) & set(cues)
    assert "moire_peak" in cues


def test_judge_screen_refuses_on_the_median_of_a_rule() -> None:
    cool = [{"blue_shift": v, "bezel": 0.0} for v in (0.05, -0.02, -0.5)]
    ev = judge_screen(cool)            # the default rules (no window or face count here: they abstain)
    assert ev.decision == "attack"
    assert ev.reason == "screen-blue_shift"
    assert ev.score == pytest.approx(-0.02 - RULES["blue_shift"].threshold)   # the median's margin
    assert ev.measures["screen_frames"] == 3.0
    warm = [{"blue_shift": v} for v in (-0.3, -0.25, 0.2)]
    miss = judge_screen(warm)
    assert miss.decision == "none"
    assert miss.reason == "no-screen-cue"
    few = judge_screen([{"blue_shift": 0.3}, {"blue_shift": 0.3}, {"bezel": 0.0}])   # a grey frame
    assert few.reason == "too-few-frames"
    assert judge_screen([]).reason == "too-few-frames"
    framed = [{"bezel": 0.9, "blue_shift": -0.4}] * 3
    assert judge_screen(framed).decision == "none"                       # bezel: not by default
    both = judge_screen(framed, ScreenConfig(rules=("blue_shift", "bezel")))
    assert both.reason == "screen-bezel"
    assert both.score == pytest.approx(0.4)
    off = judge_screen(cool, ScreenConfig(rules=()))
    assert off.decision == "none"
    assert off.reason == "no-screen-cue"


def test_rules_and_config_are_checked() -> None:
    assert set(DEFAULT_RULES) <= set(RULES)
    # every rule's cue is one frame_cues computes, or the second detector's face count
    assert all(r.cue in (*FRAME_CUE_NAMES, "faces") for r in RULES.values())
    assert CueRule("sharpness", 0.03, above=False).hit(0.01)
    assert not CueRule("sharpness", 0.03, above=False).hit(0.05)
    with pytest.raises(ValueError, match="screen cues"):
        ScreenConfig(rules=("glow",))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(-1.0, 1.0), min_size=0, max_size=12))
def test_judge_screen_never_says_bona_fide(values: list[float]) -> None:
    ev = judge_screen([{"blue_shift": v} for v in values])
    assert ev.decision in ("attack", "none")
    if ev.decision == "attack":
        assert len(values) >= 3
        assert float(np.median(values)) >= RULES["blue_shift"].threshold


def test_sampler_takes_every_nth_face_frame_up_to_the_cap_and_skips_tiny_faces() -> None:
    rng = np.random.default_rng(9)
    frame = _room(rng)
    frame[160:300, 260:380] = _smooth_face(rng, 140, 120)
    sampler = ScreenSampler(ScreenConfig(every=5, max_frames=3))
    for i in range(30):
        sampler.offer(frame, (10.0, 10.0, 30.0, 30.0) if i == 5 else BOX)   # frame 5: a tiny face
    assert len(sampler.cues) == 3             # frames 0, 10, 15 (5 was too small), then the cap
    assert all(set(c) == set(FRAME_CUE_NAMES) for c in sampler.cues)  # no "faces": none counted
    assert sampler.judge().measures["screen_frames"] == 3.0


def test_a_per_frame_rule_counts_frames_past_it() -> None:
    """multiple_faces: a second face in at least min_frames sampled frames refuses; a median
    of the count would need half the frames."""
    rule = RULES["multiple_faces"]
    assert rule.per_frame
    assert rule.cue == "faces"
    cues = [{"faces": 1.0}] * 9 + [{"faces": 2.0}] * 3
    ev = judge_screen(cues)
    assert (ev.decision, ev.reason, ev.score) == ("attack", "multiple-faces", 3.0)
    assert ev.measures["faces"] == 1.0                   # the median says one face
    two = judge_screen([{"faces": 1.0}] * 9 + [{"faces": 2.0}] * 2)
    assert two.decision == "none"
    assert two.measures["faces_past_frames"] == 2.0
    assert judge_screen(cues, ScreenConfig(rules=("blue_shift",))).decision == "none"


def test_sampler_keeps_the_second_detectors_count_of_sampled_frames() -> None:
    rng = np.random.default_rng(10)
    frame = _room(rng)
    frame[160:300, 260:380] = _smooth_face(rng, 140, 120)
    sampler = ScreenSampler(ScreenConfig(every=2, max_frames=4))
    due = []
    for i in range(10):
        due.append(sampler.due)
        sampler.offer(frame, BOX, 2 if i % 4 == 0 else None)
    assert due == [True, False] * 4 + [False, False]     # every 2nd, up to the cap
    assert [c.get("faces") for c in sampler.cues] == [2.0, None, 2.0, None]
    assert sampler.judge().decision == "none"            # 2 frames with two faces: below 3


def _textured(side: int) -> np.ndarray:
    """The same detail (sinusoids of fixed cycles per frame) rendered at ``side`` px, as RGB."""
    u = (np.arange(side) + 0.5) / side
    uu, vv = np.meshgrid(u, u)
    y = (128 + 40 * np.sin(2 * np.pi * 11 * uu) * np.cos(2 * np.pi * 8 * vv)
         + 25 * np.sin(2 * np.pi * 17 * (uu + 0.6 * vv)) + 15 * np.cos(2 * np.pi * 23 * vv))
    return np.repeat(np.clip(y.round(), 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _blur(rgb: np.ndarray, k: int) -> np.ndarray:
    f = rgb.astype(np.float64)
    for axis in (0, 1):
        f = sum(np.roll(f, s, axis=axis) for s in range(-k, k + 1)) / (2 * k + 1)
    return np.clip(f.round(), 0, 255).astype(np.uint8)


def test_scaled_sharpness_compares_faces_at_one_scale() -> None:
    small, large = _textured(160), _textured(480)
    s_small = scaled_sharpness(small, (20.0, 20.0, 140.0, 140.0))
    s_large = scaled_sharpness(large, (60.0, 60.0, 420.0, 420.0))
    # the same face three times larger: the per-pixel cue on the crops falls with the size,
    # at one face-relative scale the two measure alike
    assert s_large == pytest.approx(s_small, rel=0.1)
    assert sharpness(face_crop(large, (60.0, 60.0, 420.0, 420.0))) < 0.5 * sharpness(small)
    # a re-imaged face (blurred by more than the resampling step) measures lower
    blurred = scaled_sharpness(_blur(large, 10), (60.0, 60.0, 420.0, 420.0))
    assert blurred < 0.5 * s_large
    with pytest.raises(ValueError, match="below 64 px"):
        scaled_sharpness(small, (40.0, 40.0, 120.0, 120.0))   # inner part 56 px
    flat = np.full((200, 200, 3), 90, np.uint8)
    assert scaled_sharpness(flat, (10.0, 10.0, 190.0, 190.0)) == 0.0
    assert RULES["scaled_sharpness"].hit(0.02)
    assert not RULES["scaled_sharpness"].hit(0.05)


@settings(max_examples=40, deadline=None)
@given(st.integers(8, 90), st.integers(8, 90), st.integers(1, 8), st.integers(0, 2**32 - 1))
def test_area_resize_keeps_the_mean_and_constants(h: int, w: int, side: int, seed: int) -> None:
    side = min(side, h, w)
    y = np.random.default_rng(seed).uniform(0, 1, (h, w))
    out = area_resize(y, side)
    assert out.shape == (side, side)
    assert float(out.mean()) == pytest.approx(float(y.mean()), abs=1e-9)   # area weights sum to 1
    assert float(out.min()) >= float(y.min()) - 1e-12
    assert float(out.max()) <= float(y.max()) + 1e-12
    np.testing.assert_allclose(area_resize(np.full((h, w), 0.3), side), 0.3)
    with pytest.raises(ValueError):
        area_resize(y, max(h, w) + 1)
