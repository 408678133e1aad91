"""Capture-quality gates: pure functions from landmarks and the aligned crop to a verdict.

Each gate has a reason code an operator can act on:

================  ==================================================================
``multiple-faces``   a second face nearly as large as the subject's (not one dominant face)
``move-closer``      inter-eye distance below ``min_eye_distance_px``
``face-the-camera``  yaw / pitch / roll estimated from the landmarks beyond the limits
``too-dark``         mean luminance of the aligned face below ``min_brightness``
``too-bright``       mean luminance above ``max_brightness``
``blurry``           Laplacian variance of the aligned face below ``min_sharpness``
                     (operator message: hold still / clean the lens)
================  ==================================================================

Pose angles are geometric estimates from five points (not a 3-D head-pose fit): roll is
the eye-line angle; yaw comes from the nose's sideways offset from the eye midpoint,
pitch from its height between the eye line and the mouth line, both relative to the
SFace template's frontal geometry. The default limits were set so that ordinary frontal
press photos (LFW) pass; see docs/decisions/0002-detector-and-alignment.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kycedge.core.config import section

__all__ = ["MESSAGES", "QualityConfig", "QualityVerdict", "assess", "brightness", "dominance",
           "measured_region", "pose_angles", "sharpness"]

# Operator-facing text per reason code.
MESSAGES = {
    "ok": "Capture accepted.",
    "no-face": "No face found: the customer's face must be in the frame.",
    "multiple-faces": "Several faces in the frame: only the customer may be in view.",
    "move-closer": "Face too small: ask the customer to move closer to the camera.",
    "face-the-camera": "Head turned or tilted: ask the customer to look straight at the camera.",
    "too-dark": "Too dark: add light in front of the customer or move to a brighter spot.",
    "too-bright": "Too bright: avoid direct light or glare on the face.",
    "blurry": "Image blurry: hold the unit still and check that the lens is clean.",
}

# Frontal reference from the SFace template: nose offset along the eye line (in eye
# distances) and nose height between eye line and mouth line.
_T_EYE_R, _T_EYE_L = np.array([38.2946, 51.6963]), np.array([73.5318, 51.5014])
_T_NOSE = np.array([56.0252, 71.7366])
_T_MOUTH = (np.array([41.5493, 92.3655]) + np.array([70.7299, 92.2041])) / 2.0


@dataclass(frozen=True)
class QualityConfig:
    """Quality gate limits (defaults let normal frontal photos pass)."""

    enabled: bool = section(True, help="apply the gates (off only for evaluation)")
    min_eye_distance_px: float = section(30.0, min=4.0, max=1000.0, help="smallest inter-eye distance")
    max_yaw_deg: float = section(45.0, min=5.0, max=90.0, help="largest estimated yaw")
    max_pitch_deg: float = section(40.0, min=5.0, max=90.0, help="largest estimated pitch")
    max_roll_deg: float = section(25.0, min=5.0, max=90.0, help="largest eye-line tilt")
    min_brightness: float = section(40.0, min=0.0, max=255.0, help="darkest mean face luminance")
    max_brightness: float = section(225.0, min=0.0, max=255.0, help="brightest mean face luminance")
    min_sharpness: float = section(15.0, min=0.0, max=10000.0, help="lowest Laplacian variance")
    max_second_face_ratio: float = section(
        0.85, min=0.1, max=1.0,
        help="refuse when another face is at least this fraction of the subject's width",
    )
    frontal_nose_height: float = section(
        0.5267, min=0.2, max=0.8,
        help="nose height between the eye line (0) and the mouth line (1) on a frontal face, for "
        "the shipped landmarks (BlazeFace points with geometric mouth corners; median of the five "
        "frontal fixture portraits; YuNet-160 points give 0.5454, FaceMesh 0.5685, the SFace "
        "template itself 0.494)",
    )


@dataclass(frozen=True)
class QualityVerdict:
    ok: bool
    reason: str
    measures: dict[str, float]

    @property
    def message(self) -> str:
        return MESSAGES.get(self.reason, self.reason)


def _rotate_level(pts: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    er, el = pts[0], pts[1]
    ang = math.atan2(el[1] - er[1], el[0] - er[0])
    c, s = math.cos(-ang), math.sin(-ang)
    rot = np.array([[c, -s], [s, c]])
    out: npt.NDArray[np.float64] = (pts - er) @ rot.T
    return out


def _offsets(pts: npt.NDArray[np.float64]) -> tuple[float, float]:
    """(sideways nose offset in eye distances, nose height fraction eye-line -> mouth-line)."""
    lv = _rotate_level(pts)
    eye_d = max(float(lv[1, 0]), 1e-6)
    mid_x = lv[1, 0] / 2.0
    eye_y = (lv[0, 1] + lv[1, 1]) / 2.0
    mouth_y = (lv[3, 1] + lv[4, 1]) / 2.0
    side = (lv[2, 0] - mid_x) / eye_d
    span = mouth_y - eye_y
    height = (lv[2, 1] - eye_y) / span if abs(span) > 1e-6 else 0.5
    return float(side), float(height)


_T_SIDE, _T_HEIGHT = _offsets(np.stack([_T_EYE_R, _T_EYE_L, _T_NOSE, _T_MOUTH, _T_MOUTH]))


def pose_angles(landmarks: npt.ArrayLike, frontal_height: float = _T_HEIGHT) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees, estimated from 5 landmarks; 0, 0, 0 for the template.

    Roll is exact for the eye line. Yaw and pitch are monotonic geometric estimates with a
    nose tip standing 0.55 eye distances in front of the eyes: the sideways nose offset
    (in eye distances, eyes foreshortened alike) is 0.55 tan(yaw); the nose's height
    between eye line and mouth line moves by 0.47 sin(pitch) from ``frontal_height``.
    """
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    er, el = pts[0], pts[1]
    roll = math.degrees(math.atan2(el[1] - er[1], el[0] - er[0]))
    side, height = _offsets(pts)
    yaw = math.degrees(math.atan((side - _T_SIDE) / 0.55))
    pitch = math.degrees(math.asin(max(-1.0, min(1.0, (height - frontal_height) / 0.47))))
    return yaw, pitch, roll


def sharpness(gray: npt.NDArray[np.float32]) -> float:
    """Variance of the 4-neighbour Laplacian over the interior of a grayscale image."""
    g = np.asarray(gray, dtype=np.float32)
    if g.shape[0] < 3 or g.shape[1] < 3:
        return 0.0
    lap = g[:-2, 1:-1] + g[2:, 1:-1] + g[1:-1, :-2] + g[1:-1, 2:] - 4.0 * g[1:-1, 1:-1]
    return float(lap.var())


def brightness(gray: npt.NDArray[np.float32]) -> float:
    return float(np.asarray(gray, dtype=np.float32).mean()) if gray.size else 0.0


def to_gray(rgb: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """ITU-R BT.601 luma as float32."""
    f = np.asarray(rgb, dtype=np.float32)
    out: npt.NDArray[np.float32] = f[..., 0] * 0.299 + f[..., 1] * 0.587 + f[..., 2] * 0.114
    return out


def dominance(widths: Sequence[float], subject: int) -> float:
    """Largest other face width as a fraction of the subject's (0 when alone)."""
    others = [w for i, w in enumerate(widths) if i != subject]
    if not others or widths[subject] <= 0:
        return 0.0
    return float(max(others) / widths[subject])


def measured_region(height: int, width: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the part of an aligned crop that brightness and sharpness look at.

    The central face region (eyebrows to chin, cheek to cheek); the pipeline warps only
    this part of the coarse crop for the gates.
    """
    return int(height * 0.2), int(height * 0.92), int(width * 0.2), int(width * 0.8)


def assess(landmarks: npt.ArrayLike, aligned: npt.NDArray[np.uint8], second_face_ratio: float,
           config: QualityConfig) -> QualityVerdict:
    """Measure everything; the first failing gate (in the table's order) gives the reason."""
    pts = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    eye_d = float(np.linalg.norm(pts[1] - pts[0]))
    yaw, pitch, roll = pose_angles(pts, config.frontal_nose_height)
    y0, y1, x0, x1 = measured_region(*aligned.shape[:2])
    gray = to_gray(aligned[y0:y1, x0:x1])
    measures = {
        "eye_distance_px": round(eye_d, 2),
        "yaw_deg": round(yaw, 2),
        "pitch_deg": round(pitch, 2),
        "roll_deg": round(roll, 2),
        "brightness": round(brightness(gray), 2),
        "sharpness": round(sharpness(gray), 2),
        "second_face_ratio": round(second_face_ratio, 3),
    }
    reason = "ok"
    if config.enabled:
        if second_face_ratio >= config.max_second_face_ratio:
            reason = "multiple-faces"
        elif eye_d < config.min_eye_distance_px:
            reason = "move-closer"
        elif (abs(yaw) > config.max_yaw_deg or abs(pitch) > config.max_pitch_deg
              or abs(roll) > config.max_roll_deg):
            reason = "face-the-camera"
        elif measures["brightness"] < config.min_brightness:
            reason = "too-dark"
        elif measures["brightness"] > config.max_brightness:
            reason = "too-bright"
        elif measures["sharpness"] < config.min_sharpness:
            reason = "blurry"
    return QualityVerdict(ok=reason == "ok", reason=reason, measures=measures)
