"""Pure template-path helpers: capture score, best-K buffer, fusion weights, fusion."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.vision.template import (
    MIN_WEIGHT,
    Candidate,
    capture_score,
    fuse,
    fusion_weights,
    keep_best,
    would_keep,
)


def cand(score: float) -> Candidate:
    return Candidate(crop=np.zeros((2, 2, 3), np.uint8), score=score, quality={})


def test_capture_score_prefers_sharp_large_frontal() -> None:
    good = {"sharpness": 300.0, "eye_distance_px": 120.0, "yaw_deg": 0.0, "pitch_deg": 0.0}
    assert capture_score(good) == pytest.approx(2.0)
    assert capture_score({**good, "yaw_deg": 45.0}) == pytest.approx(1.5)
    assert capture_score({**good, "sharpness": 100.0}) == pytest.approx(1.5)
    assert capture_score({}) == 0.0


@given(st.lists(st.floats(-3, 3, allow_nan=False), min_size=1, max_size=30), st.integers(1, 5))
def test_keep_best_is_the_top_k_of_everything_seen(scores: list[float], k: int) -> None:
    kept: list[Candidate] = []
    for s in scores:
        entered = would_keep(kept, s, k)
        new = cand(s)
        kept = keep_best(kept, new, k)
        assert entered == any(c is new for c in kept)  # a candidate is made only when it is kept
    assert [c.score for c in kept] == sorted(scores, reverse=True)[:k]


def test_keep_best_refuses_k_zero() -> None:
    with pytest.raises(ValueError, match="k >= 1"):
        keep_best([], cand(1.0), 0)


@given(st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=10), st.booleans())
def test_fusion_weights_are_a_distribution(scores: list[float], weighted: bool) -> None:
    w = fusion_weights(scores, weighted)
    assert w.sum() == pytest.approx(1.0)
    assert np.all(w > 0)
    if not weighted:
        assert np.allclose(w, 1.0 / len(scores))
    else:
        floor = np.maximum(np.asarray(scores), MIN_WEIGHT)
        assert np.allclose(w, floor / floor.sum())


def test_fusion_weights_refuse_empty_and_nan() -> None:
    with pytest.raises(ValueError, match="at least one"):
        fusion_weights([])
    with pytest.raises(ValueError, match="finite"):
        fusion_weights([1.0, float("nan")])


def test_fuse_of_one_is_the_normalised_embedding() -> None:
    v = np.arange(1, 129, dtype=np.float32)
    assert np.allclose(fuse([v], [1.0]), v / np.linalg.norm(v))


def test_fuse_normalises_each_embedding_before_weighting() -> None:
    a = np.zeros(4, np.float32)
    a[0] = 100.0  # a long vector must not dominate a short one
    b = np.zeros(4, np.float32)
    b[1] = 0.01
    t = fuse([a, b], [0.5, 0.5])
    assert np.allclose(t, [2**-0.5, 2**-0.5, 0, 0])
    t2 = fuse([a, b], [0.75, 0.25])
    assert t2[0] > t2[1] > 0
    assert float(np.linalg.norm(t2)) == pytest.approx(1.0)


def test_fuse_refuses_mismatched_weights_and_zero_vectors() -> None:
    with pytest.raises(ValueError, match="one weight per embedding"):
        fuse([np.ones(4), np.ones(4)], [1.0])
    with pytest.raises(ValueError, match="at least one"):
        fuse([], [])
    with pytest.raises(ValueError, match="non-zero"):
        fuse([np.zeros(4)], [1.0])


def test_candidate_repr_shows_no_pixels() -> None:
    c = Candidate(crop=np.full((112, 112, 3), 77, np.uint8), score=1.25, quality={"sharpness": 1.0})
    assert "77" not in repr(c)
    assert "1.250" in repr(c)
