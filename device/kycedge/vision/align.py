"""Pure geometry: similarity alignment to the embedder's template, affine warps, resizing.

No imaging library: numpy only, so the same code runs on every unit image. The warp is an
inverse-mapped bilinear sample (like ``cv2.warpAffine(..., INTER_LINEAR,
BORDER_CONSTANT)``); when it shrinks by more than 2x the source is first box-averaged by an
integer factor so that small outputs do not alias.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = [
    "FACEMESH_OFFSETS_PX",
    "SFACE_SIZE",
    "SFACE_TEMPLATE",
    "align_face",
    "alignment_matrix",
    "box_reduce",
    "conventional_points",
    "invert_affine",
    "landmarks_from_four",
    "similarity_transform",
    "transform_points",
    "warp_affine_reference",
]

FloatArray = npt.NDArray[np.float64]
U8Image = npt.NDArray[np.uint8]

SFACE_SIZE = 112
# The 112x112 target points of OpenCV's FaceRecognizerSF::alignCrop (face_recognize.cpp):
# right eye, left eye (subject's; image left first), nose tip, right and left mouth corner.
SFACE_TEMPLATE: FloatArray = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
# Where the conventional five points (eye centres, nose tip, mouth corners as RetinaFace-style
# detectors mark them: the convention the SFace template and its training crops come from)
# lie relative to FaceMesh's five points (:func:`kycedge.vision.mesh.five_from_mesh`), in
# template pixels after FaceMesh's alignment, same order as SFACE_TEMPLATE. Mean over 144
# faces (the 64 faces-small photos and the fixture portraits, each also mirrored; never
# lfw-dev) of YuNet-320 fp16's points minus FaceMesh's, made mirror-symmetric (left and
# right averaged, no sideways shift): eyes 0.73 px further apart and 1.0 px higher, nose
# tip 2.5 px higher, mouth corners 0.2 px closer. ADR 0012, "conventional points".
FACEMESH_OFFSETS_PX: FloatArray = np.array(
    [[-0.73, -1.00], [0.73, -1.00], [0.00, -2.51], [0.18, 0.03], [-0.18, 0.03]], dtype=np.float64
)
# Mouth corners relative to the mouth centre, in units of the eye vector (template geometry).
_MOUTH_HALF_WIDTH = float(
    np.linalg.norm(SFACE_TEMPLATE[4] - SFACE_TEMPLATE[3])
    / np.linalg.norm(SFACE_TEMPLATE[1] - SFACE_TEMPLATE[0])
    / 2.0
)


def similarity_transform(src: npt.ArrayLike, dst: npt.ArrayLike) -> FloatArray:
    """Least-squares similarity (Umeyama 1991) mapping ``src`` points onto ``dst``: a 2x3 matrix.

    Same estimator as OpenCV's ``FaceRecognizerSF`` (scale, rotation, translation; no
    reflection). Raises ValueError for degenerate input (fewer than 2 distinct points).
    """
    s = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    d = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if s.shape != d.shape or s.shape[0] < 2:
        raise ValueError(f"expected two equal sets of >= 2 points, got {s.shape} and {d.shape}")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(d))):
        raise ValueError("expected finite landmark coordinates")
    n = s.shape[0]
    sm, dm = s.mean(axis=0), d.mean(axis=0)
    sc, dc = s - sm, d - dm
    var_s = float((sc**2).sum() / n)
    if var_s < 1e-12:
        raise ValueError("expected distinct source points, got coincident ones")
    cov = dc.T @ sc / n
    u, sig, vt = np.linalg.svd(cov)
    e = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1] = -1.0
    rot = u @ np.diag(e) @ vt
    scale = float((sig * e).sum() / var_s)
    m = np.zeros((2, 3), dtype=np.float64)
    m[:, :2] = scale * rot
    m[:, 2] = dm - scale * (rot @ sm)
    return m


def invert_affine(m: npt.ArrayLike) -> FloatArray:
    """Inverse of a 2x3 affine matrix."""
    a = np.asarray(m, dtype=np.float64)
    full = np.vstack([a, [0.0, 0.0, 1.0]])
    return np.linalg.inv(full)[:2]


def transform_points(m: npt.ArrayLike, pts: npt.ArrayLike) -> FloatArray:
    """Apply a 2x3 affine matrix to an Nx2 array of points."""
    a = np.asarray(m, dtype=np.float64)
    p = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    out: FloatArray = p @ a[:, :2].T + a[:, 2]
    return out


def box_reduce(img: U8Image, k: int) -> U8Image:
    """Shrink by the integer factor ``k`` averaging each k x k block (edges cropped)."""
    if k <= 1:
        return img
    h, w = (img.shape[0] // k) * k, (img.shape[1] // k) * k
    if h == 0 or w == 0:
        return img
    acc = np.zeros((h // k, w // k, *img.shape[2:]), dtype=np.uint32)
    for dy in range(k):
        for dx in range(k):
            acc += img[dy:h:k, dx:w:k]
    out: U8Image = ((acc + (k * k) // 2) // (k * k)).astype(np.uint8)
    return out


def warp_affine_reference(
    img: U8Image, m: npt.ArrayLike, width: int, height: int, *, border: int = 0
) -> U8Image:
    """Output pixel (x, y) = bilinear sample of ``img`` at ``inverse(m) @ (x, y, 1)``.

    ``m`` maps source coordinates to output coordinates (OpenCV convention, pixel centres
    at integer coordinates). Samples outside the source get ``border``.
    """
    a = np.asarray(m, dtype=np.float64)
    # touch only the source region the output covers (a face crop of a large frame is cheap)
    h, w = img.shape[:2]
    scale = float(np.sqrt(abs(np.linalg.det(a[:, :2]))))
    pad = 3 + (int(np.ceil(1.0 / scale)) if 0.0 < scale < 0.5 else 0)
    corners = transform_points(invert_affine(a), [[0, 0], [width - 1, 0], [0, height - 1],
                                                   [width - 1, height - 1]])
    x_lo = min(max(int(np.floor(corners[:, 0].min())) - pad, 0), w - 1)
    x_hi = max(min(int(np.ceil(corners[:, 0].max())) + pad, w), x_lo + 1)
    y_lo = min(max(int(np.floor(corners[:, 1].min())) - pad, 0), h - 1)
    y_hi = max(min(int(np.ceil(corners[:, 1].max())) + pad, h), y_lo + 1)
    if (x_lo, y_lo, x_hi, y_hi) != (0, 0, w, h):
        img = img[y_lo:y_hi, x_lo:x_hi]
        a = a @ np.array([[1.0, 0.0, x_lo], [0.0, 1.0, y_lo], [0.0, 0.0, 1.0]])
    if 0.0 < scale < 0.5:
        k = int(np.floor(1.0 / scale))
        if k > 1 and min(img.shape[:2]) >= k:
            img = box_reduce(img, k)
            a = a @ np.array([[k, 0.0, (k - 1) / 2.0], [0.0, k, (k - 1) / 2.0], [0.0, 0.0, 1.0]])
    inv = invert_affine(a).astype(np.float32)
    xs = np.arange(width, dtype=np.float32)[None, :]
    ys = np.arange(height, dtype=np.float32)[:, None]
    sx = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    sy = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    x0f, y0f = np.floor(sx), np.floor(sy)
    fx = (sx - x0f)[..., None]
    fy = (sy - y0f)[..., None]
    x0, y0 = x0f.astype(np.int64), y0f.astype(np.int64)
    h, w = img.shape[:2]
    src = img.reshape(h, w, -1)
    c = src.shape[2]
    outside = None
    if x0.min() < 0 or y0.min() < 0 or x0.max() + 1 >= w or y0.max() + 1 >= h:
        # pad one border pixel all round; samples wholly outside the padded image get the border
        src = np.pad(src, ((1, 1), (1, 1), (0, 0)), constant_values=border)
        x0, y0 = x0 + 1, y0 + 1
        outside = (x0 < 0) | (y0 < 0) | (x0 > w) | (y0 > h)
        x0 = np.clip(x0, 0, w)
        y0 = np.clip(y0, 0, h)
        w += 2
    flat = src.reshape(-1, c)
    i00 = (y0 * w + x0).reshape(-1)
    p00 = np.take(flat, i00, axis=0).astype(np.float32)
    p01 = np.take(flat, i00 + 1, axis=0).astype(np.float32)
    p10 = np.take(flat, i00 + w, axis=0).astype(np.float32)
    p11 = np.take(flat, i00 + w + 1, axis=0).astype(np.float32)
    fx = fx.reshape(-1, 1)
    fy = fy.reshape(-1, 1)
    top = p00 + (p01 - p00) * fx
    top += ((p10 + (p11 - p10) * fx) - top) * fy
    top += 0.5  # bilinear output stays within [0, 255]: round half up, no clip needed
    out = top.astype(np.uint8).reshape(height, width, c)
    if outside is not None and outside.any():
        out[outside] = border
    shaped: U8Image = out.reshape(height, width) if img.ndim == 2 else out.reshape(height, width, c)
    return shaped


def landmarks_from_four(eye_r: npt.ArrayLike, eye_l: npt.ArrayLike, nose: npt.ArrayLike,
                        mouth: npt.ArrayLike) -> FloatArray:
    """Five template points from eyes, nose and mouth centre (mouth corners placed geometrically).

    The corners sit on either side of the mouth centre along the eye direction, at the
    template's mouth-width / eye-distance ratio.
    """
    er, el = np.asarray(eye_r, dtype=np.float64), np.asarray(eye_l, dtype=np.float64)
    mc = np.asarray(mouth, dtype=np.float64)
    half = (el - er) * _MOUTH_HALF_WIDTH
    return np.stack([er, el, np.asarray(nose, dtype=np.float64), mc - half, mc + half])


def alignment_matrix(landmarks: npt.ArrayLike, size: int = SFACE_SIZE) -> FloatArray:
    """2x3 similarity moving ``landmarks`` (5x2, image pixels) onto the SFace template."""
    return similarity_transform(landmarks, SFACE_TEMPLATE * (size / SFACE_SIZE))


def align_face(img: U8Image, landmarks: npt.ArrayLike, size: int = SFACE_SIZE) -> U8Image:
    """The ``size x size`` crop with ``landmarks`` (5x2) moved onto the SFace template (numpy)."""
    return warp_affine_reference(img, alignment_matrix(landmarks, size), size, size)


def conventional_points(five: npt.ArrayLike, offsets_px: npt.ArrayLike = FACEMESH_OFFSETS_PX) -> FloatArray:
    """FaceMesh's five points (5x2, image pixels) moved to the detector convention.

    Each point is shifted by its ``offsets_px`` (template pixels) in the frame of its own
    alignment onto the SFace template, then taken back to image pixels.
    """
    m = alignment_matrix(five)
    placed = transform_points(m, five) + np.asarray(offsets_px, dtype=np.float64)
    return transform_points(invert_affine(m), placed)
