"""1:1 matching of templates: pure functions.

Templates are L2-normalised float32 vectors from the same model (same ``model_id`` and
``model_version``); the score is their cosine similarity in [-1, 1]. The threshold comes
from the model manifest (``matching.threshold``, calibrated for a stated false accept
rate); a pair is the same person when ``score >= threshold``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["cosine", "decide", "l2_normalize"]


def l2_normalize(v: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``v / ||v||`` as float32; raises ValueError for a zero, empty or non-finite vector."""
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(a)) if a.size else 0.0
    if a.size == 0 or not np.isfinite(n) or n == 0.0:
        raise ValueError(f"expected a non-zero finite vector, got norm {n} over {a.size} values")
    return (a / n).astype(np.float32)


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two vectors of equal length (they need not be normalised)."""
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"expected vectors of equal length, got {x.size} and {y.size}")
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if not (np.isfinite(nx) and np.isfinite(ny)) or nx == 0.0 or ny == 0.0:
        raise ValueError(f"expected non-zero finite vectors, got norms {nx} and {ny}")
    return float(np.clip(np.dot(x, y) / (nx * ny), -1.0, 1.0))


def decide(score: float, threshold: float) -> bool:
    """True (same person) when ``score >= threshold``."""
    if not (np.isfinite(score) and np.isfinite(threshold)):
        raise ValueError(f"expected finite score and threshold, got {score} and {threshold}")
    return bool(score >= threshold)
