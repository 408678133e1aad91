"""align: similarity estimation, warps and point transforms (pure, property-tested)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from kycedge.vision.align import (
    FACEMESH_OFFSETS_PX,
    SFACE_TEMPLATE,
    align_face,
    alignment_matrix,
    box_reduce,
    conventional_points,
    invert_affine,
    landmarks_from_four,
    similarity_transform,
    transform_points,
    warp_affine_reference,
)


def similarity(scale: float, angle: float, tx: float, ty: float) -> np.ndarray:
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    return np.array([[c, -s, tx], [s, c, ty]])


@settings(max_examples=200, deadline=None)
@given(st.floats(0.05, 20.0), st.floats(-math.pi, math.pi), st.floats(-500, 500), st.floats(-500, 500))
def test_similarity_recovers_exact_transform(scale: float, angle: float, tx: float, ty: float) -> None:
    m = similarity(scale, angle, tx, ty)
    src = SFACE_TEMPLATE * 3.0 + 17.0
    dst = transform_points(m, src)
    est = similarity_transform(src, dst)
    assert np.allclose(transform_points(est, src), dst, atol=1e-6 * max(1.0, scale) * 1000)


@settings(max_examples=100, deadline=None)
@given(st.floats(0.1, 10.0), st.floats(-3.0, 3.0), st.floats(-100, 100), st.floats(-100, 100))
def test_invert_round_trip(scale: float, angle: float, tx: float, ty: float) -> None:
    m = similarity(scale, angle, tx, ty)
    pts = np.array([[0.0, 0.0], [10.0, -3.0], [250.0, 400.0]])
    back = transform_points(invert_affine(m), transform_points(m, pts))
    assert np.allclose(back, pts, atol=1e-6)


def test_degenerate_points_rejected() -> None:
    import pytest

    with pytest.raises(ValueError):
        similarity_transform(np.ones((5, 2)), SFACE_TEMPLATE)
    with pytest.raises(ValueError):
        similarity_transform(np.full((5, 2), np.nan), SFACE_TEMPLATE)


def test_identity_warp_is_exact() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(40, 50, 3), dtype=np.uint8)
    out = warp_affine_reference(img, np.array([[1.0, 0, 0], [0, 1.0, 0]]), 50, 40)
    assert np.array_equal(out, img)


def test_integer_shift_and_border() -> None:
    img = np.arange(5 * 6, dtype=np.uint8).reshape(5, 6)
    out = warp_affine_reference(img, np.array([[1.0, 0, 2], [0, 1.0, 1]]), 6, 5, border=7)
    assert np.array_equal(out[1:, 2:], img[:4, :4])
    assert (out[0] == 7).all()
    assert (out[:, :2] == 7).all()


def test_box_reduce_averages_blocks() -> None:
    img = np.zeros((4, 4, 3), dtype=np.uint8)
    img[:2, :2] = 100
    img[0, 0] = 104
    out = box_reduce(img, 2)
    assert out.shape == (2, 2, 3)
    assert out[0, 0, 0] == 101
    assert out[1, 1, 0] == 0


def test_downscaling_warp_keeps_mean() -> None:
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(800, 800, 3), dtype=np.uint8)
    s = 100 / 800
    out = warp_affine_reference(img, np.array([[s, 0, 0], [0, s, 0]]), 100, 100)
    assert abs(float(out.mean()) - float(img.mean())) < 2.0
    assert float(out.std()) < float(img.std()) / 3  # averaged, not point-sampled (no aliasing)


def test_align_maps_landmarks_onto_template() -> None:
    # a synthetic face: the template scaled 3x, rotated 20 degrees, shifted
    m = similarity(3.0, math.radians(20), 200.0, 50.0)
    pts = transform_points(m, SFACE_TEMPLATE)
    img = np.zeros((600, 600, 3), dtype=np.uint8)
    for x, y in pts:
        img[round(y) - 2:round(y) + 3, round(x) - 2:round(x) + 3] = 255
    crop = align_face(img, pts)
    assert crop.shape == (112, 112, 3)
    for x, y in SFACE_TEMPLATE:
        assert crop[round(y), round(x), 0] > 100


def test_landmarks_from_four_matches_template() -> None:
    t = SFACE_TEMPLATE
    five = landmarks_from_four(t[0], t[1], t[2], (t[3] + t[4]) / 2.0)
    assert np.allclose(five[:3], t[:3])
    assert np.allclose(five[3:], t[3:], atol=0.2)


def test_pillow_resampler_agrees_with_numpy_reference() -> None:
    from kycedge.vision.decode import warp_affine as fast_warp

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, size=(250, 300, 3), dtype=np.uint8)
    img = ((img.astype(np.uint16) + np.roll(img, 1, 0) + np.roll(img, 1, 1)) // 3).astype(np.uint8)
    for m, size in ((similarity(1.3, 0.2, -40.0, -30.0), 192), (similarity(0.45, 0.0, 2.0, 10.0), 128),
                    (similarity(1.0, 0.0, 0.0, 0.0), 112)):
        ref = warp_affine_reference(img, m, size, size).astype(int)
        fast = fast_warp(img, m, size, size).astype(int)
        # compare where the sample lies inside the source (edges may treat the border differently)
        ys, xs = np.mgrid[0:size, 0:size]
        src = transform_points(invert_affine(m), np.stack([xs.ravel(), ys.ravel()], axis=1))
        inside = ((src[:, 0] > 1) & (src[:, 0] < img.shape[1] - 2) & (src[:, 1] > 1)
                  & (src[:, 1] < img.shape[0] - 2)).reshape(size, size)
        assert inside.mean() > 0.5
        diff = np.abs(ref - fast)[inside]
        assert diff.max() <= 2
        assert diff.mean() < 1.0


def test_frame_image_warp_equals_array_warp() -> None:
    # the pipeline shares one Pillow copy of the frame between its warps: same pixels
    from kycedge.vision.decode import FrameImage
    from kycedge.vision.decode import warp_affine as fast_warp

    rng = np.random.default_rng(5)
    img = rng.integers(0, 256, size=(600, 900, 3), dtype=np.uint8)
    frame = FrameImage(img)
    for m, size in ((similarity(1.3, 0.2, -40.0, -30.0), 192), (similarity(0.45, 0.0, 2.0, 10.0), 128),
                    (similarity(0.2, 0.1, 5.0, 3.0), 112), (similarity(128 / 900, 0.0, 0.0, 21.0), 128)):
        assert np.array_equal(fast_warp(frame, m, size, size), fast_warp(img, m, size, size))
    assert frame.shape == img.shape
    with pytest.raises(ValueError):
        FrameImage(img[:, :, 0])


@settings(max_examples=100, deadline=None)
@given(st.floats(0.2, 10.0), st.floats(-1.0, 1.0), st.floats(-300, 300), st.floats(-300, 300),
       st.floats(-3.0, 3.0))
def test_conventional_points_shift_by_the_offsets_in_template_pixels(
        scale: float, angle: float, tx: float, ty: float, jitter: float) -> None:
    # a face anywhere in the image (any similarity of a jittered template)
    shape = SFACE_TEMPLATE + np.array([[jitter, 0.0], [0.0, jitter], [0.0, 0.0], [-jitter, 0.0], [0.0, 0.0]])
    five = transform_points(similarity(scale, angle, tx, ty), shape)
    conv = conventional_points(five)
    m = alignment_matrix(five)
    assert np.allclose(transform_points(m, conv) - transform_points(m, five), FACEMESH_OFFSETS_PX, atol=1e-6)
    assert np.allclose(conventional_points(five, np.zeros((5, 2))), five, atol=1e-6)


def test_conventional_offsets_are_mirror_symmetric() -> None:
    # mirroring a face swaps right/left points and negates x: the offsets must agree
    off = FACEMESH_OFFSETS_PX
    mirrored = off[[1, 0, 2, 4, 3]] * np.array([-1.0, 1.0])
    assert np.allclose(mirrored, off)
    assert abs(float(off[:, 0].sum())) < 1e-9  # no sideways shift
