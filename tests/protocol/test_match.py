"""match: cosine and the decision (pure)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from kycedge.protocol.match import cosine, decide, l2_normalize

vec = arrays(np.float64, 16, elements=st.floats(-100, 100, allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(vec, vec)
def test_cosine_symmetric_bounded(a: np.ndarray, b: np.ndarray) -> None:
    if np.linalg.norm(a) == 0 or np.linalg.norm(b) == 0:
        with pytest.raises(ValueError):
            cosine(a, b)
        return
    s = cosine(a, b)
    assert -1.0 <= s <= 1.0
    assert s == pytest.approx(cosine(b, a))
    assert cosine(a, a) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)


def test_l2_normalize() -> None:
    v = l2_normalize([3.0, 4.0])
    assert v.dtype == np.float32
    assert np.allclose(v, [0.6, 0.8])
    for bad in ([0.0, 0.0], [], [np.inf, 1.0]):
        with pytest.raises(ValueError):
            l2_normalize(bad)


def test_decide() -> None:
    assert decide(0.5, 0.4)
    assert decide(0.4, 0.4)
    assert not decide(0.39, 0.4)
    with pytest.raises(ValueError):
        decide(float("nan"), 0.4)
    with pytest.raises(ValueError):
        cosine([1.0, 0.0], [1.0, 0.0, 0.0])


def test_one_rule_for_zero_vectors_and_sizes() -> None:
    """The unit and the carrier share one behaviour: a zero vector has no cosine."""
    from kycedge.protocol.match import MAX_DIM, MIN_DIM, judge, template_from_bytes, template_to_bytes

    ref = np.ones(128, dtype=np.float32)
    zero = np.zeros(128, dtype=np.float32)
    with pytest.raises(ValueError, match="non-zero"):
        cosine(zero, ref)
    d = judge(zero, ("m", "1"), ref, ("m", "1"), 0.4)
    assert (d.outcome, d.score) == ("malformed", None)
    assert judge(ref, ("m", "1"), ref, ("m", "1"), 0.4).outcome == "match"
    assert judge(-ref, ("m", "1"), ref, ("m", "1"), 0.4).outcome == "no-match"
    assert judge(ref, ("m", "2"), ref, ("m", "1"), 0.4).outcome == "model-mismatch"
    for n in (MIN_DIM, MAX_DIM):
        v = np.arange(n, dtype=np.float32)
        assert template_from_bytes(template_to_bytes(v)).tobytes() == v.astype("<f4").tobytes()
    for n in (MIN_DIM - 1, MAX_DIM + 1):
        with pytest.raises(ValueError, match=f"expected {MIN_DIM}..{MAX_DIM}"):
            template_from_bytes(bytes(4 * n))
