"""A synthetic bona fide subject: a head built from ONE real portrait, rendered in 3-D.

:func:`build_head` runs the shipped detector and FaceMesh on the portrait, takes the 468
points with FaceMesh's depth, and gives every pixel of the head region (the mesh hull
grown by a margin for hair, ears and chin) a depth by kernel regression over the mesh
depths (the margin curves away behind the outline). :meth:`Head.render` rotates that
textured point cloud (yaw, pitch, roll about a neck axis behind the face), moves it
(distance to a pinhole camera), closes the eyelids by ``blink`` and splats it, far points
first, over a static background that does not move with the head.

The blink: per eye, the upper lid's own skin (from above its fold down to the lid margin,
the upper contour FaceMesh found) unfolds down to where the lids meet, its lash line (the
margin, darkened) leading. The points stay where they are and take the colour of the lid
skin that now covers them (re-sampled from the portrait), so the closed lid has the
person's own skin and no holes; an earlier version slid the lid's points down, which
stretched them apart and let the pushed-back eye and the background show through.

It is a model, not a person: no skin deformation, no lighting change, occluded parts of
the portrait are whatever texture the portrait had. What it *does* have is the one thing
the geometric checks look for: a real 3-D shape (from FaceMesh's own depth of a real
face) seen through a perspective camera. Pure numpy; frames live in RAM only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["Head", "Pose", "build_head"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

IOD_MM = 63.0
# the closing lid, in eye heights (see build_head); chosen by look and by FaceMesh's reading on
# LFW identities 1-40 only (tools/liveness_real_measures.py --synthetic-lfw --skip 0), docs/liveness.md
LID_TOP = 2.1
LID_MEET = 0.15
LASH = 0.5
LASH_DARK = 0.35
_UPPER_R = (133, 173, 157, 158, 159, 160, 161, 246, 33)
_LOWER_R = (33, 7, 163, 144, 145, 153, 154, 155, 133)
_UPPER_L = (362, 398, 384, 385, 386, 387, 388, 466, 263)
_LOWER_L = (263, 249, 390, 373, 374, 380, 381, 382, 362)


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
    lid_idx: npt.NDArray[np.intp]  # M: the points of the eye regions (their colour changes in a blink)
    lid_geom: F64      # M x 5 portrait px: point x, y; lid top, open lid margin, line where the lids meet
    lash_px: F64       # M: the lash line's height (portrait px) above the moving margin
    portrait: F64      # the portrait (the lid's colours are re-sampled from it)
    background: U8     # H x W x 3 static scene
    focal_px: float
    lash_dark: float = LASH_DARK

    def lid_colours(self, blink: float) -> F64:
        """Point colours with the upper lids lowered by ``blink`` (0 open .. 1 closed): the lid
        skin between its top and its margin stretches down to the lowered margin."""
        col: F64 = self.rgb.copy()
        if blink <= 0.0 or len(self.lid_idx) == 0:
            return col
        sx, sy, top, margin, meet = self.lid_geom.T
        edge = margin + min(blink, 1.0) * (meet - margin)
        lid = (sy >= top) & (sy <= edge)
        src_y = top + (sy - top) * (margin - top) / np.maximum(edge - top, 1e-6)
        c = _bilinear(self.portrait, sx[lid], src_y[lid])
        c[sy[lid] >= edge[lid] - self.lash_px[lid]] *= self.lash_dark
        col[self.lid_idx[lid]] = c
        return col

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
        col = self.lid_colours(pose.blink) if pose.blink > 0.0 else self.rgb
        ui, vi = np.rint(u).astype(np.intp), np.rint(v).astype(np.intp)
        ok = (ui >= 0) & (ui < w) & (vi >= 0) & (vi < h)
        order = np.argsort(-q[ok, 2], kind="stable")  # far first; near points overwrite
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


def _bilinear(img: F64, sx: F64, sy: F64) -> F64:
    """Colours of ``img`` at fractional pixel positions (clamped to the image)."""
    ph, pw = img.shape[:2]
    sx, sy = np.clip(sx, 0, pw - 1), np.clip(sy, 0, ph - 1)
    x0, y0 = np.floor(sx).astype(np.intp), np.floor(sy).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, pw - 1), np.minimum(y0 + 1, ph - 1)
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    out: F64 = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x1] * fx * (1 - fy)
                + img[y1, x0] * (1 - fx) * fy + img[y1, x1] * fx * fy)
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


def build_head(portrait: U8, mesh: F64, *, background: U8, focal_px: float = 700.0,
               supersample: float = 2.0, margin: float = 0.22, lid_top: float = LID_TOP,
               lid_meet: float = LID_MEET, lash: float = LASH) -> Head:
    """The head of ``portrait`` whose FaceMesh points (468 x 3, portrait pixels) are ``mesh``.

    ``background`` fixes the frame size. ``supersample`` points per pixel side keep the
    splat hole-free up to about that magnification. The lids (in eye heights, the mean
    distance between the upper and lower lid contours): the skin that unfolds reaches
    ``lid_top`` above the upper contour, the lids meet ``lid_meet`` above the lower contour,
    the lash line is ``lash`` high.
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
    img = portrait.astype(np.float64)
    rgb = _bilinear(img, sx, sy)
    # depth: kernel regression of FaceMesh's z, then the margin curves away behind the outline
    z_mesh = mesh[:, 2]
    z = _kernel_depth(np.column_stack([gx, gy]), rel, z_mesh, sigma=0.12 * iod_px * 2.0)
    # distance outside the mesh's own extent, in mesh-ellipse units
    mx, my = np.abs(rel[:, 0]).max(), np.abs(rel[:, 1]).max()
    r_mesh = np.sqrt((gx / mx) ** 2 + (gy / my) ** 2)
    z = z + np.maximum(r_mesh - 0.85, 0.0) * 1.2 * iod_px
    xyz = np.column_stack([gx * mm, gy * mm, z * mm])
    # rotate about a neck axis ~ 95 mm behind the nose tip
    z_nose = float(mesh[1, 2]) * mm
    xyz[:, 2] -= z_nose + 95.0
    xyz[:, 1] -= 15.0  # slightly below the eyes
    # eyelids: per eye, between the corners, the points from ``lid_top`` above the upper lid
    # contour down to the lower one; a blink re-colours them (Head.lid_colours)
    idx, geom, lash_px = [], [], []
    for upper, lower in ((_UPPER_R, _LOWER_R), (_UPPER_L, _LOWER_L)):
        ux, uy = _curve(mesh, upper)
        lx, ly = _curve(mesh, lower)
        eye_h = max(float(np.mean(ly - np.interp(lx, ux, uy))), 2.0)
        band = np.flatnonzero((sx >= float(ux.min())) & (sx <= float(ux.max())))
        bx, by = sx[band], sy[band]
        lid_margin, low = np.interp(bx, ux, uy), np.interp(bx, lx, ly)
        top = lid_margin - lid_top * eye_h
        keep = (by >= top) & (by <= low)
        idx.append(band[keep])
        geom.append(np.column_stack([bx, by, top, lid_margin, low - lid_meet * eye_h])[keep])
        lash_px.append(np.full(int(keep.sum()), lash * eye_h))
    return Head(xyz=xyz, rgb=rgb, lid_idx=np.concatenate(idx), lid_geom=np.concatenate(geom),
                lash_px=np.concatenate(lash_px), portrait=img, background=background, focal_px=focal_px)
