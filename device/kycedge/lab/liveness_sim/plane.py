"""Simulated presentation attacks: a printed photo or a phone/tablet screen, i.e. a PLANE in 3-D.

:func:`make_artefact` turns a real portrait into what the attacker holds: a print (white
paper margin, compressed contrast and saturation, warm paper tint, blur, halftone grain)
or a screen (black bezel, gamma and blue cast, moire from the pixel grid beating with the
camera's, a pixel grid, a specular glare). :class:`Plane` places that image on a plane in
front of the same pinhole camera as the synthetic head and renders it under a pose
(rotation about the plane's centre, distance, shift): every frame is an exact homography
of the artefact, which is the physical truth of a flat attack. Not simulated: curved or
cut-out prints, masks, screens showing video (see the replay attack for that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from kycedge.lab.liveness_sim.head import IOD_MM, Pose
from kycedge.lab.liveness_sim.scene import warp_perspective

__all__ = ["SPECIES", "Plane", "make_artefact"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]
SPECIES = ("print", "screen")


def _blur(f: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    g = f.copy()
    g[1:-1] = 0.5 * f[1:-1] + 0.25 * (f[:-2] + f[2:])
    h: npt.NDArray[np.float32] = g.copy()
    h[:, 1:-1] = 0.5 * g[:, 1:-1] + 0.25 * (g[:, :-2] + g[:, 2:])
    return h


def make_artefact(portrait: U8, species: str, rng: np.random.Generator) -> U8:
    """The portrait as printed on paper or shown on a screen (with its margin or bezel)."""
    f = portrait.astype(np.float32)
    h, w = f.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if species == "print":
        grey = f.mean(axis=2, keepdims=True)
        f = grey + rng.uniform(0.6, 0.9) * (f - grey)             # ink loses saturation
        f = 25.0 + f * rng.uniform(0.75, 0.88)                    # paper white / ink black
        f *= np.array([1.0, 0.97, 0.9], dtype=np.float32)         # warm paper
        f = _blur(f) + rng.normal(0, rng.uniform(3, 7), f.shape).astype(np.float32)  # grain
        pad, fill = int(rng.uniform(0.05, 0.12) * max(h, w)), (235.0, 232.0, 222.0)
    elif species == "screen":
        f = 255.0 * (f / 255.0) ** rng.uniform(0.8, 1.0)
        f *= np.array([0.95, 0.98, 1.06], dtype=np.float32)       # cool backlight
        period = rng.uniform(3.0, 9.0)
        ang = rng.uniform(0, math.pi)
        moire = 1.0 + rng.uniform(0.03, 0.08) * np.sin(
            2 * math.pi * (xx * math.cos(ang) + yy * math.sin(ang)) / period)
        grid = 1.0 - 0.05 * ((xx.astype(np.int32) % 3 == 0) | (yy.astype(np.int32) % 3 == 0))
        f *= (moire * grid)[..., None]
        gx, gy, gr = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.15, 0.4) * w
        f += rng.uniform(30, 90) * np.exp(-((xx - gx) ** 2 + (yy - gy) ** 2) / (2 * gr * gr))[..., None]
        pad, fill = int(rng.uniform(0.04, 0.09) * max(h, w)), (12.0, 12.0, 14.0)
    else:
        raise ValueError(f"species: expected one of {SPECIES}, got {species!r}")
    out = np.empty((h + 2 * pad, w + 2 * pad, 3), dtype=np.float32)
    out[:] = np.array(fill, dtype=np.float32)
    out[pad:pad + h, pad:pad + w] = f
    return np.clip(out, 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class Plane:
    """An artefact on a plane; ``iod_px`` is the face's eye distance in artefact pixels."""

    artefact: U8
    iod_px: float
    face_centre: tuple[float, float]
    background: U8
    focal_px: float = 700.0

    def homography(self, pose: Pose) -> F64:
        """Artefact pixels -> frame pixels for ``pose`` (rotation about the face centre)."""
        h, w = self.background.shape[:2]
        k = IOD_MM / self.iod_px           # the print shows the face at life size
        y, p, r = (math.radians(a) for a in (pose.yaw_deg, pose.pitch_deg, pose.roll_deg))
        ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
        rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        rot = rz @ rx @ ry
        cx, cy = self.face_centre
        # artefact (u, v, 1) -> plane point k*(u-cx, v-cy, 0) -> camera -> pixels
        m = np.array([[k, 0, -k * cx], [0, k, -k * cy], [0, 0, 0]], dtype=np.float64)
        cam = rot @ m
        cam[:, 2] += np.array([pose.shift_x_mm, pose.shift_y_mm, pose.distance_mm])
        proj = np.array([[self.focal_px, 0, w / 2.0], [0, self.focal_px, h / 2.0], [0, 0, 1.0]])
        hm: F64 = proj @ cam
        return hm

    def render(self, pose: Pose) -> U8:
        h, w = self.background.shape[:2]
        hm = self.homography(pose)
        ah, aw = self.artefact.shape[:2]
        corners = np.array([[0, 0, 1], [aw, 0, 1], [0, ah, 1], [aw, ah, 1]], dtype=np.float64) @ hm.T
        out: U8 = self.background.copy()
        if np.any(corners[:, 2] <= 1e-9):
            return out  # the plane is edge-on or behind the camera
        cx, cy = corners[:, 0] / corners[:, 2], corners[:, 1] / corners[:, 2]
        x0, x1 = max(int(cx.min()), 0), min(int(np.ceil(cx.max())) + 1, w)
        y0, y1 = max(int(cy.min()), 0), min(int(np.ceil(cy.max())) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return out
        shift = np.array([[1, 0, x0], [0, 1, y0], [0, 0, 1]], dtype=np.float64)
        img, inside = warp_perspective(self.artefact, np.linalg.inv(hm) @ shift, x1 - x0, y1 - y0)
        region = out[y0:y1, x0:x1]
        region[inside] = img[inside]
        return out
