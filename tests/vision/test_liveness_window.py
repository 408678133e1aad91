"""A screen's window around the face (kycedge.vision.liveness.window): sides and a closing bottom."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.vision.liveness.screen import RULES
from kycedge.vision.liveness.window import window_score

H, W = 480, 640
BOX = (260.0, 150.0, 380.0, 290.0)           # x0, y0, x1, y1: a 120 x 140 face
THRESHOLD = RULES["window"].threshold


def _room(rng: np.random.Generator) -> np.ndarray:
    """A smooth room with camera noise, the face and a body below it (continuing to the bottom)."""
    yy, xx = np.mgrid[0:H, 0:W]
    f = 90 + 40 * np.sin(xx / 97.0) * np.cos(yy / 71.0)
    face = ((xx - 320) / 60.0) ** 2 + ((yy - 220) / 70.0) ** 2 < 1
    body = (np.abs(xx - 320) < 40 + 0.9 * np.clip(yy - 290, 0, None)) & (yy > 280)
    f = np.where(face, 170.0, np.where(body, 60.0, f))
    return np.clip(f[..., None] + rng.normal(0, 4, (H, W, 3)), 0, 255).astype(np.uint8)


def _window(frame: np.ndarray, tilt_deg: float, bottom: bool = True) -> np.ndarray:
    """A screen showing the frame's face: a dark bezel band around a window (rotated by
    ``tilt_deg`` about the face), outside it the room; ``bottom=False``: a door frame instead
    (two dark side bands from the top of the frame to its bottom, nothing across the body)."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    t = np.deg2rad(tilt_deg)
    u = (xx - 320) * np.cos(t) + (yy - 220) * np.sin(t)
    v = -(xx - 320) * np.sin(t) + (yy - 220) * np.cos(t)
    inner = (np.abs(u) < 130) & (np.abs(v) < (1e9 if not bottom else 150))
    band = (np.abs(u) < 150) & (np.abs(v) < (1e9 if not bottom else 170)) & ~inner
    out = frame.copy()
    out[band] = 25
    if bottom:
        out[~inner & ~band] = np.clip(frame[~inner & ~band].astype(np.int64) + 30, 0, 255).astype(np.uint8)
    return out


def test_a_room_is_not_a_window_a_screen_is_at_any_tilt() -> None:
    rng = np.random.default_rng(1)
    room = _room(rng)
    assert window_score(room, BOX) < THRESHOLD
    for tilt in (0.0, 8.0, -13.0):
        assert window_score(_window(room, tilt), BOX) > 0.6, tilt   # threshold 0.22


def test_a_door_frame_around_a_live_person_is_not_a_window() -> None:
    """Two straight sides, but the body continues below the face: no closing edge (the
    untilted bezel cue, two sides only, cannot tell)."""
    from kycedge.vision.liveness.screen import bezel_score

    door = _window(_room(np.random.default_rng(2)), 0.0, bottom=False)
    assert bezel_score(door, BOX) > 0.5
    assert window_score(door, BOX) < THRESHOLD


def test_a_window_not_wider_than_the_face_or_a_side_outside_the_frame_scores_zero() -> None:
    room = _window(_room(np.random.default_rng(3)), 0.0)
    assert window_score(room, (10.0, 150.0, 130.0, 290.0)) == 0.0      # no room left of the face
    with pytest.raises(ValueError, match="below 32 px"):
        window_score(room, (300.0, 200.0, 320.0, 220.0))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32 - 1), st.floats(34.0, 200.0), st.floats(1.0, 2.0))
def test_window_score_is_a_fraction_for_any_frame_and_box(seed: int, side: float, aspect: float) -> None:
    rng = np.random.default_rng(seed)
    frame = rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)
    x0 = float(rng.uniform(0, 240 - side)) if side < 240 else 0.0
    box = (x0, 10.0, x0 + side, 10.0 + side * aspect)        # may run past the frame
    v = window_score(frame, box)
    assert 0.0 <= v <= 1.0
