"""Face detection: model outputs to faces with five landmarks, in image pixels.

Two detectors, chosen by the manifest's ``pipeline.detector`` (see
docs/decisions/0002-detector-and-alignment.md):

- **BlazeFace short range** (MediaPipe, 128x128, float16 weights): six keypoints (eyes,
  nose tip, mouth centre, ear tragions); the five SFace points come from FaceMesh
  refinement (:mod:`kycedge.vision.mesh`) or, without it, geometric mouth corners.
- **YuNet** (libfacedetection, int8): five points with mouth corners, strides 8/16/32.

Decoding, anchors and NMS are pure functions of arrays; the classes only prepare the
input tensor and call the runtime.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from kycedge.vision.align import landmarks_from_four
from kycedge.vision.decode import FrameImage, warp_affine
from kycedge.vision.runtime import Model

__all__ = [
    "BlazeFaceDetector",
    "Face",
    "blazeface_anchors",
    "decode_blazeface",
    "decode_yunet",
    "distinct_faces",
    "faces_apart",
    "letterbox_matrix",
    "weighted_nms",
]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Face:
    """One detected face in image pixels.

    ``box`` is (x0, y0, x1, y1); ``landmarks`` is 5x2: right eye, left eye (the subject's,
    so image-left first for an unmirrored photo), nose tip, right and left mouth corner.
    ``keypoints`` holds the detector's raw keypoints (6 for BlazeFace, 5 for YuNet).
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: FloatArray
    keypoints: FloatArray = field(repr=False)

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def center(self) -> tuple[float, float]:
        return ((self.box[0] + self.box[2]) / 2.0, (self.box[1] + self.box[3]) / 2.0)


Box = tuple[float, float, float, float]


def distinct_faces(boxes: Sequence[Box], subject: Box) -> int:
    """How many faces ``boxes`` show besides and including the subject at ``subject``: 1 plus
    each box that does not overlap the subject's box at all.

    A box overlapping the subject's box is the subject's own face seen twice (a detector's
    part detection below NMS's IoU; BlazeFace puts one, score 0.50-0.55, over the forehead
    of a large live face in 6 of 105 frames of pad-video-dev tranvanluyt_real_b), never
    another face: two faces' boxes overlap only where one face hides the other. Every real
    second face measured here is apart from the subject's box (faces-small couple.jpg and
    selfie-many-people.jpg, the phone beside its holder in zubair_fake_a: overlap 0).
    The one place this rule lives (the session's and the clip judge's one-face rule count
    with it; ADR 0015, fourth amendment)."""
    return 1 + len(faces_apart(boxes, subject))


def faces_apart(boxes: Sequence[Box], subject: Box) -> list[int]:
    """Indices of the boxes that do not overlap ``subject`` (the other faces, see
    :func:`distinct_faces`)."""
    return [i for i, b in enumerate(boxes) if not _overlap(b, subject)]


def _overlap(a: Box, b: Box) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def iou(a: FloatArray, b: FloatArray) -> FloatArray:
    """IoU of box ``a`` (4,) with each row of ``b`` (N, 4), boxes as x0, y0, x1, y1."""
    ix0 = np.maximum(a[0], b[:, 0])
    iy0 = np.maximum(a[1], b[:, 1])
    ix1 = np.minimum(a[2], b[:, 2])
    iy1 = np.minimum(a[3], b[:, 3])
    inter = np.clip(ix1 - ix0, 0, None) * np.clip(iy1 - iy0, 0, None)
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a + area_b - inter
    out: FloatArray = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
    return out


def weighted_nms(
    boxes: FloatArray, scores: FloatArray, points: FloatArray, iou_threshold: float
) -> list[tuple[FloatArray, float, FloatArray]]:
    """MediaPipe-style weighted NMS: overlapping candidates are averaged, weighted by score.

    Returns (box, score, points) per kept face, best first.
    """
    order = np.argsort(-scores, kind="stable")
    remaining = order
    out: list[tuple[FloatArray, float, FloatArray]] = []
    while remaining.size:
        best = remaining[0]
        overlaps = iou(boxes[best], boxes[remaining])
        group = remaining[overlaps > iou_threshold]
        if group.size == 0:
            group = remaining[:1]
        w = scores[group][:, None]
        box = (boxes[group] * w).sum(axis=0) / w.sum()
        pts = (points[group] * w[:, :, None]).sum(axis=0) / w.sum()
        out.append((box, float(scores[best]), pts))
        # ``best`` always leaves (a degenerate box has IoU 0 with itself: no endless loop)
        keep = overlaps <= iou_threshold
        keep[0] = False
        remaining = remaining[keep]
    return out


def blazeface_anchors(size: int = 128) -> FloatArray:
    """The 896 anchor centres (normalised x, y) of BlazeFace short range.

    MediaPipe SsdAnchorsCalculator: strides 8, 16, 16, 16 (equal strides share one grid),
    two anchors per cell on the stride-8 grid and six on the stride-16 grid, offset 0.5.
    """
    centres: list[tuple[float, float]] = []
    for stride, per_cell in ((8, 2), (16, 6)):
        n = size // stride
        for y in range(n):
            for x in range(n):
                centres.extend([((x + 0.5) / n, (y + 0.5) / n)] * per_cell)
    return np.asarray(centres, dtype=np.float64)


_BLAZE_ANCHORS = blazeface_anchors()


def decode_blazeface(
    regressors: npt.ArrayLike,
    logits: npt.ArrayLike,
    *,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.3,
    size: int = 128,
) -> list[tuple[FloatArray, float, FloatArray]]:
    """BlazeFace outputs (896x16 regressors, 896 logits) to faces in normalised input coords."""
    raw = np.clip(np.asarray(logits, dtype=np.float64).reshape(-1), -100.0, 100.0)
    scores = 1.0 / (1.0 + np.exp(-raw))
    keep = scores >= score_threshold
    if not np.any(keep):
        return []
    anchors = _BLAZE_ANCHORS if size == 128 else blazeface_anchors(size)
    # only the kept rows are converted to float64 (usually a few dozen of 896)
    reg = np.asarray(regressors).reshape(-1, 16)[keep].astype(np.float64)
    scores, anc = scores[keep], anchors[keep]
    cx = reg[:, 0] / size + anc[:, 0]
    cy = reg[:, 1] / size + anc[:, 1]
    w = reg[:, 2] / size
    h = reg[:, 3] / size
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    kp = reg[:, 4:16].reshape(-1, 6, 2) / size + anc[:, None, :]
    return weighted_nms(boxes, scores, kp, iou_threshold)


def decode_yunet(
    cls: list[FloatArray],
    obj: list[FloatArray],
    bbox: list[FloatArray],
    kps: list[FloatArray],
    *,
    width: int,
    height: int,
    strides: tuple[int, ...] = (8, 16, 32),
    score_threshold: float = 0.6,
    iou_threshold: float = 0.3,
) -> list[tuple[FloatArray, float, FloatArray]]:
    """YuNet outputs per stride to faces in input pixels (as OpenCV's FaceDetectorYN decodes)."""
    all_boxes, all_scores, all_pts = [], [], []
    for i, stride in enumerate(strides):
        cols, rows = width // stride, height // stride
        c = np.clip(np.asarray(cls[i], dtype=np.float64).reshape(-1), 0.0, 1.0)
        o = np.clip(np.asarray(obj[i], dtype=np.float64).reshape(-1), 0.0, 1.0)
        score = np.sqrt(c * o)
        keep = score >= score_threshold
        if not np.any(keep):
            continue
        idx = np.nonzero(keep)[0]
        gx, gy = (idx % cols).astype(np.float64), (idx // cols).astype(np.float64)
        b = np.asarray(bbox[i], dtype=np.float64).reshape(-1, 4)[idx]
        k = np.asarray(kps[i], dtype=np.float64).reshape(-1, 5, 2)[idx]
        cx, cy = (gx + b[:, 0]) * stride, (gy + b[:, 1]) * stride
        w, h = np.exp(b[:, 2]) * stride, np.exp(b[:, 3]) * stride
        all_boxes.append(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1))
        all_scores.append(score[idx])
        all_pts.append((k + np.stack([gx, gy], axis=1)[:, None, :]) * stride)
        del rows
    if not all_boxes:
        return []
    boxes = np.concatenate(all_boxes)
    scores = np.concatenate(all_scores)
    pts = np.concatenate(all_pts)
    return _hard_nms(boxes, scores, pts, iou_threshold)


def _hard_nms(
    boxes: FloatArray, scores: FloatArray, points: FloatArray, iou_threshold: float
) -> list[tuple[FloatArray, float, FloatArray]]:
    order = np.argsort(-scores, kind="stable")
    out = []
    while order.size:
        best = order[0]
        out.append((boxes[best], float(scores[best]), points[best]))
        order = order[1:][iou(boxes[best], boxes[order[1:]]) <= iou_threshold]
    return out


def letterbox_matrix(width: int, height: int, size: int) -> FloatArray:
    """2x3 matrix mapping image pixels into a ``size`` square, aspect kept, centred (padded)."""
    s = size / max(width, height)
    return np.array(
        [[s, 0.0, (size - width * s) / 2.0], [0.0, s, (size - height * s) / 2.0]], dtype=np.float64
    )


class BlazeFaceDetector:
    """BlazeFace short range on a letterboxed 128x128 view of the frame."""

    def __init__(self, model: Model, *, score_threshold: float = 0.5, iou_threshold: float = 0.3) -> None:
        self.model = model
        shape = model.inputs[0].shape
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 3:
            raise ValueError(f"BlazeFace: expected a 1xNxNx3 input, got {shape}")
        self.size = int(shape[1])
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self._reg = model.output_index("regressors") if any(
            o.name == "regressors" for o in model.outputs) else 0
        self._cls = 1 - self._reg
        self._direct = model.inputs[0].dtype == "float32"

    def detect(self, rgb: npt.NDArray[np.uint8] | FrameImage) -> list[Face]:
        h, w = rgb.shape[:2]
        m = letterbox_matrix(w, h, self.size)
        view = warp_affine(rgb, m, self.size, self.size)
        if self._direct:
            def fill(buf: npt.NDArray[np.float32]) -> None:
                # pixel / 127.5 - 1 in float32, written straight into the input tensor
                np.divide(view, np.float32(127.5), out=buf[0])
                np.subtract(buf, np.float32(1.0), out=buf)

            outs = self.model.run_filled(fill)
        else:
            outs = self.model.run((view.astype(np.float32) / 127.5 - 1.0)[None])
        found = decode_blazeface(
            outs[self._reg], outs[self._cls], score_threshold=self.score_threshold,
            iou_threshold=self.iou_threshold, size=self.size,
        )
        # normalised letterbox coords -> image pixels
        inv_s = max(w, h) / self.size
        ox, oy = m[0, 2], m[1, 2]
        faces = []
        for box, score, kp in found:
            px = kp * self.size
            pts = np.stack([(px[:, 0] - ox) * inv_s, (px[:, 1] - oy) * inv_s], axis=1)
            b = box * self.size
            bb = ((b[0] - ox) * inv_s, (b[1] - oy) * inv_s, (b[2] - ox) * inv_s, (b[3] - oy) * inv_s)
            five = landmarks_from_four(pts[0], pts[1], pts[2], pts[3])
            faces.append(Face(box=tuple(float(v) for v in bb), score=score,  # type: ignore[arg-type]
                              landmarks=five, keypoints=pts))
        return faces



class YuNetDetector:
    """YuNet on the frame scaled into its fixed input (top-left anchored, padded), BGR 0..255."""

    def __init__(self, model: Model, *, score_threshold: float = 0.6, iou_threshold: float = 0.3) -> None:
        self.model = model
        shape = model.inputs[0].shape
        if len(shape) != 4:
            raise ValueError(f"YuNet: expected a 4-D input, got {shape}")
        self.nchw = shape[1] == 3
        self.height, self.width = (shape[2], shape[3]) if self.nchw else (shape[1], shape[2])
        self.score_threshold = score_threshold
        self.iou_threshold = iou_threshold
        self.strides = (8, 16, 32)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, spec in enumerate(model.outputs):
            rows = int(np.prod(spec.shape[:-1])) if len(spec.shape) > 1 else int(spec.shape[0])
            groups.setdefault((rows, int(spec.shape[-1])), []).append(i)
        self._heads: dict[str, list[int]] = {"cls": [], "obj": [], "bbox": [], "kps": []}
        for stride in self.strides:
            rows = (self.width // stride) * (self.height // stride)
            ones = sorted(groups.get((rows, 1), []), key=lambda i: model.outputs[i].name)
            cls_i = [i for i in ones if "cls" in model.outputs[i].name]
            obj_i = [i for i in ones if "obj" in model.outputs[i].name]
            if len(ones) != 2 or len(groups.get((rows, 4), [])) != 1 or len(groups.get((rows, 10), [])) != 1:
                raise ValueError(f"YuNet: expected cls/obj/bbox/kps outputs for stride {stride} "
                                 f"({rows} rows), got {[o.shape for o in model.outputs]}")
            if len(cls_i) == 1 and len(obj_i) == 1:
                self._heads["cls"].append(cls_i[0])
                self._heads["obj"].append(obj_i[0])
            else:  # unnamed: the exported order is cls before obj
                self._heads["cls"].append(min(ones))
                self._heads["obj"].append(max(ones))
            self._heads["bbox"].append(groups[(rows, 4)][0])
            self._heads["kps"].append(groups[(rows, 10)][0])

    def detect(self, rgb: npt.NDArray[np.uint8] | FrameImage) -> list[Face]:
        h, w = rgb.shape[:2]
        s = min(self.width / w, self.height / h)
        m = np.array([[s, 0.0, 0.0], [0.0, s, 0.0]])
        view = warp_affine(rgb, m, self.width, self.height)[:, :, ::-1].astype(np.float32)
        x = view.transpose(2, 0, 1)[None] if self.nchw else view[None]
        outs = self.model.run(np.ascontiguousarray(x))
        found = decode_yunet(
            [outs[i].astype(np.float64) for i in self._heads["cls"]],
            [outs[i].astype(np.float64) for i in self._heads["obj"]],
            [outs[i].astype(np.float64) for i in self._heads["bbox"]],
            [outs[i].astype(np.float64) for i in self._heads["kps"]],
            width=self.width, height=self.height, strides=self.strides,
            score_threshold=self.score_threshold, iou_threshold=self.iou_threshold,
        )
        faces = []
        for box, score, kp in found:
            pts = kp / s
            bb = (float(box[0]) / s, float(box[1]) / s, float(box[2]) / s, float(box[3]) / s)
            faces.append(Face(box=bb, score=score, landmarks=pts, keypoints=pts))
        return faces
