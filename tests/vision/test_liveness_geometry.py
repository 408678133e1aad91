"""Pure landmark geometry: homography fit, planarity, EAR, yaw, perspective (no model)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.vision.liveness import geometry as g
from support.liveness import mesh


def _apply(h: np.ndarray, p: np.ndarray) -> np.ndarray:
    q = np.column_stack([p, np.ones(len(p))]) @ h.T
    return q[:, :2] / q[:, 2:3]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-0.3, 0.3), min_size=8, max_size=8))
def test_any_homography_of_a_picture_leaves_no_residual(c: list[float]) -> None:
    h = np.eye(3) + np.array([[c[0], c[1], 40 * c[2]], [c[3], c[4], 40 * c[5]], [c[6] / 400, c[7] / 400, 0]])
    a = mesh()[:, :2]
    b = _apply(h, a)
    est = g.homography(a, b)
    assert np.allclose(_apply(est, a), b, atol=1e-6)
    pa = mesh()
    pb = pa.copy()
    pb[:, :2] = b
    assert g.planarity_residual(pa, pb) < 1e-6


@pytest.mark.parametrize("yaw", [-25.0, -15.0, 15.0, 25.0])
def test_a_turning_head_shows_parallax_a_turning_picture_does_not(yaw: float) -> None:
    assert g.planarity_residual(mesh(0.0), mesh(yaw)) > 0.04
    assert g.planarity_residual(mesh(0.0, flat=True), mesh(yaw, flat=True)) < 1e-6


def test_yaw_sign_is_the_subjects_left() -> None:
    assert g.yaw_deg(mesh(20.0)) > 15
    assert g.yaw_deg(mesh(-20.0)) < -15
    assert abs(g.yaw_deg(mesh(0.0))) < 1


def test_ear_falls_when_the_lids_close() -> None:
    open_, closed = g.eye_aspect_ratio(mesh()), g.eye_aspect_ratio(mesh(blink=0.9))
    assert open_ > 0.3
    assert closed < 0.1 * open_ * 1.5


def test_flat_approach_scales_uniformly() -> None:
    far, near = mesh(distance_mm=550, flat=True), mesh(distance_mm=350, flat=True)
    assert abs(g.perspective_change(far, near)) < 1e-9


def test_bad_shapes_are_value_errors() -> None:
    with pytest.raises(ValueError, match="468"):
        g.eye_aspect_ratio(np.zeros((10, 2)))
    with pytest.raises(ValueError, match="N >= 4"):
        g.homography(np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="depth"):
        g.yaw_deg(mesh()[:, :2])
    with pytest.raises(ValueError):
        g.eye_aspect_ratio(np.zeros((468, 2)))  # corners coincide
