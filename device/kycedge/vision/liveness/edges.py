"""Straight-edge primitives shared by the screen cues (pure numpy, no I/O).

:func:`kycedge.vision.liveness.screen.bezel_score` (two untilted side edges) and
:func:`kycedge.vision.liveness.window.window_score` (tilted sides and a closing bottom edge)
both ask the same question of a family of parallel lines: along how much of each line does
the luma step across it, one way, more than it does on the neighbouring lines?
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["LOCAL_HALF_WIDTH", "above_local", "line_coverage", "luma"]

F64 = npt.NDArray[np.float64]

LOCAL_HALF_WIDTH = 8   # half-width of the local median that removes texture (steps everywhere)


def luma(rgb: npt.NDArray[np.uint8]) -> F64:
    """BT.601 luma in [0, 1]."""
    f = rgb.astype(np.float64) / 255.0
    return np.asarray(0.299 * f[..., 0] + 0.587 * f[..., 1] + 0.114 * f[..., 2])


def line_coverage(grad: F64, edge: float) -> F64:
    """``grad``: (along the line, across) steps gathered along a family of parallel lines;
    per line, the fraction of its samples that step by more than ``edge``, one sign along the
    whole line (screen against bezel), on either of two neighbouring lines (anti-aliased
    edges): shape (across - 1,)."""
    pos, neg = grad > edge, grad < -edge
    return np.asarray(np.maximum(np.maximum(pos[:, :-1], pos[:, 1:]).mean(axis=0),
                                 np.maximum(neg[:, :-1], neg[:, 1:]).mean(axis=0)))


def above_local(cov: F64) -> F64:
    """Coverage over its local median: an edge stands out in one line, texture in all."""
    k = LOCAL_HALF_WIDTH
    padded = np.pad(cov, k, mode="edge")
    local = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * k + 1), axis=1)
    return np.asarray(cov - local)
