"""detect: anchors, output decoding and NMS as pure functions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from kycedge.vision.detect import (
    Face,
    blazeface_anchors,
    decode_blazeface,
    decode_yunet,
    distinct_faces,
    faces_apart,
    iou,
    letterbox_matrix,
    weighted_nms,
)


def test_blazeface_anchor_layout() -> None:
    a = blazeface_anchors(128)
    assert a.shape == (896, 2)
    assert np.allclose(a[0], [0.5 / 16, 0.5 / 16])
    assert np.allclose(a[1], a[0])  # two anchors per stride-8 cell
    assert np.allclose(a[512], [0.5 / 8, 0.5 / 8])  # then the 8x8 grid with six per cell
    assert np.allclose(a[-1], [7.5 / 8, 7.5 / 8])


def test_decode_blazeface_one_face() -> None:
    reg = np.zeros((896, 16))
    logits = np.full(896, -10.0)
    i = 512 + 6 * (3 * 8 + 4)  # cell (x=4, y=3) of the 8x8 grid: centre (0.5625, 0.4375)
    reg[i, :4] = [6.4, -3.2, 64.0, 64.0]  # dx=+0.05, dy=-0.025, w=h=0.5
    reg[i, 4:6] = [-16.0, -10.0]  # right eye
    logits[i] = 5.0
    out = decode_blazeface(reg, logits)
    assert len(out) == 1
    box, score, kp = out[0]
    assert score == pytest.approx(1 / (1 + np.exp(-5.0)))
    assert np.allclose(box, [0.6125 - 0.25, 0.4125 - 0.25, 0.6125 + 0.25, 0.4125 + 0.25])
    assert np.allclose(kp[0], [0.5625 - 0.125, 0.4375 - 10 / 128])
    assert decode_blazeface(reg, np.full(896, -10.0)) == []


def test_weighted_nms_merges_overlaps_keeps_separate() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], dtype=float)
    scores = np.array([0.9, 0.6, 0.8])
    pts = np.zeros((3, 2, 2))
    pts[1] += 10.0
    out = weighted_nms(boxes, scores, pts, 0.3)
    assert len(out) == 2
    merged = out[0]
    assert merged[1] == 0.9
    assert 0 < merged[0][0] < 1
    assert 0 < merged[2][0, 0] < 10
    assert np.allclose(out[1][0], boxes[2])


def test_iou() -> None:
    others = np.array([[0, 0, 10, 10.0], [5, 0, 15, 10.0], [20, 20, 30, 30.0]])
    assert iou(np.array([0, 0, 10, 10.0]), others) == pytest.approx([1.0, 1 / 3, 0.0])


def test_decode_yunet_grid_and_exp() -> None:
    w = h = 64
    cls, obj, bbox, kps = [], [], [], []
    for stride in (8, 16, 32):
        n = (w // stride) * (h // stride)
        cls.append(np.zeros((n, 1)))
        obj.append(np.zeros((n, 1)))
        bbox.append(np.zeros((n, 4)))
        kps.append(np.zeros((n, 10)))
    # one face on the stride-16 grid at cell (x=1, y=2)
    idx = 2 * 4 + 1
    cls[1][idx] = 0.9
    obj[1][idx] = 0.9
    bbox[1][idx] = [0.5, 0.5, np.log(2.0), np.log(3.0)]
    kps[1][idx] = [0.0, 0.0, 1.0, 0.0, 0.5, 0.5, 0.0, 1.0, 1.0, 1.0]
    out = decode_yunet(cls, obj, bbox, kps, width=w, height=h)
    assert len(out) == 1
    box, score, pts = out[0]
    assert score == pytest.approx(0.9)
    cx, cy = 1.5 * 16, 2.5 * 16
    assert np.allclose(box, [cx - 16, cy - 24, cx + 16, cy + 24])
    assert np.allclose(pts[0], [16, 32])
    assert np.allclose(pts[4], [32, 48])


def test_letterbox_matrix_centres() -> None:
    m = letterbox_matrix(200, 100, 128)
    assert np.allclose(m @ [0, 0, 1], [0, 32])
    assert np.allclose(m @ [200, 100, 1], [128, 96])


def test_face_geometry() -> None:
    f = Face(box=(10, 20, 50, 100), score=0.9, landmarks=np.zeros((5, 2)), keypoints=np.zeros((6, 2)))
    assert f.width == 40
    assert f.height == 80
    assert f.area == 3200
    assert f.center == (30, 60)


def test_weighted_nms_degenerate_box_terminates() -> None:
    # a box with no area has IoU 0 even with itself: it must still leave the queue
    boxes = np.array([[0.5, 0.5, 0.4, 0.4], [0.1, 0.1, 0.3, 0.3]])
    scores = np.array([0.9, 0.8])
    points = np.zeros((2, 6, 2))
    out = weighted_nms(boxes, scores, points, 0.3)
    assert [s for _, s, _ in out] == [0.9, 0.8]


def test_distinct_faces_a_box_over_the_subject_is_the_subject() -> None:
    # the boxes BlazeFace gave on frame 80 of pad-video-dev live/tranvanluyt_real_b: the live
    # face and a spurious box (score 0.51) over its forehead, overlapping it
    face, spurious = (6.0, 288.0, 316.0, 598.0), (76.0, 169.0, 272.0, 366.0)
    assert distinct_faces([face, spurious], face) == 1
    # a phone held beside its holder (apart from the face's box) is a second face
    phone = (330.0, 300.0, 400.0, 370.0)
    assert distinct_faces([face, spurious, phone], face) == 2
    assert faces_apart([face, spurious, phone], face) == [2]
    # boxes that only touch along an edge do not overlap
    assert distinct_faces([face, (316.0, 288.0, 400.0, 400.0)], face) == 2
    # the subject itself (or no other box) is one face
    assert distinct_faces([], face) == 1


_coord = st.floats(-50.0, 500.0, allow_nan=False)
_box = st.tuples(_coord, _coord, st.floats(1.0, 200.0), st.floats(1.0, 200.0)).map(
    lambda b: (b[0], b[1], b[0] + b[2], b[1] + b[3]))


@given(_box, st.lists(_box, max_size=6))
def test_distinct_faces_counts_each_box_apart_once(subject, others) -> None:  # type: ignore[no-untyped-def]
    n = distinct_faces([subject, *others], subject)
    assert 1 <= n <= 1 + len(others)
    apart = faces_apart(others, subject)
    assert n == 1 + len(apart)
    for i in apart:  # an apart box lies wholly beside, above or below the subject's box
        b = others[i]
        assert b[2] <= subject[0] or b[0] >= subject[2] or b[3] <= subject[1] or b[1] >= subject[3]
