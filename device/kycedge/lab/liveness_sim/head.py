"""A synthetic bona fide subject: a head built from ONE real portrait, rendered in 3-D.

:func:`build_head` runs the shipped detector and FaceMesh on the portrait, takes the 468
points with FaceMesh's depth, and gives every pixel of the head region (the mesh hull
grown by a margin for hair, ears and chin) a depth by kernel regression over the mesh
depths (the margin curves away behind the outline). :meth:`Head.render` rotates that
textured point cloud (yaw, pitch, roll about a neck axis behind the face), moves it
(distance to a pinhole camera), closes the eyelids by ``blink`` (the lid skin is painted
over the eye opening between the measured lid contours) and splats it, far points first,
over a static background that does not move with the head.

A portrait taken with the head turned is frontalised (rotated back by its own FaceMesh yaw)
and, from ``mirror_min_deg`` of yaw, its far half (the side the portrait saw edge-on, whose
texture a turn towards it would stretch over the whole cheek) is replaced by the near half
mirrored about the face's midline (the soft symmetry of face frontalisation, Hassner et al.,
CVPR 2015): a person has both cheeks, a single turned photo shows one.

It is a model, not a person: no skin deformation, no lighting change, occluded parts of
the portrait are whatever texture the portrait had (or the mirrored near side). What it
*does* have is the one thing the geometric checks look for: a real 3-D shape (from
FaceMesh's own depth of a real face) seen through a perspective camera. Pure numpy; frames live in RAM only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MIRROR_MIN_DEG", "Head", "Pose", "build_head"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

IOD_MM = 63.0
MIRROR_MIN_DEG = 10.0  # a portrait's own yaw from which the head's far half is mirrored
_UPPER_R = (133, 173, 157, 158, 159, 160, 161, 246, 33)
_LOWER_R = (33, 7, 163, 144, 145, 153, 154, 155, 133)
_UPPER_L = (362, 398, 384, 385, 386, 387, 388, 466, 263)
_LOWER_L = (263, 249, 390, 373, 374, 380, 381, 382, 362)
# FaceMesh points on the face's midline (forehead, nose bridge and tip, lips, chin)
_MIDLINE = (10, 151, 9, 8, 168, 6, 197, 195, 5, 4, 1, 19, 94, 2, 164, 0, 11, 12, 13, 14, 15,
            16, 17, 18, 200, 199, 175, 152)


@dataclass(frozen=True)
class Pose:
    """Where the head is: degrees (yaw + = subject's left), distance in mm, blink 0 open .. 1 closed."""

    yaw_deg: float = 0.0
    pitch_deg: float = 0.0
    roll_deg: float = 0.0
    distance_mm: float = 550.0
    shift_x_mm: float = 0.0
    shift_y_mm: float = 0.0
    blink: float = 0.0


@dataclass(frozen=True)
class Head:
    """Textured 3-D points (mm, x right, y down, z away from the camera) and eye-lid data."""

    xyz: F64           # N x 3, head coordinates, origin at the rotation centre
    rgb: F64           # N x 3 colours 0..255
    eye_mask: npt.NDArray[np.bool_]   # N: point is inside an eye opening
    lid_t: F64         # N: 0 at the upper lid .. 1 at the lower lid (eye points only)
    lid_rgb: F64       # N x 3: the lid skin colour painted when the lid covers the point
    lid_move: F64      # N: how far (mm) the point slides down at a full blink (upper lid skin)
    background: U8     # H x W x 3 static scene
    focal_px: float
    step_mm: float = 0.0  # spacing of the points on the head (0: unknown, one pixel per point)

    def footprint_px(self, z_mm: float) -> int:
        """Pixels per side each point covers at distance ``z_mm``: the projected spacing of the
        points, rounded up (1 while the points are at most a pixel apart)."""
        if self.step_mm <= 0.0:
            return 1
        return max(1, math.ceil(self.focal_px * self.step_mm / max(z_mm, 1.0) - 1e-9))

    def render(self, pose: Pose) -> U8:
        """One RGB frame (background size) of the head in ``pose``."""
        h, w = self.background.shape[:2]
        y, p, r = (math.radians(a) for a in (pose.yaw_deg, pose.pitch_deg, pose.roll_deg))
        # yaw about the vertical axis: the subject's left is image right (+x) from the camera
        ry = np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])
        rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
        rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
        q = self.xyz @ (rz @ rx @ ry).T
        q[:, 0] += pose.shift_x_mm
        q[:, 1] += pose.shift_y_mm
        q[:, 2] += pose.distance_mm
        zc = np.maximum(q[:, 2], 1.0)
        u = self.focal_px * q[:, 0] / zc + w / 2.0
        v = self.focal_px * q[:, 1] / zc + h / 2.0
        col = self.rgb
        if pose.blink > 0.0:
            # the upper lid slides down over the opening (its skin keeps its texture); the
            # opening itself goes behind it; the lash line darkens the lid's lower edge
            b = min(pose.blink, 1.0)
            moved = self.xyz.copy()
            moved[:, 1] += b * self.lid_move
            moved[self.eye_mask, 2] += 4.0
            q = moved @ (rz @ rx @ ry).T
            q[:, 0] += pose.shift_x_mm
            q[:, 1] += pose.shift_y_mm
            q[:, 2] += pose.distance_mm
            zc = np.maximum(q[:, 2], 1.0)
            u = self.focal_px * q[:, 0] / zc + w / 2.0
            v = self.focal_px * q[:, 1] / zc + h / 2.0
            col = col.copy()
            col[self.eye_mask] = self.lid_rgb[self.eye_mask]
            edge = (self.lid_move > 0) & (self.lid_t >= 0.85)
            col[edge] *= 0.45
        # a face is opaque at any distance: where the points land further apart than a pixel
        # (the head brought closer than the texture's resolution), each covers k x k pixels;
        # one pixel per point let the background show through in a grid of holes, which
        # FaceMesh and SFace do not see as a face (ADR 0015, fourth amendment)
        k = self.footprint_px(float(zc.min()))
        ui, vi = np.rint(u - 0.5 * (k - 1)).astype(np.intp), np.rint(v - 0.5 * (k - 1)).astype(np.intp)
        depth = q[:, 2]
        if k > 1:
            dy, dx = (a.reshape(-1) for a in np.meshgrid(np.arange(k), np.arange(k), indexing="ij"))
            ui = (ui[:, None] + dx[None, :]).reshape(-1)
            vi = (vi[:, None] + dy[None, :]).reshape(-1)
            depth = np.repeat(depth, k * k)
            col = np.repeat(col, k * k, axis=0)
        ok = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        order = np.argsort(-depth[ok], kind="stable")  # far first; near points overwrite
        out: U8 = self.background.copy()
        idx_v, idx_u = vi[ok][order], ui[ok][order]
        out[idx_v, idx_u] = np.clip(col[ok][order], 0, 255).astype(np.uint8)
        if len(idx_v) == 0:
            return out
        y0, y1 = max(int(idx_v.min()) - 1, 0), min(int(idx_v.max()) + 2, h)
        x0, x1 = max(int(idx_u.min()) - 1, 0), min(int(idx_u.max()) + 2, w)
        covered = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        covered[idx_v - y0, idx_u - x0] = True
        out[y0:y1, x0:x1] = _fill_holes(out[y0:y1, x0:x1], covered)
        return out


def _fill_holes(img: U8, covered: npt.NDArray[np.bool_]) -> U8:
    """Pixels the splat missed inside the head (magnified views) take their neighbours' mean."""
    acc = np.zeros(img.shape, dtype=np.float64)
    cnt = np.zeros(covered.shape, dtype=np.float64)
    f = img.astype(np.float64)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dx == 0 and dy == 0:
                continue
            m = np.roll(np.roll(covered, dy, axis=0), dx, axis=1)
            acc += np.roll(np.roll(f, dy, axis=0), dx, axis=1) * m[..., None]
            cnt += m
    hole = ~covered & (cnt >= 5)
    out: U8 = img.copy()
    out[hole] = (acc[hole] / cnt[hole, None]).astype(np.uint8)
    return out


def _curve(points: F64, idx: tuple[int, ...]) -> tuple[F64, F64]:
    c = points[list(idx), :2]
    o = np.argsort(c[:, 0])
    return c[o, 0], c[o, 1]


def _kernel_depth(q: F64, pts: F64, z: F64, sigma: float) -> F64:
    out = np.empty(len(q))
    for s in range(0, len(q), 4096):
        d2 = ((q[s:s + 4096, None, :] - pts[None, :, :]) ** 2).sum(axis=2)
        wgt = np.exp(-d2 / (2.0 * sigma * sigma)) + 1e-12
        out[s:s + 4096] = (wgt * z[None, :]).sum(axis=1) / wgt.sum(axis=1)
    return out


def _yaw_matrix(yaw_deg: float) -> F64:
    """The render's yaw rotation (row vectors: ``xyz @ m.T``)."""
    y = math.radians(yaw_deg)
    return np.array([[math.cos(y), 0, -math.sin(y)], [0, 1, 0], [math.sin(y), 0, math.cos(y)]])


def build_head(portrait: U8, mesh: F64, *, background: U8, focal_px: float = 700.0,
               supersample: float = 2.0, margin: float = 0.22, yaw_deg: float = 0.0,
               mirror_min_deg: float | None = MIRROR_MIN_DEG) -> Head:
    """The head of ``portrait`` whose FaceMesh points (468 x 3, portrait pixels) are ``mesh``.

    ``background`` fixes the frame size. ``supersample`` points per pixel side keep one
    pixel per point hole-free up to about that magnification; beyond it each point covers
    a larger footprint (:meth:`Head.footprint_px`). ``yaw_deg`` is the portrait's own yaw
    (FaceMesh's, :func:`~kycedge.vision.liveness.geometry.yaw_deg` of ``mesh``): the head is
    built facing the camera at pose yaw 0, and from ``mirror_min_deg`` (None: never) its far
    half is the near half mirrored (module docstring).
    """
    if mesh.shape != (468, 3):
        raise ValueError(f"expected 468 x 3 mesh points, got {mesh.shape}")
    ph, pw = portrait.shape[:2]
    er = mesh[[33, 133, 159, 145], :2].mean(axis=0)
    el = mesh[[263, 362, 386, 374], :2].mean(axis=0)
    iod_px = float(np.hypot(*(el - er)))
    mm = IOD_MM / iod_px
    centre = mesh[:, :2].mean(axis=0)
    rel = mesh[:, :2] - centre
    # head region: an ellipse around the mesh, grown by ``margin`` (hair, ears, chin)
    ax = np.abs(rel[:, 0]).max() * (1.0 + margin)
    ay_top = -rel[:, 1].min() * (1.0 + 2.0 * margin)
    ay_bot = rel[:, 1].max() * (1.0 + 0.5 * margin)
    step = 1.0 / supersample
    mx_, my_ = np.meshgrid(np.arange(-ax, ax, step), np.arange(-ay_top, ay_bot, step))
    gx, gy = mx_.reshape(-1), my_.reshape(-1)
    ay = np.where(gy < 0, ay_top, ay_bot)
    ell = (gx / ax) ** 2 + (gy / ay) ** 2
    keep = ell <= 1.0
    gx, gy, ell = gx[keep], gy[keep], ell[keep]
    sx, sy = gx + centre[0], gy + centre[1]
    inside = (sx >= 0) & (sx <= pw - 1) & (sy >= 0) & (sy <= ph - 1)
    gx, gy, ell, sx, sy = gx[inside], gy[inside], ell[inside], sx[inside], sy[inside]
    # bilinear colour from the portrait
    x0, y0 = np.floor(sx).astype(np.intp), np.floor(sy).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, pw - 1), np.minimum(y0 + 1, ph - 1)
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    img = portrait.astype(np.float64)
    rgb = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x1] * fx * (1 - fy)
           + img[y1, x0] * (1 - fx) * fy + img[y1, x1] * fx * fy)
    # depth: kernel regression of FaceMesh's z, then the margin curves away behind the outline
    z_mesh = mesh[:, 2]
    z = _kernel_depth(np.column_stack([gx, gy]), rel, z_mesh, sigma=0.12 * iod_px * 2.0)
    # distance outside the mesh's own extent, in mesh-ellipse units
    mx, my = np.abs(rel[:, 0]).max(), np.abs(rel[:, 1]).max()
    r_mesh = np.sqrt((gx / mx) ** 2 + (gy / my) ** 2)
    z = z + np.maximum(r_mesh - 0.85, 0.0) * 1.2 * iod_px
    z_nose = float(mesh[1, 2]) * mm
    turn_back = _yaw_matrix(-yaw_deg)

    def to_head(x_rel: F64, y_rel: F64, z_px: F64) -> F64:
        """Portrait pixels (x, y from the mesh centre; depth in FaceMesh's pixel scale) to head
        millimetres: the origin on a neck axis ~ 95 mm behind the nose tip and slightly below
        the eyes, turned back by the portrait's own yaw (facing the camera at pose yaw 0)."""
        p = np.column_stack([x_rel * mm, y_rel * mm - 15.0, z_px * mm - z_nose - 95.0])
        out: F64 = p @ turn_back.T
        return out

    xyz = to_head(gx, gy, z)
    # eyelids: the eye opening between the lid contours, and the skin just above it
    eye_mask = np.zeros(len(sx), dtype=bool)
    lid_t = np.full(len(sx), 2.0)
    lid_rgb = rgb.copy()
    lid_move = np.zeros(len(sx))
    for upper, lower in ((_UPPER_R, _LOWER_R), (_UPPER_L, _LOWER_L)):
        ux, uy = _curve(mesh, upper)
        lx, ly = _curve(mesh, lower)
        eye_h0 = max(float(np.mean(ly - np.interp(lx, ux, uy))), 2.0)
        x_lo, x_hi = float(ux.min()) - 0.5, float(ux.max()) + 0.5
        band = (sx >= x_lo) & (sx <= x_hi)
        yu = np.interp(sx, ux, uy) - 0.5 * eye_h0
        yl = np.interp(sx, lx, ly) + 0.4 * eye_h0
        inside_eye = band & (sy >= yu) & (sy <= yl)
        t = (sy - yu) / np.maximum(yl - yu, 1e-6)
        eye_mask |= inside_eye
        lid_t = np.where(inside_eye, 2.0 + t, lid_t)
        eye_h = max(float(np.mean(ly - np.interp(lx, ux, uy))), 2.0)
        # the lid: skin colour from a band above the eye (shown if the slide leaves a gap)
        above = band & (sy < yu - 1.5 * eye_h) & (sy > yu - 2.5 * eye_h)
        skin = np.median(rgb[above], axis=0) if above.any() else rgb[inside_eye].mean(axis=0)
        lid_rgb[inside_eye] = skin[None, :] * 0.85
        # upper lid skin: from 1.6 eye heights above the upper lid down to it; at a full
        # blink it slides down by the opening's height (less towards the brow)
        lid_zone = band & (sy < yu) & (sy >= yu - 1.6 * eye_h)
        frac = 1.0 - (yu - sy) / (1.6 * eye_h)
        opening = np.interp(sx, lx, ly) - np.interp(sx, ux, uy) + 0.9 * eye_h0
        lid_move = np.where(lid_zone, np.clip(frac, 0, 1) * opening * mm, lid_move)
        lid_t = np.where(lid_zone, np.clip(frac, 0, 1), lid_t)
    if mirror_min_deg is not None and abs(yaw_deg) >= mirror_min_deg:
        line = list(_MIDLINE)
        x_mid = float(np.median(to_head(rel[line, 0], rel[line, 1], mesh[line, 2])[:, 0]))
        # a positive yaw turned the subject's left cheek (+x) away from the portrait's camera
        far = 1.0 if yaw_deg > 0 else -1.0
        near = far * (xyz[:, 0] - x_mid) < 0.0
        mirrored = xyz[near].copy()
        mirrored[:, 0] = 2.0 * x_mid - mirrored[:, 0]
        xyz = np.concatenate([xyz[near], mirrored])

        def both(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
            return np.concatenate([a[near], a[near]])

        rgb, eye_mask, lid_t, lid_rgb, lid_move = (both(a) for a in (rgb, eye_mask, lid_t, lid_rgb, lid_move))
    return Head(xyz=xyz, rgb=rgb, eye_mask=eye_mask, lid_t=lid_t, lid_rgb=lid_rgb, lid_move=lid_move,
                background=background, focal_px=focal_px, step_mm=step * mm)
