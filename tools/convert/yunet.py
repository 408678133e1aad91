"""YuNet 2023mar: dequantise -> fixed square input -> onnx2tf -> static int8 -> head-by-head checks.

Input: BGR, 0..255 float (OpenCV FaceDetectorYN feeds blobFromImage without scaling or
channel swap), NHWC in TFLite. The frame is scaled to fit SxS and padded bottom/right with
zeros. Outputs per stride s in (8, 16, 32), N = (S/s)^2 anchors in row-major order:
cls_s, obj_s [1,N,1] (already sigmoid), bbox_s [1,N,4], kps_s [1,N,10] (decode below).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx

from . import onnx_prep, tflite_tools

STRIDES = (8, 16, 32)
DECODE_DOC = (
    "for stride s in (8, 16, 32), n = size / s, anchor i -> row r = i // n, col c = i % n: "
    "score = sqrt(clip(cls, 0, 1) * clip(obj, 0, 1)); cx = (c + bbox[0]) * s, cy = (r + bbox[1]) * s, "
    "w = exp(bbox[2]) * s, h = exp(bbox[3]) * s; landmark k = ((kps[2k] + c) * s, (kps[2k+1] + r) * s) "
    "for right eye, left eye, nose tip, right mouth corner, left mouth corner; then NMS "
    "(OpenCV FaceDetectorYN: score >= 0.9 by default, NMS IoU 0.3)"
)
ONNX_OUTPUTS = [f"{k}_{s}" for k in ("cls", "obj", "bbox", "kps") for s in STRIDES]


def letterbox(bgr: np.ndarray, size: int) -> tuple[np.ndarray, float]:
    h, w = bgr.shape[:2]
    s = min(size / h, size / w)
    nh, nw = max(1, round(h * s)), max(1, round(w * s))
    out = np.zeros((size, size, 3), np.uint8)
    out[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return out, s


def nhwc(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32)[None]


def decode(outs: dict[str, np.ndarray], size: int) -> dict[int, dict[str, np.ndarray]]:
    """Per stride: score (sqrt(cls*obj)), boxes x1,y1,w,h and 5 landmarks in input pixels."""
    res = {}
    for s in STRIDES:
        n = size // s
        rows, cols = np.divmod(np.arange(n * n), n)
        cls = np.clip(outs[f"cls_{s}"].reshape(-1), 0, 1)
        obj = np.clip(outs[f"obj_{s}"].reshape(-1), 0, 1)
        bb = outs[f"bbox_{s}"].reshape(-1, 4)
        kp = outs[f"kps_{s}"].reshape(-1, 10)
        cx, cy = (cols + bb[:, 0]) * s, (rows + bb[:, 1]) * s
        w, h = np.exp(bb[:, 2]) * s, np.exp(bb[:, 3]) * s
        lm = np.stack([(kp[:, 0::2] + cols[:, None]) * s, (kp[:, 1::2] + rows[:, None]) * s], axis=-1)
        res[s] = {"score": np.sqrt(cls * obj), "box": np.stack([cx - w / 2, cy - h / 2, w, h], 1), "lm": lm}
    return res


class Reference:
    """onnxruntime on the dequantised original at a fixed size."""

    def __init__(self, fp32_onnx: Path, size: int) -> None:
        import onnxruntime as ort

        m = onnx_prep.set_input_hw(onnx.load(str(fp32_onnx)), size, size)
        self.sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        x = np.ascontiguousarray(img.astype(np.float32).transpose(2, 0, 1)[None])
        return dict(zip(ONNX_OUTPUTS, self.sess.run(ONNX_OUTPUTS, {"input": x}), strict=True))


class Tflite:
    """LiteRT runner that names outputs by their ONNX names via the serving_default signature."""

    def __init__(self, model: Path, threads: int = 1) -> None:
        self.r = tflite_tools.Runner(model, threads)
        sig = self.r.it._get_full_signature_list()["serving_default"]["outputs"]
        by_index = {d["index"]: i for i, d in enumerate(self.r.outputs)}
        # onnx2tf names signature outputs output_<k> in ONNX output order
        self.order = {ONNX_OUTPUTS[int(k.split("_")[1])]: by_index[idx] for k, idx in sig.items()}
        self.tensor_names = {k: self.r.outputs[i]["name"] for k, i in self.order.items()}

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        outs = self.r(nhwc(img))
        return {k: outs[i] for k, i in self.order.items()}


def to_saved_model(fp32_onnx: Path, work: Path, size: int) -> Path:
    m = onnx_prep.set_input_hw(onnx.load(str(fp32_onnx)), size, size)
    fixed = work / f"yunet_{size}_fixed.onnx"
    onnx.save(m, str(fixed))
    return tflite_tools.onnx_to_saved_model(fixed, work, f"yunet_{size}")


def quantise(float_tflite: Path, calib_imgs: list[np.ndarray], out: Path) -> None:
    calib = [{"input": nhwc(img)} for img in calib_imgs]
    q = tflite_tools.quantise_static_int8(float_tflite, calib, pixel_input="serving_default_input:0")
    out.write_bytes(q)


def compare(ref: Reference, model: Path, imgs: list[np.ndarray], size: int,
            score_threshold: float = 0.6) -> dict[str, object]:
    """Decoded outputs vs onnxruntime, per stride head, on anchors the original scores >= threshold.

    Landmark and box errors are in input pixels and relative to the face's box width;
    the top face per image is compared too (score, IoU, landmark error / box width).
    """
    t = Tflite(model)
    per = {s: {"anchors": 0, "score_abs_max": 0.0, "lm_rel_max": 0.0, "box_rel_max": 0.0,
               "lm_rel": []} for s in STRIDES}
    top_iou: list[float] = []
    top_lm: list[float] = []
    top_dscore: list[float] = []
    missed = extra = 0
    for img in imgs:
        a, b = decode(ref(img), size), decode(t(img), size)
        for s in STRIDES:
            m = a[s]["score"] >= score_threshold
            if not m.any():
                continue
            bw = a[s]["box"][m, 2:3]
            lm_rel = np.abs(a[s]["lm"][m] - b[s]["lm"][m]).max(axis=(1, 2)) / bw[:, 0]
            box_rel = np.abs(a[s]["box"][m] - b[s]["box"][m]).max(axis=1) / bw[:, 0]
            p = per[s]
            p["anchors"] += int(m.sum())
            dscore = float(np.abs(a[s]["score"][m] - b[s]["score"][m]).max())
            p["score_abs_max"] = max(p["score_abs_max"], dscore)
            p["lm_rel_max"] = max(p["lm_rel_max"], float(lm_rel.max()))
            p["box_rel_max"] = max(p["box_rel_max"], float(box_rel.max()))
            p["lm_rel"].extend(lm_rel.tolist())
        da, db = _detections(a, score_threshold), _detections(b, score_threshold)
        for sa, ba, la in da:
            match = max(((_iou(ba, bb), sb, lb) for sb, bb, lb in db), default=None, key=lambda m: m[0])
            if match is None or match[0] < 0.5:
                missed += 1
                continue
            top_iou.append(match[0])
            top_lm.append(float(np.abs(la - match[2]).max() / ba[2]))
            top_dscore.append(abs(float(sa - match[1])))
        extra += max(0, len(db) - len(da))
    heads = {}
    for s, p in per.items():
        lm = np.array(p.pop("lm_rel")) if p["lm_rel"] else np.zeros(1)
        heads[f"stride_{s}"] = {**{k: (round(v, 4) if isinstance(v, float) else v) for k, v in p.items()},
                                "lm_rel_median": round(float(np.median(lm)), 4)}
    return {
        "images": len(imgs), "score_threshold": score_threshold, "heads": heads,
        "faces": {"matched": len(top_iou), "missed": missed, "extra": extra,
                     "iou_min": round(min(top_iou), 4) if top_iou else None,
                     "iou_median": round(float(np.median(top_iou)), 4) if top_iou else None,
                     "landmark_err_rel_box_width_max": round(max(top_lm), 4) if top_lm else None,
                     "landmark_err_rel_box_width_median": (round(float(np.median(top_lm)), 4)
                                                           if top_lm else None),
                     "landmark_err_rel_box_width_p95": (round(float(np.percentile(top_lm, 95)), 4)
                                                        if top_lm else None),
                     "score_abs_diff_max": round(max(top_dscore), 4) if top_dscore else None},
    }


def _detections(d: dict[int, dict[str, np.ndarray]],
                thr: float) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """Faces after NMS (IoU 0.3), as OpenCV does: (score, box x,y,w,h, landmarks 5x2)."""
    sc = np.concatenate([d[s]["score"] for s in STRIDES])
    bx = np.concatenate([d[s]["box"] for s in STRIDES])
    lm = np.concatenate([d[s]["lm"] for s in STRIDES])
    keep = np.where(sc >= thr)[0]
    idx = cv2.dnn.NMSBoxes(bx[keep].tolist(), sc[keep].tolist(), thr, 0.3)
    return [(float(sc[keep[i]]), bx[keep[i]], lm[keep[i]]) for i in np.array(idx).reshape(-1)]


def eval_images(paths: list[Path], size: int) -> list[np.ndarray]:
    """lfw-dev photos at two scales: single photos (large faces) and 2x2 mosaics (four smaller faces)."""
    imgs = [letterbox(cv2.imread(str(p)), size)[0] for p in paths[: len(paths) // 2]]
    rest = paths[len(paths) // 2:]
    for i in range(0, len(rest) - 3, 4):
        t = [cv2.imread(str(p)) for p in rest[i:i + 4]]
        t = [cv2.resize(x, (250, 250)) for x in t]
        imgs.append(letterbox(np.vstack([np.hstack(t[:2]), np.hstack(t[2:])]), size)[0])
    return imgs


CRITERION = ("faithful = the float32 conversion reproduces onnxruntime (every stride head's landmarks "
             "within 1 % of the box width, no face missed) and the shipped model finds every face the "
             "original finds (IoU >= 0.5 at the same score threshold) with landmark error p95 <= 5 % of "
             "the box width (max recorded too)")


def verdict(float_fig: dict[str, Any], fig: dict[str, Any], kind: str = "int8") -> dict[str, Any]:
    """See CRITERION."""
    reasons = []
    for head, h in float_fig["heads"].items():
        if h["anchors"] and h["lm_rel_max"] > 0.01:
            reasons.append(f"float32: head {head} landmarks off by {h['lm_rel_max']} of box width")
    if float_fig["faces"]["missed"]:
        reasons.append(f"float32: {float_fig['faces']['missed']} faces missed")
    f = fig["faces"]
    if f["missed"]:
        reasons.append(f"{kind}: {f['missed']} faces missed")
    if f["landmark_err_rel_box_width_p95"] is not None and f["landmark_err_rel_box_width_p95"] > 0.05:
        reasons.append(f"{kind}: landmark error p95 {f['landmark_err_rel_box_width_p95']} of box width")
    return {"faithful": not reasons, "why_not": reasons}


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return float(inter / (a[2] * a[3] + b[2] * b[3] - inter))
