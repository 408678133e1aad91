"""quality: pose from landmarks, sharpness, exposure and gate reasons (pure)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.vision.align import SFACE_TEMPLATE, transform_points
from kycedge.vision.quality import MESSAGES, QualityConfig, assess, dominance, pose_angles, sharpness


def rotated(angle_deg: float, scale: float = 2.0) -> np.ndarray:
    a = math.radians(angle_deg)
    m = np.array([[scale * math.cos(a), -scale * math.sin(a), 300.0],
                  [scale * math.sin(a), scale * math.cos(a), 200.0]])
    return transform_points(m, SFACE_TEMPLATE)


def textured(level: int, amp: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = rng.integers(-amp, amp + 1, size=(112, 112, 1))
    return np.clip(level + noise, 0, 255).astype(np.uint8).repeat(3, axis=2)


def test_template_is_frontal() -> None:
    yaw, pitch, roll = pose_angles(SFACE_TEMPLATE)
    assert abs(yaw) < 1e-6
    assert abs(pitch) < 1e-6
    assert abs(roll) < 0.5


@settings(max_examples=100, deadline=None)
@given(st.floats(-80, 80), st.floats(0.2, 20))
def test_roll_follows_rotation_yaw_pitch_invariant(angle: float, scale: float) -> None:
    yaw, pitch, roll = pose_angles(rotated(angle, scale))
    assert abs(roll - (angle + pose_angles(SFACE_TEMPLATE)[2])) < 1e-6
    assert abs(yaw) < 1e-6
    assert abs(pitch) < 1e-6


def test_nose_shift_reads_as_yaw_and_pitch() -> None:
    pts = SFACE_TEMPLATE.copy()
    pts[2, 0] += 12.0  # nose towards the image right
    yaw, pitch, _ = pose_angles(pts)
    assert yaw > 15
    assert abs(pitch) < 1
    pts = SFACE_TEMPLATE.copy()
    pts[2, 1] += 12.0  # nose lower: looking down
    yaw, pitch, _ = pose_angles(pts)
    assert pitch > 15
    assert abs(yaw) < 1


def test_sharpness_orders_blur() -> None:
    sharp = textured(128).astype(np.float32)[..., 0]
    blurred = (sharp + np.roll(sharp, 1, 0) + np.roll(sharp, 1, 1) + np.roll(sharp, -1, 0)
               + np.roll(sharp, -1, 1)) / 5
    assert sharpness(sharp) > 5 * sharpness(blurred)
    assert sharpness(np.zeros((2, 2), np.float32)) == 0.0


def test_dominance() -> None:
    assert dominance([100.0], 0) == 0.0
    assert dominance([100.0, 30.0], 0) == pytest.approx(0.3)
    assert dominance([50.0, 100.0], 1) == pytest.approx(0.5)


CFG = QualityConfig()


@pytest.mark.parametrize(
    ("landmarks", "crop", "second", "reason"),
    [
        (SFACE_TEMPLATE * 2, textured(128), 0.0, "ok"),
        (SFACE_TEMPLATE * 2, textured(128), 0.95, "multiple-faces"),
        (SFACE_TEMPLATE * 0.3, textured(128), 0.0, "move-closer"),
        (rotated(45), textured(128), 0.0, "face-the-camera"),
        (SFACE_TEMPLATE * 2, textured(15, 10), 0.0, "too-dark"),
        (SFACE_TEMPLATE * 2, textured(245, 10), 0.0, "too-bright"),
        (SFACE_TEMPLATE * 2, np.full((112, 112, 3), 128, np.uint8), 0.0, "blurry"),
    ],
)
def test_gates(landmarks: np.ndarray, crop: np.ndarray, second: float, reason: str) -> None:
    v = assess(landmarks, crop, second, CFG)
    assert v.reason == reason
    assert v.ok == (reason == "ok")
    assert v.message == MESSAGES[reason]
    assert set(v.measures) >= {"eye_distance_px", "yaw_deg", "pitch_deg", "roll_deg", "brightness",
                               "sharpness"}


def test_gates_off_measure_but_pass() -> None:
    v = assess(SFACE_TEMPLATE * 0.3, textured(15, 10), 0.99, QualityConfig(enabled=False))
    assert v.ok
    assert v.reason == "ok"
    assert v.measures["eye_distance_px"] < 20
