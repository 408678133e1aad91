"""Pure landmark geometry on FaceMesh's 468 points for the liveness checks.

Everything here takes arrays of mesh points (image pixels; column 2, where present, is
FaceMesh's depth in the same pixel scale) and returns plain numbers. No model, no I/O.

* :func:`eye_aspect_ratio` -- the eye opening (EAR) used against the person's own baseline;
* :func:`yaw_deg` -- head turn from the mesh's own depth (positive: the subject turns to
  their left, i.e. the nose moves towards image right in an unmirrored camera image);
* :func:`homography` / :func:`planarity_residual` -- how well ONE homography explains the
  motion of the rigid landmarks between two frames. A photo or a screen is a plane: any
  view of it is a homography of any other. A head is not: under a turn the nose moves
  against the outline (parallax), so the residual, in inter-ocular distances, is larger;
* :func:`perspective_change` -- under "move closer", the near features (nose, eyes) grow
  faster than the face outline on a head; a flat image scales uniformly (0).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

__all__ = [
    "EAR_LEFT",
    "EAR_RIGHT",
    "RIGID",
    "eye_aspect_ratio",
    "homography",
    "inter_ocular",
    "perspective_change",
    "planarity_residual",
    "yaw_deg",
]

FloatArray = npt.NDArray[np.float64]

# EAR points per eye: outer corner, two upper lid, inner corner, two lower lid (p1..p6)
EAR_RIGHT = (33, 160, 158, 133, 153, 144)
EAR_LEFT = (263, 387, 385, 362, 380, 373)
CHEEK_RIGHT, CHEEK_LEFT, NOSE_TIP = 234, 454, 1
_EYES_RIGHT = (33, 133, 159, 145)
_EYES_LEFT = (263, 362, 386, 374)
# points that move with the skull: face outline, nose ridge and wings, eye corners, brows
# (not the lids, lips or jaw opening, which move on their own)
OUTLINE = (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
           377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109)
NOSE = (1, 4, 5, 195, 197, 6, 168, 98, 327, 2, 48, 278)
INNER = (1, 4, 5, 195, 197, 6, 98, 327, 2, 33, 133, 362, 263)
RIGID = OUTLINE + NOSE + (33, 133, 362, 263, 70, 300, 105, 334)
_RIGID = np.array(RIGID, dtype=np.intp)
_OUTLINE = np.array(OUTLINE, dtype=np.intp)
_INNER = np.array(INNER, dtype=np.intp)


def _pts(points: npt.ArrayLike) -> FloatArray:
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != 468 or p.shape[1] not in (2, 3):
        raise ValueError(f"expected 468 mesh points x (2 or 3), got shape {p.shape}")
    return p


def inter_ocular(points: npt.ArrayLike) -> float:
    """Distance between the two eye centres, pixels."""
    p = _pts(points)[:, :2]
    er = p[list(_EYES_RIGHT)].mean(axis=0)
    el = p[list(_EYES_LEFT)].mean(axis=0)
    return float(np.hypot(*(el - er)))


def _ear_one(p: FloatArray, idx: tuple[int, ...]) -> float:
    p1, p2, p3, p4, p5, p6 = (p[i] for i in idx)
    width = float(np.hypot(*(p4 - p1)))
    if width <= 1e-9:
        raise ValueError("degenerate eye: corners coincide")
    return (float(np.hypot(*(p2 - p6))) + float(np.hypot(*(p3 - p5)))) / (2.0 * width)


def eye_aspect_ratio(points: npt.ArrayLike) -> float:
    """Mean eye aspect ratio of both eyes (about 0.25-0.35 open, near 0.05 closed)."""
    p = _pts(points)[:, :2]
    return 0.5 * (_ear_one(p, EAR_RIGHT) + _ear_one(p, EAR_LEFT))


def yaw_deg(points: npt.ArrayLike) -> float:
    """Head yaw from the cheek-to-cheek vector in (x, depth); positive = subject's left."""
    p = _pts(points)
    if p.shape[1] != 3:
        raise ValueError("yaw needs the mesh depth (468 x 3 points)")
    dx = p[CHEEK_LEFT, 0] - p[CHEEK_RIGHT, 0]
    dz = p[CHEEK_LEFT, 2] - p[CHEEK_RIGHT, 2]
    if abs(dx) + abs(dz) <= 1e-9:
        raise ValueError("degenerate mesh: cheek points coincide")
    return math.degrees(math.atan2(dz, dx))


def _normaliser(p: FloatArray) -> FloatArray:
    c = p.mean(axis=0)
    d = float(np.sqrt(((p - c) ** 2).sum(axis=1).mean()))
    s = math.sqrt(2.0) / max(d, 1e-12)
    return np.array([[s, 0.0, -s * c[0]], [0.0, s, -s * c[1]], [0.0, 0.0, 1.0]])


def homography(src: npt.ArrayLike, dst: npt.ArrayLike) -> FloatArray:
    """The 3x3 homography mapping ``src`` to ``dst`` (N x 2, N >= 4) by normalised DLT."""
    a, b = np.asarray(src, dtype=np.float64), np.asarray(dst, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 2 or a.shape[0] < 4:
        raise ValueError(f"expected two N x 2 point sets with N >= 4, got {a.shape} and {b.shape}")
    ta, tb = _normaliser(a), _normaliser(b)
    ah = np.column_stack([a, np.ones(len(a))]) @ ta.T
    bh = np.column_stack([b, np.ones(len(b))]) @ tb.T
    n = len(a)
    m = np.zeros((2 * n, 9))
    x, y = ah[:, 0], ah[:, 1]
    u, v = bh[:, 0], bh[:, 1]
    m[0::2, 0:3] = ah
    m[0::2, 6:9] = -u[:, None] * ah
    m[1::2, 3:6] = ah
    m[1::2, 6:9] = -v[:, None] * ah
    del x, y
    _, _, vt = np.linalg.svd(m)
    h = vt[-1].reshape(3, 3)
    h = np.linalg.inv(tb) @ h @ ta
    if abs(h[2, 2]) <= 1e-12:
        raise ValueError("degenerate homography")
    out: FloatArray = h / h[2, 2]
    return out


def apply_homography(h: FloatArray, pts: npt.ArrayLike) -> FloatArray:
    p = np.asarray(pts, dtype=np.float64)
    q = np.column_stack([p, np.ones(len(p))]) @ h.T
    w = q[:, 2:3]
    if np.any(np.abs(w) <= 1e-12):
        raise ValueError("a point maps to infinity")
    out: FloatArray = q[:, :2] / w
    return out


def planarity_residual(points_a: npt.ArrayLike, points_b: npt.ArrayLike) -> float:
    """RMS error of the best single homography from frame A's rigid points to frame B's,
    in units of frame B's inter-ocular distance (0 for any two views of a plane)."""
    a, b = _pts(points_a)[_RIGID, :2], _pts(points_b)[_RIGID, :2]
    h = homography(a, b)
    err = apply_homography(h, a) - b
    iod = inter_ocular(points_b)
    if iod <= 1e-9:
        raise ValueError("degenerate mesh: eyes coincide")
    return float(np.sqrt((err ** 2).sum(axis=1).mean())) / iod


def _spread(p: FloatArray) -> float:
    return float(np.sqrt(((p - p.mean(axis=0)) ** 2).sum(axis=1).mean()))


def perspective_change(points_far: npt.ArrayLike, points_near: npt.ArrayLike) -> float:
    """How much faster the inner features grew than the outline between two distances.

    (inner spread ratio) / (outline spread ratio) - 1: about 0 for a flat image that
    comes closer, positive for a head (its nose and eyes are nearer the camera than its
    outline, so they magnify more).
    """
    a, b = _pts(points_far)[:, :2], _pts(points_near)[:, :2]
    inner_a, inner_b = _spread(a[_INNER]), _spread(b[_INNER])
    outer_a, outer_b = _spread(a[_OUTLINE]), _spread(b[_OUTLINE])
    if min(inner_a, outer_a, outer_b) <= 1e-9:
        raise ValueError("degenerate mesh: points coincide")
    return (inner_b / inner_a) / (outer_b / outer_a) - 1.0
