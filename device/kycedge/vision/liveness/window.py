"""A screen's window around the face, on the whole frame (pure numpy, no model, no I/O).

A phone or a monitor replaying a face shows it inside a rectangle: the screen's edge (the
bezel, a letterbox bar, a player's frame) runs straight on both sides of the face and closes
below it, across the replayed body. A live person in a room may stand between two straight
edges (a door frame, a window) but the body continues below the face: nothing straight cuts
across it. :func:`window_score` looks for exactly that: two parallel, near-vertical straight
edges (tilted by up to ``max_tilt_deg``: a hand-held phone, a camera not square to the
monitor) on either side of the face, and a straight edge below the face spanning the gap
between them. It is the tilt-tolerant, closed-bottom successor of
:func:`kycedge.vision.liveness.screen.bezel_score` (two untilted side edges only, which a
door frame behind a live person satisfies). How it was developed and measured is in
docs/decisions/0017-second-face-and-screen-window.md.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from kycedge.vision.liveness.edges import above_local, line_coverage, luma

__all__ = ["WORK_FACE_PX", "window_score"]

Box = tuple[float, float, float, float]
F64 = npt.NDArray[np.float64]

WORK_FACE_PX = 80      # the frame is block-averaged so that the face is about this wide


def _block(y: F64, k: int) -> F64:
    if k <= 1:
        return y
    h, w = (y.shape[0] // k) * k, (y.shape[1] // k) * k
    return np.asarray(y[:h, :w].reshape(h // k, k, w // k, k).mean(axis=(1, 3)))


def _sheared(g: F64, along: npt.NDArray[np.int64], shift: npt.NDArray[np.int64]) -> F64:
    """``g[along[i], c + shift[i]]`` for every c (out of range: 0)."""
    n = g.shape[1]
    cols = np.arange(n)[None, :] + shift[:, None]
    ok = (cols >= 0) & (cols < n)
    out = g[along[:, None], np.clip(cols, 0, n - 1)]
    return np.asarray(np.where(ok, out, 0.0))


def window_score(rgb: npt.NDArray[np.uint8], box: Box, reach: float = 1.2, edge: float = 0.06,
                 max_tilt_deg: float = 15.0, step_deg: float = 1.5, below: float = 1.5) -> float:
    """A screen's window around the face at ``box`` (x0, y0, x1, y1), in [0, 1].

    At a scale where the face is about :data:`WORK_FACE_PX` wide: for each tilt in
    +-``max_tilt_deg`` (steps of ``step_deg``), the best straight edge left of the face and the
    best right of it (up to ``reach`` face widths away), each the fraction of the rows spanned
    by the face (extended by half its height each way) where the luma steps across it by more
    than ``edge``, one sign along it, less the local median (texture); the sides' score is the
    smaller of the two at the tilt where it is largest (the two edges are parallel). Then,
    between those two edges, the best straight edge below the face (from 0.1 to ``below``
    face heights under it, any tilt in the same range), scored alike over the columns between
    the sides. The result is the smaller of the sides' and the bottom's scores: 0 when a side
    lies outside the frame, or the window is not wider than the face. Edges within 3 % of
    the frame's border are not searched (an image's padding is not a screen). ValueError
    when the face box is below 32 px a side."""
    x0, y0, x1, y1 = box
    if x1 - x0 < 32 or y1 - y0 < 32:
        raise ValueError(f"face box {x1 - x0:.0f}x{y1 - y0:.0f} px is below 32 px a side")
    k = max(1, int((x1 - x0) // WORK_FACE_PX))
    y = _block(luma(rgb), k)
    x0, y0, x1, y1 = x0 / k, y0 / k, x1 / k, y1 / k
    H, W = y.shape
    bw, bh = x1 - x0, y1 - y0
    m = max(4, int(0.03 * W))
    r0, r1 = max(0, int(y0 - 0.5 * bh)), min(H, int(y1 + 0.5 * bh))
    if r1 - r0 < 16:
        return 0.0
    gx = np.diff(y, axis=1)                              # step between column c and c + 1
    rows = np.arange(r0, r1)
    yc = 0.5 * (r0 + r1)
    tilts = np.deg2rad(np.arange(-max_tilt_deg, max_tilt_deg + 1e-9, step_deg))
    lo_l, hi_l = max(m, int(x0 - reach * bw)), max(m, int(x0 - 0.05 * bw))
    lo_r = min(gx.shape[1] - 1 - m, int(x1 + 0.05 * bw))
    hi_r = min(gx.shape[1] - 1 - m, int(x1 + reach * bw))
    if hi_l <= lo_l or hi_r <= lo_r:
        return 0.0
    best: tuple[float, int, int] = (0.0, 0, 0)
    for t in tilts:
        shift = np.round(np.tan(t) * (rows - yc)).astype(np.int64)
        cover = above_local(line_coverage(_sheared(gx, rows, shift), edge))
        left, right = cover[lo_l:hi_l], cover[lo_r:hi_r]
        s = float(min(left.max(), right.max()))
        if s > best[0]:
            best = (s, lo_l + int(left.argmax()), lo_r + int(right.argmax()))
    sides, cl, cr = best
    if sides <= 0.0 or cr - cl < bw:
        return 0.0
    # the bottom edge between the two sides: rows of gy sampled along a tilted line
    gy = np.diff(y, axis=0).T                            # (W, H - 1): step between row r and r + 1
    cols = np.arange(cl + 2, cr - 1)
    b0, b1 = int(y1 + 0.1 * bh), min(gy.shape[1] - 1 - m, int(y1 + below * bh))
    if b1 - b0 < 4 or cols.size < 8:
        return 0.0
    xc = 0.5 * (cl + cr)
    bottom = 0.0
    for t in tilts:
        shift = np.round(np.tan(t) * (cols - xc)).astype(np.int64)
        cover = above_local(line_coverage(_sheared(gy, cols, shift), edge))
        bottom = max(bottom, float(cover[b0:b1].max()))
    return float(max(0.0, min(sides, bottom)))
