#!/usr/bin/env python3
"""Per-op sensitivity of SFace to int8: which ops cause the worst-face cosine drop.

Run after `bash tools/convert_models.sh --stages sface` (it reuses that run's work files:
the balanced float32 TFLite and the dequantised ONNX), in the convert venv:

    .venv-convert/bin/python tools/sface_sensitivity.py [--data ../shared/data]

Calibrates once (faces-small + fixtures/faces + mirrors, as the build does), then prints
cosine(original, variant) over the lfw-dev evaluation faces for: all static int8; each
single op left float (NO_QUANTIZE), everything else static int8; and float heads of
growing length (the first N SUB/conv ops float). The worst-face cosine on the
calibration faces (vs the float32 TFLite) is printed next to each head so a head can be
chosen without looking at lfw-dev. Figures only; it writes nothing outside --work.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from convert import faces, sources, tflite_tools
from convert.sface import INPUT

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"PRELU", "PAD", "TRANSPOSE", "RESHAPE"}  # PRELU is float anyway; the rest only move data


def stats(emb: np.ndarray, ref: np.ndarray) -> str:
    c = (emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1)
    return (f"min {c.min():.4f} p1 {np.percentile(c, 1):.4f} median {np.median(c):.4f} "
            f"below0.98 {(c < 0.98).sum()}/{len(c)}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / ".work" / "convert")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--eval-faces", type=int, default=330)
    args = ap.parse_args()
    import onnxruntime as ort
    from ai_edge_quantizer import quantizer, recipe

    float_tflite = args.work / "sface_float32.tflite"
    src = args.work / "src"
    aligner = faces.Aligner(src / Path(sources.YUNET_ONNX.path).name,
                            src / Path(sources.SFACE_ONNX.path).name)
    roots = (args.data / "faces-small", ROOT / "fixtures" / "faces")
    calib_paths = [p for r in roots for p in faces.image_paths(r)]
    calib = [c for _, c in faces.aligned_faces(aligner, calib_paths, max_faces=8)]
    calib += [np.ascontiguousarray(c[:, ::-1]) for c in calib]
    lfw = args.data / "lfw-dev" / "images"
    ev = [c for _, c in faces.aligned_faces(aligner, faces.lfw_eval_paths(lfw, args.eval_faces),
                                            limit=args.eval_faces)]
    ort_ref = ort.InferenceSession(str(args.work / "sface_2021dec_fp32.onnx"),
                                   providers=["CPUExecutionProvider"])
    ev_ref = np.concatenate([ort_ref.run(None, {INPUT: faces.sface_nchw([c])})[0] for c in ev])
    nhwc = [faces.sface_nchw([c]).transpose(0, 2, 3, 1) for c in ev]
    cal_nhwc = [faces.sface_nchw([c]).transpose(0, 2, 3, 1) for c in calib]
    fl = tflite_tools.Runner(float_tflite)
    cal_ref = np.concatenate([fl(x)[0] for x in cal_nhwc])

    qt = quantizer.Quantizer(str(float_tflite))
    qt.load_quantization_recipe(recipe.static_wi8_ai8())
    qsv = qt.calibrate({"serving_default": [{INPUT: x} for x in cal_nhwc]}, num_threads=2)
    pix = f"serving_default_{INPUT}:0"
    qsv[pix] = {"min": np.zeros_like(qsv[pix]["min"]), "max": np.full_like(qsv[pix]["max"], 255.0)}

    def variant(float_scopes: list[str]) -> tuple[tflite_tools.Runner, bytes]:
        from ai_edge_quantizer import qtyping
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        q = quantizer.Quantizer(str(float_tflite))
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        if float_scopes:
            q.update_quantization_recipe("^(" + "|".join(re.escape(s) for s in float_scopes) + ")$",
                                         qtyping.TFLOperationName.ALL_SUPPORTED,
                                         algorithm_key=AlgorithmName.NO_QUANTIZE)
        b = bytes(q.quantize(qsv, enable_progress_report=False).quantized_model)
        return tflite_tools.Runner(b, threads=1), b

    def run(r: tflite_tools.Runner, xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([r(x)[0] for x in xs])

    ops = [(i, k, sc) for i, (k, sc) in enumerate(tflite_tools.op_scopes(float_tflite)) if k not in SKIP]
    r, _ = variant([])
    print(f"all static int8: lfw-dev {stats(run(r, nhwc), ev_ref)}", flush=True)
    for i, k, sc in ops:
        r, _ = variant([sc])
        print(f"op {i:2d} {k:<18} float: lfw-dev {stats(run(r, nhwc), ev_ref)}", flush=True)
    head = [(i, k, sc) for i, k, sc in ops if k in {"SUB", "CONV_2D", "DEPTHWISE_CONV_2D"}]
    for n in (1, 3, 5, 7, 9, 11, 13):
        r, b = variant([sc for _, _, sc in head[:n]])
        lat = r.latency_ms(nhwc[0], runs=100)["median"]
        print(f"float head of {n:2d} ops (op 0..{head[n - 1][0]}): "
              f"calibration {stats(run(r, cal_nhwc), cal_ref)} | lfw-dev {stats(run(r, nhwc), ev_ref)} | "
              f"{lat:.2f} ms 1 thread, {len(b) / 1e6:.2f} MB", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
