"""The 1:1 match rule shared by the unit (demo, self-test), the carrier and the fleet: pure.

One cosine, one decision, one template codec, one size limit:

- a template is a 1-D vector of ``MIN_DIM..MAX_DIM`` finite float32 values from one model
  (``model_id`` and ``model_version``); its at-rest and wire form is little-endian float32;
- the score is the cosine similarity in [-1, 1]; a zero, empty or non-finite vector has no
  cosine (:func:`cosine` raises ``ValueError``, :func:`judge` answers ``malformed``);
- a pair is the same person when ``score >= threshold``; the threshold comes from the model
  manifest (``matching.threshold``, calibrated for a stated false accept rate);
- a probe is only compared with a reference of the same model id AND version (a template
  of another model lives in another embedding space: its cosine means nothing).

The carrier decides with :func:`judge`; whatever the unit may have concluded is ignored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

__all__ = [
    "MAX_DIM",
    "MIN_DIM",
    "MatchDecision",
    "MatchOutcome",
    "check_template",
    "cosine",
    "decide",
    "judge",
    "l2_normalize",
    "template_from_bytes",
    "template_to_bytes",
]

MIN_DIM: Final = 16
MAX_DIM: Final = 2048

MatchOutcome = Literal["match", "no-match", "model-mismatch", "malformed"]


@dataclass(frozen=True)
class MatchDecision:
    outcome: MatchOutcome
    score: float | None
    threshold: float | None
    detail: str


def check_template(v: npt.ArrayLike, what: str = "template") -> npt.NDArray[np.float32]:
    """``v`` as a 1-D float32 array of ``MIN_DIM..MAX_DIM`` finite values, else ValueError."""
    a = np.asarray(v, dtype=np.float32)
    if a.ndim != 1 or not MIN_DIM <= a.size <= MAX_DIM:
        raise ValueError(f"{what}: expected a 1-D vector of {MIN_DIM}..{MAX_DIM} values, got shape {a.shape}")
    if not bool(np.all(np.isfinite(a))):
        raise ValueError(f"{what}: expected finite values, got NaN/inf")
    return a


def l2_normalize(v: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """``v / ||v||`` as float32; raises ValueError for a zero, empty or non-finite vector."""
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    n = float(np.linalg.norm(a)) if a.size else 0.0
    if a.size == 0 or not np.isfinite(n) or n == 0.0:
        raise ValueError(f"expected a non-zero finite vector, got norm {n} over {a.size} values")
    return (a / n).astype(np.float32)


def cosine(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Cosine similarity of two vectors of equal length (they need not be normalised).

    Raises ValueError for vectors of different lengths and for zero or non-finite vectors.
    """
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
    if not (math.isfinite(score) and math.isfinite(threshold)):
        raise ValueError(f"expected finite score and threshold, got {score} and {threshold}")
    return bool(score >= threshold)


def judge(
    probe: npt.NDArray[np.float32],
    probe_model: tuple[str, str],
    reference: npt.NDArray[np.float32],
    reference_model: tuple[str, str],
    threshold: float,
) -> MatchDecision:
    """Compare ``probe`` with ``reference``: match iff cosine >= ``threshold``; never raises."""
    if probe_model != reference_model:
        return MatchDecision(
            "model-mismatch", None, None,
            f"expected a template of model {reference_model[0]} {reference_model[1]} (the reference's), "
            f"got {probe_model[0]} {probe_model[1]}",
        )
    if probe.ndim != 1 or probe.shape != reference.shape:
        return MatchDecision("malformed", None, None,
                             f"expected a template of shape {reference.shape}, got {probe.shape}")
    try:
        score = cosine(probe, reference)
        same = decide(score, threshold)
    except ValueError as e:
        return MatchDecision("malformed", None, None, str(e))
    return MatchDecision("match" if same else "no-match", round(score, 6), threshold,
                         f"cosine {score:.4f} vs threshold {threshold:.4f}")


def template_to_bytes(t: npt.ArrayLike) -> bytes:
    """Little-endian float32 bytes (the wire and at-rest form)."""
    return np.asarray(t, dtype="<f4").tobytes()


def template_from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    """The inverse of :func:`template_to_bytes`; ValueError outside ``MIN_DIM..MAX_DIM``."""
    if len(data) % 4 or not MIN_DIM <= len(data) // 4 <= MAX_DIM:
        raise ValueError(
            f"expected {MIN_DIM}..{MAX_DIM} little-endian float32 values, got {len(data)} bytes"
        )
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
