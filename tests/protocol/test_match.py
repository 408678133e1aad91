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
