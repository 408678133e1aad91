"""BlazeFace short-range and FaceMesh from mediapipe 0.10.14, shipped as they come.

Both files already carry float16 weights (DEQUANTIZE to float32 at load), which is the
recommended form: BlazeFace does not survive full int8. They are copied byte for byte;
the check runs the shipped copy and the wheel member on the same real images and
records that the outputs are identical, the I/O spec and the 1-thread latency.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from . import tflite_tools


def blazeface_input(bgr: np.ndarray) -> np.ndarray:
    """128x128 RGB scaled to [-1, 1] (mediapipe face_detection_short_range)."""
    rgb = cv2.resize(bgr, (128, 128), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32)
    return (rgb / 127.5 - 1.0)[None]


def facemesh_input(bgr_face: np.ndarray) -> np.ndarray:
    """192x192 RGB scaled to [0, 1] (mediapipe face_landmark)."""
    rgb = cv2.resize(bgr_face, (192, 192), interpolation=cv2.INTER_AREA)[:, :, ::-1].astype(np.float32)
    return (rgb / 255.0)[None]


def check(original: Path, shipped: Path, inputs: list[np.ndarray], runs: int) -> dict[str, object]:
    a, b = tflite_tools.Runner(original), tflite_tools.Runner(shipped, threads=1)
    worst = 0.0
    for x in inputs:
        for oa, ob in zip(a(x), b(x), strict=True):
            worst = max(worst, float(np.abs(oa - ob).max()))
    return {"images": len(inputs), "max_abs_diff_vs_wheel_member": worst,
            "latency": b.latency_ms(inputs[0], runs=runs)}


def describe(key: str, spec: dict[str, list[dict[str, object]]]) -> dict[str, object]:
    """Manifest id/version/input/outputs for the two mediapipe models (mediapipe 0.10.14 graphs)."""
    outs = {o["name"]: o for o in spec["outputs"]}
    if key == "blazeface":
        return {
            "id": "blazeface-short-range-fp16", "version": "mediapipe-0.10.14",
            "input": {**spec["inputs"][0], "layout": "NHWC", "color": "RGB",
                      "range": "float32 in [-1, 1]: pixel / 127.5 - 1",
                      "resize": "whole frame scaled to 128x128 (letterbox to keep aspect)"},
            "outputs": [
                {**outs["regressors"],
                 "meaning": "per anchor: box cx, cy, w, h then 6 keypoints (x, y): right eye, left eye, "
                            "nose tip, mouth, right ear, left ear; offsets in 128-pixel input units from "
                            "the anchor centre"},
                {**outs["classificators"], "meaning": "per anchor score logit: sigmoid(clip(x, -100, 100))"},
            ],
            "anchors": {"num_layers": 4, "strides": [8, 16, 16, 16], "input_size": 128, "anchor_offset": 0.5,
                        "fixed_anchor_size": True, "aspect_ratios": [1.0],
                        "interpolated_scale_aspect_ratio": 1.0, "count": 896,
                        "note": "2 anchors per cell on the 16x16 grid, 6 per cell on the 8x8 grid"},
        }
    return {
        "id": "facemesh-fp16", "version": "mediapipe-0.10.14",
        "input": {**spec["inputs"][0], "layout": "NHWC", "color": "RGB",
                  "range": "float32 in [0, 1]: pixel / 255",
                  "crop": "192x192 face crop (mediapipe: detector box enlarged 1.5x, rotated upright)"},
        "outputs": [
            {**outs["conv2d_21"], "meaning": "468 landmarks x (x, y, z) in 192-pixel crop units"},
            {**outs["conv2d_31"], "meaning": "face presence logit: sigmoid(x)"},
        ],
    }
