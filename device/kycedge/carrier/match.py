"""1:1 match: pure functions, no I/O.

The carrier decides; whatever the device may have concluded is ignored. A probe is only
compared with a reference made by the same model id AND version (a template of another
model lives in another embedding space: its cosine means nothing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["MatchDecision", "cosine", "decide", "template_from_bytes", "template_to_bytes"]

Outcome = Literal["match", "no-match", "model-mismatch", "malformed"]
MAX_DIM = 4096


@dataclass(frozen=True)
class MatchDecision:
    outcome: Outcome
    score: float | None
    threshold: float | None
    detail: str


def cosine(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    """Cosine similarity of two 1-D vectors (0.0 if either is all zeros)."""
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    nn = float(np.dot(a64, a64)) * float(np.dot(b64, b64))
    if nn == 0.0:
        return 0.0
    return float(np.dot(a64, b64)) / math.sqrt(nn)


def decide(
    probe: npt.NDArray[np.float32],
    probe_model: tuple[str, str],
    reference: npt.NDArray[np.float32],
    reference_model: tuple[str, str],
    threshold: float,
) -> MatchDecision:
    """Compare ``probe`` with ``reference``: match iff cosine >= ``threshold``."""
    if probe_model != reference_model:
        return MatchDecision(
            "model-mismatch", None, None,
            f"expected a template of model {reference_model[0]} {reference_model[1]} (the reference's), "
            f"got {probe_model[0]} {probe_model[1]}",
        )
    if probe.ndim != 1 or probe.shape != reference.shape:
        return MatchDecision(
            "malformed", None, None,
            f"expected a template of shape {reference.shape}, got {probe.shape}",
        )
    if not bool(np.all(np.isfinite(probe))):
        return MatchDecision("malformed", None, None, "expected finite template values, got NaN/inf")
    score = cosine(probe, reference)
    if not math.isfinite(score):  # pragma: no cover - guarded above
        return MatchDecision("malformed", None, None, f"expected a finite score, got {score}")
    outcome: Outcome = "match" if score >= threshold else "no-match"
    detail = f"cosine {score:.4f} vs threshold {threshold:.4f}"
    return MatchDecision(outcome, round(score, 6), threshold, detail)


def template_to_bytes(t: npt.NDArray[np.float32]) -> bytes:
    """Little-endian float32 bytes (the at-rest plaintext form)."""
    return np.asarray(t, dtype="<f4").tobytes()


def template_from_bytes(data: bytes) -> npt.NDArray[np.float32]:
    if len(data) % 4 or not 0 < len(data) // 4 <= MAX_DIM:
        raise ValueError(f"expected 1..{MAX_DIM} little-endian float32 values, got {len(data)} bytes")
    return np.frombuffer(data, dtype="<f4").astype(np.float32)
