"""Landmark refinement with MediaPipe FaceMesh (468 points) on a rotated face crop.

The detector's keypoints are coarse (BlazeFace regresses them at 128x128 and has no mouth
corners). FaceMesh looks again at a 192x192 crop aligned on the eyes (MediaPipe's
detection-to-ROI rule: box scaled 1.5x, square, rotated so the eyes are level) and gives
the eye contours, nose tip and mouth corners; the five SFace points are taken from them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kycedge.vision.align import invert_affine, transform_points
from kycedge.vision.decode import FrameImage, warp_affine
from kycedge.vision.runtime import Model

__all__ = ["FaceMesh", "MeshResult", "five_from_mesh", "roi_matrix"]

FloatArray = npt.NDArray[np.float64]

# FaceMesh indices (canonical 468-point topology). "Right" is the subject's right (image left).
RIGHT_EYE = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
LEFT_EYE = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP = 1
MOUTH_RIGHT = 61
MOUTH_LEFT = 291
_RIGHT_EYE = np.array(RIGHT_EYE, dtype=np.intp)
_LEFT_EYE = np.array(LEFT_EYE, dtype=np.intp)


def five_from_mesh(mesh: npt.ArrayLike) -> FloatArray:
    """SFace's five points from 468 mesh points (x, y): eye centres, nose tip, mouth corners."""
    p = np.asarray(mesh, dtype=np.float64)[:, :2]
    return np.stack([
        p[_RIGHT_EYE].mean(axis=0),
        p[_LEFT_EYE].mean(axis=0),
        p[NOSE_TIP],
        p[MOUTH_RIGHT],
        p[MOUTH_LEFT],
    ])


def roi_matrix(box: tuple[float, float, float, float], eye_r: npt.ArrayLike, eye_l: npt.ArrayLike,
               size: int, scale: float = 1.5) -> FloatArray:
    """2x3 matrix mapping image pixels into the ``size`` square FaceMesh crop.

    The crop is centred on the box, ``scale`` times its longer side, rotated so that the
    line from the right eye to the left eye is horizontal.
    """
    er, el = np.asarray(eye_r, dtype=np.float64), np.asarray(eye_l, dtype=np.float64)
    angle = float(np.arctan2(el[1] - er[1], el[0] - er[0]))
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    side = max(box[2] - box[0], box[3] - box[1]) * scale
    if side <= 1e-6:
        raise ValueError(f"expected a face box with positive size, got {box}")
    s = size / side
    c, si = np.cos(-angle) * s, np.sin(-angle) * s
    # rotate by -angle about the centre, scale, move centre to the crop centre
    return np.array(
        [[c, -si, size / 2.0 - (c * cx - si * cy)], [si, c, size / 2.0 - (si * cx + c * cy)]],
        dtype=np.float64,
    )


class FaceMesh:
    """FaceMesh (float) run on the eye-aligned crop of a detected face."""

    def __init__(self, model: Model, *, presence_threshold: float = 0.5) -> None:
        self.model = model
        shape = model.inputs[0].shape
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"FaceMesh: expected a 1xNxNx3 input, got {shape}")
        self.size = int(shape[1])
        self.presence_threshold = presence_threshold
        sizes = [int(np.prod(o.shape)) for o in model.outputs]
        self._pts = int(np.argmax(sizes))
        self._flag = int(np.argmin(sizes))
        self._direct = model.inputs[0].dtype == "float32"

    def landmarks(self, rgb: npt.NDArray[np.uint8] | FrameImage, box: tuple[float, float, float, float],
                  eye_r: npt.ArrayLike, eye_l: npt.ArrayLike) -> MeshResult | None:
        """The 468 points of the face in ``box`` (eyes level the crop), or None if FaceMesh sees none."""
        m = roi_matrix(box, eye_r, eye_l, self.size)
        crop = warp_affine(rgb, m, self.size, self.size)
        if self._direct:
            def fill(buf: npt.NDArray[np.float32]) -> None:
                np.divide(crop, np.float32(255.0), out=buf[0])  # float32, into the input tensor

            outs = self.model.run_filled(fill)
        else:
            outs = self.model.run((crop.astype(np.float32) / 255.0)[None])
        presence = float(1.0 / (1.0 + np.exp(-np.clip(outs[self._flag].reshape(-1)[0], -50, 50))))
        if presence < self.presence_threshold:
            return None
        mesh = outs[self._pts].reshape(-1, 3).astype(np.float64)
        inv = invert_affine(m)
        pts = np.empty_like(mesh)
        pts[:, :2] = transform_points(inv, mesh[:, :2])
        pts[:, 2] = mesh[:, 2] * float(np.sqrt(abs(np.linalg.det(inv[:, :2]))))  # depth in image pixels
        if not np.all(np.isfinite(pts)):
            return None
        return MeshResult(pts, presence)

    def rerun(self, rgb: npt.NDArray[np.uint8] | FrameImage, previous: MeshResult) -> MeshResult | None:
        """A second look with the crop placed by ``previous`` (MediaPipe's landmarks-to-ROI rule)."""
        x0, y0 = previous.points[:, :2].min(axis=0)
        x1, y1 = previous.points[:, :2].max(axis=0)
        five = previous.five
        return self.landmarks(rgb, (float(x0), float(y0), float(x1), float(y1)), five[0], five[1])

    def refine(self, rgb: npt.NDArray[np.uint8] | FrameImage, box: tuple[float, float, float, float],
               eye_r: npt.ArrayLike, eye_l: npt.ArrayLike) -> tuple[FloatArray, float] | None:
        """(five points in image pixels, face presence) or None if FaceMesh sees no face."""
        res = self.landmarks(rgb, box, eye_r, eye_l)
        return None if res is None else (res.five, res.presence)


@dataclass(frozen=True, repr=False)
class MeshResult:
    """FaceMesh output in image pixels: 468 x (x, y, z); biometric, RAM only, never logged."""

    points: FloatArray
    presence: float

    @property
    def five(self) -> FloatArray:
        """SFace's five points (eye centres, nose tip, mouth corners)."""
        return five_from_mesh(self.points)

    def __repr__(self) -> str:
        return f"MeshResult({len(self.points)} points, presence={self.presence:.2f})"
