#!/usr/bin/env python3
"""Per-op sensitivity of SFace to int8 and the choice of the float head's length.

Run after `bash tools/convert_models.sh --stages sface` (it reuses that run's work files:
the balanced float32 TFLite and the dequantised ONNX), in the convert venv:

    .venv-convert/bin/python tools/sface_sensitivity.py [--data ../shared/data]
        [--heads 1,3,5,7,9,11,13] [--no-single-ops] [--holdout]

Calibrates once (faces-small + fixtures/faces + mirrors, as the build does), then prints
cosine(original, variant) over the lfw-dev evaluation faces for: all static int8; each
single op left float (NO_QUANTIZE), everything else static int8; and float heads of
growing length (the first N SUB/conv ops float). The worst-face cosine on the
calibration faces (vs the float32 TFLite) is printed next to each head so a head can be
chosen without looking at lfw-dev.

``--holdout`` adds, per head, a held-out measure on the calibration photos only: they are
split in two halves by photo (alternate photos in sorted order; a photo's faces and their
mirrors stay together), each half calibrates a model that is measured on the other half,
against the original ONNX (onnxruntime), on the plain crop and on the flip-averaged
template (crop + mirror, as the unit ships). The in-sample figure scores a model on the very
faces its ranges were taken from, so it cannot see a face whose activations fall outside
those ranges; the held-out one can. Figures only; it writes nothing outside --work.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "-1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
from convert import faces, sources, tflite_tools
from convert.sface import HEAD_CANDIDATES, INPUT

ROOT = Path(__file__).resolve().parent.parent
SKIP = {"PRELU", "PAD", "TRANSPOSE", "RESHAPE"}  # PRELU is float anyway; the rest only move data


def cosines(emb: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return np.asarray((emb * ref).sum(1) / np.linalg.norm(emb, axis=1) / np.linalg.norm(ref, axis=1))


def describe(c: np.ndarray) -> str:
    return (f"min {c.min():.4f} p1 {np.percentile(c, 1):.4f} median {np.median(c):.4f} "
            f"below0.98 {(c < 0.98).sum()}/{len(c)}")


def stats(emb: np.ndarray, ref: np.ndarray) -> str:
    return describe(cosines(emb, ref))


def unit(v: np.ndarray) -> np.ndarray:
    return np.asarray(v / np.linalg.norm(v, axis=1, keepdims=True))


def flip_template(embed: Callable[[np.ndarray], np.ndarray], crops: list[np.ndarray]) -> np.ndarray:
    """The shipped template of each crop: L2(L2(embed(crop)) + L2(embed(mirror)))."""
    plain = unit(np.concatenate([embed(faces.sface_nchw([c])) for c in crops]))
    mirrored = [np.ascontiguousarray(c[:, ::-1]) for c in crops]
    mirror = unit(np.concatenate([embed(faces.sface_nchw([c])) for c in mirrored]))
    return unit(plain + mirror)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, default=ROOT / ".work" / "convert")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--eval-faces", type=int, default=330)
    ap.add_argument("--heads", default="1,3,5,7,9,11,13", help="float head lengths (SUB/conv ops) to measure")
    ap.add_argument("--no-single-ops", action="store_true", help="skip the one-op-at-a-time table")
    ap.add_argument("--holdout", action="store_true",
                    help="also measure each head held out on the calibration photos (2 halves)")
    args = ap.parse_args()
    head_lengths = [int(n) for n in args.heads.split(",") if n]
    import onnxruntime as ort
    from ai_edge_quantizer import quantizer, recipe

    float_tflite = args.work / "sface_float32.tflite"
    src = args.work / "src"
    aligner = faces.Aligner(src / Path(sources.YUNET_ONNX.path).name,
                            src / Path(sources.SFACE_ONNX.path).name)
    roots = (args.data / "faces-small", ROOT / "fixtures" / "faces")
    calib_paths = [p for r in roots for p in faces.image_paths(r)]
    calib_pairs = list(faces.aligned_faces(aligner, calib_paths, max_faces=8))
    calib = [c for _, c in calib_pairs]
    calib += [np.ascontiguousarray(c[:, ::-1]) for c in calib]
    lfw = args.data / "lfw-dev" / "images"
    ev = [c for _, c in faces.aligned_faces(aligner, faces.lfw_eval_paths(lfw, args.eval_faces),
                                            limit=args.eval_faces)]
    ort_ref = ort.InferenceSession(str(args.work / "sface_2021dec_fp32.onnx"),
                                   providers=["CPUExecutionProvider"])

    def original(x_nchw: np.ndarray) -> np.ndarray:
        return np.asarray(ort_ref.run(None, {INPUT: x_nchw})[0])

    ev_ref = np.concatenate([original(faces.sface_nchw([c])) for c in ev])
    nhwc = [faces.sface_nchw([c]).transpose(0, 2, 3, 1) for c in ev]
    cal_nhwc = [faces.sface_nchw([c]).transpose(0, 2, 3, 1) for c in calib]
    fl = tflite_tools.Runner(float_tflite)
    cal_ref = np.concatenate([fl(x)[0] for x in cal_nhwc])
    pix = f"serving_default_{INPUT}:0"

    def calibrate(crops: list[np.ndarray]) -> dict:
        qt = quantizer.Quantizer(str(float_tflite))
        qt.load_quantization_recipe(recipe.static_wi8_ai8())
        xs = [{INPUT: faces.sface_nchw([c]).transpose(0, 2, 3, 1)} for c in crops]
        qsv = qt.calibrate({"serving_default": xs}, num_threads=2)
        qsv[pix] = {"min": np.zeros_like(qsv[pix]["min"]), "max": np.full_like(qsv[pix]["max"], 255.0)}
        return qsv

    qsv = calibrate(calib)

    def variant(float_scopes: list[str], ranges: dict | None = None) -> tuple[tflite_tools.Runner, bytes]:
        from ai_edge_quantizer import qtyping
        from ai_edge_quantizer.algorithm_manager import AlgorithmName

        q = quantizer.Quantizer(str(float_tflite))
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        if float_scopes:
            q.update_quantization_recipe("^(" + "|".join(re.escape(s) for s in float_scopes) + ")$",
                                         qtyping.TFLOperationName.ALL_SUPPORTED,
                                         algorithm_key=AlgorithmName.NO_QUANTIZE)
        b = bytes(q.quantize(qsv if ranges is None else ranges, enable_progress_report=False).quantized_model)
        return tflite_tools.Runner(b, threads=1), b

    def run(r: tflite_tools.Runner, xs: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([r(x)[0] for x in xs])

    ops = [(i, k, sc) for i, (k, sc) in enumerate(tflite_tools.op_scopes(float_tflite)) if k not in SKIP]
    r, _ = variant([])
    print(f"all static int8: lfw-dev {stats(run(r, nhwc), ev_ref)}", flush=True)
    if not args.no_single_ops:
        for i, k, sc in ops:
            r, _ = variant([sc])
            print(f"op {i:2d} {k:<18} float: lfw-dev {stats(run(r, nhwc), ev_ref)}", flush=True)
    head = [(i, k, sc) for i, k, sc in ops if k in HEAD_CANDIDATES]

    halves: list[tuple[list[np.ndarray], list[np.ndarray], dict]] = []
    if args.holdout:
        photos = sorted({p for p, _ in calib_pairs})
        for part in (0, 1):
            mine = {p for n, p in enumerate(photos) if n % 2 == part}
            fit = [c for p, c in calib_pairs if p in mine]
            held = [c for p, c in calib_pairs if p not in mine]
            fit += [np.ascontiguousarray(c[:, ::-1]) for c in fit]
            halves.append((fit, held, calibrate(fit)))
        held_ref = [flip_template(original, held) for _, held, _ in halves]
        held_plain_ref = [np.concatenate([original(faces.sface_nchw([c])) for c in held])
                          for _, held, _ in halves]
        print(f"holdout: {len(photos)} calibration photos in 2 halves, fit {[len(f) for f, _, _ in halves]} "
              f"faces incl. mirrors, held out {[len(h) for _, h, _ in halves]} faces", flush=True)

    for n in head_lengths:
        scopes = [sc for _, _, sc in head[:n]]
        r, b = variant(scopes)
        lat = r.latency_ms(nhwc[0], runs=100)["median"]
        line = (f"float head of {n:2d} ops (op 0..{head[n - 1][0]}, last {head[n - 1][1]}): "
                f"calibration {stats(run(r, cal_nhwc), cal_ref)} | lfw-dev {stats(run(r, nhwc), ev_ref)} | "
                f"{lat:.2f} ms 1 thread, {len(b) / 1e6:.2f} MB")
        if halves:
            plain_c, tpl_c = [], []
            for (_, held, ranges), ref_t, ref_p in zip(halves, held_ref, held_plain_ref, strict=True):
                rh, _ = variant(scopes, ranges)

                def int8(x_nchw: np.ndarray, rh: tflite_tools.Runner = rh) -> np.ndarray:
                    return np.asarray(rh(x_nchw.transpose(0, 2, 3, 1))[0])

                plain_c.append(cosines(np.concatenate([int8(faces.sface_nchw([c])) for c in held]), ref_p))
                tpl_c.append(cosines(flip_template(int8, held), ref_t))
            line += (f"\n    held out, plain crop {describe(np.concatenate(plain_c))}"
                     f"\n    held out, flip template {describe(np.concatenate(tpl_c))}")
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
