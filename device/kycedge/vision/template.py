"""The template path: candidate crops of the best frames, fused into one sealed template.

A session guides on every frame with the cheap part of the pipeline (detect + quality
gates, :meth:`kycedge.vision.pipeline.Pipeline.guide`); only a frame good enough to be
among the best K so far becomes a :class:`Candidate`: its FaceMesh-refined, aligned
112x112 crop and its quality score, kept in RAM. At the decision every candidate crop is
embedded (and its mirror image, when flip averaging is on), each embedding is
L2-normalised, and the K are averaged (manifest ``fusion = "mean"``, shipped) or weighted
by their quality scores (``"quality-weighted"``, measured no better) and L2-normalised
again (:func:`fuse`). A single photo (``kycedge embed``, the carrier's ID
photo, the evaluation, the self-test) goes through the same steps with K = 1, so an
evaluation measures what a unit seals. Which steps are on is recorded, with the
measurements that justify them, in docs/decisions/0012-template-from-the-best-frames.md.

Pure functions only (scores, weights, fusion); the models run in the pipeline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kycedge.protocol.match import l2_normalize

__all__ = ["Candidate", "capture_score", "fuse", "fusion_weights", "keep_best", "would_keep"]

# the lowest weight a candidate can get, so that a poor frame among good ones still counts
# a little and a set of poor frames still fuses (scores can be negative for turned heads)
MIN_WEIGHT = 0.05


def capture_score(quality: Mapping[str, float]) -> float:
    """Higher is better: sharp, large, frontal (picks the best frames and weights the fusion).

    sharpness / 200 and eye distance / 100 px, each capped at 1, minus (|yaw| + |pitch|) / 90.
    """
    sharp = min(float(quality.get("sharpness", 0.0)) / 200.0, 1.0)
    size = min(float(quality.get("eye_distance_px", 0.0)) / 100.0, 1.0)
    pose = (abs(float(quality.get("yaw_deg", 0.0))) + abs(float(quality.get("pitch_deg", 0.0)))) / 90.0
    return sharp + size - pose


@dataclass(frozen=True, repr=False)
class Candidate:
    """One frame's aligned face crop (RAM only, never logged or stored) and its quality."""

    crop: npt.NDArray[np.uint8]
    score: float
    quality: Mapping[str, float]
    landmarks: npt.NDArray[np.float64] | None = None  # the five points the crop was aligned on

    def __repr__(self) -> str:  # never print pixels
        return f"Candidate(score={self.score:.3f}, crop={self.crop.shape})"


def keep_best(kept: Sequence[Candidate], new: Candidate, k: int) -> list[Candidate]:
    """The ``k`` best by score of ``kept`` plus ``new``, best first (ties: the earlier stays)."""
    if k < 1:
        raise ValueError(f"expected k >= 1, got {k}")
    merged = sorted([*kept, new], key=lambda c: -c.score)  # stable: earlier first among equals
    return merged[:k]


def would_keep(kept: Sequence[Candidate], score: float, k: int) -> bool:
    """Whether a frame with ``score`` enters the best ``k`` (so it is worth a candidate)."""
    return len(kept) < k or score > min(c.score for c in kept)


def fusion_weights(scores: Sequence[float], weighted: bool = True) -> npt.NDArray[np.float64]:
    """Non-negative weights summing to 1: the scores floored at ``MIN_WEIGHT``, or uniform."""
    if not scores:
        raise ValueError("expected at least one candidate score")
    s = np.asarray(scores, dtype=np.float64)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"expected finite candidate scores, got {s.tolist()}")
    w = np.maximum(s, MIN_WEIGHT) if weighted else np.ones_like(s)
    out: npt.NDArray[np.float64] = w / w.sum()
    return out


def fuse(embeddings: Sequence[npt.ArrayLike], weights: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """L2-normalised weighted sum of the L2-normalised ``embeddings`` (one template)."""
    if not embeddings:
        raise ValueError("expected at least one embedding")
    e = np.stack([l2_normalize(np.asarray(v, dtype=np.float32)) for v in embeddings])
    w = np.asarray(weights, dtype=np.float64).reshape(-1)
    if w.shape[0] != e.shape[0]:
        raise ValueError(f"expected one weight per embedding ({e.shape[0]}), got {w.shape[0]}")
    return l2_normalize((w[:, None] * e).sum(axis=0).astype(np.float32))
