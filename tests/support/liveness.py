"""Model-free 468-point meshes for the liveness unit tests: a 3-D head and a flat picture of one.

The head is an ellipsoid cap with a nose, eyes with a controllable opening and cheeks at
the indices the geometry reads; the picture is the same face squashed flat (z = 0) and
moved as a rigid plane. Both are projected by the same pinhole camera, and FaceMesh-style
depth (same pixel scale as x) is attached, so the checks see what they see on real meshes.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from kycedge.vision.liveness.challenge import BLINK, CLOSER, TURN_LEFT, TURNS
from kycedge.vision.liveness.geometry import EAR_LEFT, EAR_RIGHT
from kycedge.vision.liveness.observe import Observation, observation_from_mesh

FOCAL = 600.0
_rng = np.random.default_rng(1234)
_BASE = np.zeros((468, 3))
# a face-like cap: x in [-70, 70] mm, y in [-90, 90] mm, nose towards the camera (negative z)
_u = _rng.uniform(-1, 1, 468)
_v = _rng.uniform(-1, 1, 468)
_BASE[:, 0] = 70 * _u
_BASE[:, 1] = 90 * _v
_BASE[:, 2] = 60 * (_u ** 2 + 0.5 * _v ** 2)
_BASE[234] = (-72, 0, 70)   # cheeks (right / left of the subject)
_BASE[454] = (72, 0, 70)
_BASE[1] = (0, 15, -25)     # nose tip
for idx, cx in ((EAR_RIGHT, -32.0), (EAR_LEFT, 32.0)):
    p1, p2, p3, p4, p5, p6 = idx
    s = 1.0 if cx > 0 else -1.0
    _BASE[p1] = (cx + s * 14, -20, 12)   # outer corner
    _BASE[p4] = (cx - s * 14, -20, 10)   # inner corner
    _BASE[p2] = (cx + s * 5, -25, 9)     # upper lid
    _BASE[p3] = (cx - s * 5, -25, 9)
    _BASE[p6] = (cx + s * 5, -15, 9)     # lower lid
    _BASE[p5] = (cx - s * 5, -15, 9)
for i in (33, 133, 159, 145):
    _BASE[i, 0] = min(_BASE[i, 0], -20)
for i in (263, 362, 386, 374):
    _BASE[i, 0] = max(_BASE[i, 0], 20)
UPPER = [EAR_RIGHT[1], EAR_RIGHT[2], EAR_LEFT[1], EAR_LEFT[2]]


def _rot(yaw_deg: float, pitch_deg: float) -> np.ndarray:
    y, p = math.radians(yaw_deg), math.radians(pitch_deg)
    ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    return rx @ ry


def mesh(yaw_deg: float = 0.0, distance_mm: float = 550.0, blink: float = 0.0, *, flat: bool = False,
         pitch_deg: float = 0.0, noise_px: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """468 x 3 points in pixels (x, y) with depth z in the same pixel scale."""
    pts = _BASE.copy()
    if blink:
        pts[UPPER, 1] += 10.0 * blink  # the upper lid comes down to the lower
    if flat:
        pts[:, 2] = 0.0
    q = pts @ _rot(yaw_deg, pitch_deg).T
    q[:, 2] += distance_mm
    u = FOCAL * q[:, 0] / q[:, 2] + 320
    v = FOCAL * q[:, 1] / q[:, 2] + 240
    z = (q[:, 2] - distance_mm) * FOCAL / distance_mm
    out = np.column_stack([u, v, z])
    if flat:
        # a picture of a frontal face: FaceMesh still reads it as a frontal head whose depth
        # it hallucinates; the image positions stay a homography of the frontal view
        out[:, 2] = (_BASE[:, 2] - 0.0) * FOCAL / distance_mm
    if noise_px and rng is not None:
        out[:, :2] += rng.normal(0, noise_px, (468, 2))
    return out


def obs(t: float, **kw: object) -> Observation:
    faces = int(kw.pop("faces", 1))  # type: ignore[call-overload]
    m = mesh(**kw)  # type: ignore[arg-type]
    x0, y0 = m[:, 0].min(), m[:, 1].min()
    x1, y1 = m[:, 0].max(), m[:, 1].max()
    o = observation_from_mesh(t, faces, (float(x0), float(y0), float(x1), float(y1)), m)
    assert o is not None
    return o


def _action(code: str, dt: float) -> dict[str, float]:
    if code in TURNS:
        k = min(dt / 0.5, 1.0) if dt < 0.9 else max(1.0 - (dt - 0.9) / 0.5, 0.0)
        return {"yaw_deg": (25.0 if code == TURN_LEFT else -25.0) * k}
    if code == CLOSER:
        k = min(dt / 0.8, 1.0)
        return {"distance_mm": 550.0 - 180.0 * k}
    k = 1.0 if 0.05 <= dt <= 0.25 else 0.0
    return {"blink": 0.9 * k}


class Performer:
    """Follows prompts after ``latency_s`` (``flat``: a picture, which cannot blink;
    ``can_blink=False``: a head whose blinks the landmarks do not show)."""

    def __init__(self, latency_s: float = 0.4, flat: bool = False,
                 obey: Callable[[str], str] | None = None, can_blink: bool = True) -> None:
        self.latency_s = latency_s
        self.flat = flat
        self.can_blink = can_blink and not flat  # False: eyes FaceMesh cannot read (dark glasses)
        self.obey = obey or (lambda c: c)
        self.script: list[tuple[float, str]] = []

    def hear(self, code: str, t: float) -> None:
        self.script.append((t + self.latency_s, self.obey(code)))

    def at(self, t: float, **extra: object) -> Observation:
        kw: dict[str, object] = {"distance_mm": 550.0}
        for start, code in self.script:
            if code == CLOSER and t >= start:  # stays closer once there
                kw.update(_action(code, t - start))
            elif 0 <= t - start <= 1.6:
                a = _action(code, t - start)
                if not self.can_blink and code == BLINK:
                    continue
                kw.update(a)
        kw.update(extra)
        return obs(t, flat=self.flat, **kw)  # type: ignore[arg-type]
