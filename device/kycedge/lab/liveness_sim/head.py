"""A synthetic bona fide subject: a head built from ONE real portrait, rendered in 3-D.

:func:`build_head` runs the shipped detector and FaceMesh on the portrait, takes the 468
points with FaceMesh's depth, and gives every pixel of the head region (the mesh hull
grown by a margin for hair, ears and chin) a depth by kernel regression over the mesh
depths (the margin curves away behind the outline). :meth:`Head.render` rotates that
textured point cloud (yaw, pitch, roll about a neck axis behind the face), moves it
(distance to a pinhole camera), closes the eyelids by ``blink`` (the lid skin is painted
over the eye opening between the measured lid contours) and splats it, far points first,
over a static background that does not move with the head.

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

__all__ = ["Head", "Lids", "Pose", "build_head"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]

IOD_MM = 63.0
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
class Lids:
    """The eyelids as a texture remap of the portrait (portrait pixel coordinates).

    Per eye, from FaceMesh's lid contours of the portrait: the upper lid's skin runs from
    the crease (``top``) to the lid margin (``margin``, the upper contour); the eye is
    closed when the margin reaches ``closed`` (just below the lower contour). At blink
    ``b`` the margin is at ``margin + b * (closed - margin)``: every point between the
    crease and it shows the lid skin stretched over that span (the lid unfolds as it comes
    down, its lash line stays its lower edge), the points below keep the eye. The geometry
    does not move: the lid lies on the eye's surface.
    """

    idx: npt.NDArray[np.intp]   # points in a lid zone
    sx: F64                     # their portrait coordinates
    sy: F64
    top: F64                    # crease y, per point (its column)
    margin: F64                 # the open upper lid's margin y
    closed: F64                 # where the margin is when the eye is closed
    skin: F64                   # per point, the colour of the skin around that eye
    lash: F64                   # per point, the lash line's thickness (portrait pixels)
    portrait: F64               # H x W x 3, the texture the lid skin is taken from

    def colours(self, rgb: F64, blink: float) -> F64:
        """``rgb`` (every point's colour) with the lids ``blink`` (0 open .. 1 closed) down."""
        b = min(max(blink, 0.0), 1.0)
        edge = self.margin + b * (self.closed - self.margin)
        on = self.sy <= edge
        span = np.maximum(edge - self.top, 1e-6)
        src_y = self.top + (self.sy - self.top) * (self.margin - self.top) / span
        # the unfolded lid is mostly skin (the open eye's lid band is folded and shadowed):
        # its own stretched texture, blending into the skin tone around the eye towards the
        # margin (no seam at the crease); the lash line,
        # dark, along its lower edge
        tex = _bilinear(self.portrait, self.sx[on], src_y[on])
        u = np.clip(1.5 * (self.sy[on] - self.top[on]) / span[on], 0.0, 1.0)
        w = (0.8 * u * u * (3.0 - 2.0 * u))[:, None]   # no seam at the crease
        col = (1.0 - w) * tex + w * self.skin[on]
        lash = (edge[on] - self.sy[on]) <= self.lash[on]
        col[lash] *= 1.0 - 0.5 * min(1.0, 2.0 * b)
        out = rgb.copy()
        out[self.idx[on]] = col
        return out


def _lit_skin(rgb: F64) -> F64:
    """The lid's tone: the mean colour of the brighter half (60th-90th percentile of
    luminance) of the skin around the eye. A closed lid is convex and catches the light;
    the shadowed socket and dark brows/lashes of those bands are not its colour."""
    if len(rgb) == 0:
        return np.full(3, 128.0)
    lum = rgb @ np.array([0.299, 0.587, 0.114])
    lo, hi = np.percentile(lum, [60, 90])
    sel = (lum >= lo) & (lum <= hi)
    out: F64 = rgb[sel].mean(axis=0) if sel.any() else rgb.mean(axis=0)
    return out


def _bilinear(img: F64, sx: F64, sy: F64) -> F64:
    h, w = img.shape[:2]
    sx, sy = np.clip(sx, 0, w - 1), np.clip(sy, 0, h - 1)
    x0, y0 = np.floor(sx).astype(np.intp), np.floor(sy).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    out: F64 = (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x1] * fx * (1 - fy)
                + img[y1, x0] * (1 - fx) * fy + img[y1, x1] * fx * fy)
    return out


@dataclass(frozen=True)
class Head:
    """Textured 3-D points (mm, x right, y down, z away from the camera) and eye-lid data."""

    xyz: F64           # N x 3, head coordinates, origin at the rotation centre
    rgb: F64           # N x 3 colours 0..255
    background: U8     # H x W x 3 static scene
    focal_px: float
    lids: Lids | None = None   # the eyelids' texture remap (None: the head cannot blink)

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
        if pose.blink > 0.0 and self.lids is not None:
            col = self.lids.colours(self.rgb, pose.blink)
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
               supersample: float = 2.0, margin: float = 0.22) -> Head:
    """The head of ``portrait`` whose FaceMesh points (468 x 3, portrait pixels) are ``mesh``.

    ``background`` fixes the frame size. ``supersample`` points per pixel side keep the
    splat hole-free up to about that magnification.
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
    return Head(xyz=xyz, rgb=rgb, background=background, focal_px=focal_px,
                lids=_lids(mesh, sx, sy, img))


def _lids(mesh: F64, sx: F64, sy: F64, img: F64) -> Lids | None:
    """Each eye's lid zone: columns between the eye corners, from the crease (0.8 opening
    heights above the upper contour) down to 0.25 opening heights below the lower one (the
    whole visible eye); its skin tone from the skin bands above the crease and below the
    eye (:func:`_lit_skin`)."""
    idx, top, margin, closed, skin, lash = [], [], [], [], [], []
    for upper, lower in ((_UPPER_R, _LOWER_R), (_UPPER_L, _LOWER_L)):
        ux, uy = _curve(mesh, upper)
        lx, ly = _curve(mesh, lower)
        x_lo, x_hi = max(float(ux.min()), float(lx.min())), min(float(ux.max()), float(lx.max()))
        h_eye = max(float(np.mean(ly - np.interp(lx, ux, uy))), 1.0)
        band = np.flatnonzero((sx >= x_lo) & (sx <= x_hi))
        yu, yl = np.interp(sx[band], ux, uy), np.interp(sx[band], lx, ly)
        h_loc = np.maximum(yl - yu, 0.0)
        t = yu - 0.8 * np.maximum(h_loc, 0.6 * h_eye)
        c = yl + 0.25 * h_loc
        zone = (sy[band] >= t) & (sy[band] <= c)
        rel_y = sy[band] - yu
        around = ((rel_y < -1.0 * h_eye) & (rel_y > -1.8 * h_eye)) | (
            (sy[band] > yl + 0.6 * h_eye) & (sy[band] < yl + 1.4 * h_eye))
        rgb_band = _bilinear(img, sx[band[around]], sy[band[around]])
        tone = _lit_skin(rgb_band)
        n = int(zone.sum())
        idx.append(band[zone])
        top.append(t[zone])
        margin.append(yu[zone])
        closed.append(c[zone])
        skin.append(np.tile(tone, (n, 1)))
        lash.append(np.full(n, max(0.18 * h_eye, 0.6)))
    all_idx = np.concatenate(idx)
    if len(all_idx) == 0:
        return None
    return Lids(idx=all_idx, sx=sx[all_idx], sy=sy[all_idx], top=np.concatenate(top),
                margin=np.concatenate(margin), closed=np.concatenate(closed),
                skin=np.concatenate(skin), lash=np.concatenate(lash), portrait=img)
