"""Shared pieces of the simulated scenes: a static background, the camera's own noise, a perspective warp."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["background", "camera", "warp_perspective"]

U8 = npt.NDArray[np.uint8]
F64 = npt.NDArray[np.float64]


def background(rng: np.random.Generator, width: int = 640, height: int = 480) -> U8:
    """A smooth random room-like backdrop (two colour gradients and some large blobs)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    c0, c1, c2 = (rng.uniform(40, 200, 3) for _ in range(3))
    a = rng.uniform(0, 2 * np.pi)
    t = ((xx * np.cos(a) + yy * np.sin(a)) / max(width, height) + 1.0) / 2.0
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    for _ in range(3):
        cx, cy, r = rng.uniform(0, width), rng.uniform(0, height), rng.uniform(40, 200)
        m = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))
        img = img * (1 - 0.5 * m[..., None]) + c2[None, None, :] * 0.5 * m[..., None]
    out: U8 = np.clip(img, 0, 255).astype(np.uint8)
    return out


_NOISE: dict[tuple[int, ...], npt.NDArray[np.int16]] = {}


def camera(img: U8, rng: np.random.Generator, noise: float = 3.0) -> U8:
    """The unit camera's sensor noise (a fixed noise field, shifted at random per frame) and a
    slight vertical softening; the same for every presentation."""
    key = (*img.shape, int(noise * 10))
    field = _NOISE.get(key)
    if field is None:
        shape = (img.shape[0] * 2, img.shape[1] * 2, 3)
        field = np.random.default_rng(7).normal(0.0, noise, shape).astype(np.int16)
        _NOISE[key] = field
    dy, dx = int(rng.integers(0, img.shape[0])), int(rng.integers(0, img.shape[1]))
    f = img.astype(np.int16)
    f[1:-1] = (2 * f[1:-1] + f[:-2] + f[2:]) // 4
    f += field[dy:dy + img.shape[0], dx:dx + img.shape[1]]
    return np.clip(f, 0, 255).astype(np.uint8)


def warp_perspective(src: U8, h_dst_to_src: F64, width: int, height: int) -> tuple[U8, npt.NDArray[np.bool_]]:
    """Inverse-map every output pixel through ``h_dst_to_src`` (3x3), bilinear; (image, inside mask)."""
    sh, sw = src.shape[:2]
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    q = np.stack([xx.ravel(), yy.ravel(), np.ones(xx.size)])
    p = h_dst_to_src @ q
    w = p[2]
    ok_w = w > 1e-9
    w = np.where(ok_w, w, 1.0)
    sx, sy = p[0] / w, p[1] / w
    inside = ok_w & (sx >= 0) & (sx <= sw - 1) & (sy >= 0) & (sy <= sh - 1)
    sx, sy = np.clip(sx, 0, sw - 1), np.clip(sy, 0, sh - 1)
    x0, y0 = np.floor(sx).astype(np.intp), np.floor(sy).astype(np.intp)
    x1, y1 = np.minimum(x0 + 1, sw - 1), np.minimum(y0 + 1, sh - 1)
    fx, fy = (sx - x0)[:, None], (sy - y0)[:, None]
    s = src.astype(np.float32)
    out = (s[y0, x0] * (1 - fx) * (1 - fy) + s[y0, x1] * fx * (1 - fy)
           + s[y1, x0] * (1 - fx) * fy + s[y1, x1] * fx * fy)
    return (np.clip(out, 0, 255).astype(np.uint8).reshape(height, width, 3),
            inside.reshape(height, width))
